#include "libcore/log/log.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <system_error>
#include <vector>

#include <spdlog/details/file_helper.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

namespace core::log {

// Fields of the message being logged on this thread; only the journal sink reads them.
namespace {
thread_local const std::initializer_list<Field>* current_fields = nullptr;

// %* : the level as Python's logging prints it (DEBUG, INFO, WARNING, ERROR, CRITICAL).
class PythonLevelFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string_view name;
    switch (msg.level) {
      case Level::trace:
      case Level::debug:
        name = "DEBUG";
        break;
      case Level::info:
        name = "INFO";
        break;
      case Level::warn:
        name = "WARNING";
        break;
      case Level::err:
        name = "ERROR";
        break;
      default:
        name = "CRITICAL";
        break;
    }
    dest.append(name.data(), name.data() + name.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<PythonLevelFlag>();
  }
};

std::unique_ptr<spdlog::formatter> MakeFormatter(const std::string& pattern) {
  auto f = std::make_unique<spdlog::pattern_formatter>();
  f->add_flag<PythonLevelFlag>('*').set_pattern(pattern);
  return f;
}

int SyslogPriority(Level level) {
  switch (level) {
    case Level::trace:
    case Level::debug:
      return 7;
    case Level::info:
      return 6;
    case Level::warn:
      return 4;
    case Level::err:
      return 3;
    default:
      return 2;
  }
}

}  // namespace

// Native journal protocol: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, RPYC_LOGGER and the caller's
// fields. No timestamp in MESSAGE: the journal has its own.
class JournalSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit JournalSink(std::string identifier) : identifier_(std::move(identifier)) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::vector<std::string> parts;
    parts.reserve(4 + (current_fields != nullptr ? current_fields->size() : 0));
    parts.push_back("MESSAGE=" + std::string(msg.payload.data(), msg.payload.size()));
    parts.push_back("PRIORITY=" + std::to_string(SyslogPriority(msg.level)));
    parts.push_back("SYSLOG_IDENTIFIER=" + identifier_);
    parts.push_back("RPYC_LOGGER=" + std::string(msg.logger_name.data(), msg.logger_name.size()));
    for (const auto& [name, value] : fields_) parts.push_back(name + "=" + value);
    if (current_fields != nullptr) {
      for (const Field& f : *current_fields) {
        parts.push_back(std::string(f.name) + "=" + std::string(f.value));
      }
    }
    std::vector<iovec> iov(parts.size());
    for (size_t i = 0; i < parts.size(); ++i) {
      iov[i].iov_base = parts[i].data();
      iov[i].iov_len = parts[i].size();
    }
    sd_journal_sendv(iov.data(), static_cast<int>(iov.size()));
  }
  void flush_() override {}

 public:
  void SetField(const std::string& name, const std::string& value) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& f : fields_) {
      if (f.first == name) {
        f.second = value;
        return;
      }
    }
    fields_.emplace_back(name, value);
  }

 private:
  std::string identifier_;
  std::vector<std::pair<std::string, std::string>> fields_;  // guarded by mutex_
};

// A file sink that can be reopened in place (logrotate's "move, then HUP").
class ReopenableFileSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit ReopenableFileSink(const std::string& path) { file_.open(path, false); }
  void Reopen() {
    std::lock_guard<std::mutex> lock(mutex_);
    file_.reopen(false);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    file_.write(formatted);
    file_.flush();
  }
  void flush_() override { file_.flush(); }

 private:
  spdlog::details::file_helper file_;
};

Result<Target> ParseTarget(std::string_view text) {
  if (text == "auto") return Target::kAuto;
  if (text == "stderr") return Target::kStderr;
  if (text == "journal") return Target::kJournal;
  if (text == "file") return Target::kFile;
  return Fail(
      Error::Config("log target '" + std::string(text) + "' is not auto|stderr|journal|file"));
}

Status CheckLogFile(const std::string& path) {
  if (path.empty()) return {};
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return Fail(Error::Io("log file " + path + ": is a directory"));
  }
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  if (::stat(dir.c_str(), &st) != 0) {
    const std::error_code saved(errno, std::generic_category());
    return Fail(Error::Io("log file " + path + ": directory " + dir + ": " + saved.message()));
  }
  if (!S_ISDIR(st.st_mode)) {
    return Fail(Error::Io("log file " + path + ": " + dir + " is not a directory"));
  }
  return {};
}

Result<Level> ParseLevel(std::string_view text) {
  if (text == "error") return Level::err;
  if (text == "warning") return Level::warn;
  if (text == "info") return Level::info;
  if (text == "debug") return Level::debug;
  return Fail(
      Error::Config("log level '" + std::string(text) + "' is not error|warning|info|debug"));
}

Result<std::unique_ptr<Logging>> Logging::Create(const Options& options) {
  std::unique_ptr<Logging> l(new Logging());
  l->level_ = Threshold(options.quiet, options.level);
  const char* stream = std::getenv("JOURNAL_STREAM");  // NOLINT(concurrency-mt-unsafe): startup
  l->to_journal_ = options.target == Target::kJournal ||
                   (options.target == Target::kAuto && stream != nullptr && *stream != '\0');
  if (l->to_journal_) {
    l->journal_ = std::make_shared<JournalSink>(options.identifier);
    l->sinks_.push_back(l->journal_);
  } else if (options.target != Target::kFile) {
    auto err = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    err->set_formatter(MakeFormatter("%*:%n:%v"));
    l->sinks_.push_back(err);
    l->to_stderr_ = true;
  }
  if (!options.file.empty()) {
    if (auto st = CheckLogFile(options.file); !st) return Fail(st.error());
    try {
      l->file_ = std::make_shared<ReopenableFileSink>(options.file);
    } catch (const spdlog::spdlog_ex& e) {
      return Fail(Error::Io("log file " + options.file + ": " + e.what()));
    }
    l->file_->set_formatter(MakeFormatter("%b %d %H:%M:%S %*:%n:%v"));
    l->sinks_.push_back(l->file_);
  }
  return l;
}

Logging::~Logging() = default;

void Logging::SetJournalField(const std::string& name, const std::string& value) {
  if (journal_) journal_->SetField(name, value);
}

bool Logging::reaches_stderr() const {
  if (to_stderr_) return true;
  if (!to_journal_) return false;
  const char* stream = std::getenv("JOURNAL_STREAM");  // NOLINT(concurrency-mt-unsafe): read only
  unsigned long long dev = 0;
  unsigned long long ino = 0;
  struct stat st {};
  return stream != nullptr && std::sscanf(stream, "%llu:%llu", &dev, &ino) == 2 &&
         ::fstat(2, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

Logger Logging::Get(const std::string& name) const {
  auto impl = std::make_shared<spdlog::logger>(name, sinks_.begin(), sinks_.end());
  impl->flush_on(Level::trace);
  std::lock_guard<std::mutex> lock(mu_);
  impl->set_level(level_);
  std::erase_if(loggers_, [](const auto& w) { return w.expired(); });
  loggers_.push_back(impl);
  return Logger(std::move(impl));
}

void Logging::SetQuiet(bool quiet) { SetThreshold(Threshold(quiet, Level::debug)); }

Level Logging::threshold() const {
  std::lock_guard<std::mutex> lock(mu_);
  return level_;
}

void Logging::SetThreshold(Level level) {
  std::lock_guard<std::mutex> lock(mu_);
  level_ = level;
  for (const auto& w : loggers_) {
    if (auto l = w.lock()) l->set_level(level_);
  }
}

Status Logging::Reopen() {
  if (!file_) return {};
  try {
    file_->Reopen();
  } catch (const spdlog::spdlog_ex& e) {
    return Fail(Error::Io(std::string("reopening the log file: ") + e.what()));
  }
  return {};
}

void Logger::Write(Level level, std::initializer_list<Field> fields,
                   std::string_view message) const {
  if (!enabled(level)) return;
  current_fields = &fields;
  impl_->log(level, "{}", message);
  current_fields = nullptr;
}

namespace {

// The length of the UTF-8 sequence at text[i], or 0 when it is not valid UTF-8 (overlong
// forms, surrogates and code points past U+10FFFF included).
size_t Utf8Length(std::string_view text, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(text[i + k]); };
  const auto cont = [&](size_t k) { return i + k < text.size() && (b(k) & 0xc0) == 0x80; };
  const unsigned c = b(0);
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xe0 && b(1) < 0xa0) return 0;   // overlong
    if (c == 0xed && b(1) >= 0xa0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xf0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xf4 && b(1) >= 0x90) return 0;  // past U+10FFFF
    return 4;
  }
  return 0;
}

}  // namespace

std::string Escape(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      if (c == '\\') out += '\\';
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    if (c < 0x80) {
      switch (c) {
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          out += "\\x";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
      }
      ++i;
      continue;
    }
    const size_t n = Utf8Length(text, i);
    if (n == 0) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
      ++i;
      continue;
    }
    unsigned cp = 0;
    if (n == 2) cp = ((c & 0x1fu) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3fu);
    if (n == 3) {
      cp = ((c & 0x0fu) << 12) | ((static_cast<unsigned char>(text[i + 1]) & 0x3fu) << 6) |
           (static_cast<unsigned char>(text[i + 2]) & 0x3fu);
    }
    if ((cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029) {
      out += "\\u";
      for (int shift = 12; shift >= 0; shift -= 4) out += kHex[(cp >> shift) & 0xf];
    } else {
      out.append(text.substr(i, n));
    }
    i += n;
  }
  return out;
}

bool RateLimit::Allow(double now) {
  if (now - window_start_ >= interval_) {
    window_start_ = now;
    count_ = 0;
  }
  if (count_ < burst_) {
    ++count_;
    return true;
  }
  ++suppressed_;
  return false;
}

uint64_t RateLimit::TakeSuppressed() {
  const uint64_t n = suppressed_;
  suppressed_ = 0;
  return n;
}

}  // namespace core::log
