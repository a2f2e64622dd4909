#include "libcore/base/result.h"

#include <system_error>

namespace core {

std::string ErrnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

std::string_view CodeName(Error::Code code) {
  switch (code) {
    case Error::Code::kProtocol:
      return "protocol error";
    case Error::Code::kIo:
      return "I/O error";
    case Error::Code::kTls:
      return "TLS error";
    case Error::Code::kConfig:
      return "config error";
    case Error::Code::kPython:
      return "Python error";
    case Error::Code::kLimit:
      return "limit exceeded";
    case Error::Code::kUsage:
      return "usage error";
    case Error::Code::kClosed:
      return "closed";
  }
  return "error";
}

std::string Error::ToString() const {
  std::string out(CodeName(code_));
  out += ": ";
  out += message_;
  return out;
}

Error Error::WithContext(std::string_view context) const {
  std::string msg(context);
  msg += ": ";
  msg += message_;
  return {code_, std::move(msg)};
}

}  // namespace core
