#pragma once

// The registrar: the client side of the registry protocol (docs/protocol.md §10), as a server uses
// it to announce itself. Same wire format and timing as rpyc's UDPRegistryClient/TCPRegistryClient:
//   REGISTER (aliases, port) every `interval` (60 s) after a success, every `retry` (1 s) after
//   a failure; UNREGISTER (port) on Stop().
//   UDP success: a reply decoding to 'OK' from the registry's port within `timeout` (2 s);
//     SO_BROADCAST when the registry address has a 255 octet (255.255.255.255 by default).
//   TCP success: any decodable reply within `timeout`.
//   The socket is bound to (bind_host, 0) first, so the registry records that address.
//   advertise_host (registry-advertise-host, rpyc issue #568), the host to register instead of
//     the packet's source: an address of this machine is bound instead of bind_host, so every
//     registry (rpyc's too) records it from the source; anything else (an address behind NAT,
//     a name) is sent in the request, REGISTER (aliases, port, host) and UNREGISTER (port,
//     host), an extension only rpyc-registryd takes (docs/differences.md): rpyc's registry
//     answers nothing, and the registrar keeps retrying and warning.
//   A registry host that does not resolve (at boot, DNS not up yet) is looked up again, off the
//   loop's thread, after `retry`, then twice as long each time up to `interval`; the first
//   failure is a warning, the others debug lines, and the recovery is logged once.
// Runs on the daemon's libevent loop; nothing blocks except the short UNREGISTER in Stop().

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "libcore/base/result.h"
#include "libcore/base/unique_fd.h"
#include "libcore/brine/value.h"
#include "libcore/daemon/loop.h"
#include "libcore/log/log.h"

namespace core::registrar {

enum class Transport { kUdp, kTcp };

struct Options {
  Transport transport = Transport::kUdp;
  std::string registry_host = "255.255.255.255";  // required (no default) for TCP
  uint16_t registry_port = 18811;
  std::string bind_host;       // empty: any address
  std::string advertise_host;  // empty: the packet's source is registered
  std::vector<std::string> aliases = {"SLAVE"};
  brine::Value port = brine::Value(18812);  // the served port, or a unix socket path (str)
  std::chrono::milliseconds interval{60'000};
  std::chrono::milliseconds retry{1'000};
  std::chrono::milliseconds timeout{2'000};
};

// The request bytes, exactly as rpyc's clients send them; with a `host`, the extension's forms.
std::string EncodeRegister(const std::vector<std::string>& aliases, const brine::Value& port,
                           const std::string& host = {});
std::string EncodeUnregister(const brine::Value& port, const std::string& host = {});

class Registrar {
 public:
  // Takes a numeric registry address at once; a name is looked up by Start(), off the loop.
  static Result<std::unique_ptr<Registrar>> Create(daemon::EventLoop& loop, Options options,
                                                   log::Logger log);
  Registrar(const Registrar&) = delete;
  Registrar& operator=(const Registrar&) = delete;
  ~Registrar();

  void Start();  // first REGISTER at once
  void Stop();   // cancels the timer, sends UNREGISTER

  uint64_t successes() const { return successes_; }
  uint64_t failures() const { return failures_; }
  bool resolved() const;

 private:
  Registrar(daemon::EventLoop& loop, Options options, log::Logger log);
  void Attempt();
  void Finish(bool ok, const std::string& why);
  void OnUdp(short what);
  void OnTcp(short what);
  // A socket bound as the options say; sets in_request_ (the advertised host goes in the
  // request, not bound).
  Result<UniqueFd> NewSocket(int type);
  std::string RegisterBytes() const;
  void Resolve();
  void OnResolved();
  std::chrono::milliseconds Remaining() const;

  daemon::EventLoop& loop_;
  Options options_;
  log::Logger log_;
  struct Address;
  static Address LookUp(const std::string& host, uint16_t port, Transport transport,
                        bool numeric_only);
  std::unique_ptr<Address> addr_;
  struct Lookup;
  std::shared_ptr<Lookup> lookup_;  // the lookup under way, shared with its thread
  uint64_t lookup_failures_ = 0;    // since the last successful lookup
  daemon::Timer timer_;
  daemon::Timer lookup_poll_;
  UniqueFd fd_;
  std::unique_ptr<daemon::IoWatch> watch_;
  double deadline_ = 0;
  bool tcp_sent_ = false;
  bool in_request_ = false;
  bool running_ = false;
  uint64_t successes_ = 0;
  uint64_t failures_ = 0;
};

}  // namespace core::registrar
