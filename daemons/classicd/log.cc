#include "daemons/classicd/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace classicd {
namespace {

thread_local std::string g_thread_name = "MainThread";

// Python's level names: DEBUG INFO WARNING ERROR CRITICAL.
class PythonLevelFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const char* name = "DEBUG";
    switch (msg.level) {
      case spdlog::level::info:
        name = "INFO";
        break;
      case spdlog::level::warn:
        name = "WARNING";
        break;
      case spdlog::level::err:
        name = "ERROR";
        break;
      case spdlog::level::critical:
        name = "CRITICAL";
        break;
      default:
        break;
    }
    dest.append(std::string_view(name));
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<PythonLevelFlag>();
  }
};

class ThreadNameFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    dest.append(std::string_view(g_thread_name));  // formatted on the logging thread
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<ThreadNameFlag>();
  }
};

}  // namespace

void SetThreadName(std::string name) { g_thread_name = std::move(name); }

std::shared_ptr<spdlog::logger> MakeLogger(const LogOptions& options, std::string* error) {
  spdlog::sink_ptr sink;
  if (!options.logfile.empty()) {
    try {
      sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.logfile);
    } catch (const spdlog::spdlog_ex& e) {  // adapter boundary: spdlog throws
      if (error != nullptr) *error = e.what();
    }
  }
  if (!sink) sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>(options.name, std::move(sink));
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<PythonLevelFlag>('*').add_flag<ThreadNameFlag>('&');
  formatter->set_pattern("%b %d %H:%M:%S %* %n[%&]: %v");
  logger->set_formatter(std::move(formatter));
  logger->set_level(options.quiet ? spdlog::level::err : spdlog::level::debug);
  logger->flush_on(spdlog::level::debug);
  return logger;
}

}  // namespace classicd
