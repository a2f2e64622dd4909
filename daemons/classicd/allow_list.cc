#include "daemons/classicd/allow_list.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>

namespace classicd {

using core::Error;
using core::Fail;

namespace {

// The bytes of an address of `family`.
size_t Width(int family) { return family == AF_INET ? 4 : 16; }

bool PrefixMatches(const uint8_t* block, const uint8_t* addr, int prefix) {
  const int whole = prefix / 8;
  if (std::memcmp(block, addr, static_cast<size_t>(whole)) != 0) return false;
  const int rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (block[whole] & mask) == (addr[whole] & mask);
}

// A number made only of digits, within uint32.
bool ParseId(std::string_view text, uint32_t* id) {
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, *id);
  return !text.empty() && ec == std::errc() && p == end;
}

core::Result<uid_t> UserId(const std::string& name) {
  uint32_t id = 0;
  if (ParseId(name, &id)) return static_cast<uid_t>(id);
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  const int err = getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
  if (err != 0 || found == nullptr) {
    return Fail(Error::Config("unknown user '" + name + "'"));
  }
  return found->pw_uid;
}

core::Result<gid_t> GroupId(const std::string& name) {
  uint32_t id = 0;
  if (ParseId(name, &id)) return static_cast<gid_t>(id);
  group gr{};
  group* found = nullptr;
  std::vector<char> buf(65536);
  const int err = getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found);
  if (err != 0 || found == nullptr) {
    return Fail(Error::Config("unknown group '" + name + "'"));
  }
  return found->gr_gid;
}

}  // namespace

core::Result<Cidr> Cidr::Parse(std::string_view text) {
  const std::string all(text);
  const size_t slash = all.find('/');
  const std::string host = all.substr(0, slash);
  Cidr c;
  if (inet_pton(AF_INET, host.c_str(), c.bytes) == 1) {
    c.family = AF_INET;
  } else if (inet_pton(AF_INET6, host.c_str(), c.bytes) == 1) {
    c.family = AF_INET6;
  } else {
    return Fail(Error::Config("'" + all + "' is not an IPv4 or IPv6 address or block (such as " +
                              "10.0.0.0/8 or fd00::/64)"));
  }
  const int bits = static_cast<int>(Width(c.family) * 8);
  c.prefix = bits;
  if (slash != std::string::npos) {
    uint32_t prefix = 0;
    if (!ParseId(std::string_view(all).substr(slash + 1), &prefix) ||
        prefix > static_cast<uint32_t>(bits)) {
      return Fail(Error::Config("'" + all + "': the prefix length must be a number 0-" +
                                std::to_string(bits)));
    }
    c.prefix = static_cast<int>(prefix);
  }
  Cidr network = c;
  for (int i = network.prefix; i < bits; ++i) {
    network.bytes[i / 8] = static_cast<uint8_t>(network.bytes[i / 8] & ~(0x80 >> (i % 8)));
  }
  if (std::memcmp(network.bytes, c.bytes, sizeof c.bytes) != 0) {
    return Fail(
        Error::Config("'" + all + "' has host bits set: did you mean " + network.ToString() + "?"));
  }
  return c;
}

bool Cidr::Contains(const sockaddr_storage& addr) const {
  if (addr.ss_family == AF_INET) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(addr);
    const auto* a = reinterpret_cast<const uint8_t*>(&sin.sin_addr);
    if (family == AF_INET) return PrefixMatches(bytes, a, prefix);
    // ::ffff:a.b.c.d/96+ blocks hold IPv4 peers too.
    uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    std::memcpy(mapped + 12, a, 4);
    return PrefixMatches(bytes, mapped, prefix);
  }
  if (addr.ss_family != AF_INET6) return false;
  const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(addr);
  const auto* a = reinterpret_cast<const uint8_t*>(&sin6.sin6_addr);
  if (family == AF_INET6) return PrefixMatches(bytes, a, prefix);
  // A dual-stack listener's IPv4 peer, ::ffff:a.b.c.d, against an IPv4 block.
  return IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr) && PrefixMatches(bytes, a + 12, prefix);
}

std::string Cidr::ToString() const {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes, text, sizeof text);
  return std::string(text) + "/" + std::to_string(prefix);
}

PeerCred ReadPeerCred(int fd) {
  PeerCred out;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred) return out;
  out.valid = true;
  out.uid = cred.uid;
  out.gid = cred.gid;
  out.pid = cred.pid;
#ifdef SO_PEERGROUPS
  std::vector<gid_t> groups(64);
  socklen_t glen = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
  int r = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen);
  if (r != 0 && errno == ERANGE) {
    groups.resize(glen / sizeof(gid_t) + 1);
    glen = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    r = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen);
  }
  if (r == 0) {
    groups.resize(glen / sizeof(gid_t));
    out.groups = std::move(groups);
  }
#endif
  return out;
}

namespace {

// Each item through `parse`, or its first error.
template <typename T, typename Parse>
core::Result<std::vector<T>> ParseEach(const std::vector<std::string>& items, Parse parse) {
  std::vector<T> out;
  for (const auto& item : items) {
    auto one = parse(item);
    if (!one) return Fail(one.error());
    out.push_back(*one);
  }
  return out;
}

}  // namespace

core::Result<std::vector<Cidr>> AllowList::ParseBlocks(const std::vector<std::string>& items) {
  return ParseEach<Cidr>(items, [](const std::string& item) { return Cidr::Parse(item); });
}

core::Result<std::vector<uid_t>> AllowList::ParseUsers(const std::vector<std::string>& items) {
  return ParseEach<uid_t>(items, UserId);
}

core::Result<std::vector<gid_t>> AllowList::ParseGroups(const std::vector<std::string>& items) {
  return ParseEach<gid_t>(items, GroupId);
}

bool AllowList::AllowsAddress(const sockaddr_storage& addr) const {
  if (cidrs_.empty()) return true;
  return std::any_of(cidrs_.begin(), cidrs_.end(), [&](const Cidr& c) { return c.Contains(addr); });
}

bool AllowList::AllowsUnix(const PeerCred& cred) const {
  if (!restricts_unix()) return true;
  if (!cred.valid) return false;
  auto listed = [&](gid_t g) { return std::find(gids_.begin(), gids_.end(), g) != gids_.end(); };
  if (std::find(uids_.begin(), uids_.end(), cred.uid) != uids_.end()) return true;
  if (listed(cred.gid)) return true;
  return std::any_of(cred.groups.begin(), cred.groups.end(), listed);
}

}  // namespace classicd
