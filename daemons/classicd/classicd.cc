// rpyc-classicd's Service: the wiring of listeners (bound, Unix, or inherited from socket
// activation), the one interpreter and the serving modes, which live in libcore/server/:
//   threaded   a thread per connection; the threads accept for themselves (threaded.h)
//   threadpool the loop owns every client socket and hands a readable one to a fixed pool of
//              workers (pooled.h); PoolSession below steps the protocol engine
//   forking    a child per connection, forked from the loop thread, which never runs client code
//              (forking.h)
//   oneshot    the first connection only, then exit (loop_acceptor.h, single.h)
//   stdio      one connection over the moved fds 0/1, then exit (also a connected socket from
//              socket activation, Accept=yes; single.h, inherited.h)

#include "daemons/classicd/classicd.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <list>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemons/classicd/objspace/objspace.h"
#include "libcore/base/unique_fd.h"
#include "libcore/channel/deadline_stream.h"
#include "libcore/daemon/loop.h"
#include "libcore/daemon/memory.h"
#include "libcore/daemon/sockets.h"
#include "libcore/protocol/connection.h"
#include "libcore/registrar/registrar.h"
#include "libcore/server/forking.h"
#include "libcore/server/inherited.h"
#include "libcore/server/loop_acceptor.h"
#include "libcore/server/pooled.h"
#include "libcore/server/single.h"
#include "libcore/server/threaded.h"
#include "libcore/server/unix_listener.h"
#include "libcore/transport/address.h"
#include "libcore/transport/exposure.h"
#include "libcore/transport/fd_stream.h"
#include "libcore/transport/listener.h"
#include "libcore/transport/socket_stream.h"
#include "libcore/transport/tls_stream.h"

namespace classicd {
namespace {

using core::ErrnoText;
using core::Error;
using core::Fail;
using core::UniqueFd;
using core::log::Level;

// On every connection thread: the stop signals stay with the loop thread (Python threads that
// user code starts inherit this mask too).
void BlockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

// Who a connection comes from, in the spellings the log and the limits use.
struct PeerInfo {
  std::string repr;      // "('127.0.0.1', 5000)": the reference's log spelling
  std::string host;      // "127.0.0.1": RPYC_PEER and the per-peer limit key
  std::string text;      // "127.0.0.1:5000"
  bool nodelay = false;  // accepted from a listener with TCP_NODELAY: the socket has it too
};

PeerInfo DescribePeer(const sockaddr_storage& ss, socklen_t len) {
  PeerInfo p;
  if (ss.ss_family == AF_UNIX) {
    p.repr = "'unix'";
    p.host = "unix";
    p.text = "unix";
    return p;
  }
  const core::transport::SocketAddress addr(reinterpret_cast<const sockaddr*>(&ss), len);
  p.repr = addr.PythonRepr();
  p.host = addr.host();
  p.text = addr.ToString();
  return p;
}

struct Listener {
  UniqueFd fd;
  std::string what;      // "[127.0.0.1]:18812" or "unix:/run/x.sock"
  bool nodelay = false;  // TCP_NODELAY set: the connections it accepts inherit it
};

// The address a listening socket is bound to (the real port after binding port 0).
core::transport::SocketAddress LocalAddress(const Listener& l) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(l.fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  return {reinterpret_cast<sockaddr*>(&ss), len};
}

// The listeners as the exposure rule sees them (core::transport::CheckExposure).
std::vector<core::transport::BoundSocket> BoundSockets(
    const std::vector<std::unique_ptr<Listener>>& listeners) {
  std::vector<core::transport::BoundSocket> out;
  for (const auto& l : listeners) out.push_back({l->fd.get(), l->what});
  return out;
}

class ClassicService final : public core::daemon::Service {
 public:
  ClassicService(core::daemon::Context& ctx, const Options& o, Reloader reload)
      : ctx_(ctx),
        o_(o),
        current_(o),
        reload_(std::move(reload)),
        mode_name_(o.mode),
        wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    limits_.Set(o);
  }

  ~ClassicService() override;

  core::Status Start(StdioFds stdio);
  std::string StatusText() const override {
    return std::to_string(active_.load()) + " connections, " + std::to_string(served_.load()) +
           " served, " + std::to_string(requests_->load(std::memory_order_relaxed)) + " requests";
  }
  void Reload() override;
  void Shutdown() override;
  std::string LoggerName() const override { return log_name_; }

 private:
  core::Status Listen();
  core::Status ListenUnix();
  void AddListener(UniqueFd fd, std::string what);
  // Threadpool, forking, oneshot: a connection accepted on the loop thread.
  void OnAccepted(UniqueFd fd, const sockaddr_storage& ss, socklen_t len, size_t listener);
  void Dispatch(UniqueFd fd, PeerInfo peer);
  bool Admit(const PeerInfo& peer);
  void Release(const std::string& host);
  // Oneshot, stdio, an inherited connection: serves one connection, then the daemon ends.
  void ServeOne(std::function<std::unique_ptr<core::transport::Stream>()> open, PeerInfo peer,
                int raw_fd, uint64_t id);
  // Threaded mode: serves a connection on the thread that accepted it.
  void ServeAccepted(UniqueFd fd, const sockaddr_storage& ss, socklen_t len, bool nodelay);
  void ForkChild(UniqueFd fd, PeerInfo peer);
  // Threadpool mode: the session the pool steps, and the hooks that make it.
  class PoolSession;
  core::Status StartPool();
  std::unique_ptr<core::server::PooledServer::Session> PoolOpen(UniqueFd fd, uint64_t id);
  void ReapChildren();
  void ChildEnded(const core::server::ForkingServer::Ended& e);
  void OnWake();
  std::unique_ptr<core::transport::Stream> OpenSocket(UniqueFd fd, const PeerInfo& peer,
                                                      uint64_t id);
  void Serve(core::transport::Stream& stream, const PeerInfo& peer, uint64_t id);
  void StartRegistrar();
  // A connection's read limits as configured now; threadpool mode watches idleness on the loop.
  core::channel::DeadlineStream::Limits StreamLimits(bool idle) const {
    auto ms = [](int64_t seconds) {
      return static_cast<int>(std::min<int64_t>(seconds, INT32_MAX / 1000) * 1000);
    };
    return {idle ? ms(limits_.idle_timeout.load()) : 0, ms(limits_.frame_timeout.load())};
  }
  std::shared_ptr<core::transport::TlsContext> tls() const {
    std::lock_guard<std::mutex> lock(tls_mu_);
    return tls_;
  }

  template <typename... Args>
  void LogConn(Level level, const PeerInfo& peer, uint64_t id, fmt::format_string<Args...> fmt,
               Args&&... args) {
    if (!log_.enabled(level)) return;
    const std::string conn = std::to_string(id);
    log_.Write(level, {{"RPYC_PEER", peer.host}, {"RPYC_CONN", conn}, {"RPYC_MODE", mode_name_}},
               fmt::format(fmt, std::forward<Args>(args)...));
  }

  core::daemon::Context& ctx_;
  const Options o_;  // as started
  Options current_;  // as last (re)loaded: loop thread only
  Reloader reload_;
  // What a reload changes for new connections (read by connection threads).
  struct Limits {
    std::atomic<int64_t> max_connections;
    std::atomic<int64_t> max_connections_per_peer;
    std::atomic<int64_t> idle_timeout;
    std::atomic<int64_t> frame_timeout;
    std::atomic<int64_t> max_frame_size;
    std::atomic<int64_t> tls_handshake_timeout;
    void Set(const Options& o) {
      max_connections = o.max_connections;
      max_connections_per_peer = o.max_connections_per_peer;
      idle_timeout = o.idle_timeout;
      frame_timeout = o.frame_timeout;
      max_frame_size = o.max_frame_size;
      tls_handshake_timeout = o.tls_handshake_timeout;
    }
  } limits_;
  const std::string mode_name_;
  core::log::Logger log_;
  std::string log_name_;  // set when it differs from the configured port's (port 0)
  // Declared before everything that runs Python, so it is destroyed last.
  std::unique_ptr<objspace::Interpreter> interpreter_;

  mutable std::mutex tls_mu_;
  std::shared_ptr<core::transport::TlsContext> tls_;  // guarded by tls_mu_

  std::vector<std::unique_ptr<Listener>> listeners_;
  std::string unix_path_;  // unlinked at shutdown
  std::unique_ptr<core::registrar::Registrar> registrar_;
  bool single_ = false;                // oneshot, stdio, an inherited connection: exit after one
  std::atomic<bool> stopping_{false};  // workers read it

  std::atomic<int> active_{0};
  std::atomic<uint64_t> served_{0};
  std::atomic<uint64_t> next_id_{0};
  // Requests dispatched by every connection, forked children included: the counter lives in a
  // shared anonymous page (a plain member when that mapping fails).
  std::atomic<uint64_t> requests_fallback_{0};
  std::atomic<uint64_t>* requests_ = &requests_fallback_;
  void* requests_page_ = MAP_FAILED;

  // Threaded mode's connections being served (each erases itself before its socket closes).
  struct Conn {
    int raw_fd = -1;  // for shutdown()
  };
  UniqueFd wake_;
  std::unique_ptr<core::daemon::IoWatch> wake_watch_;
  // Gives the heap of a load spike back once the connections are gone (glibc keeps it).
  std::unique_ptr<core::daemon::IdleTrim> trim_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::list<Conn> conns_;  // guarded by mu_
  // The one connection of oneshot, stdio or an inherited connection (declared after everything
  // its thread touches).
  std::unique_ptr<core::server::SingleConnection> single_conn_;
  // Threaded mode's accepting threads (each serves what it accepts).
  std::unique_ptr<core::server::ThreadedAcceptor> acceptor_;
  // The other modes accept on the loop thread.
  std::unique_ptr<core::server::LoopAcceptor> loop_acceptor_;
  std::map<std::string, int> peer_counts_;  // guarded by mu_

  // Threadpool mode (declared after everything its sessions touch).
  std::unordered_map<uint64_t, PeerInfo> pool_peers_;  // guarded by mu_
  std::unique_ptr<core::server::PooledServer> pool_;

  // Children (forking): the server forks and reaps; the peers of live children by id.
  std::unique_ptr<core::server::ForkingServer> forking_;
  std::unordered_map<uint64_t, PeerInfo> child_peers_;
  std::unique_ptr<core::daemon::SignalWatch> sigchld_;
};

core::Status ClassicService::Start(StdioFds stdio) {
  requests_page_ = ::mmap(nullptr, sizeof(std::atomic<uint64_t>), PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (requests_page_ != MAP_FAILED) requests_ = new (requests_page_) std::atomic<uint64_t>(0);
  if (!wake_) return Fail(Error::Io("eventfd: " + ErrnoText(errno)));
  wake_watch_ = std::make_unique<core::daemon::IoWatch>(ctx_.loop, wake_.get(), EV_READ, true,
                                                        [this](short) { OnWake(); });
  wake_watch_->Start();
  trim_ = std::make_unique<core::daemon::IdleTrim>(
      ctx_.loop, std::chrono::seconds(1), [this] { return int64_t{active_.load()}; },
      [this] {
        const uint64_t one = 1;
        (void)!::write(wake_.get(), &one, sizeof one);
      },
      [this](size_t before, size_t after) {
        log_.Debug("load dropped: free heap memory released, RSS {} -> {} KiB", before, after);
      });
  log_ = ctx_.logging.Get(o_.mode == "stdio" ? "SLAVE/stdio"
                                             : "SLAVE/" + std::to_string(o_.effective_port()));
  if (o_.tls()) {
    auto t = core::transport::TlsContext::Create(o_.ssl_certfile, o_.ssl_keyfile, o_.ssl_cafile,
                                                 o_.ssl_crlfile);
    if (!t) return Fail(t.error());
    tls_ = *t;
    for (const auto& w : tls_->warnings()) log_.Warn("{}", w);
  }

  auto inherited = core::server::TakeStreamSockets(ctx_.inherited);
  for (auto& fd : inherited.listening) AddListener(std::move(fd), "inherited fd");
  UniqueFd& connected = inherited.connected;  // socket activation with Accept=yes
  const bool activated = !listeners_.empty() || connected;
  if (o_.mode == "stdio" || connected) {
    single_ = true;
  } else if (!activated) {
    if (auto st = Listen(); !st) return st;
  }
  if (o_.mode == "oneshot") single_ = true;
  if (!o_.unix_socket.empty() && !single_) {
    if (auto st = ListenUnix(); !st) return st;
  }
  if (!activated && o_.effective_port() == 0 && !listeners_.empty()) {
    // `-p 0`: the logger is named after the port the kernel chose, as the reference does.
    log_name_ = "SLAVE/" + std::to_string(LocalAddress(*listeners_.front()).port());
    log_ = ctx_.logging.Get(log_name_);
  }
  {  // The exposure rule (issue 12): remote without client certificates only when allowed.
    auto bound = BoundSockets(listeners_);
    if (connected) bound.push_back({connected.get(), "inherited connection"});
    if (o_.mode == "stdio") bound.push_back({stdio.in, "stdio connection"});
    auto exposure = core::transport::CheckExposure(
        bound, {tls_ && tls_->verifies_clients(), o_.allow_unauthenticated_remote});
    if (!exposure) return Fail(exposure.error());
    for (const auto& w : *exposure) log_.Warn("{}", w);
    log_.Info("security: {}{}", core::transport::TlsContext::Posture(tls_.get()),
              o_.allow_unauthenticated_remote ? ", allow_unauthenticated_remote on" : "");
  }

  auto interp = objspace::Interpreter::Start(objspace::InterpreterOptions{});
  if (!interp) {
    return Fail(Error::Python("cannot start the Python interpreter: " + interp.error().message()));
  }
  interpreter_ = std::move(*interp);
  if (o_.mode == "forking") {
    if (auto st = interpreter_->PrepareFork(); !st) log_.Warn("{}", st.error().message());
  }

  if (o_.mode == "threadpool") {
    if (auto st = StartPool(); !st) return st;
  }
  if (o_.mode == "forking") {
    core::server::ForkingServer::Hooks hooks;
    hooks.fork = [this]() -> core::Result<pid_t> {
      auto pid = interpreter_->Fork();
      if (!pid) return Fail(pid.error());
      return static_cast<pid_t>(*pid);
    };
    // The child: no listeners, one connection, then _exit without finalising.
    hooks.in_child = [this] {
      for (auto& l : listeners_) ::close(l->fd.get());
    };
    hooks.serve = [this](UniqueFd fd, uint64_t id) {
      const PeerInfo& peer = child_peers_.at(id);
      auto stream = OpenSocket(std::move(fd), peer, id);
      if (stream) Serve(*stream, peer, id);
    };
    hooks.exit_child = [this](int status) { interpreter_->ExitChild(status); };
    // The parent's handlers write to the parent's loop.
    forking_ = std::make_unique<core::server::ForkingServer>(
        std::move(hooks), core::server::ForkingServer::Options{{SIGTERM, SIGINT, SIGHUP, SIGCHLD}});
    sigchld_ =
        std::make_unique<core::daemon::SignalWatch>(ctx_.loop, SIGCHLD, [this] { ReapChildren(); });
  }

  if (connected) {  // Accept=yes: this process serves one connection, like stdio
    const auto addr = core::server::PrepareConnected(connected.get());
    PeerInfo peer = DescribePeer(addr.addr, addr.len);
    log_.Info("serving an inherited connection from {}", peer.repr);
    Admit(peer);
    auto shared = std::make_shared<UniqueFd>(std::move(connected));
    const int raw = shared->get();
    const uint64_t id = ++next_id_;
    ServeOne(
        [this, shared, peer, id]() mutable { return OpenSocket(std::move(*shared), peer, id); },
        peer, raw, id);
    return {};
  }
  if (o_.mode == "stdio") {
    PeerInfo peer{"stdio", "stdio", "stdio"};
    Admit(peer);
    ServeOne(
        [stdio] {
          return std::make_unique<core::transport::FdStream>(UniqueFd(stdio.in),
                                                             UniqueFd(stdio.out), "stdio");
        },
        peer, -1, ++next_id_);
    return {};
  }

  std::vector<int> fds;
  for (const auto& l : listeners_) {
    log_.Info("server started on {}", l->what);
    fds.push_back(l->fd.get());
  }
  if (o_.mode != "threaded" || single_) {
    core::server::LoopAcceptor::Options a;
    a.on_accept_error = [this](size_t i, const Error& e) {
      log_.Error("accept on {}: {}", listeners_[i]->what, e.message());
    };
    loop_acceptor_ = std::make_unique<core::server::LoopAcceptor>(
        ctx_.loop, std::move(fds),
        [this](UniqueFd fd, const sockaddr_storage& ss, socklen_t len, size_t listener) {
          OnAccepted(std::move(fd), ss, len, listener);
        },
        std::move(a));
    loop_acceptor_->Start();
  } else {  // the acceptor's threads accept
    core::server::ThreadedAcceptor::Options a;
    a.on_thread_start = BlockStopSignals;
    a.on_accept_error = [this](size_t i, const Error& e) {
      log_.Error("accept on {}: {}", listeners_[i]->what, e.message());
    };
    a.on_spawn_error = [this](const Error& e) { log_.Error("{}", e.message()); };
    acceptor_ = std::make_unique<core::server::ThreadedAcceptor>(
        std::move(fds),
        [this](UniqueFd fd, const sockaddr_storage& ss, socklen_t len, size_t i) {
          ServeAccepted(std::move(fd), ss, len, listeners_[i]->nodelay);
        },
        std::move(a));
    if (auto st = acceptor_->Start(); !st) return st;
  }
  if (o_.mode == "oneshot") {
    const auto local = LocalAddress(*listeners_.front());
    const std::string text =
        "rpyc-oneshot\n" + local.host() + "\t" + std::to_string(local.port()) + "\n";
    (void)!::write(1, text.data(), text.size());
  }
  if (o_.register_server) StartRegistrar();
  return {};
}

core::Status ClassicService::Listen() {
  const std::string host = o_.effective_host();
  auto l = core::transport::TcpListener::Listen(host, o_.effective_port());
  if (!l) return Fail(l.error());
  const auto local = l->local_address();
  // TcpListener owns its fd; take it over (same descriptor, non-blocking, close-on-exec).
  UniqueFd fd(::fcntl(l->fd(), F_DUPFD_CLOEXEC, 3));
  if (!fd) return Fail(Error::Io("dup: " + ErrnoText(errno)));
  AddListener(std::move(fd), "[" + local.host() + "]:" + std::to_string(local.port()));
  return {};
}

core::Status ClassicService::ListenUnix() {
  const std::string& path = o_.unix_socket;
  const auto mode = static_cast<mode_t>(std::strtoul(o_.unix_socket_mode.c_str(), nullptr, 8));
  auto fd = core::server::ListenUnix(path, mode);
  if (!fd) return Fail(fd.error());
  unix_path_ = path;
  AddListener(std::move(*fd), "unix:" + path);
  return {};
}

void ClassicService::AddListener(UniqueFd fd, std::string what) {
  auto l = std::make_unique<Listener>();
  l->fd = std::move(fd);
  l->what = std::move(what);
  l->nodelay = core::transport::SetNoDelay(l->fd.get());
  listeners_.push_back(std::move(l));
}

void ClassicService::StartRegistrar() {
  core::registrar::Options r;
  r.transport = o_.registry_type == "TCP" ? core::registrar::Transport::kTcp
                                          : core::registrar::Transport::kUdp;
  r.registry_host = o_.registry_host.empty() ? "255.255.255.255" : o_.registry_host;
  r.registry_port = static_cast<uint16_t>(o_.registry_port);
  // The reference binds (server_host, 0), so the registry records the served address.
  r.bind_host = o_.host.empty() ? o_.effective_host() : o_.host;
  uint16_t port = 0;
  for (const auto& l : listeners_) {
    if (l->what.rfind("unix:", 0) != 0) port = core::daemon::LocalPort(l->fd.get());
  }
  if (port != 0) {
    r.port = core::brine::Value(static_cast<int64_t>(port));
  } else {
    r.port = core::brine::Value(core::brine::Str{o_.unix_socket});
  }
  auto reg = core::registrar::Registrar::Create(ctx_.loop, r, ctx_.logging.Get("REGCLNT"));
  if (!reg) {
    log_.Error("registration disabled: {}", reg.error().message());
    return;
  }
  registrar_ = std::move(*reg);
  registrar_->Start();
}

void ClassicService::OnAccepted(UniqueFd fd, const sockaddr_storage& ss, socklen_t len,
                                size_t listener) {
  PeerInfo peer = DescribePeer(ss, len);
  peer.nodelay = listeners_[listener]->nodelay;
  const uint64_t id = next_id_ + 1;
  LogConn(Level::info, peer, id, "accepted {} with fd {}", peer.repr, fd.get());
  Dispatch(std::move(fd), std::move(peer));
  if (single_) {  // oneshot: the first connection only
    loop_acceptor_->Stop();
    log_.Info("listener closed");
  }
}

bool ClassicService::Admit(const PeerInfo& peer) {
  std::lock_guard<std::mutex> lock(mu_);
  if (active_.load() >= limits_.max_connections.load()) {
    log_.Warn("refused {}: {} connections open (max_connections)", peer.repr, active_.load());
    return false;
  }
  int& n = peer_counts_[peer.host];
  const int64_t per_peer = limits_.max_connections_per_peer.load();
  if (per_peer > 0 && n >= per_peer) {
    log_.Warn("refused {}: {} connections open from {} (max_connections_per_peer)", peer.repr, n,
              peer.host);
    if (n == 0) peer_counts_.erase(peer.host);
    return false;
  }
  ++n;
  ++active_;
  if (trim_) trim_->Opened(active_.load());
  return true;
}

void ClassicService::Release(const std::string& host) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = peer_counts_.find(host);
  if (it != peer_counts_.end() && --it->second <= 0) peer_counts_.erase(it);
  --active_;
  ++served_;
  if (trim_) trim_->Closed(active_.load());
}

void ClassicService::Dispatch(UniqueFd fd, PeerInfo peer) {
  if (!Admit(peer)) return;  // closes fd
  if (o_.mode == "forking") {
    ForkChild(std::move(fd), std::move(peer));
    return;
  }
  if (pool_) {
    const uint64_t id = ++next_id_;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pool_peers_.emplace(id, std::move(peer));
    }
    pool_->Add(std::move(fd), id);
    return;
  }
  const int raw = fd.get();
  const uint64_t id = ++next_id_;
  auto shared = std::make_shared<UniqueFd>(std::move(fd));
  ServeOne([this, shared, peer, id]() mutable { return OpenSocket(std::move(*shared), peer, id); },
           peer, raw, id);
}

void ClassicService::ServeAccepted(UniqueFd fd, const sockaddr_storage& ss, socklen_t len,
                                   bool nodelay) {
  PeerInfo peer = DescribePeer(ss, len);
  peer.nodelay = nodelay;
  const uint64_t id = ++next_id_;
  LogConn(Level::info, peer, id, "accepted {} with fd {}", peer.repr, fd.get());
  if (!Admit(peer)) return;  // closes fd
  std::list<Conn>::iterator conn;
  {
    std::lock_guard<std::mutex> lock(mu_);
    conn = conns_.emplace(conns_.end());
    conn->raw_fd = fd.get();
  }
  std::unique_ptr<core::transport::Stream> stream;
  try {
    stream = OpenSocket(std::move(fd), peer, id);
    if (stream) Serve(*stream, peer, id);
  } catch (const std::exception& e) {
    LogConn(Level::err, peer, id, "connection {} closed: internal error: {}", peer.repr, e.what());
  }
  Release(peer.host);
  {
    std::lock_guard<std::mutex> lock(mu_);
    conns_.erase(conn);  // before the socket closes: Shutdown() must not shut a reused number
  }
  cv_.notify_all();
}

std::unique_ptr<core::transport::Stream> ClassicService::OpenSocket(UniqueFd fd,
                                                                    const PeerInfo& peer,
                                                                    uint64_t id) {
  std::unique_ptr<core::transport::Stream> s;
  if (auto ctx = tls()) {
    // TLS connections keep Nagle's algorithm, as they did before the listeners had TCP_NODELAY.
    if (peer.nodelay) (void)core::transport::SetNoDelay(fd.get(), false);
    auto t = core::transport::TlsStream::Accept(
        std::move(fd), ctx, peer.text,
        static_cast<int>(limits_.tls_handshake_timeout.load() * 1000));
    if (!t) {
      LogConn(Level::err, peer, id, "{}", t.error().message());
      return nullptr;
    }
    const std::string subject = (*t)->peer_subject();
    LogConn(Level::debug, peer, id, "TLS {} with {}{}", (*t)->version(), peer.repr,
            subject.empty() ? "" : " (client certificate " + subject + ")");
    s = std::move(*t);
  } else {
    s = std::make_unique<core::transport::SocketStream>(
        std::move(fd), peer.text,
        peer.nodelay ? core::transport::SocketStream::NoDelay::kInherited
                     : core::transport::SocketStream::NoDelay::kSet);
  }
  return s;
}

void ClassicService::ServeOne(std::function<std::unique_ptr<core::transport::Stream>()> open,
                              PeerInfo peer, int raw_fd, uint64_t id) {
  core::server::SingleConnection::Hooks hooks;
  hooks.open = std::move(open);
  hooks.serve = [this, peer, id](core::transport::Stream& stream) { Serve(stream, peer, id); };
  hooks.on_exception = [this, peer, id](const std::exception& e) {
    LogConn(Level::err, peer, id, "connection {} closed: internal error: {}", peer.repr, e.what());
  };
  hooks.closed = [this, host = peer.host] { Release(host); };
  hooks.on_end = [this] {
    if (active_.load() == 0 && !stopping_) {
      ctx_.finish(o_.mode == "stdio" ? "end of input" : "the connection ended");
    }
  };
  core::server::SingleConnection::Options options;
  options.on_thread_start = BlockStopSignals;
  single_conn_ = std::make_unique<core::server::SingleConnection>(ctx_.loop, std::move(hooks),
                                                                  std::move(options));
  if (auto started = single_conn_->Start(raw_fd); !started) {
    log_.Error("cannot serve {}: {}", peer.repr, started.error().message());
    Release(peer.host);
  }
}

void ClassicService::Serve(core::transport::Stream& raw_stream, const PeerInfo& peer, uint64_t id) {
  LogConn(Level::info, peer, id, "welcome {}", peer.repr);
  // The idle and whole-frame limits, when on, see every byte the connection reads.
  std::optional<core::channel::DeadlineStream> limited;
  core::transport::Stream* stream = &raw_stream;
  if (auto limits = StreamLimits(/*idle=*/true); limits.idle_ms > 0 || limits.frame_ms > 0) {
    stream = &limited.emplace(raw_stream, limits);
  }
  try {  // the connection's top level: nothing below may take the daemon down
    core::protocol::ConnectionOptions copts;
    copts.frame_limits.max_frame_size = static_cast<size_t>(limits_.max_frame_size.load());
    // The limit holds after inflating too, or a zlib bomb still costs 64 MiB per connection.
    copts.frame_limits.max_decompressed_size = copts.frame_limits.max_frame_size;
    copts.requests_served = requests_;
    core::protocol::Connection conn(*stream, copts);
    auto space = objspace::MakeClassicObjectSpace(*interpreter_, conn);
    conn.set_object_space(space.get());
    // A C++ exception out of Serve() still releases the connection's objects (OnDisconnect).
    core::Result<core::protocol::EndReason> end = Fail(Error::Usage("not served"));
    try {
      end = conn.Serve();
    } catch (const std::exception& e) {
      conn.Shutdown();
      end = Fail(Error::Protocol(std::string("internal error: ") + e.what()));
    }
    if (end) {
      LogConn(Level::debug, peer, id, "connection {} ended: {}", peer.repr,
              core::protocol::EndReasonName(*end));
    } else {
      LogConn(Level::err, peer, id, "connection {} closed: {}", peer.repr, end.error().ToString());
    }
    const size_t lent = space->LocalObjectCount();
    space->OnDisconnect();
    LogConn(Level::debug, peer, id,
            "connection {}: {} objects lent at disconnect, {} after release", peer.repr, lent,
            space->LocalObjectCount());
  } catch (const std::exception& e) {
    LogConn(Level::err, peer, id, "connection {} closed: internal error: {}", peer.repr, e.what());
  }
  LogConn(Level::info, peer, id, "goodbye {}", peer.repr);
}

void ClassicService::ForkChild(UniqueFd fd, PeerInfo peer) {
  const uint64_t id = ++next_id_;
  auto it = child_peers_.emplace(id, std::move(peer)).first;
  auto pid = forking_->Spawn(std::move(fd), id);
  if (!pid) {
    LogConn(Level::err, it->second, id, "cannot serve {}: {}", it->second.repr,
            pid.error().message());
    Release(it->second.host);
    child_peers_.erase(it);
    return;
  }
  LogConn(Level::debug, it->second, id, "child {} serves {}", *pid, it->second.repr);
}

void ClassicService::ChildEnded(const core::server::ForkingServer::Ended& e) {
  auto it = child_peers_.find(e.id);
  if (it == child_peers_.end()) return;
  const PeerInfo& peer = it->second;
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

void ClassicService::OnWake() {
  uint64_t n = 0;
  (void)!::read(wake_.get(), &n, sizeof n);
  trim_->OnWake();
}

// A threadpool connection: the protocol engine over the socket, stepped by the pool's workers.
class ClassicService::PoolSession final : public core::server::PooledServer::Session {
 public:
  PoolSession(ClassicService& service, PeerInfo peer, uint64_t id)
      : service_(service), peer_(std::move(peer)), id_(id) {}

  // Builds the connection over `stream`; throws what the object space throws.
  void Open(std::unique_ptr<core::transport::Stream> stream) {
    core::protocol::ConnectionOptions copts;
    copts.frame_limits.max_frame_size = static_cast<size_t>(service_.limits_.max_frame_size.load());
    copts.frame_limits.max_decompressed_size = copts.frame_limits.max_frame_size;
    copts.requests_served = service_.requests_;
    stream_ = std::move(stream);
    core::transport::Stream* limited = stream_.get();
    if (auto limits = service_.StreamLimits(/*idle=*/false); limits.frame_ms > 0) {
      limited_ = std::make_unique<core::channel::DeadlineStream>(*stream_, limits);
      limited = limited_.get();
    }
    conn_ = std::make_unique<core::protocol::Connection>(*limited, copts);
    space_ = objspace::MakeClassicObjectSpace(*service_.interpreter_, *conn_);
    conn_->set_object_space(space_.get());
  }

  const PeerInfo& peer() const { return peer_; }

  bool ServeAvailable() override {
    try {
      auto r = conn_->ServeAvailable();
      if (r && !*r) return true;
      if (r) {
        end_ = **r;
      } else {
        end_ = Fail(r.error());
      }
    } catch (const std::exception& e) {
      conn_->Shutdown();
      end_ = Fail(Error::Protocol(std::string("internal error: ") + e.what()));
    }
    return false;
  }

  void Finish() override {
    if (end_) {
      service_.LogConn(Level::debug, peer_, id_, "connection {} ended: {}", peer_.repr,
                       core::protocol::EndReasonName(*end_));
    } else {
      service_.LogConn(Level::err, peer_, id_, "connection {} closed: {}", peer_.repr,
                       end_.error().ToString());
    }
    const size_t lent = space_->LocalObjectCount();
    space_->OnDisconnect();
    service_.LogConn(Level::debug, peer_, id_,
                     "connection {}: {} objects lent at disconnect, {} after release", peer_.repr,
                     lent, space_->LocalObjectCount());
  }

  void Shutdown() override {
    if (stream_) stream_->Shutdown();
  }

  std::optional<std::chrono::milliseconds> FrameTimeLeft() const override {
    return limited_ ? limited_->FrameTimeLeft() : std::nullopt;
  }

  ~PoolSession() override {
    // The object space before the connection, the connection before its streams.
    space_.reset();
    conn_.reset();
    limited_.reset();
    stream_.reset();
  }

 private:
  ClassicService& service_;
  const PeerInfo peer_;
  const uint64_t id_;
  // Ended by the server while idle (it is stopping) unless a step saw another end.
  core::Result<core::protocol::EndReason> end_ = core::protocol::EndReason::kShutdown;
  std::unique_ptr<core::transport::Stream> stream_;
  std::unique_ptr<core::channel::DeadlineStream> limited_;  // over stream_: the frame limit
  std::unique_ptr<core::protocol::Connection> conn_;
  std::unique_ptr<core::protocol::ObjectSpace> space_;
};

core::Status ClassicService::StartPool() {
  core::server::PooledServer::Hooks hooks;
  hooks.open = [this](UniqueFd fd, uint64_t id) { return PoolOpen(std::move(fd), id); };
  hooks.closed = [this](uint64_t id) {
    PeerInfo peer;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pool_peers_.find(id);
      peer = std::move(it->second);
      pool_peers_.erase(it);
    }
    LogConn(Level::info, peer, id, "goodbye {}", peer.repr);
    Release(peer.host);
  };
  hooks.idle_timeout = [this] {
    return std::chrono::milliseconds(std::chrono::seconds(limits_.idle_timeout.load()));
  };
  hooks.on_idle_timeout = [this](uint64_t id) {
    PeerInfo peer;
    {
      std::lock_guard<std::mutex> lock(mu_);
      peer = pool_peers_.at(id);
    }
    LogConn(Level::info, peer, id, "idle timeout: nothing from {} for {} s", peer.repr,
            limits_.idle_timeout.load());
  };
  core::server::PooledServer::Options options;
  options.threads = static_cast<size_t>(o_.threads);
  // A TLS handshake waits on the peer for up to tls_handshake_timeout.
  options.setup_thread = tls_ != nullptr;
  options.on_thread_start = BlockStopSignals;
  pool_ =
      std::make_unique<core::server::PooledServer>(ctx_.loop, std::move(hooks), std::move(options));
  return pool_->Start();
}

std::unique_ptr<core::server::PooledServer::Session> ClassicService::PoolOpen(UniqueFd fd,
                                                                              uint64_t id) {
  PeerInfo peer;
  {
    std::lock_guard<std::mutex> lock(mu_);
    peer = pool_peers_.at(id);
  }
  auto end_early = [&] {
    {
      std::lock_guard<std::mutex> lock(mu_);
      pool_peers_.erase(id);
    }
    Release(peer.host);
    return nullptr;
  };
  std::unique_ptr<PoolSession> session;
  try {
    auto stream = OpenSocket(std::move(fd), peer, id);
    if (!stream) return end_early();
    session = std::make_unique<PoolSession>(*this, peer, id);
    session->Open(std::move(stream));
  } catch (const std::exception& e) {
    LogConn(Level::err, peer, id, "connection {} closed: internal error: {}", peer.repr, e.what());
    session.reset();
    return end_early();
  }
  LogConn(Level::info, peer, id, "welcome {}", peer.repr);
  return session;
}

void ClassicService::Reload() {
  auto fresh = reload_ ? reload_() : core::Result<Options>(current_);
  if (!fresh) {
    log_.Error("reload: {}; keeping the running configuration", fresh.error().message());
    return;
  }
  const Options& n = *fresh;
  // Applied at once (to new connections for the limits and TLS): the log level, the limits, the
  // certificate and key. Anything else is named as needing a restart.
  static const std::set<std::string> kLive = {"quiet",
                                              "max_connections",
                                              "max_connections_per_peer",
                                              "idle_timeout",
                                              "frame_timeout",
                                              "max_frame_size",
                                              "tls_handshake_timeout",
                                              "ssl_keyfile",
                                              "ssl_certfile",
                                              "ssl_cafile",
                                              "ssl_crlfile",
                                              "allow_unauthenticated_remote"};
  Options before = current_;
  const auto old_fields = MakeSchema(&before);
  Options after = n;
  const auto new_fields = MakeSchema(&after);
  std::vector<std::string> changed;
  std::vector<std::string> restart;
  for (size_t i = 0; i < old_fields.size(); ++i) {
    const std::string was = core::config::ValueText(old_fields[i]);
    const std::string now = core::config::ValueText(new_fields[i]);
    if (was == now) continue;
    const std::string& key = old_fields[i].key;
    if (kLive.count(key) != 0) {
      changed.push_back(key + "=" + now);
    } else {
      restart.push_back(key);
    }
  }
  if (n.tls() != o_.tls()) restart.emplace_back("TLS on/off");
  std::shared_ptr<core::transport::TlsContext> fresh_tls = tls();
  if (n.tls() && o_.tls()) {
    auto t = core::transport::TlsContext::Create(n.ssl_certfile, n.ssl_keyfile, n.ssl_cafile,
                                                 n.ssl_crlfile);
    if (!t) {
      log_.Error("reload: {}; keeping the loaded certificate", t.error().message());
    } else {
      fresh_tls = *t;
    }
  }
  auto exposure = core::transport::CheckExposure(
      BoundSockets(listeners_),
      {fresh_tls && fresh_tls->verifies_clients(), n.allow_unauthenticated_remote});
  if (!exposure) {
    log_.Error("reload: {}; keeping the running configuration", exposure.error().message());
    return;
  }
  for (const auto& w : *exposure) log_.Warn("{}", w);
  if (fresh_tls != tls()) {
    {
      std::lock_guard<std::mutex> lock(tls_mu_);
      tls_ = fresh_tls;
    }
    log_.Info("reload: TLS certificate and key reloaded from {} and {}", n.ssl_certfile,
              n.ssl_keyfile);
    for (const auto& w : fresh_tls->warnings()) log_.Warn("{}", w);
  }
  limits_.Set(n);
  current_ = n;
  std::string applied;
  for (const auto& c : changed) applied += (applied.empty() ? "" : " ") + c;
  log_.Info("reload: configuration applied{}{}", applied.empty() ? "" : ": ", applied);
  for (const auto& key : restart) {
    log_.Warn("reload: '{}' changed; it takes effect only after a restart", key);
  }
  ctx_.logging.SetQuiet(n.quiet);  // last: the lines above are logged at the old level
}

void ClassicService::Shutdown() {
  stopping_ = true;
  if (registrar_) registrar_->Stop();
  if (acceptor_) acceptor_->Stop();  // no thread accepts after this: the listeners may close
  if (loop_acceptor_) loop_acceptor_->Stop();
  if (!listeners_.empty()) {
    for (auto& l : listeners_) l->fd.Reset();
    if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
    log_.Info("listener closed");
  }
  if (single_conn_) single_conn_->Shutdown();
  std::lock_guard<std::mutex> lock(mu_);
  for (Conn& c : conns_) (void)::shutdown(c.raw_fd, SHUT_RDWR);
  if (forking_) forking_->SignalAll(SIGTERM);
  if (pool_) pool_->Shutdown();
}

ClassicService::~ClassicService() {
  stopping_ = true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  // Children first: they were sent SIGTERM; after the grace period, SIGKILL.
  if (forking_) {
    forking_->WaitAll(deadline,
                      [this](const core::server::ForkingServer::Ended& e) { ChildEnded(e); });
  }
  size_t stuck = 0;
  if (pool_) stuck += pool_->Stop(deadline);
  if (single_conn_) {
    single_conn_->Shutdown();
    stuck += single_conn_->Wait(deadline) ? 0 : 1;
  }
  {
    std::unique_lock<std::mutex> lock(mu_);
    for (Conn& c : conns_) (void)::shutdown(c.raw_fd, SHUT_RDWR);
    cv_.wait_until(lock, deadline, [this] { return conns_.empty(); });
    stuck += conns_.size();
  }
  if (stuck > 0) {
    // Threads still running user code cannot be joined, and the interpreter cannot be
    // finalised under them: leave without unwinding.
    log_.Warn("{} connections still running user code; exiting without waiting", stuck);
    log_.Info("server has terminated");
    std::_Exit(0);
  }
  acceptor_.reset();     // joins the accepting threads (their connections ended)
  single_conn_.reset();  // joins its thread (the connection ended)
  pool_.reset();
  registrar_.reset();
  interpreter_.reset();
  if (requests_page_ != MAP_FAILED) {
    requests_ = &requests_fallback_;
    ::munmap(requests_page_, sizeof(std::atomic<uint64_t>));
  }
  log_.Info("server has terminated");
}

}  // namespace

core::Result<std::unique_ptr<core::daemon::Service>> MakeService(core::daemon::Context& context,
                                                                 const Options& o, StdioFds stdio,
                                                                 Reloader reload) {
  auto service = std::make_unique<ClassicService>(context, o, std::move(reload));
  if (auto st = service->Start(stdio); !st) return Fail(st.error());
  return std::unique_ptr<core::daemon::Service>(std::move(service));
}

}  // namespace classicd
