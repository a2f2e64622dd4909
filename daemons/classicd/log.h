#pragma once

// rpyc-classicd's log lines, shaped like the reference server's
// ("Nov 26 11:42:48 INFO SLAVE/18812[MainThread]: accepted ('127.0.0.1', 41428) with fd 4").
// Temporary: libcore/log takes this over (stderr or journald sink) in the runtime issue.

#include <memory>
#include <string>

#include <spdlog/logger.h>

namespace classicd {

struct LogOptions {
  std::string name;     // "SLAVE/18812"
  bool quiet = false;   // errors only; otherwise everything from DEBUG up, as rpyc_classic
  std::string logfile;  // empty: stderr
};

// Throws nothing: a log file that cannot be opened is reported in `*error`, and stderr is used.
std::shared_ptr<spdlog::logger> MakeLogger(const LogOptions& options, std::string* error);

// The name the current thread shows in log lines ("MainThread", "Conn-3").
void SetThreadName(std::string name);

}  // namespace classicd
