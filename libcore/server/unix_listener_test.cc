#include "libcore/server/unix_listener.h"

#include <string>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "libcore/testing/temp_path.h"

// Every chmod() this test binary makes lands here (the executable's definition wins over
// libc's), so a test can tell that ListenUnix() sets no mode through a path. It still changes
// the mode, through the descriptor-free syscall, so nothing else here depends on it.
namespace {
int g_chmod_calls = 0;
}  // namespace

extern "C" int chmod(const char* path, mode_t mode) {
  ++g_chmod_calls;
  return static_cast<int>(::syscall(SYS_chmod, path, mode));
}

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

TEST(ListenUnixTest, TheModeComesFromTheUmaskNotFromAChmodOfThePath) {
  // A chmod(path) after bind() follows a symlink swapped in meanwhile and changes its target.
  const std::string path = core::testing::TempPath("m.sock");
  ::unlink(path.c_str());
  const mode_t before = ::umask(0077);  // stricter than the mode asked for: it must not matter
  g_chmod_calls = 0;
  auto fd = ListenUnix(path, 0666);
  EXPECT_EQ(g_chmod_calls, 0);
  EXPECT_EQ(::umask(before), 0077U);  // restored
  ASSERT_TRUE(fd) << fd.error().message();
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0666U);
  ::unlink(path.c_str());
  auto fd2 = ListenUnix(path, 0600);  // and under a permissive umask
  ASSERT_TRUE(fd2) << fd2.error().message();
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);
  EXPECT_EQ(g_chmod_calls, 0);
  ::unlink(path.c_str());
}

TEST(ListenUnixTest, ASymlinkAtThePathIsNotFollowed) {
  const std::string target = core::testing::TempPath("target");
  const std::string path = core::testing::TempPath("link.sock");
  UniqueFd file(::open(target.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
  ASSERT_TRUE(file);
  ASSERT_EQ(::fchmod(file.get(), 0644), 0);
  ::unlink(path.c_str());
  ASSERT_EQ(::symlink(target.c_str(), path.c_str()), 0);
  auto fd = ListenUnix(path, 0666);
  EXPECT_FALSE(fd);
  struct stat st {};
  ASSERT_EQ(::stat(target.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644U);
  ::unlink(path.c_str());
  ::unlink(target.c_str());
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
