#pragma once

// A Stream over a connected socket (TCP or Unix). TCP sockets get TCP_NODELAY, and what was read
// is ACKed at once (TCP_QUICKACK) before the stream waits for more without having written since:
// a reply carries the ACK anyway. Each WriteAll() is one writev() where the kernel takes it all,
// so a frame leaves in one segment. While the reader expects a large rest of a frame
// (ExpectBytes()), a TCP socket's low-water mark (SO_RCVLOWAT) is set to it, so the stream wakes
// once for it rather than once for each piece the peer writes.

#include <atomic>
#include <string>

#include "libcore/base/unique_fd.h"
#include "libcore/transport/stream.h"

namespace core::transport {

// Asks the kernel to ACK what has arrived on TCP socket `fd` at once (TCP_QUICKACK).
void AckNow(int fd);

// Sets (or with `on` false, clears) TCP_NODELAY on `fd`; false when it is not a TCP socket. Set on
// a listening socket, it is inherited by every connection accepted from it (Linux copies it into
// the accepted socket), so a SocketStream over one of those need not set it again
// (NoDelay::kInherited): one system call less per connection.
bool SetNoDelay(int fd, bool on = true);

class SocketStream : public Stream {
 public:
  enum class NoDelay {
    kSet,        // sets TCP_NODELAY when the socket is TCP (and learns whether it is)
    kInherited,  // the socket is TCP and has TCP_NODELAY already (accepted from a listener that
                 // has it: see SetNoDelay())
  };

  // Takes ownership of a connected, blocking socket. `peer_name` is used in log lines.
  SocketStream(UniqueFd fd, std::string peer_name, NoDelay nodelay = NoDelay::kSet);

  Result<size_t> Read(std::span<char> buf) override;
  Result<bool> WaitReadable(int timeout_ms) override;
  void ExpectBytes(size_t n) override;
  Status WriteAll(std::span<const std::string_view> parts) override;
  using Stream::WriteAll;
  void Shutdown() override;
  std::string PeerName() const override { return peer_name_; }

  int fd() const override { return fd_.get(); }

  // The highest low-water mark set (from kExpectBytesFrom expected bytes).
  static constexpr size_t kLowWaterMax = size_t{1} << 20;

 private:
  Error IoError(const char* what, int err) const;

  UniqueFd fd_;
  std::string peer_name_;
  bool tcp_ = false;  // TCP (not a Unix socket or a pipe)
  // Bytes were read since the last write, so the peer may be waiting for their ACK (its Nagle
  // holds a small frame until then). Cleared before a write: the segment carries the ACK.
  std::atomic<bool> unacked_{false};
  std::atomic<bool> shut_down_{false};
  // The socket's SO_RCVLOWAT as set by ExpectBytes() (1: the kernel's default). Used by the
  // reading thread only.
  int low_water_ = 1;
};

}  // namespace core::transport
