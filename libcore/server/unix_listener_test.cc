#include "libcore/server/unix_listener.h"

#include <string>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "libcore/testing/temp_path.h"

namespace core::server {
namespace {

// A client connected to the socket at `path`; invalid when nobody listens there.
UniqueFd ConnectUnix(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  path.copy(sa.sun_path, sizeof sa.sun_path - 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return {};
  return fd;
}

TEST(ListenUnixTest, ListensWithTheModeGiven) {
  const std::string path = core::testing::TempPath("s.sock");
  ::unlink(path.c_str());
  auto fd = ListenUnix(path, 0640);
  ASSERT_TRUE(fd) << fd.error().message();
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0640U);
  EXPECT_NE(::fcntl(fd->get(), F_GETFL) & O_NONBLOCK, 0);
  EXPECT_NE(::fcntl(fd->get(), F_GETFD) & FD_CLOEXEC, 0);
  UniqueFd client = ConnectUnix(path);
  EXPECT_TRUE(client);
  UniqueFd accepted(::accept4(fd->get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(accepted);
  ::unlink(path.c_str());
}

TEST(ListenUnixTest, AStaleSocketIsReplacedALiveOneIsAnError) {
  const std::string path = core::testing::TempPath("s.sock");
  ::unlink(path.c_str());
  auto first = ListenUnix(path, 0600);
  ASSERT_TRUE(first) << first.error().message();
  auto second = ListenUnix(path, 0600);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), Error::Code::kConfig);
  EXPECT_EQ(second.error().message(), "unix socket " + path + " is in use by another server");
  first->Reset();  // the file stays: stale now
  auto third = ListenUnix(path, 0600);
  ASSERT_TRUE(third) << third.error().message();
  EXPECT_TRUE(ConnectUnix(path));
  ::unlink(path.c_str());
}

TEST(ListenUnixTest, AFileThatIsNotASocketIsLeftAlone) {
  const std::string path = core::testing::TempPath("plain");
  UniqueFd file(::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  ASSERT_TRUE(file);
  auto fd = ListenUnix(path, 0600);
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().code(), Error::Code::kConfig);
  EXPECT_EQ(fd.error().message(), "unix socket path " + path + " exists and is not a socket");
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  ::unlink(path.c_str());
}

TEST(ListenUnixTest, APathTooLongIsAConfigError) {
  const std::string path = "/tmp/" + std::string(200, 'x');
  auto fd = ListenUnix(path, 0600);
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().code(), Error::Code::kConfig);
  EXPECT_EQ(fd.error().message(), "unix socket path too long: " + path);
}

TEST(ListenUnixTest, ABindFailureNamesThePath) {
  const std::string path = "/nonexistent-dir-for-test/s.sock";
  auto fd = ListenUnix(path, 0600);
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().code(), Error::Code::kIo);
  EXPECT_EQ(fd.error().message(), "bind unix:" + path + ": No such file or directory");
}

}  // namespace
}  // namespace core::server
