#include "daemons/classicd/service.h"

#include <cerrno>
#include <cstdlib>
#include <new>

#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "daemons/classicd/objspace/objspace.h"
#include "libcore/server/inherited.h"
#include "libcore/transport/address.h"
#include "libcore/transport/exposure.h"
#include "libcore/transport/socket_stream.h"

namespace classicd {

using core::ErrnoText;
using core::Error;
using core::Fail;
using core::UniqueFd;
using core::log::Level;

void BlockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2}) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void ClassicService::Limits::Set(const Options& o) {
  idle_timeout = o.idle_timeout;
  frame_timeout = o.frame_timeout;
  max_frame_size = o.max_frame_size;
  tls_handshake_timeout = o.tls_handshake_timeout;
}

ClassicService::ClassicService(core::daemon::Context& ctx, const Options& o, Reloader reload)
    : ctx_(ctx),
      o_(o),
      current_(o),
      reload_(std::move(reload)),
      admission_({o.max_connections, o.max_connections_per_peer, o.max_handshakes}),
      // Validate() parsed the lists already.
      allow_(AllowList::ParseBlocks(o.allow_from).value_or(std::vector<Cidr>{}),
             AllowList::ParseUsers(o.unix_allow_users).value_or(std::vector<uid_t>{}),
             AllowList::ParseGroups(o.unix_allow_groups).value_or(std::vector<gid_t>{})),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  limits_.Set(o);
}

std::string ClassicService::StatusText() const {
  return std::to_string(admission_.active()) + " connections, " +
         std::to_string(admission_.served()) + " served, " +
         std::to_string(requests_->load(std::memory_order_relaxed)) + " requests";
}

core::Status ClassicService::Start(StdioFds stdio) {
  if (auto st = StartHousekeeping(); !st) return st;
  log_ = ctx_.logging.Get(classicd::LoggerName(o_));
  if (auto st = LoadTls(); !st) return st;
  auto inherited = core::server::TakeStreamSockets(ctx_.inherited);
  for (auto& fd : inherited.listening) listeners_.Adopt(std::move(fd), "inherited fd");
  UniqueFd& connected = inherited.connected;  // socket activation with Accept=yes
  const bool activated = !listeners_.empty() || connected;
  if (auto st = Listen(activated, static_cast<bool>(connected)); !st) return st;
  if (auto st = StartPython(); !st) return st;
  NameLogger(activated, connected);
  if (auto st = CheckSecurity(stdio, connected); !st) return st;
  if (hosted_) {
    if (auto st = HostService(); !st) return st;  // hosted_service.cc
  } else {
    make_space_ = [interpreter = interpreter_.get()](core::protocol::Connection& conn,
                                                     const SpaceContext& c) {
      return objspace::MakeClassicObjectSpace(*interpreter, conn, objspace::RootService::kSlave,
                                              c.peer->credentials);
    };
  }
  if (auto st = LoadAuthentication(); !st) return st;  // gate.cc
  // Forking: a hosted service's module (and the authenticator's) was imported above, in the
  // parent: children start warm.
  if (o_.mode == Mode::kForking) {
    if (auto st = interpreter_->PrepareFork(); !st) log_.Warn("{}", st.error().message());
  }
  return StartServing(stdio, std::move(connected));
}

core::Status ClassicService::StartHousekeeping() {
  requests_page_ = ::mmap(nullptr, sizeof(std::atomic<uint64_t>), PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (requests_page_ != MAP_FAILED) requests_ = new (requests_page_) std::atomic<uint64_t>(0);
  if (!wake_) return Fail(Error::Io("eventfd: " + ErrnoText(errno)));
  wake_watch_ = std::make_unique<core::daemon::IoWatch>(ctx_.loop, wake_.get(), EV_READ, true,
                                                        [this](short) { OnWake(); });
  wake_watch_->Start();
  trim_ = std::make_unique<core::daemon::IdleTrim>(
      ctx_.loop, std::chrono::seconds(1), [this] { return admission_.active(); },
      [this] {
        const uint64_t one = 1;
        (void)!::write(wake_.get(), &one, sizeof one);
      },
      [this](size_t before, size_t after) {
        log_.Debug("load dropped: free heap memory released, RSS {} -> {} KiB", before, after);
      });
  return {};
}

core::Status ClassicService::LoadTls() {
  if (!o_.tls()) return {};
  auto t = core::transport::TlsContext::Create(o_.ssl_certfile, o_.ssl_keyfile, o_.ssl_cafile,
                                               o_.ssl_crlfile);
  if (!t) return Fail(t.error());
  tls_ = *t;
  for (const auto& w : tls_->warnings()) log_.Warn("{}", w);
  return {};
}

core::Status ClassicService::Listen(bool activated, bool connected) {
  if (o_.mode == Mode::kStdio || connected) {
    single_ = true;
  } else if (!activated) {
    if (auto st = listeners_.ListenTcp(o_.effective_host(), o_.effective_port(), o_.backlog());
        !st) {
      return st;
    }
  }
  if (o_.mode == Mode::kOneshot) single_ = true;
  if (!o_.unix_socket.empty() && !single_) {
    const auto mode = static_cast<mode_t>(std::strtoul(o_.unix_socket_mode.c_str(), nullptr, 8));
    if (auto st = listeners_.ListenUnix(o_.unix_socket, mode, o_.backlog()); !st) return st;
  }
  return {};
}

core::Status ClassicService::StartPython() {
  auto interp = objspace::Interpreter::Start(objspace::InterpreterOptions{});
  if (!interp) {
    return Fail(Error::Python("cannot start the Python interpreter: " + interp.error().message()));
  }
  interpreter_ = std::move(*interp);
  if (o_.hosted()) return LoadService();  // hosted_service.cc
  return {};
}

void ClassicService::NameLogger(bool activated, const UniqueFd& connected) {
  std::string service_name = "SLAVE";
  if (hosted_ && !objspace::ServiceAliases(*hosted_).empty()) {
    service_name = objspace::ServiceAliases(*hosted_).front();
  }
  // The logger is named after the service and the port, as the reference's server names it:
  // `-p 0` gives the port the kernel chose; a hosted service its name (rpyc's
  // get_service_name(), "CALCULATOR/18861").
  if (!activated && o_.effective_port() == 0 && !listeners_.empty()) {
    log_name_ = classicd::LoggerName(o_, service_name, listeners_.LocalAddress(0).port());
  } else if (o_.hosted()) {
    // An inherited connection (Accept=yes): the port it came to, as the server's would be.
    uint16_t port = listeners_.TcpPort();
    if (connected) {
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      if (::getsockname(connected.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
        port = core::transport::SocketAddress(reinterpret_cast<sockaddr*>(&ss), len).port();
      }
    }
    log_name_ = classicd::LoggerName(o_, service_name, port);
  }
  if (!log_name_.empty()) log_ = ctx_.logging.Get(log_name_);
  ctx_.logging.SetJournalField("RPYC_SERVICE", service_name);
  conn_log_ = ConnLog(log_, o_.mode);
}

core::Status ClassicService::CheckSecurity(StdioFds stdio, const UniqueFd& connected) {
  // The exposure rule (issue 12): remote without client certificates only when allowed.
  auto bound = listeners_.Bound();
  if (connected) bound.push_back({connected.get(), "inherited connection"});
  if (o_.mode == Mode::kStdio) bound.push_back({stdio.in, "stdio connection"});
  auto exposure = core::transport::CheckExposure(
      bound, {tls_ && tls_->verifies_clients(), o_.allow_unauthenticated_remote});
  if (!exposure) return Fail(exposure.error());
  for (const auto& w : *exposure) log_.Warn("{}", w);
  log_.Info("security: {}{}", core::transport::TlsContext::Posture(tls_.get()),
            o_.allow_unauthenticated_remote ? ", allow_unauthenticated_remote on" : "");
  // The posture in one line, as an operator checks it: what runs, where, how protected.
  std::string where;
  for (const auto& b : bound) where += (where.empty() ? "" : ", ") + b.what;
  log_.Info("rpyc-classicd {} starting: mode {}, listening on {}; {}", RPYC_VERSION,
            ModeName(o_.mode), where.empty() ? "nothing" : where,
            core::transport::TlsContext::Posture(tls_.get()));
  return {};
}

core::Status ClassicService::StartServing(StdioFds stdio, UniqueFd connected) {
  if (o_.mode == Mode::kThreadpool) {
    if (auto st = StartPool(); !st) return st;
  }
  if (o_.mode == Mode::kForking) StartForking();

  if (connected) {  // Accept=yes: this process serves one connection, like stdio
    ServeInherited(std::move(connected));
    return {};
  }
  if (o_.mode == Mode::kStdio) {
    ServeStdio(stdio);
    return {};
  }

  for (size_t i = 0; i < listeners_.size(); ++i)
    log_.Info("server started on {}", listeners_[i].what);
  if (auto st = StartAccepting(); !st) return st;
  if (o_.mode == Mode::kOneshot) {
    const auto local = listeners_.LocalAddress(0);
    const std::string text =
        "rpyc-oneshot\n" + local.host() + "\t" + std::to_string(local.port()) + "\n";
    (void)!::write(1, text.data(), text.size());
  }
  if (o_.register_server) StartRegistrar();
  return {};
}

core::Status ClassicService::StartAccepting() {
  if (o_.mode == Mode::kThreaded && !single_) return StartThreaded();  // its threads accept
  core::server::LoopAcceptor::Options a;
  a.on_accept_error = [this](size_t i, const Error& e) {
    log_.Error("accept on {}: {}", listeners_[i].what, e.message());
  };
  loop_acceptor_ = std::make_unique<core::server::LoopAcceptor>(
      ctx_.loop, listeners_.fds(),
      [this](UniqueFd fd, const sockaddr_storage& ss, socklen_t len, size_t listener) {
        OnAccepted(std::move(fd), ss, len, listener);
      },
      std::move(a));
  loop_acceptor_->Start();
  return {};
}

void ClassicService::StartRegistrar() {
  core::registrar::Options r;
  r.transport = o_.registry_type == "TCP" ? core::registrar::Transport::kTcp
                                          : core::registrar::Transport::kUdp;
  r.registry_host = o_.registry_host.empty() ? "255.255.255.255" : o_.registry_host;
  r.registry_port = static_cast<uint16_t>(o_.registry_port);
  // The reference binds (server_host, 0), so the registry records the served address.
  r.bind_host = o_.host.empty() ? o_.effective_host() : o_.host;
  r.advertise_host = o_.registry_advertise_host;
  if (const uint16_t port = listeners_.TcpPort(); port != 0) {
    r.port = core::brine::Value(static_cast<int64_t>(port));
  } else {
    r.port = core::brine::Value(core::brine::Str{o_.unix_socket});
  }
  // A hosted service registers under its aliases, as rpyc's server does (clients find it with
  // rpyc.connect_by_service("CALCULATOR")).
  if (hosted_) r.aliases = objspace::ServiceAliases(*hosted_);
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
  Peer peer = Peer::FromAddress({reinterpret_cast<const sockaddr*>(&ss), len});
  peer.nodelay = listeners_[listener].nodelay;
  const uint64_t id = next_id_ + 1;
  if (PreAuthLine(PreAuth::kAccepted))
    conn_log_(Level::info, peer, id, "accepted {} with fd {}", peer.repr, fd.get());
  // oneshot: a peer the allow-lists refuse is not "the first connection".
  if (!Allowed(fd.get(), ss, peer, id)) return;
  Dispatch(std::move(fd), std::move(peer));
  if (single_) {  // oneshot: the first connection only
    loop_acceptor_->Stop();
    log_.Info("listener closed");
  }
}

void ClassicService::Dispatch(UniqueFd fd, Peer peer) {
  if (!Admit(peer)) return;  // closes fd
  if (forking_) {
    OpenBeforeFork(std::move(fd), std::move(peer));
    return;
  }
  const uint64_t id = ++next_id_;
  if (pool_) {
    {
      std::lock_guard<std::mutex> lock(pool_mu_);
      pool_peers_.emplace(id, std::move(peer));
    }
    pool_->Add(std::move(fd), id);
    return;
  }
  auto shared = std::make_shared<UniqueFd>(std::move(fd));
  ServeOne(
      [this, shared, peer, id]() mutable {
        single_entry_.emplace(live_);
        return OpenSocket(std::move(*shared), peer, id, &*single_entry_);
      },
      peer, id);
}

SessionSettings ClassicService::Settings(bool idle) const {
  auto ms = [](int64_t seconds) {
    return static_cast<int>(std::min<int64_t>(seconds, INT32_MAX / 1000) * 1000);
  };
  SessionSettings s;
  s.limits = {idle ? ms(limits_.idle_timeout.load()) : 0, ms(limits_.frame_timeout.load())};
  s.max_frame_size = static_cast<size_t>(limits_.max_frame_size.load());
  s.requests_served = requests_;
  return s;
}

std::unique_ptr<core::transport::Stream> ClassicService::OpenSocket(UniqueFd fd, const Peer& peer,
                                                                    uint64_t id,
                                                                    LiveConnections::Entry* live) {
  std::unique_ptr<core::transport::Stream> s;
  if (auto ctx = tls()) {
    // TLS connections keep Nagle's algorithm, as they did before the listeners had TCP_NODELAY.
    if (peer.nodelay) (void)core::transport::SetNoDelay(fd.get(), false);
    if (live) live->Handshaking(fd.get());
    auto t = core::transport::TlsStream::Accept(
        std::move(fd), ctx, peer.text,
        static_cast<int>(limits_.tls_handshake_timeout.load() * 1000));
    if (!t) {
      HandshakeEnded(peer, id, core::Fail(t.error()));
      return nullptr;
    }
    HandshakeEnded(peer, id, t->get());
    s = std::move(*t);
  } else {
    s = std::make_unique<core::transport::SocketStream>(
        std::move(fd), peer.text,
        peer.nodelay ? core::transport::SocketStream::NoDelay::kInherited
                     : core::transport::SocketStream::NoDelay::kSet);
  }
  if (live) live->Opened(*s);
  return s;
}

void ClassicService::Serve(core::transport::Stream& stream, const Peer& peer, uint64_t id) {
  ClassicSession::Run(stream, peer, id, Settings(/*idle=*/true), make_space_, conn_log_);
}

void ClassicService::OnWake() {
  uint64_t n = 0;
  (void)!::read(wake_.get(), &n, sizeof n);
  trim_->OnWake();
}

void ClassicService::Shutdown() {
  stopping_ = true;
  // The reference's order: the cause (logged by the runtime), then "server has terminated",
  // then "listener closed"; the connections are closed after.
  log_.Info("server has terminated");
  if (registrar_) registrar_->Stop();
  if (acceptor_) acceptor_->Stop();  // no thread accepts after this: the listeners may close
  if (loop_acceptor_) loop_acceptor_->Stop();
  if (!listeners_.empty()) {
    listeners_.Close();
    log_.Info("listener closed");
  }
  if (single_conn_) single_conn_->Shutdown();
  live_.Shutdown();
  DropOpenings();
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
  live_.Shutdown();
  if (single_conn_) {
    single_conn_->Shutdown();
    stuck += single_conn_->Wait(deadline) ? 0 : 1;
  } else {
    stuck += live_.Wait(deadline);
  }
  if (stuck > 0) {
    // Threads still running user code cannot be joined, and the interpreter cannot be
    // finalised under them: leave without unwinding.
    log_.Warn("{} connections still running user code; exiting without waiting", stuck);
    std::_Exit(0);
  }
  acceptor_.reset();     // joins the accepting threads (their connections ended)
  single_conn_.reset();  // joins its thread (the connection ended)
  pool_.reset();
  registrar_.reset();
  hosted_.reset();
  authenticator_.reset();
  interpreter_.reset();
  if (requests_page_ != MAP_FAILED) {
    requests_ = &requests_fallback_;
    ::munmap(requests_page_, sizeof(std::atomic<uint64_t>));
  }
}

core::Result<std::unique_ptr<core::daemon::Service>> MakeService(core::daemon::Context& context,
                                                                 const Options& o, StdioFds stdio,
                                                                 Reloader reload) {
  auto service = std::make_unique<ClassicService>(context, o, std::move(reload));
  if (auto st = service->Start(stdio); !st) return Fail(st.error());
  return std::unique_ptr<core::daemon::Service>(std::move(service));
}

}  // namespace classicd
