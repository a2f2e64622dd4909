#pragma once

// The embedded-CPython object space of rpyc-classicd: the one interpreter of the process and the
// per-connection classic object space behind core::protocol::ObjectSpace (docs/protocol.md §4-§8).
// This header does not include <Python.h>; only files in this directory do.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "daemons/classicd/objspace/protocol_config.h"
#include "libcore/base/result.h"
#include "libcore/protocol/object_space.h"

namespace classicd::objspace {

struct InterpreterOptions {
  // sys.executable (docs/embedding.md §1.3): Debian's interpreter, never a PATH lookup.
  std::string executable = "/usr/bin/python3";
  // sys.argv; not parsed as Python options.
  std::vector<std::string> argv = {"rpyc-classicd"};
  // Prepended to sys.path, in order, ahead of PYTHONPATH.
  std::vector<std::string> extra_sys_path;
  // Prepend $PYTHONPATH to sys.path (the isolated config ignores it otherwise).
  bool honour_pythonpath = true;
  // PYMEM_ALLOCATOR_MALLOC, for meaningful ASan/LSan reports (docs/embedding.md §6). Defaults to on
  // in sanitizer builds.
  bool malloc_allocator = kSanitizerBuild;
  // signal(SIGPIPE, SIG_IGN) before init: user code gets BrokenPipeError instead of killing the
  // daemon (§1.2).
  bool ignore_sigpipe = true;
  // When SIGINT is SIG_DFL at start, keep it so after `import signal` (which would otherwise make
  // SIGINT a KeyboardInterrupt on the init thread, §1.2). A handler the daemon installed before
  // Start() is kept either way.
  bool keep_default_sigint = true;
  // At shutdown, how long to wait for threads that user code started without daemon=True
  // before finalising anyway (Py_FinalizeEx would otherwise wait for them forever,
  // docs/embedding.md §8). Such threads are then ended like daemon threads.
  int finalize_grace_ms = 2000;

#if defined(__SANITIZE_ADDRESS__)
  static constexpr bool kSanitizerBuild = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  static constexpr bool kSanitizerBuild = true;
#else
  static constexpr bool kSanitizerBuild = false;
#endif
#else
  static constexpr bool kSanitizerBuild = false;
#endif
};

// The version of the libpython the process loaded ("3.11.2"), for --version: callable before
// the interpreter starts.
std::string PythonVersion();

// The process's one interpreter. Create it once in main before any connection thread starts;
// destroy it on the same thread after every connection thread has been joined and every object
// space destroyed (docs/embedding.md §8).
class Interpreter {
 public:
  static core::Result<std::unique_ptr<Interpreter>> Start(const InterpreterOptions& options);
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;
  Interpreter(Interpreter&&) = delete;
  Interpreter& operator=(Interpreter&&) = delete;

  // Runs `code` with exec() in a fresh namespace (for setup and tests). Errors carry the
  // formatted Python exception.
  core::Status RunString(const std::string& code);

  // fork() with CPython's fork hooks around it, the GIL held across them (docs/embedding.md §4.1).
  // Returns the child's pid in the parent and 0 in the child, where the calling thread is the
  // only thread and becomes Python's main thread; the child may serve one connection and then
  // destroy this Interpreter (finalising) or _exit(). Locks that other parent threads held stay
  // held in the child (§4.2), so fork from a thread that runs no Python (the accept loop) while
  // no connection thread exists. `freeze_gc` runs gc.freeze() first, so that a collection in the
  // child does not copy every object the parent made (§4.4); objects frozen in the parent are
  // never collected there.
  core::Result<int> Fork(bool freeze_gc = true);

  // Forking mode, once in the parent before it accepts: runs the start of a classic connection
  // (both wire generations, an exception included) through a throw-away object space, so that
  // the imports, caches (INSPECT lists, compiled code, CPython's type cache) and lazily made
  // objects a child needs already exist; then collects, gives free heap memory back and freezes
  // the GC (§4.4), and takes the free blocks of pymalloc's partly used pools and glibc's free
  // chunks (per-thread cache, free lists) so that a child's new objects land on pages of its
  // own. Each child then does and dirties (copies) less. The calling thread keeps the GIL from
  // then on (released in each child): call it on the thread that started the interpreter and
  // forks, and run no Python on other threads afterwards. threading's at-fork reset, which has
  // nothing to reset in such a parent's children, is skipped in them (see QuietAfterFork in
  // fork_preparation.cc); it runs again for forks made inside a child.
  core::Status PrepareFork();

  // A forked child's end after serving: flushes sys.stdout and sys.stderr and _exit()s without
  // finalising (finalising costs ~10 ms per child, docs/embedding.md §8).
  [[noreturn]] void ExitChild(int status);

  struct Support;  // Python objects the object spaces share (defined in internal.h)
  Support& support() { return *support_; }

 private:
  Interpreter();
  std::unique_ptr<Support> support_;
  int finalize_grace_ms_ = 0;
  void* main_thread_state_ = nullptr;  // PyThreadState* of the init thread, released
  bool prepared_ = false;              // PrepareFork() ran
  bool fork_holds_gil_ = false;        // after PrepareFork(): the forking thread keeps the GIL
  bool pymalloc_ = true;               // Python's own allocator (not PYMEM_ALLOCATOR_MALLOC)
  std::vector<void*> pool_plugs_;      // PrepareFork(): pymalloc blocks kept out of children's way
  std::vector<void*> heap_plugs_;      // PrepareFork(): the same for glibc's heap
  // PrepareFork(): threading._after_fork (a no-op in the parent) and its real code, which each
  // child puts back after the fork hooks (and ~Interpreter in any process). Null when left as
  // it was.
  void* after_fork_fn_ = nullptr;
  void* after_fork_code_ = nullptr;
  void QuietAfterFork();  // sets the two above when the parent's threading state allows it
};

// The class of the root object (docs/protocol.md §7.2, §11). The daemon serves SlaveService in
// every mode, stdio included (a ClassicService root would handshake back and break VoidService
// clients, daemons/classicd/README.md); kClassic, rpyc's ClassicService, is there for its unit
// test.
enum class RootService { kSlave, kClassic };

// What authenticated a connection (issue 13; credentials.cc, authenticator.cc): the Python
// object a hosted service finds in conn._config["credentials"] (and the classic service too),
// with its repr for rpyc's "welcome ADDR (credentials)" line. Made and dropped with the GIL taken
// inside, on any thread; drop the last reference before the interpreter is destroyed.
struct Credentials;
using CredentialsPtr = std::shared_ptr<const Credentials>;
// repr(credentials) when they are true, as rpyc's server logs them; "" otherwise.
const std::string& CredentialsText(const Credentials& credentials);

// TLS with --ssl-cafile: the dict ssl.SSLSocket.getpeercert() returns (what rpyc's
// SSLAuthenticator gives) for the client certificate `der`, made by CPython's own certificate
// decoder (support_auth.py's decode_certificate). PrepareCertificates() imports it once at start.
core::Status PrepareCertificates(Interpreter& interpreter);
core::Result<CredentialsPtr> CertificateCredentials(Interpreter& interpreter,
                                                    const std::string& der);
// A Unix-socket peer's SO_PEERCRED: {'uid': ..., 'gid': ..., 'pid': ...}.
core::Result<CredentialsPtr> PeerCredentials(Interpreter& interpreter, int64_t uid, int64_t gid,
                                             int64_t pid);

// --authenticator "package.module:callable": rpyc's contract (authenticator.cc). Imported once at
// start: an Error::Config naming the spec and why it cannot be used. Destroy it before the
// interpreter.
struct Authenticator;
using AuthenticatorPtr = std::shared_ptr<const Authenticator>;
core::Result<AuthenticatorPtr> LoadAuthenticator(Interpreter& interpreter, const std::string& spec);
struct AuthOutcome {
  enum class Kind {
    kAccepted,  // `credentials` is what it returned
    kRefused,   // it raised AuthenticationError; `reason` is its text
    kFailed,    // it raised something else, returned something else, or ran out of time
  };
  Kind kind = Kind::kFailed;
  CredentialsPtr credentials;
  std::string reason;
};
// Calls the authenticator with a socket.socket over a duplicate of `fd` (a connected socket)
// whose operations wait no longer than `timeout_ms` in all. The descriptor's file status flags
// (O_NONBLOCK) are as they were afterwards.
AuthOutcome Authenticate(const Authenticator& authenticator, int fd, int timeout_ms);

// One per connection, used only from the thread serving that connection (the thread may change
// between top-level requests, not within one). `interpreter` and `peer` must outlive the object
// space; destroy it before the interpreter. `credentials`, when set, are conn._config's.
std::unique_ptr<core::protocol::ObjectSpace> MakeClassicObjectSpace(
    Interpreter& interpreter, core::protocol::Peer& peer, RootService root = RootService::kSlave,
    const CredentialsPtr& credentials = nullptr);

// A user's rpyc.Service hosted instead of the classic one (--service; hosting.cc): imported once,
// with the access policy and conn._config of its protocol config. Destroy it before the
// interpreter.
struct HostedService;
using HostedServicePtr = std::shared_ptr<HostedService>;

// What a hosted service's `conn` knows of its connection.
struct ConnectionInfo {
  uint64_t id = 0;  // conn._config["connid"] is "conn<id>", as rpyc numbers its connections
  // The descriptor of the connection's stream: conn.fileno(), conn._config["endpoints"]
  // (getsockname(), getpeername()), conn._channel.stream.sock (a socket over a dup() of it,
  // made when first asked for). -1: none (endpoints None).
  int fd = -1;
  // conn._config["credentials"] (Peer::credentials: what the connection's authentication, a TLS
  // client certificate, an authenticator or SO_PEERCRED, said); null: None.
  CredentialsPtr credentials;
  // Under TLS: what conn._channel.stream.sock tells as ssl.SSLSocket would (getpeercert(),
  // cipher(), version()).
  struct Tls {
    std::string version;          // "TLSv1.3"
    std::string cipher;           // empty: cipher() is None
    std::string cipher_protocol;  // "TLSv1.3"
    int secret_bits = 0;
    std::string certificate_der;  // the client certificate (empty: none)
    bool verified = false;        // the certificate was verified: getpeercert() decodes it
  };
  std::optional<Tls> tls;
};

// Imports `spec` ("package.module:Name" or "package.module:factory()", factory() called here).
// An Error::Config naming the service and the reason (the import's traceback, not a Service, a
// _protocol override) when it cannot be hosted.
core::Result<HostedServicePtr> LoadService(Interpreter& interpreter, const std::string& spec,
                                           const ProtocolConfig& config);
// Puts `dirs` first on sys.path, in their order (service-path), so that LoadService() imports
// from them before PYTHONPATH and the interpreter's own path.
core::Status PrependSysPath(Interpreter& interpreter, const std::vector<std::string>& dirs);
// Its aliases (rpyc's get_service_aliases(): "CALCULATOR" for CalculatorService).
const std::vector<std::string>& ServiceAliases(const HostedService& service);
// Where the records of a hosted service's logger go: the daemon's log (any thread, GIL held).
// `levelno` is Python's (10 debug, 20 info, 30 warning, 40 error, 50 critical).
using LogSink = std::function<void(int levelno, std::string_view message)>;
// Names conn._config["logger"]: logging.getLogger(name), as rpyc's server names its logger
// ("CALCULATOR/18861"), at `levelno` (the daemon's threshold), with a handler that writes its
// records to `sink` (their message, formatted as logging's default "%(message)s" does, with the
// traceback of logger.exception()). Before the first connection.
core::Status SetServiceLogger(HostedService& service, const std::string& name, LogSink sink,
                              int levelno);
// The level of that logger from now on (a reload changed the daemon's threshold): connections
// open in this process see it at once; forked children see the level they were forked with.
core::Status SetServiceLogLevel(HostedService& service, int levelno);

// One per connection, as MakeClassicObjectSpace(): the root is a new instance of the service's
// class (or the shared instance), its on_connect(conn) runs in OnConnect() and on_disconnect(conn)
// in OnDisconnect(). `service` must outlive the space; `info` is what its `conn` tells.
std::unique_ptr<core::protocol::ObjectSpace> MakeServiceObjectSpace(Interpreter& interpreter,
                                                                    core::protocol::Peer& peer,
                                                                    const HostedService& service,
                                                                    const ConnectionInfo& info);

}  // namespace classicd::objspace
