#pragma once

// Result<T> and Error: the one way code that can fail reports it (STYLE.md §3).
// Error is shaped like leveldb's Status: a code plus a message with context.

#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

namespace core {

class [[nodiscard]] Error {
 public:
  enum class Code { kProtocol, kIo, kTls, kConfig, kPython, kLimit, kUsage, kClosed };

  Error(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Error Protocol(std::string msg) { return {Code::kProtocol, std::move(msg)}; }
  static Error Io(std::string msg) { return {Code::kIo, std::move(msg)}; }
  static Error Tls(std::string msg) { return {Code::kTls, std::move(msg)}; }
  static Error Config(std::string msg) { return {Code::kConfig, std::move(msg)}; }
  static Error Python(std::string msg) { return {Code::kPython, std::move(msg)}; }
  static Error Limit(std::string msg) { return {Code::kLimit, std::move(msg)}; }
  static Error Usage(std::string msg) { return {Code::kUsage, std::move(msg)}; }
  static Error Closed(std::string msg) { return {Code::kClosed, std::move(msg)}; }

  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  // Returns a copy whose message is "<context>: <message>".
  Error WithContext(std::string_view context) const;

 private:
  Code code_;
  std::string message_;
};

// strerror's text for an errno value, thread-safe ("Too many open files").
std::string ErrnoText(int err);

std::string_view CodeName(Error::Code code);

template <typename T>
using Result = tl::expected<T, Error>;

// For functions that return nothing on success.
using Status = tl::expected<void, Error>;

inline tl::unexpected<Error> Fail(Error e) { return tl::unexpected<Error>(std::move(e)); }

}  // namespace core
