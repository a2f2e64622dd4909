#pragma once

// A Stream over two descriptors that may be pipes, a tty or one socket twice: stdio mode (fd 0
// for reading, fd 1 for writing, moved elsewhere first, docs/embedding.md §1.5) and inetd-style
// sockets. Plain read()/write(), so it works on anything; the descriptors are owned.

#include <atomic>
#include <string>

#include "libcore/base/unique_fd.h"
#include "libcore/transport/stream.h"

namespace core::transport {

class FdStream : public Stream {
 public:
  // `in` and `out` may be the same descriptor (then pass `out` empty and it is shared).
  FdStream(UniqueFd in, UniqueFd out, std::string peer_name);

  Result<size_t> Read(std::span<char> buf) override;
  Result<bool> WaitReadable(int timeout_ms) override;
  Status WriteAll(std::span<const std::string_view> parts) override;
  using Stream::WriteAll;
  // Wakes a blocked reader: shutdown() on a socket, otherwise the read side reports EOF once a
  // later Read() starts (pipes cannot be interrupted from another thread).
  void Shutdown() override;
  std::string PeerName() const override { return peer_name_; }
  int fd() const override { return in_.get(); }  // the input (a socket under inetd)

 private:
  int out_fd() const { return out_ ? out_.get() : in_.get(); }

  UniqueFd in_;
  UniqueFd out_;
  std::string peer_name_;
  std::atomic<bool> shut_{false};
};

}  // namespace core::transport
