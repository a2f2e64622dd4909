// Forking mode: a child per connection, forked from the loop thread (which never runs client
// code) by core::server::ForkingServer; the child serves its one connection and exits without
// finalising the interpreter.

#include <signal.h>
#include <sys/wait.h>

#include "daemons/classicd/objspace/objspace.h"
#include "daemons/classicd/service.h"

namespace classicd {

using core::UniqueFd;
using core::log::Level;

void ClassicService::StartForking() {
  core::server::ForkingServer::Hooks hooks;
  hooks.fork = [this]() -> core::Result<pid_t> {
    auto pid = interpreter_->Fork();
    if (!pid) return core::Fail(pid.error());
    return static_cast<pid_t>(*pid);
  };
  // The child: no listeners, one connection, then _exit without finalising.
  hooks.in_child = [this] { listeners_.CloseInChild(); };
  hooks.serve = [this](UniqueFd fd, uint64_t id) {
    const Peer& peer = child_peers_.at(id);
    auto stream = OpenSocket(std::move(fd), peer, id);
    if (stream) Serve(*stream, peer, id);
  };
  hooks.exit_child = [this](int status) { interpreter_->ExitChild(status); };
  // The parent's handlers write to the parent's loop.
  forking_ = std::make_unique<core::server::ForkingServer>(
      std::move(hooks),
      core::server::ForkingServer::Options{{SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2}});
  sigchld_ =
      std::make_unique<core::daemon::SignalWatch>(ctx_.loop, SIGCHLD, [this] { ReapChildren(); });
}

void ClassicService::ForkChild(UniqueFd fd, Peer peer) {
  const uint64_t id = ++next_id_;
  auto it = child_peers_.emplace(id, std::move(peer)).first;
  auto pid = forking_->Spawn(std::move(fd), id);
  if (!pid) {
    conn_log_(Level::err, it->second, id, "cannot serve {}: {}", it->second.repr,
              pid.error().message());
    Release(it->second.host);
    child_peers_.erase(it);
    return;
  }
  conn_log_(Level::debug, it->second, id, "child {} serves {}", *pid, it->second.repr);
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
  Release(peer.host);
  child_peers_.erase(it);
}

void ClassicService::ReapChildren() {
  if (!forking_) return;
  forking_->Reap([this](const core::server::ForkingServer::Ended& e) { ChildEnded(e); });
  if (stopping_ && forking_->empty()) ctx_.loop.Break();
}

}  // namespace classicd
