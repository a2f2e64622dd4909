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

  // A hint from the reader before it reads or waits: it can make no use of what it reads until
  // `n` more bytes have come (the rest of a frame). A stream may then wake its reader once, when
  // they are there, instead of for each piece (SocketStream: SO_RCVLOWAT). Read() still returns
  // as soon as WaitReadable() said it would not block. Ignored by default. Counts below
  // kExpectBytesFrom mean nothing to a stream (a rest that small comes in a read or two), so a
  // caller need not give them, except once after a larger one, to end it.
  virtual void ExpectBytes(size_t n) { (void)n; }
  static constexpr size_t kExpectBytesFrom = size_t{64} << 10;

  // Ends the stream in both directions: the peer sees end of stream, and a Read() blocked in
  // another thread returns 0. Safe to call from any thread, any number of times.
  virtual void Shutdown() = 0;

  // Who is on the other side, for log lines ("127.0.0.1:51234", "memory").
  virtual std::string PeerName() const = 0;

  // The descriptor the stream reads (a socket's, a pipe's), for what a hosted service's code
  // asks of its connection (conn.fileno(), the socket's addresses); -1 when there is none.
  virtual int fd() const { return -1; }
};

}  // namespace core::transport
