// Forking mode: a child per connection, forked from the loop thread (which never runs client
// code) by core::server::ForkingServer; the child serves its one connection and exits without
// finalising the interpreter.
//
// A connection gets its child only once it is worth one (issue 12): with TLS when its handshake
// is done, over plain TCP when its first byte has arrived. Until then the parent holds it as an
// Opening, driven by the loop (non-blocking SSL_accept steps, a read watch), so that idle or
// half-open connects and failed handshakes cost no fork and other connects are accepted and
// handshaken meanwhile. The handshakes run on the loop thread rather than on threads: fork()
// copies whatever lock another thread holds inside OpenSSL at that moment, and the child would
// wait on it for ever. The child inherits the established session (the SSL object's memory) and
// carries it on; the parent's copy is freed without a close_notify (~TlsStream sends nothing).

#include <cerrno>

#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemons/classicd/objspace/objspace.h"
#include "daemons/classicd/service.h"
#include "libcore/transport/socket_stream.h"

namespace classicd {

using core::UniqueFd;
using core::log::Level;
using Clock = std::chrono::steady_clock;

void ClassicService::StartForking() {
  core::server::ForkingServer::Hooks hooks;
  hooks.fork = [this]() -> core::Result<pid_t> {
    auto pid = interpreter_->Fork();
    if (!pid) return core::Fail(pid.error());
    return static_cast<pid_t>(*pid);
  };
  // The child: no listeners, no other connection (those still opening are the parent's: their
  // sockets are closed here, and nothing else of them is touched: the child never returns to
  // the loop, and ends with _exit), one connection, then _exit without finalising.
  hooks.in_child = [this] {
    listeners_.CloseInChild();
    for (const auto& [id, o] : openings_) ::close(o->raw_fd());
    for (const auto& [id, w] : auth_waits_) ::close(w->done.get());
  };
  hooks.serve = [this](std::unique_ptr<core::transport::Stream> stream, uint64_t id) {
    Peer& peer = child_peers_.at(id);
    const bool authenticated = Authenticate(*stream, peer, id);
    auth_done_.Reset();  // the parent counts the handshake out
    if (authenticated) Serve(*stream, peer, id);
  };
  hooks.exit_child = [this](int status) { interpreter_->ExitChild(status); };
  // The parent's handlers write to the parent's loop.
  forking_ = std::make_unique<core::server::ForkingServer>(
      std::move(hooks),
      core::server::ForkingServer::Options{{SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2}});
  sigchld_ =
      std::make_unique<core::daemon::SignalWatch>(ctx_.loop, SIGCHLD, [this] { ReapChildren(); });
}

void ClassicService::OpenBeforeFork(UniqueFd fd, Peer peer) {
  const uint64_t id = ++next_id_;
  char c = 0;
  // With an authenticator the server may have to speak first (a challenge): forked at once, the
  // authenticator's deadline bounds the child.
  if (!tls() && (authenticator_ || ::recv(fd.get(), &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0)) {
    // The usual case over plain TCP: the client's first request is here already. Forked at
    // once, with nothing allocated for the wait: each heap page the parent writes between two
    // forks costs a page (its copy) that the children forked before keep.
    auto stream = OpenSocket(std::move(fd), peer, id);
    ForkChild(std::move(stream), std::move(peer), id);
    return;
  }
  auto o = std::make_unique<Opening>();
  o->peer = std::move(peer);
  if (auto ctx = tls()) {
    // TLS connections keep Nagle's algorithm, as in OpenSocket().
    if (o->peer.nodelay) (void)core::transport::SetNoDelay(fd.get(), false);
    auto t = core::transport::TlsStream::Begin(std::move(fd), ctx, o->peer.text);
    if (!t) {
      HandshakeEnded(o->peer, id, core::Fail(t.error()));
      Release(o->peer.host);
      return;
    }
    o->tls = std::move(*t);
    o->timeout_ms = static_cast<int>(limits_.tls_handshake_timeout.load() * 1000);
  } else {
    o->fd = std::move(fd);
    o->timeout_ms =
        static_cast<int>(std::min<int64_t>(limits_.idle_timeout.load(), INT32_MAX / 1000) * 1000);
  }
  o->deadline = Clock::now() + std::chrono::milliseconds(o->timeout_ms);
  openings_.emplace(id, std::move(o));
  AdvanceOpening(id, 0);
}

void ClassicService::AdvanceOpening(uint64_t id, short what) {
  // Called by the Opening's own watch: everything needed after erasing the Opening (which
  // destroys the watch) is copied out first.
  auto it = openings_.find(id);
  if (it == openings_.end()) return;
  Opening& o = *it->second;
  const bool timed_out =
      (what & EV_TIMEOUT) != 0 || (o.timeout_ms > 0 && Clock::now() >= o.deadline);
  short wait = EV_READ;
  if (o.tls) {
    core::Result<core::transport::TlsStream::Progress> progress =
        timed_out
            ? core::Fail(core::transport::TlsStream::HandshakeTimedOut(o.peer.text, o.timeout_ms))
            : o.tls->Handshake();
    if (!progress) {
      HandshakeEnded(o.peer, id, core::Fail(progress.error()));
      DropOpening(id);
      return;
    }
    if (*progress == core::transport::TlsStream::Progress::kDone) {
      HandshakeEnded(o.peer, id, o.tls.get());
      std::unique_ptr<core::transport::Stream> stream = std::move(o.tls);
      Peer peer = std::move(o.peer);
      openings_.erase(it);
      ForkChild(std::move(stream), std::move(peer), id);
      return;
    }
    if (*progress == core::transport::TlsStream::Progress::kWantWrite) wait = EV_WRITE;
  } else {
    if (timed_out) {
      conn_log_(Level::info, o.peer, id, "idle timeout: nothing from {} for {} s", o.peer.repr,
                o.timeout_ms / 1000);
      DropOpening(id);
      return;
    }
    char c = 0;
    const ssize_t n = ::recv(o.fd.get(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) {
      Peer peer = std::move(o.peer);
      auto stream = OpenSocket(std::move(o.fd), peer, id);
      openings_.erase(it);
      ForkChild(std::move(stream), std::move(peer), id);
      return;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      conn_log_(Level::info, o.peer, id, "goodbye {}: closed before sending anything", o.peer.repr);
      DropOpening(id);
      return;
    }
  }
  if (!o.watch || o.waiting != wait) {
    o.watch = std::make_unique<core::daemon::IoWatch>(
        ctx_.loop, o.raw_fd(), wait, false, [this, id](short w) { AdvanceOpening(id, w); });
    o.waiting = wait;
  }
  if (o.timeout_ms > 0) {
    o.watch->Start(
        std::max(std::chrono::duration_cast<std::chrono::milliseconds>(o.deadline - Clock::now()),
                 std::chrono::milliseconds(1)));
  } else {
    o.watch->Start();
  }
}

void ClassicService::DropOpening(uint64_t id) {
  auto it = openings_.find(id);
  if (it == openings_.end()) return;
  if (it->second->peer.handshake != 0) admission_.HandshakeEnded(it->second->peer.handshake);
  Release(it->second->peer.host);
  openings_.erase(it);
}

void ClassicService::DropOpenings() {
  for (auto& [id, o] : openings_) {
    if (o->peer.handshake != 0) admission_.HandshakeEnded(o->peer.handshake);
    Release(o->peer.host);
  }
  openings_.clear();
}

void ClassicService::ForkChild(std::unique_ptr<core::transport::Stream> stream, Peer peer,
                               uint64_t id) {
  auto it = child_peers_.emplace(id, std::move(peer)).first;
  const uint64_t slot = authenticator_ ? it->second.handshake : 0;
  if (slot != 0) WatchAuthentication(id, slot);  // sets auth_done_, the child's end
  auto pid = forking_->Spawn(std::move(stream), id);
  auth_done_.Reset();
  if (!pid) {
    conn_log_(Level::err, it->second, id, "cannot serve {}: {}", it->second.repr,
              pid.error().message());
    EndAuthWait(id);
    if (slot != 0) admission_.HandshakeEnded(slot);
    Release(it->second.host);
    child_peers_.erase(it);
    return;
  }
  conn_log_(Level::debug, it->second, id, "child {} serves {}", *pid, it->second.repr);
}

void ClassicService::WatchAuthentication(uint64_t id, uint64_t slot) {
  // The child runs the authenticator under tls_handshake_timeout; the slot counts no longer.
  const int timeout_ms = static_cast<int>(limits_.tls_handshake_timeout.load() * 1000);
  admission_.HandshakeDeadline(slot, Clock::now() + std::chrono::milliseconds(timeout_ms));
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) return;  // counted out at the deadline or the child's end
  auto w = std::make_unique<AuthWait>();
  w->done = UniqueFd(ends[0]);
  auth_done_ = UniqueFd(ends[1]);
  w->slot = slot;
  w->watch = std::make_unique<core::daemon::IoWatch>(ctx_.loop, ends[0], EV_READ, false,
                                                     [this, id](short) { EndAuthWait(id); });
  w->watch->Start(std::chrono::milliseconds(timeout_ms));
  auth_waits_.emplace(id, std::move(w));
}

void ClassicService::EndAuthWait(uint64_t id) {
  // Called by the wait's own watch (EOF or the deadline): the slot is copied out first.
  auto it = auth_waits_.find(id);
  if (it == auth_waits_.end()) return;
  const uint64_t slot = it->second->slot;
  auth_waits_.erase(it);
  admission_.HandshakeEnded(slot);
}

void ClassicService::ChildEnded(const core::server::ForkingServer::Ended& e) {
  auto it = child_peers_.find(e.id);
  if (it == child_peers_.end()) return;
  const Peer& peer = it->second;
  if (WIFSIGNALED(e.status) && stopping_ && WTERMSIG(e.status) == SIGTERM) {
    log_.Debug("child {} serving {} stopped", e.pid, peer.repr);
  } else if (WIFSIGNALED(e.status)) {
    log_.Error("child {} serving {} was killed by signal {}", e.pid, peer.repr, WTERMSIG(e.status));
  } else if (WIFEXITED(e.status) && WEXITSTATUS(e.status) != 0) {
    log_.Warn("child {} serving {} exited with status {}", e.pid, peer.repr, WEXITSTATUS(e.status));
  }
  EndAuthWait(e.id);
  if (peer.handshake != 0) admission_.HandshakeEnded(peer.handshake);
  Release(peer.host);
  child_peers_.erase(it);
}

void ClassicService::ReapChildren() {
  if (!forking_) return;
  forking_->Reap([this](const core::server::ForkingServer::Ended& e) { ChildEnded(e); });
  if (stopping_ && forking_->empty()) ctx_.loop.Break();
}

}  // namespace classicd
