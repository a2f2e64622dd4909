// ClassicSession over an in-memory stream pair, with an object space that records what the
// session does to it: the lines every mode logs, and how each kind of end is reported.

#include "daemons/classicd/session.h"

#include <atomic>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include "libcore/transport/memory_stream.h"

namespace classicd {
namespace {

using core::transport::MemoryStream;

class FakeSpace : public core::protocol::ObjectSpace {
 public:
  explicit FakeSpace(std::atomic<int>* disconnects) : disconnects_(disconnects) {}
  core::protocol::Outcome Handle(core::protocol::Handler, const core::brine::Value&) override {
    return core::protocol::Outcome::Reply(core::brine::Value());
  }
  void OnDisconnect() override {
    ++*disconnects_;
    lent_ = 0;
  }
  size_t LocalObjectCount() const override { return lent_; }

 private:
  std::atomic<int>* disconnects_;
  size_t lent_ = 2;
};

// A logger writing "level:message" lines into a string.
class CapturedLog {
 public:
  CapturedLog() {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    auto impl = std::make_shared<spdlog::logger>("SLAVE/test", sink);
    impl->set_pattern("%l:%v");
    impl->set_level(spdlog::level::debug);
    log_ = ConnLog(core::log::Logger(impl), Mode::kThreaded);
  }
  const ConnLog& log() const { return log_; }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  ConnLog log_;
};

class SessionTest : public ::testing::Test {
 protected:
  SessionTest() {
    auto pair = MemoryStream::Pair();
    client_ = std::move(pair.first);
    server_ = std::move(pair.second);
    make_space_ = [this](core::protocol::Connection&, const SpaceContext&) {
      return std::make_unique<FakeSpace>(&disconnects_);
    };
  }

  const Peer peer_ = Peer::Named("peer");
  std::unique_ptr<MemoryStream> client_;
  std::unique_ptr<MemoryStream> server_;
  std::atomic<int> disconnects_{0};
  SpaceFactory make_space_;
  CapturedLog log_;
  SessionSettings settings_;
};

TEST_F(SessionTest, RunLogsWelcomeTheEndAndGoodbye) {
  client_->CloseWrite();  // the client leaves between frames
  ClassicSession::Run(*server_, peer_, 7, settings_, make_space_, log_.log());
  EXPECT_EQ(log_.text(),
            "info:welcome peer\n"
            "debug:connection peer ended: end of stream\n"
            "debug:connection peer: 2 objects lent at disconnect, 0 after release\n"
            "info:goodbye peer\n");
  EXPECT_EQ(disconnects_, 1);
}

TEST_F(SessionTest, AnObjectSpaceThatCannotBeMadeClosesOnlyThatConnection) {
  SpaceFactory failing = [](core::protocol::Connection&,
                            const SpaceContext&) -> std::unique_ptr<FakeSpace> {
    throw std::runtime_error("no space");
  };
  ClassicSession::Run(*server_, peer_, 7, settings_, failing, log_.log());
  EXPECT_EQ(log_.text(),
            "info:welcome peer\n"
            "error:connection peer closed: internal error: no space\n"
            "info:goodbye peer\n");
}

TEST_F(SessionTest, ShutdownFromAnotherThreadEndsServe) {
  ClassicSession session(*server_, peer_, 1, settings_, make_space_, log_.log());
  std::thread serving([&] { session.Serve(); });
  session.Shutdown();
  serving.join();
  session.Finish();
  // The stream ends under the connection, which sees the end of stream.
  EXPECT_EQ(log_.text().rfind("debug:connection peer ended: end of stream\n", 0), 0u)
      << log_.text();
  EXPECT_EQ(disconnects_, 1);
}

TEST_F(SessionTest, ServeAvailableReportsTheEndToFinish) {
  ClassicSession session(*server_, peer_, 1, settings_, make_space_, log_.log());
  client_->CloseWrite();
  EXPECT_FALSE(session.ServeAvailable());
  session.Finish();
  EXPECT_EQ(log_.text(),
            "debug:connection peer ended: end of stream\n"
            "debug:connection peer: 2 objects lent at disconnect, 0 after release\n");
}

TEST_F(SessionTest, AFrameThatStallsBreaksTheFrameLimit) {
  settings_.limits.frame_ms = 50;
  ClassicSession session(*server_, peer_, 1, settings_, make_space_, log_.log());
  EXPECT_TRUE(session.FrameTimeLeft() == std::nullopt);             // no frame begun
  ASSERT_TRUE(client_->WriteAll(std::string_view("\x00\x00", 2)));  // a header begun, then nothing
  session.Serve();
  session.Finish();
  EXPECT_EQ(log_.text().rfind("error:connection peer closed: ", 0), 0u) << log_.text();
}

TEST(PeerTest, Spellings) {
  sockaddr_storage ss{};
  auto* in = reinterpret_cast<sockaddr_in*>(&ss);
  in->sin_family = AF_INET;
  in->sin_port = htons(5000);
  in->sin_addr.s_addr = htonl(0x7f000001);
  const Peer p = Peer::FromAddress({reinterpret_cast<const sockaddr*>(&ss), sizeof(sockaddr_in)});
  EXPECT_EQ(p.repr, "('127.0.0.1', 5000)");
  EXPECT_EQ(p.host, "127.0.0.1");
  EXPECT_EQ(p.text, "127.0.0.1:5000");
  ss.ss_family = AF_UNIX;
  EXPECT_EQ(Peer::FromAddress({reinterpret_cast<const sockaddr*>(&ss), sizeof(sa_family_t)}).repr,
            "'unix'");
}

}  // namespace
}  // namespace classicd
