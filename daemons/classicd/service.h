#pragma once

// rpyc-classicd's Service: the wiring of the listeners (listeners.h), the one interpreter, the
// admission limits (admission.h) and the serving modes. Its files, one idea each:
//   service.cc         the start (its steps as named functions), accepting, dispatching a
//                      connection to its mode, registration, shutdown
//   gate.cc            the connection gate: allow-lists, admission, the end of a TLS handshake,
//                      the authenticator and credentials, the rate limit of pre-auth log lines
//   hosted_service.cc  a hosted rpyc.Service (--service): loading it (and --check-config), its
//                      logger and object spaces
//   reload.cc          what SIGHUP applies
// The serving modes' machinery lives in libcore/server/ and their wiring in one file each:
//   threaded   serve_threaded.cc: a thread per connection; the threads accept for themselves
//   threadpool serve_pooled.cc: the loop owns every client socket and hands a readable one to a
//              fixed pool of workers, which step the connection's ClassicSession
//   forking    serve_forking.cc: a child per connection, forked from the loop thread, which never
//              runs client code
//   oneshot    serve_single.cc: the first connection only, then exit
//   stdio      serve_single.cc: one connection over the moved fds 0/1, then exit (also a connected
//              socket from socket activation, Accept=yes)
// Every mode serves a connection as a ClassicSession (session.h). Internal to classicd_lib.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <sys/mman.h>
#include <sys/socket.h>

#include "daemons/classicd/admission.h"
#include "daemons/classicd/allow_list.h"
#include "daemons/classicd/classicd.h"
#include "daemons/classicd/listeners.h"
#include "daemons/classicd/live_connections.h"
#include "daemons/classicd/objspace/objspace.h"
#include "daemons/classicd/peer.h"
#include "daemons/classicd/session.h"
#include "libcore/base/unique_fd.h"
#include "libcore/daemon/loop.h"
#include "libcore/daemon/memory.h"
#include "libcore/registrar/registrar.h"
#include "libcore/server/forking.h"
#include "libcore/server/loop_acceptor.h"
#include "libcore/server/pooled.h"
#include "libcore/server/single.h"
#include "libcore/server/threaded.h"
#include "libcore/transport/stream.h"
#include "libcore/transport/tls_stream.h"

namespace classicd {

// On every connection thread: the stop signals stay with the loop thread (Python threads that
// user code starts inherit this mask too).
void BlockStopSignals();

class ClassicService final : public core::daemon::Service {
 public:
  ClassicService(core::daemon::Context& ctx, const Options& o, Reloader reload);
  ~ClassicService() override;

  core::Status Start(StdioFds stdio);
  std::string StatusText() const override;
  void Reload() override;  // reload.cc
  void Shutdown() override;
  std::string LoggerName() const override { return log_name_; }

 private:
  // What a reload changes for new connections (read by connection threads).
  struct Limits {
    std::atomic<int64_t> idle_timeout;
    std::atomic<int64_t> frame_timeout;
    std::atomic<int64_t> max_frame_size;
    std::atomic<int64_t> tls_handshake_timeout;
    void Set(const Options& o);
  };

  // service.cc: the steps of Start(), in order, and what every mode shares.
  // The requests counter's shared page, the wake-up eventfd and the idle heap trim.
  core::Status StartHousekeeping();
  core::Status LoadTls();
  // The listening sockets as configured, unless inherited (`activated`) or the daemon serves
  // one connection (stdio, an inherited `connected` one: single_).
  core::Status Listen(bool activated, bool connected);
  // The interpreter, and the hosted service's module when there is one.
  core::Status StartPython();
  // The logger's name (the service and the port) and the journal's RPYC_SERVICE.
  void NameLogger(bool activated, const core::UniqueFd& connected);
  // The exposure rule (core::transport::CheckExposure) and the posture lines.
  core::Status CheckSecurity(StdioFds stdio, const core::UniqueFd& connected);
  // The mode's server, then the single connection's or the accepting and registration.
  core::Status StartServing(StdioFds stdio, core::UniqueFd connected);
  core::Status StartAccepting();
  void StartRegistrar();

  // hosted_service.cc: --service loaded into hosted_ (at start), then its logger and make_space_.
  core::Status LoadService();
  core::Status HostService();
  // The service logger's level for the daemon's threshold (Python's levelno), and that level
  // applied to the logger after a reload changed the threshold.
  int ServiceLevelno() const;
  void FollowLogLevel();

  // gate.cc: the connection gate.
  // --authenticator loaded, and whether client certificates become credentials.
  core::Status LoadAuthentication();
  // Counts a connection in (false: refused, and logged) and out.
  // `peer.handshake` is set when its TLS handshake or its authenticator counts against
  // max_handshakes.
  bool Admit(Peer& peer);
  // Whether to log a line about a connection not yet authenticated now: at most kPreAuthBurst of
  // each kind in kPreAuthInterval (each kind apart, so that a flood of connects still shows the
  // limit it hit and how handshakes fail), then a line saying how many were dropped.
  enum class PreAuth { kAccepted, kHandshakeFailed, kRefused };
  bool PreAuthLine(PreAuth kind);
  void Release(const std::string& host);
  // The allow-lists (allow_list.h), before a byte is read: false when the peer is refused
  // (logged). A Unix-socket peer's SO_PEERCRED goes into `peer` when its lists are set.
  bool Allowed(int fd, const sockaddr_storage& ss, Peer& peer, uint64_t id);
  // On the thread (or child) that serves the connection, once `stream` is open: the
  // authenticator when there is one (false: refused, logged), else the credentials of a client
  // certificate (TLS with ssl_cafile) or of SO_PEERCRED, into peer.credentials. Without any of
  // them it does nothing.
  // The authenticator's run counts against max_handshakes until it returns or its deadline
  // (tls_handshake_timeout) passes.
  bool Authenticate(core::transport::Stream& stream, Peer& peer, uint64_t id);
  bool RunAuthenticator(core::transport::Stream& stream, Peer& peer, uint64_t id, int timeout_ms);
  // The end of a TLS handshake: counted out of max_handshakes unless an authenticator follows,
  // and logged (a failure rate-limited, a success at debug level with the client certificate's
  // subject, escaped).
  void HandshakeEnded(const Peer& peer, uint64_t id,
                      const core::Result<core::transport::TlsStream*>& result);

  // service.cc: a connection's way in and its settings.
  // The stream over an accepted socket (a TLS handshake first, when TLS is on); null when the
  // handshake failed (logged). `live`, when set, can shut the socket down meanwhile.
  std::unique_ptr<core::transport::Stream> OpenSocket(core::UniqueFd fd, const Peer& peer,
                                                      uint64_t id,
                                                      LiveConnections::Entry* live = nullptr);
  // A connection's settings as configured now; threadpool mode watches idleness on the loop.
  SessionSettings Settings(bool idle) const;
  // A blocking mode's whole connection over `stream`.
  void Serve(core::transport::Stream& stream, const Peer& peer, uint64_t id);
  std::shared_ptr<core::transport::TlsContext> tls() const {
    std::lock_guard<std::mutex> lock(tls_mu_);
    return tls_;
  }
  void OnWake();
  // Threadpool, forking, oneshot: a connection accepted on the loop thread.
  void OnAccepted(core::UniqueFd fd, const sockaddr_storage& ss, socklen_t len, size_t listener);
  void Dispatch(core::UniqueFd fd, Peer peer);

  // serve_threaded.cc
  core::Status StartThreaded();
  void ServeAccepted(core::UniqueFd fd, const sockaddr_storage& ss, socklen_t len, bool nodelay);
  // serve_single.cc: oneshot, stdio, an inherited connection: one connection, then the daemon
  // ends.
  void ServeOne(std::function<std::unique_ptr<core::transport::Stream>()> open, Peer peer,
                uint64_t id);
  void ServeInherited(core::UniqueFd connected);
  void ServeStdio(StdioFds stdio);
  // serve_forking.cc. The parent holds a connection until it is worth a child (an Opening):
  // its TLS handshake done (within tls_handshake_timeout), or over plain TCP its first byte
  // arrived (within idle_timeout, when set); all on the loop thread, so that idle or half-open
  // connects cost no process and the parent forks with no other thread inside OpenSSL.
  struct Opening {
    Peer peer;
    std::unique_ptr<core::transport::TlsStream> tls;  // TLS: the handshake under way
    core::UniqueFd fd;                                // plain TCP: waiting for the first byte
    int timeout_ms = 0;  // 0: no deadline (plain TCP without idle_timeout)
    std::chrono::steady_clock::time_point deadline;
    short waiting = 0;  // what `watch` waits for (EV_READ or EV_WRITE)
    std::unique_ptr<core::daemon::IoWatch> watch;
    int raw_fd() const { return tls ? tls->fd() : fd.get(); }
  };
  void StartForking();
  void OpenBeforeFork(core::UniqueFd fd, Peer peer);
  void AdvanceOpening(uint64_t id, short what);
  // Ends an Opening that will not be served: counted out, its socket closed.
  void DropOpening(uint64_t id);
  void DropOpenings();
  void ForkChild(std::unique_ptr<core::transport::Stream> stream, Peer peer, uint64_t id);
  // A child that runs the authenticator holds its handshake slot in the parent until it closes
  // the write end of a pipe (after the authenticator, or by ending) or the deadline passes.
  struct AuthWait {
    core::UniqueFd done;  // the read end: EOF when the child's authenticator has returned
    uint64_t slot = 0;
    std::unique_ptr<core::daemon::IoWatch> watch;
  };
  void WatchAuthentication(uint64_t id, uint64_t slot);
  void EndAuthWait(uint64_t id);
  void ReapChildren();
  void ChildEnded(const core::server::ForkingServer::Ended& e);
  // serve_pooled.cc
  class PoolSession;
  core::Status StartPool();
  std::unique_ptr<core::server::PooledServer::Session> PoolOpen(core::UniqueFd fd, uint64_t id);

  core::daemon::Context& ctx_;
  const Options o_;  // as started
  Options current_;  // as last (re)loaded: loop thread only
  Reloader reload_;
  Limits limits_;
  Admission admission_;
  static constexpr int kPreAuthBurst = 50;
  static constexpr double kPreAuthInterval = 10.0;
  SharedRateLimit pre_auth_lines_[3] = {{kPreAuthBurst, kPreAuthInterval},
                                        {kPreAuthBurst, kPreAuthInterval},
                                        {kPreAuthBurst, kPreAuthInterval}};
  core::log::Logger log_;
  ConnLog conn_log_;
  std::string log_name_;  // set when it differs from the configured port's (port 0)
  // Declared before everything that runs Python, so it is destroyed last.
  std::unique_ptr<objspace::Interpreter> interpreter_;
  objspace::HostedServicePtr hosted_;         // --service: destroyed before the interpreter
  objspace::AuthenticatorPtr authenticator_;  // --authenticator: destroyed before the interpreter
  bool certificate_credentials_ = false;      // TLS verifies client certificates
  AllowList allow_;
  SpaceFactory make_space_;

  mutable std::mutex tls_mu_;
  std::shared_ptr<core::transport::TlsContext> tls_;  // guarded by tls_mu_

  Listeners listeners_;
  std::unique_ptr<core::registrar::Registrar> registrar_;
  bool single_ = false;                // oneshot, stdio, an inherited connection: exit after one
  std::atomic<bool> stopping_{false};  // workers read it

  std::atomic<uint64_t> next_id_{0};
  // Requests dispatched by every connection, forked children included: the counter lives in a
  // shared anonymous page (a plain member when that mapping fails).
  std::atomic<uint64_t> requests_fallback_{0};
  std::atomic<uint64_t>* requests_ = &requests_fallback_;
  void* requests_page_ = MAP_FAILED;

  core::UniqueFd wake_;
  std::unique_ptr<core::daemon::IoWatch> wake_watch_;
  // Gives the heap of a load spike back once the connections are gone (glibc keeps it).
  std::unique_ptr<core::daemon::IdleTrim> trim_;
  // The connections served on threads of their own (threaded mode, the single connection),
  // ended through their streams at shutdown.
  LiveConnections live_;
  // The one connection of oneshot, stdio or an inherited connection (declared after everything
  // its thread touches). Its entry in live_ lives on its thread.
  std::unique_ptr<core::server::SingleConnection> single_conn_;
  std::optional<LiveConnections::Entry> single_entry_;
  // Threaded mode's accepting threads (each serves what it accepts).
  std::unique_ptr<core::server::ThreadedAcceptor> acceptor_;
  // The other modes accept on the loop thread.
  std::unique_ptr<core::server::LoopAcceptor> loop_acceptor_;

  // Threadpool mode (declared after everything its sessions touch).
  std::mutex pool_mu_;
  std::unordered_map<uint64_t, Peer> pool_peers_;  // guarded by pool_mu_
  std::unique_ptr<core::server::PooledServer> pool_;

  // Children (forking): the server forks and reaps; the peers of live children by id.
  std::unique_ptr<core::server::ForkingServer> forking_;
  std::unordered_map<uint64_t, Peer> child_peers_;
  std::unordered_map<uint64_t, std::unique_ptr<Opening>> openings_;  // loop thread only
  // Forking mode with an authenticator (loop thread): the parent's ends of the children's
  // authentication pipes, and the write end of the one being forked (the child's, closed in the
  // parent once forked).
  std::unordered_map<uint64_t, std::unique_ptr<AuthWait>> auth_waits_;
  core::UniqueFd auth_done_;
  std::unique_ptr<core::daemon::SignalWatch> sigchld_;
};

}  // namespace classicd
