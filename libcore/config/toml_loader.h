#pragma once

// Loads a TOML file into the members a schema points at. Every problem of the file is reported,
// in file order, one line each (the Error's message joins them with '\n'):
//   FILE:LINE: key 'x': <what>      (unknown key, wrong type, out of range, bad choice, a key
//                                   spelled two ways)
//   FILE:LINE:COL: <parse error>    (TOML syntax; `key = word` hints at quoting the word)
// The key is named as the file spells it.

#include <map>
#include <string>
#include <string_view>

#include "libcore/base/result.h"
#include "libcore/config/options.h"

namespace core::config {

// `lines`, when given, receives the line of each key the file sets (schema key -> line), and
// `spellings` the key as the file spells it (schema key -> "max-connections").
Status LoadTomlFile(const std::string& path, const Schema& schema,
                    std::map<std::string, int>* lines = nullptr,
                    std::map<std::string, std::string>* spellings = nullptr);

// Same, from text; `source` names it in messages (a path, or "<string>").
Status LoadTomlText(std::string_view text, std::string_view source, const Schema& schema,
                    std::map<std::string, int>* lines = nullptr,
                    std::map<std::string, std::string>* spellings = nullptr);

}  // namespace core::config
