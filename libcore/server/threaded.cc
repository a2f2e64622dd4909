// Mode "threaded": one thread per connection, as the reference's ThreadedServer. Every thread is
// joined: finished ones when the accept loop next wakes (at the next connection, or once
// kReapBatch have finished), the rest when the server stops.

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <list>
#include <mutex>
#include <system_error>
#include <thread>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "libcore/base/unique_fd.h"
#include "libcore/server/modes.h"
#include "libcore/transport/socket_stream.h"

namespace core::server {
namespace {

class ThreadedServer final : public Server {
 public:
  ThreadedServer(transport::TcpListener listener, ConnectionHandler handler, ServerHooks hooks,
                 ServerOptions options)
      : listener_(std::move(listener)),
        handler_(std::move(handler)),
        hooks_(std::move(hooks)),
        options_(options),
        wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

  ~ThreadedServer() override {
    Stop();
    // Run() joined everything that ended in time. A thread still running user code is waited
    // for here: no thread outlives the server (callers that cannot wait exit the process first).
    std::list<Conn> left;
    {
      std::lock_guard<std::mutex> lock(mu_);
      left.swap(conns_);
    }
    for (Conn& c : left) {
      c.stream->Shutdown();
      if (c.thread.joinable()) c.thread.join();
    }
  }

  Result<size_t> Run() override;
  void Stop() override {
    stop_ = true;
    Wake();
  }
  const transport::SocketAddress& local_address() const override {
    return listener_.local_address();
  }

 private:
  struct Conn {
    std::unique_ptr<transport::SocketStream> stream;
    std::thread thread;
    bool done = false;  // guarded by mu_
  };

  void Wake() {
    const uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof(one));
  }
  void DrainWake() {
    uint64_t n = 0;
    (void)!::read(wake_.get(), &n, sizeof(n));
  }
  void Reap();  // joins finished connection threads
  void Spawn(transport::Accepted accepted);
  size_t StopConnections();

  transport::TcpListener listener_;
  ConnectionHandler handler_;
  ServerHooks hooks_;
  const ServerOptions options_;
  UniqueFd wake_;
  std::atomic<bool> stop_{false};

  std::mutex mu_;
  std::condition_variable cv_;
  std::list<Conn> conns_;  // guarded by mu_
  // Finished threads not joined yet; past kReapBatch the last one wakes the accept loop.
  static constexpr size_t kReapBatch = 16;
  size_t unreaped_ = 0;  // guarded by mu_
};

Result<size_t> ThreadedServer::Run() {
  if (!wake_) {
    return Fail(Error::Io("eventfd: " + std::error_code(errno, std::generic_category()).message()));
  }
  Status failure;
  while (!stop_) {
    pollfd fds[3] = {{listener_.fd(), POLLIN, 0}, {wake_.get(), POLLIN, 0}, {-1, POLLIN, 0}};
    nfds_t n = 2;
    if (options_.stop_fd >= 0) fds[n++] = {options_.stop_fd, POLLIN, 0};
    const int rc = ::poll(fds, n, -1);
    if (rc < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      failure = Fail(Error::Io("poll: " + std::error_code(err, std::generic_category()).message()));
      break;
    }
    if (n == 3 && fds[2].revents != 0) break;  // a stop signal: the caller reads the signalfd
    if (fds[1].revents != 0) DrainWake();
    Reap();
    if (stop_) break;
    if (fds[0].revents == 0) continue;
    auto accepted = listener_.Accept();
    if (!accepted) {
      // EMFILE and friends: keep serving the connections we have, and retry later.
      if (hooks_.on_accept_error) hooks_.on_accept_error(accepted.error());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    if (!*accepted) continue;
    Spawn(std::move(**accepted));
  }
  const size_t stuck = StopConnections();
  if (!failure) return Fail(failure.error());
  return stuck;
}

void ThreadedServer::Spawn(transport::Accepted accepted) {
  if (hooks_.on_accepted) hooks_.on_accepted(accepted.peer, accepted.fd.get());
  const transport::SocketAddress peer = accepted.peer;
  std::lock_guard<std::mutex> lock(mu_);
  Conn& c = conns_.emplace_back();
  c.stream = std::make_unique<transport::SocketStream>(std::move(accepted.fd), peer.ToString());
  c.thread = std::thread([this, &c, peer] {
    try {
      handler_(*c.stream, peer);
    } catch (...) {  // handlers catch at their own top level; nothing may unwind out of a thread
    }
    c.stream->Shutdown();
    bool wake = false;
    {
      std::lock_guard<std::mutex> done_lock(mu_);
      c.done = true;
      wake = ++unreaped_ >= kReapBatch;
    }
    cv_.notify_all();
    // The accept loop joins finished threads when it next wakes (each accept), so a thread
    // that ends does not wake it (a wake-up per connection costs the accept thread a context
    // switch) unless many are waiting to be joined.
    if (wake) Wake();
  });
}

void ThreadedServer::Reap() {
  std::list<Conn> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = conns_.begin(); it != conns_.end();) {
      auto next = std::next(it);
      if (it->done) finished.splice(finished.end(), conns_, it);
      it = next;
    }
    unreaped_ = 0;
  }
  for (Conn& c : finished) c.thread.join();  // they are done: joins at once
}

size_t ThreadedServer::StopConnections() {
  std::unique_lock<std::mutex> lock(mu_);
  for (Conn& c : conns_) c.stream->Shutdown();
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.stop_grace_ms);
  cv_.wait_until(lock, deadline, [this] {
    for (const Conn& c : conns_) {
      if (!c.done) return false;
    }
    return true;
  });
  size_t stuck = 0;
  for (auto it = conns_.begin(); it != conns_.end();) {
    if (it->done) {
      it->thread.join();
      it = conns_.erase(it);
    } else {
      ++stuck;
      ++it;
    }
  }
  // Threads still running keep their Conn (and stream) alive: the process must exit.
  return stuck;
}

}  // namespace

std::unique_ptr<Server> MakeThreadedServer(transport::TcpListener listener,
                                           ConnectionHandler handler, ServerHooks hooks,
                                           ServerOptions options) {
  return std::make_unique<ThreadedServer>(std::move(listener), std::move(handler), std::move(hooks),
                                          options);
}

}  // namespace core::server
