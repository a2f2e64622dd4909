#pragma once

// Who may connect at all, decided from the accepted socket before a byte is read (issue 13):
// TCP peers by address (allow_from: CIDR blocks), Unix-socket peers by SO_PEERCRED
// (unix_allow_users, unix_allow_groups). An empty list allows everyone of its kind.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/socket.h>
#include <sys/types.h>

#include "libcore/base/result.h"

namespace classicd {

// An IPv4 or IPv6 block: "10.0.0.0/8", "::1/128", or an address alone (all its bits).
struct Cidr {
  int family = 0;  // AF_INET or AF_INET6
  uint8_t bytes[16] = {};
  int prefix = 0;

  // An Error::Config saying what is wrong ("not an IPv4 or IPv6 address", "prefix length 33 out
  // of range 0-32", "host bits set: did you mean 10.0.0.0/8?"), without the key or file.
  static core::Result<Cidr> Parse(std::string_view text);
  // Whether `addr` (AF_INET/AF_INET6; an IPv4-mapped IPv6 address as its IPv4 address too) lies
  // in the block. Other families never do.
  bool Contains(const sockaddr_storage& addr) const;
  std::string ToString() const;
};

// SO_PEERCRED of a Unix-socket peer; `valid` false when the socket has none.
struct PeerCred {
  bool valid = false;
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  std::vector<gid_t> groups;  // SO_PEERGROUPS: its supplementary groups (when the kernel says)
};
PeerCred ReadPeerCred(int fd);

class AllowList {
 public:
  // Each list parsed; an error (Error::Config) names the bad item, and the caller adds the key
  // and file:line. Users and groups are names or numeric ids.
  static core::Result<std::vector<Cidr>> ParseBlocks(const std::vector<std::string>& items);
  static core::Result<std::vector<uid_t>> ParseUsers(const std::vector<std::string>& items);
  static core::Result<std::vector<gid_t>> ParseGroups(const std::vector<std::string>& items);

  AllowList() = default;
  AllowList(std::vector<Cidr> blocks, std::vector<uid_t> uids, std::vector<gid_t> gids)
      : cidrs_(std::move(blocks)), uids_(std::move(uids)), gids_(std::move(gids)) {}

  bool restricts_tcp() const { return !cidrs_.empty(); }
  bool restricts_unix() const { return !uids_.empty() || !gids_.empty(); }
  // A TCP peer's address is allowed (always, without allow_from).
  bool AllowsAddress(const sockaddr_storage& addr) const;
  // A Unix-socket peer is allowed: its uid is listed, or its gid or one of its groups is.
  // Always without either list; never when `cred` is not valid and a list is set.
  bool AllowsUnix(const PeerCred& cred) const;

 private:
  std::vector<Cidr> cidrs_;
  std::vector<uid_t> uids_;
  std::vector<gid_t> gids_;
};

}  // namespace classicd
