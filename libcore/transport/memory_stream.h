#pragma once

// An in-memory, thread-safe pair of connected Streams, for tests: what one end writes the other
// reads. Like a socketpair, but with no descriptors and exact control over end of stream.

#include <memory>
#include <utility>

#include "libcore/transport/stream.h"

namespace core::transport {

class MemoryStream : public Stream {
 public:
  struct Pipe;  // one direction: a byte queue with a lock and a condition variable

  // Two connected ends.
  static std::pair<std::unique_ptr<MemoryStream>, std::unique_ptr<MemoryStream>> Pair();

  MemoryStream(std::shared_ptr<Pipe> in, std::shared_ptr<Pipe> out);
  ~MemoryStream() override;

  Result<size_t> Read(std::span<char> buf) override;
  Result<bool> WaitReadable(int timeout_ms) override;
  Status WriteAll(std::span<const std::string_view> parts) override;
  using Stream::WriteAll;
  // Ends both directions: this end reads EOF, the other end reads EOF after the buffered bytes.
  void Shutdown() override;
  std::string PeerName() const override { return "memory"; }

  // Ends only the direction towards the peer (like shutdown(SHUT_WR)).
  void CloseWrite();

 private:
  std::shared_ptr<Pipe> in_;
  std::shared_ptr<Pipe> out_;
};

}  // namespace core::transport
