// A hosted service's `conn` as its on_connect sees it: the credentials, connid and endpoints the
// connection's ConnectionInfo gives (conn._config), and conn.close() reaching the peer; and the
// service's exception keys of protocol_config (HostedService::protocol, vinegar.cc) both ways.

#include <Python.h>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemons/classicd/objspace/credentials.h"
#include "daemons/classicd/objspace/internal.h"
#include "daemons/classicd/objspace/objspace.h"
#include "daemons/classicd/objspace/objspace_testing.h"
#include "daemons/classicd/objspace/py_ref.h"

namespace classicd::objspace::testing {
namespace {

class ClosingPeer : public FakePeer {
 public:
  void Close() override { ++closes; }
  int closes = 0;
};

// Loads the service `cls` of a module `name` made from `source` (which imports what it uses).
core::Result<HostedServicePtr> ServiceFromSource(const std::string& name, const std::string& cls,
                                                 const std::string& source) {
  auto st =
      g_interp->RunString("import sys, types\nm = types.ModuleType('" + name + "')\nexec('''" +
                          source + "''', m.__dict__)\nsys.modules['" + name + "'] = m\n");
  if (!st) return core::Fail(st.error());
  return LoadService(*g_interp, name + ":" + cls, ProtocolConfig{});
}

class HostingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(g_interp, nullptr);
    auto hosted = ServiceFromSource("hosting_test_service", "SeenService", R"(
import rpyc
class SeenService(rpyc.Service):
    seen = []
    def on_connect(self, conn):
        c = conn._config
        SeenService.seen.append((c['credentials'], c['connid'], c['endpoints'], conn.closed))
        if c['credentials'] == 'close me':
            conn.close()
            SeenService.seen.append(conn.closed)
)");
    ASSERT_TRUE(hosted) << hosted.error().message();
    service_ = std::move(*hosted);
  }
  void TearDown() override { service_.reset(); }

  void ExpectSeen(const std::string& expected) {
    auto st = g_interp->RunString(
        "import hosting_test_service as m\nseen = m.SeenService.seen\n"
        "assert seen == " +
        expected + ", seen\nseen.clear()\n");
    EXPECT_TRUE(st) << st.error().message();
  }

  HostedServicePtr service_;
};

TEST_F(HostingTest, CredentialsConnidAndEndpointsReachOnConnect) {
  FakePeer peer;
  // What a Unix peer's SO_PEERCRED gives (credentials.cc), as the daemon sets Peer::credentials.
  auto credentials = PeerCredentials(*g_interp, 1000, 100, 4242);
  ASSERT_TRUE(credentials) << credentials.error().message();
  EXPECT_EQ(CredentialsText(**credentials), "{'uid': 1000, 'gid': 100, 'pid': 4242}");
  auto space =
      MakeServiceObjectSpace(*g_interp, peer, *service_, {7, -1, *credentials, std::nullopt});
  ASSERT_TRUE(space->OnConnect());
  ExpectSeen("[({'uid': 1000, 'gid': 100, 'pid': 4242}, 'conn7', None, False)]");
  space->OnDisconnect();
}

TEST_F(HostingTest, WithoutCredentialsTheyAreNone) {
  FakePeer peer;
  auto space = MakeServiceObjectSpace(*g_interp, peer, *service_, {8, -1, nullptr, std::nullopt});
  ASSERT_TRUE(space->OnConnect());
  ExpectSeen("[(None, 'conn8', None, False)]");
}

TEST_F(HostingTest, CloseFromOnConnectClosesThePeer) {
  ClosingPeer peer;
  CredentialsPtr credentials;
  {
    // Credentials from a Python object (what an authenticator returned, say).
    GilHold gil;
    auto made = MakeCredentials(*g_interp, PyRef::Steal(PyUnicode_FromString("close me")));
    ASSERT_TRUE(made) << made.error().message();
    credentials = std::move(*made);
  }
  auto space =
      MakeServiceObjectSpace(*g_interp, peer, *service_, {9, -1, credentials, std::nullopt});
  ASSERT_TRUE(space->OnConnect());
  ExpectSeen("[('close me', 'conn9', None, False), True]");
  EXPECT_EQ(peer.closes, 1);
}

// A connected stream socket pair (accepted, connecting) of `family` over a listener bound to
// `addr`; {-1, -1} on failure.
std::pair<int, int> ConnectedPair(const sockaddr* addr, socklen_t len) {
  int listener = ::socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) return {-1, -1};
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof bound;
  int client = -1, accepted = -1;
  if (::bind(listener, addr, len) == 0 && ::listen(listener, 1) == 0 &&
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &bound_len) == 0) {
    client = ::socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (client >= 0 && ::connect(client, reinterpret_cast<sockaddr*>(&bound), bound_len) == 0) {
      accepted = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    }
  }
  ::close(listener);
  if (accepted < 0) {
    if (client >= 0) ::close(client);
    return {-1, -1};
  }
  return {accepted, client};
}

// conn._config["endpoints"] is what Python's own socket module says of the same descriptor, for
// every family a connection comes from (the daemon spells them in C++: hosting.cc).
TEST(HostingEndpointsTest, AreWhatPythonsSocketModuleGives) {
  auto hosted = ServiceFromSource("hosting_test_endpoints", "EndpointsService", R"(
import os, socket, rpyc
class EndpointsService(rpyc.Service):
    seen = []
    def on_connect(self, conn):
        s = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            EndpointsService.seen.append((conn._config['endpoints'],
                                          (s.getsockname(), s.getpeername())))
        finally:
            s.close()
)");
  ASSERT_TRUE(hosted) << hosted.error().message();

  std::vector<std::pair<std::string, std::pair<int, int>>> pairs;
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  pairs.emplace_back("AF_INET", ConnectedPair(reinterpret_cast<sockaddr*>(&v4), sizeof v4));
  v4.sin_addr.s_addr = htonl(0x7f2d6409);  // 127.45.100.9: every length of a decimal byte
  pairs.emplace_back("AF_INET 127.45.100.9",
                     ConnectedPair(reinterpret_cast<sockaddr*>(&v4), sizeof v4));
  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  v6.sin6_addr = in6addr_loopback;
  pairs.emplace_back("AF_INET6", ConnectedPair(reinterpret_cast<sockaddr*>(&v6), sizeof v6));
  std::string dir = ::testing::TempDir() + "/hosting-endpoints-" + std::to_string(::getpid());
  sockaddr_un path{};
  path.sun_family = AF_UNIX;
  std::snprintf(path.sun_path, sizeof path.sun_path, "%s", dir.c_str());
  ::unlink(path.sun_path);
  pairs.emplace_back("AF_UNIX path",
                     ConnectedPair(reinterpret_cast<sockaddr*>(&path), sizeof path));
  sockaddr_un abstract{};
  abstract.sun_family = AF_UNIX;
  std::string name = "classicd-endpoints-" + std::to_string(::getpid());
  std::memcpy(abstract.sun_path + 1, name.data(), name.size());
  pairs.emplace_back(
      "AF_UNIX abstract",
      ConnectedPair(reinterpret_cast<sockaddr*>(&abstract),
                    static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size())));
  int sp[2] = {-1, -1};
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
  pairs.emplace_back("AF_UNIX unnamed", std::make_pair(sp[0], sp[1]));

  uint64_t id = 20;
  for (auto& [what, fds] : pairs) {
    SCOPED_TRACE(what);
    if (fds.first < 0 && what == "AF_INET6") continue;  // a host without IPv6 loopback
    ASSERT_GE(fds.first, 0);
    FakePeer peer;
    auto space =
        MakeServiceObjectSpace(*g_interp, peer, **hosted, {id++, fds.first, nullptr, std::nullopt});
    ASSERT_TRUE(space->OnConnect());
    space->OnDisconnect();
    space.reset();
    auto seen = g_interp->RunString(
        "import hosting_test_endpoints as m\n"
        "(ours, python), = m.EndpointsService.seen\n"
        "m.EndpointsService.seen.clear()\n"
        "assert ours == python and type(ours[0]) is type(python[0]), (ours, python)\n");
    EXPECT_TRUE(seen) << seen.error().message();
    ::close(fds.first);
    ::close(fds.second);
  }
  ::unlink(path.sun_path);
  hosted->reset();
}

// --- rpyc's exception keys (vinegar.cc) ---------------------------------------------------

class ExceptionRulesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_NE(g_interp, nullptr);
    auto st = g_interp->RunString(R"(
import sys, types
m = types.ModuleType('rules_test_service')
exec('''
import rpyc
class ServiceError(Exception):
    pass
class RulesService(rpyc.Service):
    def exposed_fail(self):
        raise ServiceError('bad')
    def exposed_exit(self):
        raise SystemExit('bye')
    def exposed_interrupt(self):
        raise KeyboardInterrupt('ctrl-c')
    def exposed_catch(self, fn):
        try:
            fn()
        except BaseException as e:
            from rpyc.core.vinegar import GenericException
            return (type(e).__module__, type(e).__name__, isinstance(e, GenericException), e.args)
''', m.__dict__)
sys.modules['rules_test_service'] = m
)");
    ASSERT_TRUE(st) << st.error().message();
  }

  // A connection of the service with `config`; `peer` must outlive it.
  std::unique_ptr<ObjectSpace> Connect(const ProtocolConfig& config, FakePeer& peer) {
    auto hosted = LoadService(*g_interp, "rules_test_service:RulesService", config);
    EXPECT_TRUE(hosted) << hosted.error().message();
    if (!hosted) return nullptr;
    service_ = std::move(*hosted);
    auto space = MakeServiceObjectSpace(*g_interp, peer, *service_, {1, -1, nullptr, std::nullopt});
    EXPECT_TRUE(space->OnConnect());
    return space;
  }
  // root.<name>(args...) as the client sends it.
  static Outcome CallRoot(ObjectSpace& space, const std::string& name, std::vector<Value> args) {
    Value root = PayloadOf(HandleSent(space, Handler::kGetRoot, ByVal(T({}))).value);
    Outcome m = HandleSent(space, Handler::kGetAttr, Boxes({LocalRef(root), ByVal(S(name))}));
    EXPECT_EQ(m.kind, Outcome::Kind::kReply) << m.value.Repr();
    return HandleSent(space, Handler::kCall,
                      Boxes({LocalRef(PayloadOf(m.value)), Boxes(std::move(args)), ByVal(T({}))}));
  }
  static const std::vector<Value>& Items(const Outcome& o) {
    return o.value.tree()->as<brine::Tuple>().items;
  }
  // What the service's catch() saw of the client's exception (module, class) raised by a client
  // callback.
  Outcome CatchClientException(const ProtocolConfig& config, const std::string& module,
                               const std::string& cls) {
    FakePeer peer;
    peer.script = [&](Handler, const Value&) -> core::Result<Outcome> {
      return Outcome::Exception(T({T({S(module), S(cls)}), T({S("from the client")}),
                                   T({T({S("_remote_version"), S("6.0.1")})}), S("tb")}));
    };
    auto space = Connect(config, peer);
    Outcome o = CallRoot(*space, "catch", {RemoteRef(T({S("builtins.function"), I(9), I(10)}))});
    EXPECT_EQ(o.kind, Outcome::Kind::kReply) << o.value.Repr();
    space->OnDisconnect();
    return o;
  }

  HostedServicePtr service_;
};

TEST_F(ExceptionRulesTest, TracebackAndVersionIncludedByDefault) {
  FakePeer peer;
  auto space = Connect(ProtocolConfig{}, peer);
  Outcome o = CallRoot(*space, "fail", {});
  ASSERT_EQ(o.kind, Outcome::Kind::kException);
  EXPECT_EQ(Items(o)[0], T({S("rules_test_service"), S("ServiceError")}));
  EXPECT_EQ(Items(o)[2].as<brine::Tuple>().items.back(), T({S("_remote_version"), S("6.0.1")}));
  EXPECT_EQ(Items(o)[3].as<brine::Str>().utf8.rfind("Traceback (most recent call last):", 0), 0u);
}

TEST_F(ExceptionRulesTest, TracebackAndVersionDenied) {
  FakePeer peer;
  ProtocolConfig config;
  config.include_local_traceback = false;
  config.include_local_version = false;
  auto space = Connect(config, peer);
  Outcome o = CallRoot(*space, "fail", {});
  ASSERT_EQ(o.kind, Outcome::Kind::kException);
  EXPECT_EQ(Items(o)[1], T({S("bad")}));
  EXPECT_EQ(Items(o)[2].as<brine::Tuple>().items.back(),
            T({S("_remote_version"), S("<version denied>")}));
  EXPECT_EQ(Items(o)[3], S("<traceback denied>"));
}

TEST_F(ExceptionRulesTest, ClientExceptionsLoadedByTheRules) {
  ProtocolConfig config;  // rpyc's defaults: builtins only
  EXPECT_EQ(CatchClientException(config, "builtins", "ValueError").value,
            ByVal(T({S("builtins"), S("ValueError"), false, T({S("from the client")})})));
  EXPECT_EQ(CatchClientException(config, "rules_test_service", "ServiceError").value,
            ByVal(T({S("rpyc.core.vinegar/rules_test_service"),
                     S("rules_test_service.ServiceError"), true, T({S("from the client")})})));
  config.instantiate_custom_exceptions = true;  // a module already imported: its class
  EXPECT_EQ(
      CatchClientException(config, "rules_test_service", "ServiceError").value,
      ByVal(T({S("rules_test_service"), S("ServiceError"), false, T({S("from the client")})})));
  // Not imported without import_custom_exceptions, then imported and used.
  EXPECT_EQ(CatchClientException(config, "wsgiref.validate", "WSGIWarning").value,
            ByVal(T({S("rpyc.core.vinegar/wsgiref.validate"), S("wsgiref.validate.WSGIWarning"),
                     true, T({S("from the client")})})));
  config.import_custom_exceptions = true;
  EXPECT_EQ(CatchClientException(config, "wsgiref.validate", "WSGIWarning").value,
            ByVal(T({S("wsgiref.validate"), S("WSGIWarning"), false, T({S("from the client")})})));
}

TEST_F(ExceptionRulesTest, PropagatedExceptionsCloseTheConnection) {
  // rpyc's defaults (KeyboardInterrupt ends the connection, SystemExit is sent), then reversed.
  struct Case {
    bool system_exit, keyboard_interrupt;
    const char *sent_by, *sent_class, *ends_by;
  };
  for (const Case& c : {Case{false, true, "exit", "SystemExit", "interrupt"},
                        Case{true, false, "interrupt", "KeyboardInterrupt", "exit"}}) {
    ClosingPeer peer;
    ProtocolConfig config;
    config.propagate_SystemExit_locally = c.system_exit;
    config.propagate_KeyboardInterrupt_locally = c.keyboard_interrupt;
    auto space = Connect(config, peer);
    Outcome o = CallRoot(*space, c.sent_by, {});
    ASSERT_EQ(o.kind, Outcome::Kind::kException);
    EXPECT_EQ(Items(o)[0], T({S("builtins"), S(c.sent_class)}));
    EXPECT_EQ(peer.closes, 0) << c.sent_by;
    (void)CallRoot(*space, c.ends_by, {});
    EXPECT_EQ(peer.closes, 1) << c.ends_by;
  }
}

}  // namespace
}  // namespace classicd::objspace::testing
