#pragma once

// Loads a TOML file into the members a schema points at. Every error is one line:
//   FILE:LINE: key 'x': <what>      (unknown key, wrong type, out of range, bad choice)
//   FILE:LINE:COL: <parse error>    (TOML syntax)

#include <map>
#include <string>
#include <string_view>

#include "libcore/base/result.h"
#include "libcore/config/options.h"

namespace core::config {

// `lines`, when given, receives the line of each key the file sets (schema key -> line).
Status LoadTomlFile(const std::string& path, const Schema& schema,
                    std::map<std::string, int>* lines = nullptr);

// Same, from text; `source` names it in messages (a path, or "<string>").
Status LoadTomlText(std::string_view text, std::string_view source, const Schema& schema,
                    std::map<std::string, int>* lines = nullptr);

}  // namespace core::config
