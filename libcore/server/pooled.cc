#include "libcore/server/pooled.h"

#include <algorithm>
#include <cerrno>
#include <string>
#include <system_error>
#include <thread>

#include <event2/event.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace core::server {

struct PooledServer::Conn {
  uint64_t id = 0;
  int raw_fd = -1;
  std::mutex mu;                           // the session's teardown against Shutdown()
  std::unique_ptr<Session> session;        // guarded by mu: null until set up, and once ended
  std::unique_ptr<daemon::IoWatch> watch;  // loop thread only
  bool armed = false;                      // loop thread only: waiting for input
  bool frame_wait = false;  // loop thread only: armed until a started frame's deadline
  UniqueFd setup_fd;        // guarded by mu: a dup of the socket while a setup thread runs
};

PooledServer::PooledServer(daemon::EventLoop& loop, Hooks hooks, Options options)
    : loop_(loop),
      hooks_(std::move(hooks)),
      options_(std::move(options)),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      pool_(options_.threads, options_.on_thread_start) {}

PooledServer::~PooledServer() = default;

Status PooledServer::Start() {
  if (!wake_) {
    return Fail(Error::Io("eventfd: " + ErrnoText(errno)));
  }
  wake_watch_ = std::make_unique<daemon::IoWatch>(loop_, wake_.get(), EV_READ, true,
                                                  [this](short) { OnWake(); });
  wake_watch_->Start();
  return {};
}

void PooledServer::Post(uint64_t id, bool ended) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.emplace_back(id, ended);
  }
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
}

void PooledServer::OnWake() {
  uint64_t n = 0;
  (void)!::read(wake_.get(), &n, sizeof n);
  std::vector<std::pair<uint64_t, bool>> events;
  {
    std::lock_guard<std::mutex> lock(mu_);
    events.swap(events_);
  }
  for (const auto& [id, ended] : events) {
    auto it = conns_.find(id);
    if (it == conns_.end()) continue;
    if (ended) {
      conns_.erase(it);
    } else if (!stopping_) {
      Arm(it->second);
    } else {
      // Its step (or setup) ended as Shutdown() began, so Shutdown() found it neither armed nor
      // stepping: it ends on a worker like the others.
      auto keep = it->second;
      pool_.Submit([this, keep] { Step(keep); });
    }
  }
}

void PooledServer::Add(UniqueFd fd, uint64_t id) {
  auto c = std::make_shared<Conn>();
  c->id = id;
  c->raw_fd = fd.get();
  conns_[id] = c;
  auto shared_fd = std::make_shared<UniqueFd>(std::move(fd));
  // The setup (a TLS handshake, the connection's state) is made off the loop.
  std::function<void()> setup = [this, c, shared_fd] {
    auto session = hooks_.open(std::move(*shared_fd), c->id);
    if (!session) {
      Post(c->id, true);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(c->mu);
      c->session = std::move(session);
    }
    Post(c->id, false);
  };
  if (!options_.setup_thread) {
    pool_.Submit(std::move(setup));
    return;
  }
  // A setup that waits on the peer would, on a worker, let `threads` silent or slow peers stall
  // every other client (slowloris): it gets a thread of its own. Shutdown() ends it through a
  // dup of the socket (the original's number may be reused).
  c->setup_fd = UniqueFd(::fcntl(c->raw_fd, F_DUPFD_CLOEXEC, 3));
  std::lock_guard<std::mutex> lock(mu_);
  ++setups_;
  std::thread([this, c, setup = std::move(setup)]() mutable {
    if (options_.on_thread_start) options_.on_thread_start();
    setup();
    {
      std::lock_guard<std::mutex> conn_lock(c->mu);
      c->setup_fd.Reset();
    }
    // Nothing of the connection may outlive the count: the destructor goes on at zero.
    setup = nullptr;
    c.reset();
    std::lock_guard<std::mutex> done(mu_);
    --setups_;
    cv_.notify_all();
  }).detach();
}

void PooledServer::Arm(const std::shared_ptr<Conn>& c) {
  if (!c->watch) {
    const uint64_t id = c->id;
    c->watch =
        std::make_unique<daemon::IoWatch>(loop_, c->raw_fd, EV_READ, false, [this, id](short what) {
          auto it = conns_.find(id);
          if (it == conns_.end()) return;
          auto keep = it->second;
          keep->armed = false;
          // A started frame's deadline: the worker's read reports it (or finds the frame
          // complete after all).
          if ((what & EV_TIMEOUT) != 0 && !keep->frame_wait) {
            if (hooks_.on_idle_timeout) hooks_.on_idle_timeout(id);
            std::lock_guard<std::mutex> lock(keep->mu);
            if (keep->session) keep->session->Shutdown();
          }
          pool_.Submit([this, keep] { Step(keep); });
        });
  }
  c->armed = true;
  std::optional<std::chrono::milliseconds> wait;
  if (hooks_.idle_timeout) {
    if (const auto idle = hooks_.idle_timeout(); idle.count() > 0) wait = idle;
  }
  c->frame_wait = false;
  std::optional<std::chrono::milliseconds> left;
  {
    std::lock_guard<std::mutex> lock(c->mu);
    if (c->session) left = c->session->FrameTimeLeft();
  }
  if (left && (!wait || *left < *wait)) {
    wait = *left;
    c->frame_wait = true;
  }
  if (wait) {
    c->watch->Start(*wait);
  } else {
    c->watch->Start();
  }
}

void PooledServer::Step(const std::shared_ptr<Conn>& c) {
  Session* session = nullptr;
  {
    std::lock_guard<std::mutex> lock(c->mu);
    session = c->session.get();
    if (session == nullptr) return;  // already ended
  }
  // Only a worker ends a session, and only one worker steps a connection at a time.
  if (session->ServeAvailable() && !stopping_) {
    Post(c->id, false);  // idle again: back to the loop
    return;
  }
  session->Finish();
  std::unique_ptr<Session> ended;
  {
    std::lock_guard<std::mutex> lock(c->mu);
    ended = std::move(c->session);
  }
  ended.reset();
  if (hooks_.closed) hooks_.closed(c->id);
  Post(c->id, true);
}

void PooledServer::Shutdown() {
  stopping_ = true;
  // Idle connections end on a worker; busy ones see the shutdown when their step ends.
  for (auto& [id, c] : conns_) {
    {
      std::lock_guard<std::mutex> lock(c->mu);
      if (c->setup_fd) (void)::shutdown(c->setup_fd.get(), SHUT_RDWR);
      if (c->session) c->session->Shutdown();
    }
    if (c->armed) {
      c->watch->Stop();
      c->armed = false;
      auto keep = c;
      pool_.Submit([this, keep] { Step(keep); });
    }
  }
}

size_t PooledServer::Stop(std::chrono::steady_clock::time_point deadline) {
  stopping_ = true;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  size_t stuck = pool_.Stop(std::max(left, std::chrono::milliseconds(0)));
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_until(lock, deadline, [this] { return setups_ == 0; });
  return stuck + static_cast<size_t>(setups_);
}

}  // namespace core::server
