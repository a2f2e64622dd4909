#pragma once

// Logging for every daemon: spdlog underneath, three destinations.
//  * stderr (default), in the Python reference's style: "DEBUG:REGSRV/UDP/18811:registering ..."
//  * a file (-f/--logfile), "Nov 26 11:42:12 DEBUG:REGSRV/UDP/18811:...", reopened by Reopen()
//    (the daemon calls it on SIGUSR2, logrotate's postrotate signal, and on SIGHUP)
//  * native journald (sd_journal_sendv) with PRIORITY= and structured fields such as RPYC_PEER,
//    chosen when Target::kJournal is configured, or with kAuto when JOURNAL_STREAM is set
//    (systemd connected stderr to the journal).
// No global registry: a Logging object owns the sinks and hands out named Loggers.

#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/spdlog.h>

#include "libcore/base/result.h"

namespace core::log {

// kFile: the log file only (stdio mode, where fd 1 is the protocol and, under inetd, fd 2 is the
// socket too).
enum class Target { kAuto, kStderr, kJournal, kFile };

using Level = spdlog::level::level_enum;

struct Options {
  std::string file;            // empty: no file
  bool quiet = false;          // errors only, whatever `level` says
  Level level = Level::debug;  // the least severe level written (--log-level)
  Target target = Target::kAuto;
  std::string identifier = "rpyc";  // SYSLOG_IDENTIFIER for the journal
};

Result<Target> ParseTarget(std::string_view text);  // "auto", "stderr", "journal", "file"

// What opening `path` as the log file needs, checked without creating anything (--check-config,
// and Logging::Create before spdlog, which would create missing directories): the path is not a
// directory and its directory exists. An empty path is fine (no file).
Status CheckLogFile(const std::string& path);

// The --log-level names, least verbose first.
inline constexpr const char* kLevelNames[] = {"error", "warning", "info", "debug"};
Result<Level> ParseLevel(std::string_view text);  // one of kLevelNames
// What is written: errors only with `quiet` (-q), else `level` and more severe.
inline Level Threshold(bool quiet, Level level) { return quiet ? Level::err : level; }

// One structured journal field. `name` must be a valid journal field name (upper case,
// digits, underscores) and must outlive the log call.
struct Field {
  std::string_view name;
  std::string_view value;
};

class Logger {
 public:
  Logger() = default;
  explicit Logger(std::shared_ptr<spdlog::logger> impl) : impl_(std::move(impl)) {}

  bool enabled(Level level) const { return impl_ && impl_->should_log(level); }

  template <typename... Args>
  void Log(Level level, std::initializer_list<Field> fields, fmt::format_string<Args...> fmt,
           Args&&... args) const {
    if (!enabled(level)) return;
    Write(level, fields, fmt::format(fmt, std::forward<Args>(args)...));
  }
  template <typename... Args>
  void Debug(fmt::format_string<Args...> fmt, Args&&... args) const {
    Log(Level::debug, {}, fmt, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void Info(fmt::format_string<Args...> fmt, Args&&... args) const {
    Log(Level::info, {}, fmt, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void Warn(fmt::format_string<Args...> fmt, Args&&... args) const {
    Log(Level::warn, {}, fmt, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void Error(fmt::format_string<Args...> fmt, Args&&... args) const {
    Log(Level::err, {}, fmt, std::forward<Args>(args)...);
  }

  // Writes an already formatted message with fields (the journal sink sees them).
  void Write(Level level, std::initializer_list<Field> fields, std::string_view message) const;

 private:
  std::shared_ptr<spdlog::logger> impl_;
};

class Logging {
 public:
  // Opens the file (if any) at once, so a bad path is reported before the daemon starts.
  static Result<std::unique_ptr<Logging>> Create(const Options& options);
  Logging(const Logging&) = delete;
  Logging& operator=(const Logging&) = delete;
  ~Logging();

  // A logger named `name` (the reference's logger names, e.g. "REGSRV/UDP/18811").
  Logger Get(const std::string& name) const;

  // Reopens the log file (SIGUSR2 after logrotate; SIGHUP). A no-op without a file.
  Status Reopen();

  // Errors only, or everything: applies to every logger Get() handed out (a reload).
  void SetQuiet(bool quiet);
  // The least severe level written (see Threshold()), for every logger Get() handed out.
  void SetThreshold(Level level);
  Level threshold() const;

  bool to_journal() const { return to_journal_; }
  // A field every journal line carries from now on (RPYC_SERVICE=CALCULATOR), beside the ones
  // each line gives; set again, it changes. A no-op without the journal. `name` as in Field.
  void SetJournalField(const std::string& name, const std::string& value);
  // Whether what is logged reaches the process's stderr: a stderr sink, or the journal when
  // stderr is the journal stream systemd connected (JOURNAL_STREAM names its device and inode).
  bool reaches_stderr() const;

 private:
  Logging() = default;
  std::vector<spdlog::sink_ptr> sinks_;
  std::shared_ptr<class ReopenableFileSink> file_;
  std::shared_ptr<class JournalSink> journal_;
  Level level_ = Level::debug;  // guarded by mu_
  bool to_journal_ = false;
  bool to_stderr_ = false;
  mutable std::mutex mu_;
  mutable std::vector<std::weak_ptr<spdlog::logger>> loggers_;  // guarded by mu_
};

// A peer-supplied string made safe for one log line: ASCII control characters, DEL, C1 controls
// (U+0080..U+009F) and the line/paragraph separators U+2028/U+2029 become escapes (\n \r \t,
// \xNN, \u0085), bytes that are not UTF-8 become \xNN, and a backslash is doubled, so an
// escaped string cannot forge a line break nor be mistaken for another escaped string.
// Printable text, non-ASCII letters included, is kept as it is.
std::string Escape(std::string_view text);

// At most `burst` messages per `interval`; afterwards Allow() is false until the interval ends,
// and TakeSuppressed() reports how many were dropped (to log once when the window reopens).
class RateLimit {
 public:
  RateLimit(int burst, double interval_seconds) : burst_(burst), interval_(interval_seconds) {}
  bool Allow(double now_seconds);
  uint64_t TakeSuppressed();

 private:
  int burst_;
  double interval_;
  double window_start_ = -1e300;
  int count_ = 0;
  uint64_t suppressed_ = 0;
};

}  // namespace core::log
