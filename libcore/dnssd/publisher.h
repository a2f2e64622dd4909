#pragma once

// Publishes the registry's servers as DNS-SD services through avahi-daemon (libavahi-client over
// the daemon's libevent loop, avahi_poll.h). Each service is one entry group:
//   - an address record "rpyc-<host with '.'/':' as '-'>-<port>.local" -> the server's address
//     (AVAHI_PUBLISH_NO_REVERSE), when Service::host is an address, so the SRV record points
//     at the registered server and not at the machine publishing it;
//   - the service "<name>" of type _rpyc._tcp on that host and port, TXT txtvers=1,
//     aliases=A,B (those that fit one 255-byte TXT string) and site=S (when set);
//   - one subtype per alias, "_<alias lower-cased>._sub._rpyc._tcp", so clients can browse by
//     alias.
// On a name collision the group is rebuilt under avahi_alternative_service_name ("name #2").
// Avahi absent (no system bus, no daemon) or stopped is not an error: one warning through the
// callback, services are kept and published when the daemon (re)appears (checked every
// `retry`), never a crash. Libraries return warnings, they do not log (STYLE.md §7).

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "libcore/base/result.h"
#include "libcore/daemon/loop.h"

namespace core::dnssd {

inline constexpr const char* kServiceType = "_rpyc._tcp";

struct Service {
  std::string name;  // instance name; cut to 63 bytes
  std::string host;  // the server's IPv4/IPv6 address; empty: the publishing machine
  uint16_t port = 0;
  std::vector<std::string> aliases;
  std::string site;
};

// The subtype that lets clients browse by alias: "_calculator._sub._rpyc._tcp"; empty when
// Avahi refuses it (a one-character alias, over 62 bytes, characters a label cannot hold): the
// service is then published without that subtype, with a warning.
std::string AliasSubtype(std::string_view alias);
// "rpyc-10-0-0-5-18812.local" for ("10.0.0.5", 18812).
std::string AddressRecordName(std::string_view host, uint16_t port);

class Publisher {
 public:
  using WarningCallback = std::function<void(const Error&)>;
  struct Options {
    std::chrono::milliseconds retry{5'000};  // reconnect to a missing or lost avahi-daemon
  };

  // Never fails: without Avahi it warns and keeps trying.
  static std::unique_ptr<Publisher> Create(daemon::EventLoop& loop, WarningCallback warn,
                                           Options options);
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;
  ~Publisher();

  // Returns an id for Withdraw(); Usage error for port 0, an empty name or a host that is not
  // an address.
  Result<uint64_t> Publish(Service service);
  void Withdraw(uint64_t id);

  // The name the service is published under (after collisions); empty while not established.
  std::string established_name(uint64_t id) const;
  bool connected() const;

 private:
  struct Impl;
  explicit Publisher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace core::dnssd
