#include "libcore/channel/deadline_stream.h"

#include <algorithm>
#include <cstring>

#include "libcore/channel/frame_format.h"

namespace core::channel {

bool FrameTracker::Feed(std::string_view data) {
  bool started = false;
  while (!data.empty()) {
    if (header_got_ == 0) {  // the first byte of a new frame
      started = true;
      received_ = 0;
      total_ = 0;
    }
    if (header_got_ < kHeaderSize) {
      const size_t take = std::min(kHeaderSize - header_got_, data.size());
      std::memcpy(header_ + header_got_, data.data(), take);
      header_got_ += take;
      received_ += take;
      data.remove_prefix(take);
      if (header_got_ == kHeaderSize) {
        total_ = FrameSize(HeaderLength(header_));
        remaining_ = total_ - kHeaderSize;
      }
      continue;
    }
    const auto take = static_cast<size_t>(std::min<uint64_t>(remaining_, data.size()));
    remaining_ -= take;
    received_ += take;
    data.remove_prefix(take);
    if (remaining_ == 0) header_got_ = 0;  // complete
  }
  return started && in_frame();
}

int64_t DeadlineStream::FrameLeftMs() const {
  const int64_t deadline = deadline_ns_.load(std::memory_order_relaxed);
  if (deadline == 0) return -1;
  const auto now =
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
  // Rounded up: a wait of this long ends at or after the deadline.
  return std::max<int64_t>(0, (deadline - now + 999'999) / 1'000'000);
}

std::optional<std::chrono::milliseconds> DeadlineStream::FrameTimeLeft() const {
  const int64_t left = FrameLeftMs();
  if (left < 0) return std::nullopt;
  return std::chrono::milliseconds(left);
}

namespace {

std::string Duration(int ms) {
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

}  // namespace

Error DeadlineStream::FrameExpired() const {
  const std::string what = tracker_.total() == 0
                               ? std::to_string(tracker_.received()) + " of 5 header bytes"
                               : std::to_string(tracker_.received()) + " of " +
                                     std::to_string(tracker_.total()) + " bytes";
  return Error::Limit("frame timeout: " + inner_.PeerName() + " sent " + what + " of a frame in " +
                      Duration(limits_.frame_ms));
}

Error DeadlineStream::IdleExpired() const {
  return Error::Limit("idle timeout: nothing from " + inner_.PeerName() + " for " +
                      Duration(limits_.idle_ms));
}

Result<size_t> DeadlineStream::Read(std::span<char> buf) {
  // The nearer of the two limits bounds the wait.
  const int64_t frame_left = FrameLeftMs();
  int64_t wait = frame_left;
  bool frame_bound = frame_left >= 0;
  if (limits_.idle_ms > 0 && (wait < 0 || limits_.idle_ms < wait)) {
    wait = limits_.idle_ms;
    frame_bound = false;
  }
  if (wait >= 0) {
    auto ready = inner_.WaitReadable(static_cast<int>(std::min<int64_t>(wait, INT32_MAX)));
    if (!ready) return Fail(ready.error());
    if (!*ready) return Fail(frame_bound ? FrameExpired() : IdleExpired());
  }
  auto n = inner_.Read(buf);
  if (!n || *n == 0) return n;
  if (limits_.frame_ms <= 0) return n;
  if (tracker_.Feed(std::string_view(buf.data(), *n))) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(limits_.frame_ms);
    deadline_ns_.store(
        std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count(),
        std::memory_order_relaxed);
  } else if (!tracker_.in_frame()) {
    deadline_ns_.store(0, std::memory_order_relaxed);
  } else if (FrameLeftMs() == 0) {
    // More of the frame came, but late: judged when read, so a daemon slow to read (busy
    // workers) does not cut a peer whose bytes are all there.
    return Fail(FrameExpired());
  }
  return n;
}

Result<bool> DeadlineStream::WaitReadable(int timeout_ms) {
  const int64_t frame_left = FrameLeftMs();
  if (frame_left >= 0 && (timeout_ms < 0 || timeout_ms >= frame_left)) {
    auto ready = inner_.WaitReadable(static_cast<int>(std::min<int64_t>(frame_left, INT32_MAX)));
    if (!ready || *ready) return ready;
    return Fail(FrameExpired());
  }
  return inner_.WaitReadable(timeout_ms);
}

}  // namespace core::channel
