#include "daemons/classicd/listeners.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

namespace classicd {
namespace {

TEST(Listeners, TcpAndUnixListenersAndClose) {
  Listeners l;
  ASSERT_TRUE(l.ListenTcp("127.0.0.1", 0, 16));
  const std::string path = "/tmp/classicd_listeners_test_" + std::to_string(::getpid());
  ASSERT_TRUE(l.ListenUnix(path, 0600, 16));
  ASSERT_EQ(l.size(), 2u);
  const uint16_t port = l.LocalAddress(0).port();
  EXPECT_NE(port, 0);
  EXPECT_EQ(l[0].what, "[127.0.0.1]:" + std::to_string(port));
  EXPECT_TRUE(l[0].nodelay);
  EXPECT_EQ(l[1].what, "unix:" + path);
  EXPECT_FALSE(l[1].nodelay);
  EXPECT_EQ(l.TcpPort(), port);  // the Unix socket has none
  const auto bound = l.Bound();  // as the exposure rule sees them
  ASSERT_EQ(bound.size(), 2u);
  EXPECT_EQ(bound[0].fd, l[0].fd.get());
  EXPECT_EQ(bound[0].what, l[0].what);
  EXPECT_EQ(bound[1].fd, l[1].fd.get());
  EXPECT_EQ(bound[1].what, "unix:" + path);
  EXPECT_EQ(::access(path.c_str(), F_OK), 0);
  l.Close();
  EXPECT_NE(::access(path.c_str(), F_OK), 0);  // removed
  EXPECT_FALSE(l[0].fd);
}

TEST(Listeners, ABusyPortIsAnError) {
  Listeners a;
  ASSERT_TRUE(a.ListenTcp("127.0.0.1", 0, 16));
  Listeners b;
  auto st = b.ListenTcp("127.0.0.1", a.LocalAddress(0).port(), 16);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("Address already in use"), std::string::npos)
      << st.error().message();
}

}  // namespace
}  // namespace classicd
