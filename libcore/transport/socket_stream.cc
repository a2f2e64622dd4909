#include "libcore/transport/socket_stream.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <vector>

#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

namespace core::transport {

void AckNow(int fd) {
  // Linux clears the flag on its own: this ACKs what is pending now. Fails harmlessly on
  // anything but TCP.
  int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

bool SetNoDelay(int fd, bool on) {
  // Fails harmlessly (ENOTSUP/EOPNOTSUPP) on Unix sockets and pipes.
  int v = on ? 1 : 0;
  return ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, sizeof(v)) == 0;
}

SocketStream::SocketStream(UniqueFd fd, std::string peer_name, NoDelay nodelay)
    : fd_(std::move(fd)), peer_name_(std::move(peer_name)) {
  tcp_ = nodelay == NoDelay::kInherited || SetNoDelay(fd_.get());
}

Error SocketStream::IoError(const char* what, int err) const {
  return Error::Io(std::string(what) + " " + peer_name_ + ": " + ErrnoText(err));
}

void SocketStream::ExpectBytes(size_t n) {
  if (!tcp_) return;
  const int mark = n >= kExpectBytesFrom ? static_cast<int>(std::min(n, kLowWaterMax)) : 1;
  if (mark == low_water_) return;
  // Linux grows the receive buffer to hold the mark. Unset on failure: the reads go on as before.
  if (::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVLOWAT, &mark, sizeof(mark)) == 0) {
    low_water_ = mark;
  }
}

Result<size_t> SocketStream::Read(std::span<char> buf) {
  // rpyc's clients leave Nagle on, so a client sending two small frames in a row (a reply to
  // our callback, then its next request; a DEL, then a request; a frame over 64,000 bytes in two
  // writes) holds the second until the first is ACKed: 40 ms of delayed ACK each time. A reply
  // from us carries the ACK; when we would block without having written since the last read,
  // the ACK goes first. (ACKing after every read cost a pure ACK segment per request: ~13 % of
  // the threaded server's CPU per connection.) Under a raised low-water mark the kernel ACKs
  // each segment at once by itself (the socket holds less than the mark).
  //
  // Under a raised mark the wait is a poll(), which wakes once that many bytes are queued, and
  // recv() only takes them: a blocking recv() that has taken part of the bytes waits for the
  // mark's count of further bytes, more than the rest of the frame.
  bool probe = tcp_ && low_water_ == 1 && unacked_.load(std::memory_order_relaxed);
  for (;;) {
    int flags = 0;
    if (probe) {
      flags = MSG_DONTWAIT;
    } else if (low_water_ > 1) {
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, -1) < 0) {
        const int err = errno;
        if (err == EINTR) continue;
        return Fail(IoError("poll on", err));
      }
      flags = MSG_DONTWAIT;
    }
    const ssize_t n = ::recv(fd_.get(), buf.data(), buf.size(), flags);
    if (n > 0 && tcp_) unacked_.store(true, std::memory_order_relaxed);
    if (n >= 0) return static_cast<size_t>(n);
    const int err = errno;
    if (err == EINTR) continue;
    if ((err == EAGAIN || err == EWOULDBLOCK) && flags != 0) {
      if (probe) {
        unacked_.store(false, std::memory_order_relaxed);
        AckNow(fd_.get());
        probe = false;
      }
      continue;
    }
    // A reset by the peer is an ordinary way for a connection to end.
    if (err == ECONNRESET) return size_t{0};
    return Fail(IoError("read from", err));
  }
}

Result<bool> SocketStream::WaitReadable(int timeout_ms) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
  // Before waiting, ACK what was read (see Read()); a poll that finds data needs none.
  bool ack_first = tcp_ && low_water_ == 1 && unacked_.load(std::memory_order_relaxed);
  for (;;) {
    int wait_ms = -1;
    if (ack_first) {
      wait_ms = 0;
    } else if (timeout_ms >= 0) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      wait_ms = static_cast<int>(std::max<int64_t>(left, 0));
    }
    pollfd p{fd_.get(), POLLIN, 0};
    const int rc = ::poll(&p, 1, wait_ms);
    if (rc > 0) return true;  // readable, hung up, or an error that Read() reports
    if (rc == 0 && ack_first) {
      ack_first = false;
      unacked_.store(false, std::memory_order_relaxed);
      AckNow(fd_.get());
      if (timeout_ms == 0) return false;
      continue;
    }
    if (rc == 0 && timeout_ms != 0 && low_water_ > 1) {
      // Bytes came, fewer than the mark: the peer was not silent for the whole wait (an idle
      // limit counts silence), so they are read as they are, and the mark set again after.
      int queued = 0;
      if (::ioctl(fd_.get(), FIONREAD, &queued) == 0 && queued > 0) {
        ExpectBytes(0);
        return true;
      }
    }
    if (rc == 0) return false;
    const int err = errno;
    if (err == EINTR) continue;
    return Fail(IoError("poll on", err));
  }
}

Status SocketStream::WriteAll(std::span<const std::string_view> parts) {
  // A frame is one to three parts: no allocation for the iovecs then.
  constexpr size_t kInline = 8;
  iovec inline_iov[kInline];
  std::vector<iovec> heap_iov;
  iovec* iov = inline_iov;
  if (parts.size() > kInline) {
    heap_iov.resize(parts.size());
    iov = heap_iov.data();
  }
  size_t count = 0;
  for (std::string_view p : parts) {
    if (!p.empty()) iov[count++] = {const_cast<char*>(p.data()), p.size()};
  }
  // Cleared before the write: bytes read after this are either ACKed by the segment or seen as
  // unACKed by the next Read().
  unacked_.store(false, std::memory_order_relaxed);
  size_t first = 0;
  while (first < count) {
    msghdr msg{};
    msg.msg_iov = iov + first;
    msg.msg_iovlen = std::min<size_t>(count - first, IOV_MAX);
    const ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      return Fail(IoError("write to", err));
    }
    // Skip what was written; a short write resumes mid-iovec.
    auto left = static_cast<size_t>(n);
    while (first < count && left >= iov[first].iov_len) {
      left -= iov[first].iov_len;
      ++first;
    }
    if (left > 0) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return {};
}

void SocketStream::Shutdown() {
  // shutdown() (not close()) so the descriptor stays valid for a reader in another thread: its
  // recv() returns 0. ENOTCONN (already shut down by the peer) is expected. Only the first call
  // does it: a connection's end reaches here from several layers.
  if (shut_down_.exchange(true)) return;
  (void)::shutdown(fd_.get(), SHUT_RDWR);
}

}  // namespace core::transport
