#include "libcore/server/server.h"

#include <array>
#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libcore/base/unique_fd.h"

namespace core::server {
namespace {

UniqueFd Connect(const transport::SocketAddress& addr) {
  UniqueFd fd(::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(::connect(fd.get(), addr.sockaddr_ptr(), addr.length()), 0);
  return fd;
}

std::string ReadSome(int fd) {
  std::array<char, 256> buf{};
  const ssize_t n = ::read(fd, buf.data(), buf.size());
  return n > 0 ? std::string(buf.data(), static_cast<size_t>(n)) : std::string();
}

// Echoes until end of stream.
void Echo(transport::Stream& s, const transport::SocketAddress&) {
  std::array<char, 256> buf{};
  for (;;) {
    auto n = s.Read(buf);
    if (!n || *n == 0) return;
    if (!s.WriteAll(std::string_view(buf.data(), *n))) return;
  }
}

struct Running {
  std::unique_ptr<Server> server;
  std::future<Result<size_t>> run;
};

Running Start(ConnectionHandler handler, ServerHooks hooks = {}, ServerOptions opts = {}) {
  auto listener = transport::TcpListener::Listen("127.0.0.1", 0);
  EXPECT_TRUE(listener.has_value());
  auto server =
      MakeServer(Mode::kThreaded, std::move(*listener), std::move(handler), std::move(hooks), opts);
  EXPECT_TRUE(server.has_value());
  Running r;
  r.server = std::move(*server);
  Server* s = r.server.get();
  r.run = std::async(std::launch::async, [s] { return s->Run(); });
  return r;
}

TEST(ModeTest, ParsesCaseInsensitively) {
  EXPECT_EQ(ParseMode("THREADED").value(), Mode::kThreaded);
  EXPECT_EQ(ParseMode("oneshot").value(), Mode::kOneShot);
  EXPECT_FALSE(ParseMode("threads").has_value());
}

TEST(ModeTest, UnimplementedModesSaySo) {
  auto listener = transport::TcpListener::Listen("127.0.0.1", 0);
  ASSERT_TRUE(listener.has_value());
  auto s = MakeServer(Mode::kForking, std::move(*listener), Echo);
  ASSERT_FALSE(s.has_value());
  EXPECT_NE(s.error().message().find("forking"), std::string::npos);
}

TEST(ThreadedServerTest, ServesClientsConcurrentlyAndStops) {
  std::mutex mu;
  std::vector<int> accepted_ports;
  ServerHooks hooks;
  hooks.on_accepted = [&](const transport::SocketAddress& peer, int fd) {
    EXPECT_GE(fd, 0);
    std::lock_guard<std::mutex> lock(mu);
    accepted_ports.push_back(peer.port());
  };
  Running r = Start(Echo, hooks);
  const auto addr = r.server->local_address();
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 10; ++i) clients.push_back(Connect(addr));
  // All ten are served at once: each gets its echo while the others stay open.
  for (size_t i = 0; i < clients.size(); ++i) {
    const std::string msg = "hello " + std::to_string(i);
    ASSERT_EQ(::write(clients[i].get(), msg.data(), msg.size()), static_cast<ssize_t>(msg.size()));
    EXPECT_EQ(ReadSome(clients[i].get()), msg);
  }
  // A client that leaves is reaped while the server keeps running.
  clients.pop_back();
  r.server->Stop();
  auto stuck = r.run.get();
  ASSERT_TRUE(stuck.has_value()) << stuck.error().ToString();
  EXPECT_EQ(*stuck, 0u);
  // Stopping shut the remaining connections down: the clients see EOF.
  for (auto& c : clients) EXPECT_EQ(ReadSome(c.get()), "");
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(accepted_ports.size(), 10u);
}

TEST(ThreadedServerTest, StopFdStopsTheServer) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  ServerOptions opts;
  opts.stop_fd = rd.get();
  Running r = Start(Echo, {}, opts);
  UniqueFd c = Connect(r.server->local_address());
  ASSERT_EQ(::write(wr.get(), "x", 1), 1);
  ASSERT_EQ(r.run.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(r.run.get().value(), 0u);
}

TEST(ThreadedServerTest, ReportsConnectionsThatOutliveTheGracePeriod) {
  std::atomic<bool> release{false};
  std::atomic<bool> started{false};
  ServerOptions opts;
  opts.stop_grace_ms = 50;
  Running r = Start(
      [&](transport::Stream&, const transport::SocketAddress&) {
        started = true;
        while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      },
      {}, opts);
  UniqueFd c = Connect(r.server->local_address());
  while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  r.server->Stop();
  auto stuck = r.run.get();
  ASSERT_TRUE(stuck.has_value());
  EXPECT_EQ(*stuck, 1u);
  release = true;
  r.server.reset();  // joins the late thread
}

}  // namespace
}  // namespace core::server
