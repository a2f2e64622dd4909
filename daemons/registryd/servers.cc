#include "daemons/registryd/servers.h"

#include <cerrno>
#include <optional>

#include <sys/socket.h>

#include "libcore/brine/brine.h"
#include "libcore/daemon/sockets.h"

namespace registryd {
namespace {

using core::daemon::MonotonicSeconds;
using core::daemon::PeerAddress;

constexpr int kMaxDatagramsPerWakeup = 64;

// True when `data` is a prefix of a brine value that more bytes could complete.
bool LooksIncomplete(std::string_view data) {
  if (FastQueryName(data)) return false;
  auto v = core::brine::Load(data, core::brine::DecodeLimits{16});
  if (v) return false;
  const std::string& m = v.error().message();
  return m.find("truncated") != std::string::npos || m.find("but only") != std::string::npos;
}

}  // namespace

UdpServer::UdpServer(core::daemon::EventLoop& loop, core::UniqueFd fd, Handler handler)
    : fd_(std::move(fd)),
      handler_(std::move(handler)),
      watch_(loop, fd_.get(), EV_READ, true, [this](short) { OnReadable(); }),
      slots_(std::make_unique<Slot[]>(kBatch)) {
  for (size_t i = 0; i < kBatch; ++i) {
    iovs_[i] = iovec{slots_[i].data, kMaxRequestBytes};
    msgs_[i].msg_hdr.msg_name = &slots_[i].addr;
    msgs_[i].msg_hdr.msg_iov = &iovs_[i];
    msgs_[i].msg_hdr.msg_iovlen = 1;
    msgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
  }
  watch_.Start();
}

void UdpServer::OnReadable() {
  for (int round = 0; round < kMaxDatagramsPerWakeup / static_cast<int>(kBatch); ++round) {
    for (size_t i = 0; i < used_; ++i) msgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
    const int got = recvmmsg(fd_.get(), msgs_, kBatch, MSG_DONTWAIT, nullptr);
    if (got <= 0) return;  // EAGAIN, or a queued ICMP error: nothing to do
    used_ = static_cast<size_t>(got);
    const double now = MonotonicSeconds();
    for (int i = 0; i < got; ++i) {
      const Slot& slot = slots_[static_cast<size_t>(i)];
      const PeerAddress from(slot.addr);
      if ((msgs_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0) {
        handler_.WarnPeer(
            from, "oversize datagram (more than " + std::to_string(kMaxRequestBytes) + " bytes)",
            now);
        continue;
      }
      auto reply = handler_.Handle(std::string_view(slot.data, msgs_[i].msg_len), from, now);
      if (reply) {
        sendto(fd_.get(), reply->data(), reply->size(), MSG_DONTWAIT,
               reinterpret_cast<const sockaddr*>(&slot.addr), msgs_[i].msg_hdr.msg_namelen);
      }
    }
    if (static_cast<size_t>(got) < kBatch) return;
  }
}

struct TcpServer::Conn {
  core::UniqueFd fd;
  sockaddr_storage addr{};
  std::optional<PeerAddress> peer;  // borrows addr
  std::string in;
  std::string out;
  size_t sent = 0;
  double deadline = 0;
  std::unique_ptr<core::daemon::IoWatch> watch;
};

TcpServer::TcpServer(core::daemon::EventLoop& loop, core::UniqueFd listen_fd, Handler handler,
                     TcpLimits limits)
    : loop_(loop),
      fd_(std::move(listen_fd)),
      handler_(std::move(handler)),
      limits_(limits),
      accept_watch_(loop, fd_.get(), EV_READ, true, [this](short) { OnAcceptable(); }) {
  accept_watch_.Start();
}

TcpServer::~TcpServer() = default;

TcpServer::Next TcpServer::Serve(int fd, std::string_view in, bool eof, const PeerAddress& peer,
                                 double now, std::string* out, size_t* sent) {
  if (in.empty()) return Next::kClose;  // connected and closed without a word: no warning
  if (!eof && in.size() < kMaxRequestBytes && LooksIncomplete(in)) return Next::kRead;
  auto reply = handler_.Handle(in, peer, now);
  if (!reply) return Next::kClose;
  // Usually the whole reply fits the socket buffer at once; wait for EV_WRITE only if not.
  const ssize_t n = send(fd, reply->data(), reply->size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n == static_cast<ssize_t>(reply->size()) || (n < 0 && errno != EAGAIN)) return Next::kClose;
  out->assign(*reply);
  *sent = n > 0 ? static_cast<size_t>(n) : 0;
  return Next::kWrite;
}

void TcpServer::OnAcceptable() {
  for (int i = 0; i < kMaxDatagramsPerWakeup; ++i) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    core::UniqueFd fd(
        accept4(fd_.get(), reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) return;  // EAGAIN, or the peer already gave up
    const double now = MonotonicSeconds();
    // The request has often arrived with the connection: then serve it without any per-
    // connection state or event.
    char buf[kMaxRequestBytes];
    const ssize_t n = recv(fd.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) continue;
    const PeerAddress peer(addr);
    std::string_view in;
    std::string out;
    size_t sent = 0;
    Next next = Next::kRead;
    if (n > 0) {
      in = std::string_view(buf, static_cast<size_t>(n));
      next = Serve(fd.get(), in, false, peer, now, &out, &sent);
      if (next == Next::kClose) continue;
    }
    if (conns_.size() >= limits_.max_connections) {
      if (evict_limit_.Allow(now)) {
        handler_.log().Log(
            core::log::Level::warn, {{"RPYC_PEER", conns_.front()->peer->text()}},
            "{} connections open (max-connections): closing the oldest, from {} ({} more "
            "since the last warning)",
            conns_.size(), conns_.front()->peer->text(), evict_limit_.TakeSuppressed());
      }
      Close(conns_.begin());
    }
    auto conn = std::make_unique<Conn>();
    conn->fd = std::move(fd);
    conn->addr = addr;
    conn->peer.emplace(conn->addr);
    conn->deadline = now + static_cast<double>(limits_.deadline.count()) / 1000.0;
    if (next == Next::kRead) conn->in.assign(in);
    conn->out = std::move(out);
    conn->sent = sent;
    conns_.push_back(std::move(conn));
    auto it = std::prev(conns_.end());
    (*it)->watch = std::make_unique<core::daemon::IoWatch>(
        loop_, (*it)->fd.get(), next == Next::kWrite ? EV_WRITE : EV_READ, false,
        [this, it](short what) { OnEvent(it, what); });
    (*it)->watch->Start(limits_.deadline);
  }
}

void TcpServer::Close(ConnList::iterator it) { conns_.erase(it); }

void TcpServer::OnEvent(ConnList::iterator it, short what) {
  Conn& c = **it;
  const double now = MonotonicSeconds();
  const auto remaining = std::chrono::milliseconds(static_cast<int64_t>((c.deadline - now) * 1000));
  if ((what & EV_TIMEOUT) != 0 || remaining.count() <= 0) {
    handler_.WarnPeer(*c.peer,
                      "connection timed out after " + std::to_string(limits_.deadline.count()) +
                          " ms with " + std::to_string(c.in.size()) + " byte(s) received",
                      now);
    Close(it);
    return;
  }
  if (!c.out.empty()) {  // writing the reply
    const ssize_t n =
        send(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c.watch->Start(remaining);
      return;
    }
    if (n > 0) c.sent += static_cast<size_t>(n);
    if (n > 0 && c.sent < c.out.size()) {
      c.watch->Start(remaining);
      return;
    }
    Close(it);
    return;
  }
  char buf[kMaxRequestBytes];
  const ssize_t n = recv(c.fd.get(), buf, kMaxRequestBytes - c.in.size(), MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    c.watch->Start(remaining);
    return;
  }
  if (n < 0) {
    Close(it);
    return;
  }
  c.in.append(buf, static_cast<size_t>(n));
  switch (Serve(c.fd.get(), c.in, n == 0, *c.peer, now, &c.out, &c.sent)) {
    case Next::kClose:
      Close(it);
      return;
    case Next::kRead:
      c.watch->Start(remaining);
      return;
    case Next::kWrite:
      c.watch = std::make_unique<core::daemon::IoWatch>(loop_, c.fd.get(), EV_WRITE, false,
                                                        [this, it](short w) { OnEvent(it, w); });
      c.watch->Start(remaining);
      return;
  }
}

}  // namespace registryd
