#pragma once

// Time limits on what a peer sends, as a Stream wrapper that sees every byte read:
//   idle   the peer sends nothing at all for `idle_ms` while a read waits;
//   frame  once the first byte of a frame has been read, the rest of that frame (header, payload
//          and trailer, docs/protocol.md §2) must be read within `frame_ms`. This catches a peer
//          that trickles a byte now and then, which the idle limit never does.
// Either limit is off at 0. A broken limit is an Error::Limit naming the peer; the connection
// above treats it as fatal. Reads and waits are made by one thread at a time (the connection's
// read role); FrameTimeLeft() may be asked from another thread between them.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "libcore/base/result.h"
#include "libcore/transport/stream.h"

namespace core::channel {

// Follows frame boundaries in a byte stream without keeping the bytes.
class FrameTracker {
 public:
  // Accounts for `data`, the next bytes received. Returns true when a frame started within
  // them and is still incomplete at their end (a new deadline starts).
  bool Feed(std::string_view data);
  // A frame has started and is not complete.
  bool in_frame() const { return header_got_ > 0; }
  // Bytes of the current frame received so far, and its whole size once the header is known
  // (0 before).
  uint64_t received() const { return received_; }
  uint64_t total() const { return total_; }

 private:
  unsigned char header_[5] = {};
  size_t header_got_ = 0;   // header bytes of the current frame; 0 between frames
  uint64_t remaining_ = 0;  // payload + trailer bytes still to come, once the header is complete
  uint64_t received_ = 0;
  uint64_t total_ = 0;
};

class DeadlineStream final : public transport::Stream {
 public:
  struct Limits {
    int idle_ms = 0;   // 0: off
    int frame_ms = 0;  // 0: off
  };
  // `inner` must outlive this wrapper; it is not owned.
  DeadlineStream(transport::Stream& inner, Limits limits) : inner_(inner), limits_(limits) {}

  Result<size_t> Read(std::span<char> buf) override;
  // Bounded by the frame deadline while a frame is in progress: a deadline passing first is the
  // frame limit's error, not a plain timeout.
  Result<bool> WaitReadable(int timeout_ms) override;
  Status WriteAll(std::span<const std::string_view> parts) override {
    return inner_.WriteAll(parts);
  }
  using Stream::WriteAll;
  void ExpectBytes(size_t n) override { inner_.ExpectBytes(n); }
  void Shutdown() override { inner_.Shutdown(); }
  std::string PeerName() const override { return inner_.PeerName(); }
  int fd() const override { return inner_.fd(); }

  // Time left for the frame in progress (zero when already past), or nullopt when no frame is in
  // progress or the frame limit is off. For an event loop that waits for the peer itself.
  std::optional<std::chrono::milliseconds> FrameTimeLeft() const;

 private:
  using Clock = std::chrono::steady_clock;
  Error FrameExpired() const;
  Error IdleExpired() const;
  // Milliseconds to the frame deadline (at least 0), or -1 without one.
  int64_t FrameLeftMs() const;

  transport::Stream& inner_;
  const Limits limits_;
  FrameTracker tracker_;
  // Nanoseconds since the clock's epoch; 0 when no frame is in progress.
  std::atomic<int64_t> deadline_ns_{0};
};

}  // namespace core::channel
