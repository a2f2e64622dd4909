#pragma once

// One factory per server mode, each in its own file; MakeServer() picks one.

#include <memory>

#include "libcore/server/server.h"

namespace core::server {

std::unique_ptr<Server> MakeThreadedServer(transport::TcpListener listener,
                                           ConnectionHandler handler, ServerHooks hooks,
                                           ServerOptions options);

}  // namespace core::server
