#pragma once

// A byte stream between this process and one peer (a TCP socket, a Unix socket, a pipe pair, or
// an in-memory pair in tests). It knows nothing of frames or messages.

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "libcore/base/result.h"

namespace core::transport {

class Stream {
 public:
  Stream() = default;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  virtual ~Stream() = default;

  // Blocks until at least one byte is available and reads up to buf.size() bytes. Returns 0 at
  // end of stream (the peer closed, or Shutdown() was called).
  virtual Result<size_t> Read(std::span<char> buf) = 0;

  // Waits until Read() would not block (data, end of stream or an error is pending). Returns
  // false when `timeout_ms` passed first; a negative timeout waits forever.
  virtual Result<bool> WaitReadable(int timeout_ms) = 0;

  // Writes every byte of every part, in order, as one write where the kernel allows it (one
  // frame = one call, so small frames leave in one segment with TCP_NODELAY).
  virtual Status WriteAll(std::span<const std::string_view> parts) = 0;
  Status WriteAll(std::string_view data) {
    return WriteAll(std::span<const std::string_view>(&data, 1));
  }

  // Ends the stream in both directions: the peer sees end of stream, and a Read() blocked in
  // another thread returns 0. Safe to call from any thread, any number of times.
  virtual void Shutdown() = 0;

  // Who is on the other side, for log lines ("127.0.0.1:51234", "memory").
  virtual std::string PeerName() const = 0;
};

}  // namespace core::transport
