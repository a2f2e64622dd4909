// The idle and whole-frame limits of DeadlineStream over an in-memory stream, and the frame
// boundaries FrameTracker follows (any split, several frames per read, empty frames).

#include "libcore/channel/deadline_stream.h"

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "libcore/channel/frame_format.h"
#include "libcore/channel/frame_writer.h"
#include "libcore/transport/memory_stream.h"

namespace core::channel {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::string Frame(std::string_view payload) {
  std::string out;
  EXPECT_TRUE(AppendFrame(payload, &out, Compression::kNever));
  return out;
}

TEST(FrameTrackerTest, FollowsFramesAcrossAnySplit) {
  const std::string stream = Frame("hello") + Frame("") + Frame(std::string(300, 'x'));
  for (size_t step = 1; step <= stream.size(); ++step) {
    FrameTracker t;
    size_t done = 0;
    for (size_t pos = 0; pos < stream.size(); pos += step) {
      const std::string_view piece = std::string_view(stream).substr(pos, step);
      t.Feed(piece);
      done = pos + piece.size();
      // In a frame exactly when the bytes so far end inside one.
      const bool boundary = done == 11 || done == 17 || done == stream.size();
      ASSERT_EQ(t.in_frame(), !boundary) << "step " << step << " at " << done;
    }
  }
}

TEST(FrameTrackerTest, ReportsAStartOnlyWhenAFrameIsLeftIncomplete) {
  FrameTracker t;
  const std::string a = Frame("abc");
  EXPECT_FALSE(t.Feed(a));  // started and finished
  EXPECT_FALSE(t.in_frame());
  EXPECT_TRUE(t.Feed(a.substr(0, 2)));  // started, incomplete
  EXPECT_EQ(t.received(), 2u);
  EXPECT_EQ(t.total(), 0u);              // header not complete yet
  EXPECT_FALSE(t.Feed(a.substr(2, 4)));  // same frame continues
  EXPECT_EQ(t.received(), 6u);
  EXPECT_EQ(t.total(), a.size());
  // The end of this frame and the start of the next in one piece: a new start.
  EXPECT_TRUE(t.Feed(a.substr(6) + a.substr(0, 1)));
  EXPECT_EQ(t.received(), 1u);
}

TEST(FrameTrackerTest, LengthsUpToFourGigabytes) {
  FrameTracker t;
  t.Feed(std::string("\xff\xff\xff\xff\x00", 5));
  EXPECT_TRUE(t.in_frame());
  EXPECT_EQ(t.total(), uint64_t{0xffffffff} + kHeaderSize + kTrailerSize);
}

struct Pair {
  Pair() {
    auto p = transport::MemoryStream::Pair();
    peer = std::move(p.first);
    ours = std::move(p.second);
  }
  std::unique_ptr<transport::MemoryStream> peer;
  std::unique_ptr<transport::MemoryStream> ours;
};

TEST(DeadlineStreamTest, TricklingPeerIsCutAtTheFrameDeadline) {
  Pair p;
  DeadlineStream s(*p.ours, {.idle_ms = 0, .frame_ms = 300});
  const std::string frame = Frame(std::string(100, 'y'));
  std::jthread trickler([&](std::stop_token stop) {
    for (size_t i = 0; i < frame.size() && !stop.stop_requested(); ++i) {
      (void)p.peer->WriteAll(frame.substr(i, 1));
      std::this_thread::sleep_for(milliseconds(20));
    }
  });
  const auto t0 = Clock::now();
  char buf[64];
  Result<size_t> n = size_t{0};
  size_t got = 0;
  while ((n = s.Read(buf)) && *n > 0) got += *n;
  const auto took = Clock::now() - t0;
  trickler.request_stop();
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code(), Error::Code::kLimit);
  // The count includes what the failing read took, late, at the deadline (a loaded machine may
  // have let a few bytes gather).
  const std::string message = n.error().message();
  size_t sent = 0;
  ASSERT_EQ(std::sscanf(message.c_str(),
                        "frame timeout: memory sent %zu of 106 bytes of a frame in 300 ms", &sent),
            1)
      << message;
  EXPECT_GE(sent, got);
  EXPECT_LE(sent, got + 5);
  EXPECT_TRUE(message.ends_with(" of 106 bytes of a frame in 300 ms")) << message;
  EXPECT_GE(took, milliseconds(280));
  EXPECT_LT(took, milliseconds(1500));
  EXPECT_GT(got, 5u);
  EXPECT_LT(got, frame.size());
}

TEST(DeadlineStreamTest, SilenceInsideAHeaderIsCutToo) {
  Pair p;
  DeadlineStream s(*p.ours, {.idle_ms = 0, .frame_ms = 200});
  ASSERT_TRUE(p.peer->WriteAll(std::string("\0\0", 2)));
  char buf[16];
  auto n = s.Read(buf);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 2u);
  auto left = s.FrameTimeLeft();
  ASSERT_TRUE(left.has_value());
  EXPECT_LE(*left, milliseconds(200));
  n = s.Read(buf);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().message(),
            "frame timeout: memory sent 2 of 5 header bytes of a frame in 200 ms");
}

TEST(DeadlineStreamTest, WholeFramesInTimeAndSilenceBetweenThemAreFine) {
  Pair p;
  DeadlineStream s(*p.ours, {.idle_ms = 0, .frame_ms = 200});
  // A large frame in pieces, well within the limit, then silence longer than the limit.
  const std::string frame = Frame(std::string(1 << 20, 'z'));
  std::thread writer([&] {
    for (size_t pos = 0; pos < frame.size(); pos += 64 << 10) {
      (void)p.peer->WriteAll(std::string_view(frame).substr(pos, 64 << 10));
    }
  });
  std::string got;
  std::string buf(100 << 10, '\0');
  while (got.size() < frame.size()) {
    auto n = s.Read(buf);
    ASSERT_TRUE(n) << n.error().message();
    ASSERT_GT(*n, 0u);
    got.append(buf.data(), *n);
  }
  writer.join();
  EXPECT_EQ(got, frame);
  EXPECT_FALSE(s.FrameTimeLeft().has_value());
  // Between frames only the caller's own timeout counts: a plain timeout, no error.
  auto ready = s.WaitReadable(400);
  ASSERT_TRUE(ready);
  EXPECT_FALSE(*ready);
}

TEST(DeadlineStreamTest, WaitReadableEndsAtTheFrameDeadlineWithTheLimitError) {
  Pair p;
  DeadlineStream s(*p.ours, {.idle_ms = 0, .frame_ms = 200});
  ASSERT_TRUE(p.peer->WriteAll(Frame("abc").substr(0, 7)));
  char buf[16];
  ASSERT_TRUE(s.Read(buf));
  // A shorter wait than the deadline is an ordinary timeout...
  auto ready = s.WaitReadable(20);
  ASSERT_TRUE(ready);
  EXPECT_FALSE(*ready);
  // ... a longer one (or none) ends at the deadline with the limit's error.
  ready = s.WaitReadable(-1);
  ASSERT_FALSE(ready);
  EXPECT_EQ(ready.error().code(), Error::Code::kLimit);
  EXPECT_EQ(s.FrameTimeLeft(), milliseconds(0));
}

TEST(DeadlineStreamTest, BytesAlreadyThereWhenReadLateStillCount) {
  // A daemon too busy to read in time does not cut a peer that finished its frame in time; one
  // whose frame is still incomplete when read after the deadline is cut.
  Pair p;
  DeadlineStream s(*p.ours, {.idle_ms = 0, .frame_ms = 100});
  const std::string frame = Frame("abcdef");
  ASSERT_TRUE(p.peer->WriteAll(frame.substr(0, 3)));
  char buf[64];
  ASSERT_TRUE(s.Read(buf));
  ASSERT_TRUE(p.peer->WriteAll(frame.substr(3) + frame.substr(0, 2)));
  std::this_thread::sleep_for(milliseconds(200));
  auto n = s.Read(buf);  // completes the late frame, starts a new one: fine
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(*n, frame.size() - 3 + 2);
  ASSERT_TRUE(p.peer->WriteAll(frame.substr(2, 1)));
  std::this_thread::sleep_for(milliseconds(200));
  n = s.Read(buf);  // one more byte, the frame still incomplete, after its deadline
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().message(),
            "frame timeout: memory sent 3 of 5 header bytes of a frame in 100 ms");
}

TEST(DeadlineStreamTest, IdleLimitCatchesSilenceBetweenFrames) {
  Pair p;
  DeadlineStream s(*p.ours, {.idle_ms = 150, .frame_ms = 1000});
  const auto t0 = Clock::now();
  char buf[16];
  auto n = s.Read(buf);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().message(), "idle timeout: nothing from memory for 150 ms");
  EXPECT_GE(Clock::now() - t0, milliseconds(140));
}

TEST(DeadlineStreamTest, TheNearerLimitDecidesInsideAFrame) {
  Pair p;
  DeadlineStream s(*p.ours, {.idle_ms = 100, .frame_ms = 5000});
  ASSERT_TRUE(p.peer->WriteAll(std::string("\0\0\0", 3)));
  char buf[16];
  ASSERT_TRUE(s.Read(buf));
  auto n = s.Read(buf);  // silence: the idle limit (100 ms) comes before the frame's (5 s)
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().message(), "idle timeout: nothing from memory for 100 ms");
}

TEST(DeadlineStreamTest, OffPassesEverythingThrough) {
  Pair p;
  DeadlineStream s(*p.ours, {});
  ASSERT_TRUE(p.peer->WriteAll(std::string("\0\0", 2)));
  char buf[16];
  auto n = s.Read(buf);
  ASSERT_TRUE(n);
  EXPECT_FALSE(s.FrameTimeLeft().has_value());
  auto ready = s.WaitReadable(50);
  ASSERT_TRUE(ready);
  EXPECT_FALSE(*ready);
  p.peer->Shutdown();
  n = s.Read(buf);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 0u);  // end of stream passes through
}

}  // namespace
}  // namespace core::channel
