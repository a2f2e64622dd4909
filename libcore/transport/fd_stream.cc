#include "libcore/transport/fd_stream.h"

#include <cerrno>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace core::transport {
namespace {

Error IoError(const std::string& what, const std::string& peer, int err) {
  return Error::Io(what + " " + peer + ": " + ErrnoText(err));
}

}  // namespace

FdStream::FdStream(UniqueFd in, UniqueFd out, std::string peer_name)
    : in_(std::move(in)), out_(std::move(out)), peer_name_(std::move(peer_name)) {}

Result<size_t> FdStream::Read(std::span<char> buf) {
  for (;;) {
    if (shut_) return size_t{0};
    const ssize_t n = ::read(in_.get(), buf.data(), buf.size());
    if (n >= 0) return static_cast<size_t>(n);
    const int err = errno;
    if (err == EINTR) continue;
    if (err == ECONNRESET) return size_t{0};
    if (err == EAGAIN) {  // an inherited non-blocking descriptor
      pollfd p{in_.get(), POLLIN, 0};
      (void)::poll(&p, 1, -1);
      continue;
    }
    return Fail(IoError("read from", peer_name_, err));
  }
}

Result<bool> FdStream::WaitReadable(int timeout_ms) {
  for (;;) {
    if (shut_) return true;
    pollfd p{in_.get(), POLLIN, 0};
    const int rc = ::poll(&p, 1, timeout_ms);
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno == EINTR) continue;
    return Fail(IoError("poll on", peer_name_, errno));
  }
}

Status FdStream::WriteAll(std::span<const std::string_view> parts) {
  for (std::string_view p : parts) {
    while (!p.empty()) {
      const ssize_t n = ::write(out_fd(), p.data(), p.size());
      if (n < 0) {
        const int err = errno;
        if (err == EINTR) continue;
        if (err == EAGAIN) {
          pollfd pf{out_fd(), POLLOUT, 0};
          (void)::poll(&pf, 1, -1);
          continue;
        }
        return Fail(IoError("write to", peer_name_, err));
      }
      p.remove_prefix(static_cast<size_t>(n));
    }
  }
  return {};
}

void FdStream::Shutdown() {
  shut_ = true;
  (void)::shutdown(in_.get(), SHUT_RDWR);  // ENOTSOCK on pipes: harmless
}

}  // namespace core::transport
