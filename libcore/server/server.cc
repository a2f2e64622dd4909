#include "libcore/server/server.h"

#include <cctype>
#include <string>

#include "libcore/server/modes.h"

namespace core::server {

Result<Mode> ParseMode(std::string_view name) {
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (Mode m : {Mode::kThreaded, Mode::kForking, Mode::kOneShot, Mode::kStdio}) {
    if (lower == ModeName(m)) return m;
  }
  return Fail(Error::Usage("unknown mode '" + std::string(name) +
                           "' (choose from threaded, forking, oneshot, stdio)"));
}

const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kThreaded:
      return "threaded";
    case Mode::kForking:
      return "forking";
    case Mode::kOneShot:
      return "oneshot";
    case Mode::kStdio:
      return "stdio";
  }
  return "?";
}

Result<std::unique_ptr<Server>> MakeServer(Mode mode, transport::TcpListener listener,
                                           ConnectionHandler handler, ServerHooks hooks,
                                           ServerOptions options) {
  switch (mode) {
    case Mode::kThreaded:
      return MakeThreadedServer(std::move(listener), std::move(handler), std::move(hooks), options);
    default:
      return Fail(Error::Usage(std::string("mode '") + ModeName(mode) + "' is not supported yet"));
  }
}

}  // namespace core::server
