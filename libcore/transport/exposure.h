#pragma once

// The exposure rule for a server that runs code for whoever it authenticates (rpyc-classicd):
// a listener reachable beyond this host must verify client certificates, unless the operator
// said explicitly that anyone who can connect may run code (allow_unauthenticated_remote).
//   reach        verified certs   override   verdict
//   local/loop   any              any        ok
//   remote       yes              any        ok
//   remote       no               yes        warn (logged at every start)
//   remote       no               no         refuse (the daemon exits 78, EX_CONFIG)
// Loopback is 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104; a Unix socket (or anything that is not
// a socket, such as a pipe on stdin) is local; the wildcards 0.0.0.0 and :: are remote, and so is
// any address family not known here (fail closed).

#include <span>
#include <string>
#include <vector>

#include <sys/socket.h>

#include "libcore/base/result.h"

namespace core::transport {

enum class Reach { kLocal, kLoopback, kRemote };

// Where a bound address can be reached from. `sa` may be null (len 0): not a socket, local.
Reach ReachOf(const sockaddr* sa, socklen_t len);

enum class Verdict { kOk, kWarn, kRefuse };

Verdict Decide(Reach reach, bool verifies_clients, bool allow_unauthenticated_remote);

// A listening (or, with socket activation, a connected) socket, and how the log names it.
struct BoundSocket {
  int fd = -1;
  std::string what;  // "[0.0.0.0]:18812", "inherited fd", "unix:/run/x.sock"
};

struct ExposurePolicy {
  bool verifies_clients = false;  // TLS with a CA file: client certificates required
  bool allow_unauthenticated_remote = false;
};

// Applies the rule to each socket's bound address (getsockname). Returns the warnings to log,
// one per allowed unauthenticated remote listener, or an Error::Config naming the first refused
// listener, its address and what to do. An fd that is not a socket counts as local.
Result<std::vector<std::string>> CheckExposure(std::span<const BoundSocket> sockets,
                                               const ExposurePolicy& policy);

}  // namespace core::transport
