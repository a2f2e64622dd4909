#pragma once

// A Stream over a connected socket (TCP or Unix). TCP sockets get TCP_NODELAY, and what was read
// is ACKed at once (TCP_QUICKACK) before the stream waits for more without having written since:
// a reply carries the ACK anyway. Each WriteAll() is one writev() where the kernel takes it all,
// so a frame leaves in one segment.

#include <atomic>
#include <string>

#include "libcore/base/unique_fd.h"
#include "libcore/transport/stream.h"

namespace core::transport {

// Asks the kernel to ACK what has arrived on TCP socket `fd` at once (TCP_QUICKACK).
void AckNow(int fd);

class SocketStream : public Stream {
 public:
  // Takes ownership of a connected, blocking socket. `peer_name` is used in log lines.
  SocketStream(UniqueFd fd, std::string peer_name);

  Result<size_t> Read(std::span<char> buf) override;
  Result<bool> WaitReadable(int timeout_ms) override;
  Status WriteAll(std::span<const std::string_view> parts) override;
  using Stream::WriteAll;
  void Shutdown() override;
  std::string PeerName() const override { return peer_name_; }

  int fd() const { return fd_.get(); }

 private:
  Error IoError(const char* what, int err) const;

  UniqueFd fd_;
  std::string peer_name_;
  bool tcp_ = false;  // TCP (not a Unix socket or a pipe)
  // Bytes were read since the last write, so the peer may be waiting for their ACK (its Nagle
  // holds a small frame until then). Cleared before a write: the segment carries the ACK.
  std::atomic<bool> unacked_{false};
  std::atomic<bool> shut_down_{false};
};

}  // namespace core::transport
