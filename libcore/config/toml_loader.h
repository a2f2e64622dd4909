#pragma once

// Loads a TOML file into the members a schema points at. Every error is one line:
//   FILE:LINE: key 'x': <what>      (unknown key, wrong type, out of range, bad choice)
//   FILE:LINE:COL: <parse error>    (TOML syntax)

#include <string>
#include <string_view>

#include "libcore/base/result.h"
#include "libcore/config/options.h"

namespace core::config {

Status LoadTomlFile(const std::string& path, const Schema& schema);

// Same, from text; `source` names it in messages (a path, or "<string>").
Status LoadTomlText(std::string_view text, std::string_view source, const Schema& schema);

}  // namespace core::config
