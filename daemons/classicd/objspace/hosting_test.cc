// A hosted service's `conn` as its on_connect sees it: the credentials, connid and endpoints the
// connection's ConnectionInfo gives (conn._config), and conn.close() reaching the peer.

#include <Python.h>

#include <memory>
#include <string>

#include <gtest/gtest.h>

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

class HostingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(g_interp, nullptr);
    auto st = g_interp->RunString(R"(
import sys, types
m = types.ModuleType('hosting_test_service')
exec('''
import rpyc
class SeenService(rpyc.Service):
    seen = []
    def on_connect(self, conn):
        c = conn._config
        SeenService.seen.append((c['credentials'], c['connid'], c['endpoints'], conn.closed))
        if c['credentials'] == 'close me':
            conn.close()
            SeenService.seen.append(conn.closed)
''', m.__dict__)
sys.modules['hosting_test_service'] = m
)");
    ASSERT_TRUE(st) << st.error().message();
    auto hosted = LoadService(*g_interp, "hosting_test_service:SeenService", ProtocolConfig{});
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

}  // namespace
}  // namespace classicd::objspace::testing
