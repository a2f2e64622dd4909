#include "libcore/registrar/registrar.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "libcore/brine/brine.h"

namespace core::registrar {

struct Registrar::Address {
  sockaddr_storage addr{};
  socklen_t len = 0;
  int family = AF_INET;
  bool broadcast = false;
  bool resolved = false;
  std::string error;  // why the last lookup failed
};

// A lookup on its own thread (getaddrinfo blocks, for seconds when DNS is down); the loop polls
// `done`. The thread owns a reference, so a registrar stopped meanwhile just drops its own.
struct Registrar::Lookup {
  std::mutex mu;
  bool done = false;  // guarded by mu
  Address result;     // guarded by mu
};

namespace {

uint16_t PortOf(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
  }
  return 0;
}

std::string Request(const char* cmd, brine::Value args) {
  return brine::Dump(brine::MakeTuple({brine::MakeStr("RPYC"), brine::MakeStr(cmd), args}));
}

bool HasBroadcastOctet(const std::string& host) {
  size_t start = 0;
  while (start <= host.size()) {
    size_t dot = host.find('.', start);
    if (dot == std::string::npos) dot = host.size();
    if (host.compare(start, dot - start, "255") == 0) return true;
    start = dot + 1;
  }
  return false;
}

}  // namespace

std::string EncodeRegister(const std::vector<std::string>& aliases, const brine::Value& port,
                           const std::string& host) {
  std::vector<brine::Value> names;
  for (const auto& a : aliases) names.push_back(brine::MakeStr(a));
  std::vector<brine::Value> args = {brine::MakeTuple(std::move(names)), port};
  if (!host.empty()) args.push_back(brine::MakeStr(host));
  return Request("REGISTER", brine::MakeTuple(std::move(args)));
}

std::string EncodeUnregister(const brine::Value& port, const std::string& host) {
  std::vector<brine::Value> args = {port};
  if (!host.empty()) args.push_back(brine::MakeStr(host));
  return Request("UNREGISTER", brine::MakeTuple(std::move(args)));
}

namespace {

// Binds `fd` to (host, 0) when `host` is an address of `family`; the errno text otherwise.
Status BindNumeric(int fd, int family, int type, const std::string& host) {
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = type;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), "0", &hints, &res) != 0) {
    return Fail(Error::Config("bind address '" + host + "' is not usable"));
  }
  const int rc = ::bind(fd, res->ai_addr, res->ai_addrlen);
  const int err = errno;
  freeaddrinfo(res);
  if (rc != 0) return Fail(Error::Io("bind " + host + ": " + ErrnoText(err)));
  return {};
}

}  // namespace

Registrar::Registrar(daemon::EventLoop& loop, Options options, log::Logger log)
    : loop_(loop),
      options_(std::move(options)),
      log_(std::move(log)),
      addr_(std::make_unique<Address>()),
      timer_(loop, [this] { Attempt(); }),
      lookup_poll_(loop, [this] { OnResolved(); }) {}

Registrar::~Registrar() = default;

// Looks `host`:`port` up for `transport`.
Registrar::Address Registrar::LookUp(const std::string& host, uint16_t port, Transport transport,
                                     bool numeric_only) {
  Address a;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  if (numeric_only) hints.ai_flags = AI_NUMERICHOST;
  hints.ai_socktype = transport == Transport::kUdp ? SOCK_DGRAM : SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) {
    a.error = "registry host '" + host + "' does not resolve: " +
              (rc == EAI_SYSTEM ? ErrnoText(errno) : std::string(gai_strerror(rc)));
    return a;
  }
  std::memcpy(&a.addr, res->ai_addr, res->ai_addrlen);
  a.len = res->ai_addrlen;
  a.family = res->ai_family;
  freeaddrinfo(res);
  a.broadcast = transport == Transport::kUdp && a.family == AF_INET && HasBroadcastOctet(host);
  a.resolved = true;
  return a;
}

Result<std::unique_ptr<Registrar>> Registrar::Create(daemon::EventLoop& loop, Options options,
                                                     log::Logger log) {
  std::unique_ptr<Registrar> r(new Registrar(loop, std::move(options), std::move(log)));
  // An address is taken at once; a name is looked up off the loop thread by the first attempt
  // (DNS may take seconds to fail, and the daemon already serves).
  *r->addr_ = LookUp(r->options_.registry_host, r->options_.registry_port, r->options_.transport,
                     /*numeric_only=*/true);
  return r;
}

std::string Registrar::RegisterBytes() const {
  return EncodeRegister(options_.aliases, options_.port,
                        in_request_ ? options_.advertise_host : std::string());
}

Result<UniqueFd> Registrar::NewSocket(int type) {
  UniqueFd fd(::socket(addr_->family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return Fail(Error::Io("socket: " + ErrnoText(errno)));
  if (addr_->broadcast) {
    const int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
  }
  in_request_ = false;
  if (!options_.advertise_host.empty()) {
    // An address of this machine (of the registry's family): the source says it to any registry.
    if (BindNumeric(fd.get(), addr_->family, type, options_.advertise_host)) return fd;
    in_request_ = true;
  }
  if (!options_.bind_host.empty()) {
    if (auto st = BindNumeric(fd.get(), addr_->family, type, options_.bind_host); !st) {
      return Fail(st.error());
    }
  }
  return fd;
}

void Registrar::Start() {
  running_ = true;
  Attempt();
}

bool Registrar::resolved() const { return addr_->resolved; }

void Registrar::Resolve() {
  if (lookup_) return;  // one under way
  lookup_ = std::make_shared<Lookup>();
  std::thread([lookup = lookup_, host = options_.registry_host, port = options_.registry_port,
               transport = options_.transport] {
    Address a = LookUp(host, port, transport, /*numeric_only=*/false);
    std::lock_guard<std::mutex> lock(lookup->mu);
    lookup->result = std::move(a);
    lookup->done = true;
  }).detach();
  lookup_poll_.Start(std::chrono::milliseconds(50), true);
}

void Registrar::OnResolved() {
  {
    std::lock_guard<std::mutex> lock(lookup_->mu);
    if (!lookup_->done) return;
    *addr_ = lookup_->result;
  }
  lookup_poll_.Stop();
  lookup_.reset();
  if (!running_) return;
  if (addr_->resolved) {
    if (lookup_failures_ > 0) {
      log_.Info("registry host '{}' resolves now, after {} failed lookup(s)",
                options_.registry_host, lookup_failures_);
    }
    lookup_failures_ = 0;
    Attempt();
    return;
  }
  Finish(false, addr_->error);
}

std::chrono::milliseconds Registrar::Remaining() const {
  const double left = deadline_ - daemon::MonotonicSeconds();
  return std::chrono::milliseconds(left > 0 ? static_cast<int64_t>(left * 1000) + 1 : 0);
}

void Registrar::Attempt() {
  if (!running_) return;
  const bool udp = options_.transport == Transport::kUdp;
  if (!addr_->resolved) {
    Resolve();
    return;
  }
  log_.Info("registering on {}:{}", options_.registry_host, options_.registry_port);
  auto fd = NewSocket(udp ? SOCK_DGRAM : SOCK_STREAM);
  if (!fd) {
    Finish(false, fd.error().message());
    return;
  }
  fd_ = std::move(*fd);
  deadline_ = daemon::MonotonicSeconds() + static_cast<double>(options_.timeout.count()) / 1000;
  const std::string data = RegisterBytes();
  const auto* to = reinterpret_cast<const sockaddr*>(&addr_->addr);
  if (udp) {
    if (sendto(fd_.get(), data.data(), data.size(), 0, to, addr_->len) < 0) {
      Finish(false, "sendto: " + ErrnoText(errno));
      return;
    }
    watch_ = std::make_unique<daemon::IoWatch>(loop_, fd_.get(), EV_READ, false,
                                               [this](short w) { OnUdp(w); });
  } else {
    tcp_sent_ = false;
    if (::connect(fd_.get(), to, addr_->len) != 0 && errno != EINPROGRESS) {
      Finish(false, "could not connect to registry: " + ErrnoText(errno));
      return;
    }
    watch_ = std::make_unique<daemon::IoWatch>(loop_, fd_.get(), EV_WRITE, false,
                                               [this](short w) { OnTcp(w); });
  }
  watch_->Start(options_.timeout);
}

void Registrar::OnUdp(short what) {
  if ((what & EV_TIMEOUT) != 0) {
    Finish(false, "no registry acknowledged");
    return;
  }
  char buf[1500];
  sockaddr_storage from{};
  socklen_t len = sizeof from;
  const ssize_t n =
      recvfrom(fd_.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
  if (n >= 0 && PortOf(from) == options_.registry_port) {
    auto reply = brine::Load(std::string_view(buf, static_cast<size_t>(n)));
    if (reply && *reply == brine::MakeStr("OK")) {
      Finish(true, "");
      return;
    }
  }
  // Not our acknowledgement (another port, garbage, or an ICMP error): keep waiting.
  if (Remaining().count() <= 0) {
    Finish(false, "no registry acknowledged");
    return;
  }
  watch_->Start(Remaining());
}

void Registrar::OnTcp(short what) {
  if ((what & EV_TIMEOUT) != 0) {
    Finish(false, tcp_sent_ ? "no reply from registry" : "could not connect to registry");
    return;
  }
  if (!tcp_sent_) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      Finish(false, "could not connect to registry: " + ErrnoText(err));
      return;
    }
    const std::string data = RegisterBytes();
    if (send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(data.size())) {
      Finish(false, "could not send to registry");
      return;
    }
    tcp_sent_ = true;
    watch_ = std::make_unique<daemon::IoWatch>(loop_, fd_.get(), EV_READ, false,
                                               [this](short w) { OnTcp(w); });
    watch_->Start(Remaining());
    return;
  }
  char buf[1500];
  const ssize_t n = recv(fd_.get(), buf, sizeof buf, 0);
  if (n > 0 && brine::Load(std::string_view(buf, static_cast<size_t>(n)))) {
    Finish(true, "");
    return;
  }
  Finish(false, "no valid reply from registry");
}

void Registrar::Finish(bool ok, const std::string& why) {
  watch_.reset();
  fd_.Reset();
  std::chrono::milliseconds next = ok ? options_.interval : options_.retry;
  if (ok) {
    ++successes_;
    log_.Info("registry {}:{} acknowledged", options_.registry_host, options_.registry_port);
  } else if (!addr_->resolved) {
    // Backoff: retry, 2 retry, 4 retry... up to interval. The first failure is a warning.
    ++failures_;
    ++lookup_failures_;
    const int doublings = static_cast<int>(std::min<uint64_t>(lookup_failures_ - 1, 20));
    next = std::min(options_.retry * (int64_t{1} << doublings), options_.interval);
    log_.Log(lookup_failures_ == 1 ? log::Level::warn : log::Level::debug, {},
             "{}; registering when it does (next lookup in {} ms, at most every {} s)", why,
             next.count(), options_.interval.count() / 1000);
  } else {
    ++failures_;
    if (in_request_) {
      log_.Warn(
          "{} (REGISTER with the advertised host {} in the request: rpyc-registryd takes it, "
          "rpyc's registry does not)",
          why, options_.advertise_host);
    } else {
      log_.Warn("{}", why);
    }
  }
  if (running_) timer_.Start(next);
}

void Registrar::Stop() {
  if (!running_) return;
  running_ = false;
  timer_.Stop();
  lookup_poll_.Stop();
  lookup_.reset();
  watch_.reset();
  fd_.Reset();
  if (!addr_->resolved) return;  // never registered
  log_.Info("unregistering from {}:{}", options_.registry_host, options_.registry_port);
  const bool udp = options_.transport == Transport::kUdp;
  auto fd = NewSocket(udp ? SOCK_DGRAM : SOCK_STREAM);
  if (!fd) {
    log_.Warn("unregister: {}", fd.error().message());
    return;
  }
  const std::string data =
      EncodeUnregister(options_.port, in_request_ ? options_.advertise_host : std::string());
  const auto* to = reinterpret_cast<const sockaddr*>(&addr_->addr);
  if (udp) {
    sendto(fd->get(), data.data(), data.size(), 0, to, addr_->len);
    return;
  }
  // TCP: connect and send without reading the reply, like the reference; bounded by `timeout`.
  if (::connect(fd->get(), to, addr_->len) != 0 && errno != EINPROGRESS) return;
  pollfd p{fd->get(), POLLOUT, 0};
  if (poll(&p, 1, static_cast<int>(options_.timeout.count())) != 1) {
    log_.Warn("unregister: could not connect to registry");
    return;
  }
  send(fd->get(), data.data(), data.size(), MSG_NOSIGNAL);
}

}  // namespace core::registrar
