#pragma once

// The registry's transports on the libevent loop. Everything is non-blocking: no client can
// delay another.
//   UdpServer: one request per datagram, the reply to the datagram's source address.
//   TcpServer: one request per connection, reply, close. Each connection has a deadline from
//     accept; the number of open connections is capped, and at the cap the oldest is closed.

#include <chrono>
#include <list>
#include <memory>
#include <string>

#include <sys/socket.h>

#include "daemons/registryd/request.h"
#include "libcore/base/unique_fd.h"
#include "libcore/daemon/loop.h"

namespace registryd {

class UdpServer {
 public:
  UdpServer(core::daemon::EventLoop& loop, core::UniqueFd fd, Handler handler);
  UdpServer(const UdpServer&) = delete;
  UdpServer& operator=(const UdpServer&) = delete;

  Handler& handler() { return handler_; }
  int fd() const { return fd_.get(); }

 private:
  void OnReadable();

  // recvmmsg batch: one system call fetches up to kBatch datagrams, and a short batch means the
  // queue is empty, so no extra call ends in EAGAIN.
  static constexpr size_t kBatch = 8;
  struct Slot {
    char data[kMaxRequestBytes];
    sockaddr_storage addr;
  };
  core::UniqueFd fd_;
  Handler handler_;
  core::daemon::IoWatch watch_;
  std::unique_ptr<Slot[]> slots_;
  mmsghdr msgs_[kBatch] = {};  // point into slots_, set up once
  iovec iovs_[kBatch] = {};
  size_t used_ = 0;  // slots filled by the last recvmmsg (their msg_namelen needs a reset)
};

struct TcpLimits {
  size_t max_connections = 256;
  std::chrono::milliseconds deadline{5000};
};

class TcpServer {
 public:
  TcpServer(core::daemon::EventLoop& loop, core::UniqueFd listen_fd, Handler handler,
            TcpLimits limits);
  TcpServer(const TcpServer&) = delete;
  TcpServer& operator=(const TcpServer&) = delete;
  ~TcpServer();

  Handler& handler() { return handler_; }
  int fd() const { return fd_.get(); }
  size_t connections() const { return conns_.size(); }
  // Stops accepting (shutdown); open connections are closed with the server.
  void StopAccepting() { accept_watch_.Stop(); }

 private:
  struct Conn;
  using ConnList = std::list<std::unique_ptr<Conn>>;
  enum class Next { kClose, kRead, kWrite };
  // Serves the bytes received so far: waits for more (kRead), for the socket to take the rest
  // of the reply (kWrite, with *out and *sent set), or is done (kClose).
  Next Serve(int fd, std::string_view in, bool eof, const core::daemon::PeerAddress& peer,
             double now, std::string* out, size_t* sent);
  void OnAcceptable();
  void OnEvent(ConnList::iterator it, short what);
  void Close(ConnList::iterator it);

  core::daemon::EventLoop& loop_;
  core::UniqueFd fd_;
  Handler handler_;
  TcpLimits limits_;
  core::daemon::IoWatch accept_watch_;
  ConnList conns_;  // oldest first
  core::log::RateLimit evict_limit_{1, 10.0};
};

}  // namespace registryd
