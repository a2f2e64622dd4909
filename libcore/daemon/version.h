#pragma once

// What --version says about the build: the source commit (taken at build time) and the versions
// of the libraries the daemon runs with (the loaded ones, not the headers it was built against).

#include <string>

namespace core::daemon {

// "6770f78abcde" or "6770f78abcde-dirty" (git describe), or "unknown (built without git)".
std::string BuildCommit();

// "OpenSSL 3.0.11 19 Sep 2023, libevent 2.1.12-stable".
std::string LibraryVersions();

}  // namespace core::daemon
