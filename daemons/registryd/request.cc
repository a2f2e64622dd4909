#include "daemons/registryd/request.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_set>

#include <arpa/inet.h>

#include "daemons/registryd/dnssd_link.h"
#include "daemons/registryd/etcd_link.h"
#include "libcore/brine/brine.h"

namespace registryd {
namespace {

using core::Error;
using core::Fail;
using core::brine::Value;
namespace brine = core::brine;

core::Result<Request> Bad(std::string what) { return Fail(Error::Protocol(std::move(what))); }

// Python iterates a str as its characters (code points).
std::vector<std::string> Utf8Chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

// The argument list as Python's `*args` would spread it (a tuple, or a str's characters).
std::optional<std::vector<Value>> SpreadArgs(const Value& args) {
  if (const auto* t = args.get_if<brine::Tuple>()) return t->items;
  if (const auto* s = args.get_if<brine::Str>()) {
    std::vector<Value> out;
    for (auto& c : Utf8Chars(s->utf8)) out.push_back(brine::Str{std::move(c)});
    return out;
  }
  return std::nullopt;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

core::Status ParsePort(const Value& port, Request* r) {
  if (const auto* i = port.get_if<brine::Int>()) {
    r->port_text = i->ToDecimal();
  } else if (const auto* s = port.get_if<brine::Str>()) {
    r->port_text = s->utf8;
  } else {
    return Fail(Error::Protocol("port must be an int or a str, got " + port.Repr()));
  }
  r->port = brine::Dump(port);
  if (r->port.size() > kMaxPortBytes) {
    return Fail(Error::Protocol("port of " + std::to_string(r->port.size()) +
                                " bytes is longer than " + std::to_string(kMaxPortBytes)));
  }
  return {};
}

core::Status ParseAdvertisedHost(const Value& host, Request* r) {
  const auto* s = host.get_if<brine::Str>();
  auto canonical = s != nullptr ? CanonicalHost(s->utf8) : std::nullopt;
  if (!canonical) {
    return Fail(Error::Protocol("advertised host is not an address or a DNS name: " + host.Repr()));
  }
  r->advertised_host = std::move(*canonical);
  return {};
}

size_t StrSize(size_t n) {
  if (n == 0) return 2;      // 08 01
  if (n <= 4) return 2 + n;  // 08 0a..0d
  if (n <= 255) return 3 + n;
  return 6 + n;
}

size_t TupleHeaderSize(size_t count) { return count <= 4 ? 1 : count <= 255 ? 2 : 5; }

// The writers below put brine headers at `p` and return the end; callers size the buffer first
// (StrSize/TupleHeaderSize), so a reply costs one resize and no per-byte appends. The bytes are
// the same as brine::Encode's (checked by the golden tests).
char* PutCount(uint8_t short_tag, size_t n, char* p) {
  if (n <= 255) {
    *p++ = static_cast<char>(short_tag);
    *p++ = static_cast<char>(n);
    return p;
  }
  *p++ = static_cast<char>(short_tag + 1);  // the long form's tag follows the short one
  for (int shift = 24; shift >= 0; shift -= 8) *p++ = static_cast<char>((n >> shift) & 0xff);
  return p;
}

char* PutTupleHeader(size_t count, char* p) {
  if (count == 0) {
    *p++ = static_cast<char>(brine::kTagEmptyTuple);
  } else if (count <= 4) {
    *p++ = static_cast<char>(brine::kTagTuple1 + count - 1);
  } else {
    p = PutCount(brine::kTagTupleShort, count, p);
  }
  return p;
}

char* PutStr(std::string_view s, char* p) {
  const size_t n = s.size();
  *p++ = static_cast<char>(brine::kTagStr);
  if (n == 0) {
    *p++ = static_cast<char>(brine::kTagEmptyBytes);
  } else if (n <= 4) {
    *p++ = static_cast<char>(brine::kTagBytes1 + n - 1);
  } else {
    p = PutCount(brine::kTagBytesShort, n, p);
  }
  std::memcpy(p, s.data(), n);
  return p + n;
}

std::string QuoteList(const std::vector<std::string>& names) {
  std::string out = "(";
  for (size_t i = 0; i < names.size(); ++i) {
    out += (i ? ", '" : "'") + core::log::Escape(names[i]) + "'";
  }
  return out + (names.size() == 1 ? ",)" : ")");
}

const std::string kOk = brine::Dump(brine::Str{"OK"});
const std::string kNone = brine::Dump(brine::NoneType{});

}  // namespace

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

std::optional<std::string> CanonicalHost(std::string_view host) {
  if (host.empty() || host.size() > 253) return std::nullopt;
  const std::string text(host);
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    char buf[INET_ADDRSTRLEN];
    return std::string(inet_ntop(AF_INET, &v4, buf, sizeof buf));
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    char buf[INET6_ADDRSTRLEN];
    return std::string(RegistryHost(inet_ntop(AF_INET6, &v6, buf, sizeof buf)));
  }
  std::string name;
  size_t label = 0;
  for (char c : host) {
    const bool ldh =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (c == '.') {
      if (label == 0 || name.back() == '-') return std::nullopt;
      label = 0;
    } else if (!ldh || (label == 0 && c == '-') || ++label > 63) {
      return std::nullopt;
    }
    name += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  }
  if (label == 0 || name.back() == '-') return std::nullopt;
  // An all-digit last label reads as a (partial) IPv4 address to resolvers: "10.1" is 10.0.0.1.
  const size_t last = name.rfind('.') + 1;  // npos + 1 == 0
  if (name.find_first_not_of("0123456789", last) == std::string::npos) return std::nullopt;
  return name;
}

std::string_view RegistryHost(std::string_view host) {
  constexpr std::string_view kMapped = "::ffff:";
  // inet_ntop's spelling, which is what peer addresses come as.
  if (host.size() > kMapped.size() + 15 || !host.starts_with(kMapped)) return host;
  const std::string v4(host.substr(kMapped.size()));
  in_addr addr{};
  if (::inet_pton(AF_INET, v4.c_str(), &addr) != 1) return host;
  return host.substr(kMapped.size());
}

core::Result<Request> ParseRequest(std::string_view data) {
  auto value = brine::Load(data, brine::DecodeLimits{16});
  if (!value) return Bad("undecodable request (" + value.error().message() + ")");
  const auto* top = value->get_if<brine::Tuple>();
  if (top == nullptr || top->items.size() != 3) return Bad("request is not a 3-tuple");
  const auto* magic = top->items[0].get_if<brine::Str>();
  if (magic == nullptr || magic->utf8 != "RPYC") {
    return Bad("invalid magic: " + top->items[0].Repr());
  }
  const auto* cmd = top->items[1].get_if<brine::Str>();
  if (cmd == nullptr) return Bad("command is not a str: " + top->items[1].Repr());
  auto args = SpreadArgs(top->items[2]);
  if (!args) return Bad("arguments are not a tuple: " + top->items[2].Repr());

  Request r;
  const std::string name = Lower(cmd->utf8);
  size_t arity = 1;
  bool host_allowed = false;  // one more argument: the advertised host (an extension)
  if (name == "query") {
    r.command = Command::kQuery;
  } else if (name == "register") {
    r.command = Command::kRegister;
    arity = 2;
    host_allowed = true;
  } else if (name == "unregister") {
    r.command = Command::kUnregister;
    host_allowed = true;
  } else if (name == "list") {
    r.command = Command::kList;
  } else {
    return Bad("unknown command: " + top->items[1].Repr());
  }
  if (args->size() != arity && !(host_allowed && args->size() == arity + 1)) {
    return Bad(name + " takes " + std::to_string(arity) +
               (host_allowed ? " or " + std::to_string(arity + 1) : std::string()) +
               " argument(s), got " + std::to_string(args->size()));
  }
  if (args->size() == arity + 1) {
    if (auto st = ParseAdvertisedHost(args->back(), &r); !st) return Fail(st.error());
  }
  const Value& a0 = (*args)[0];
  switch (r.command) {
    case Command::kQuery:
      if (const auto* s = a0.get_if<brine::Str>()) {
        r.names.push_back(s->utf8);
      } else if (const auto* b = a0.get_if<brine::Bytes>()) {
        r.names.emplace_back(b->view());
        r.name_is_bytes = true;
      } else {
        return Bad("query name is not a str: " + a0.Repr());
      }
      break;
    case Command::kRegister: {
      std::vector<Value> names;
      if (const auto* s = a0.get_if<brine::Str>()) {
        for (auto& c : Utf8Chars(s->utf8)) names.push_back(brine::Str{std::move(c)});
      } else if (const auto* t = a0.get_if<brine::Tuple>()) {
        names = t->items;
      } else if (const auto* f = a0.get_if<brine::FrozenSet>()) {
        names = f->items;
      } else {
        return Bad("register names are not a tuple of str: " + a0.Repr());
      }
      for (const Value& v : names) {
        const auto* s = v.get_if<brine::Str>();
        if (s == nullptr) return Bad("register name is not a str: " + v.Repr());
        if (s->utf8.size() > kMaxNameBytes) {
          return Bad("service name of " + std::to_string(s->utf8.size()) +
                     " bytes is longer than " + std::to_string(kMaxNameBytes));
        }
        r.names.push_back(s->utf8);
      }
      if (auto st = ParsePort((*args)[1], &r); !st) return Fail(st.error());
      break;
    }
    case Command::kUnregister:
      if (auto st = ParsePort(a0, &r); !st) return Fail(st.error());
      break;
    case Command::kList:
      r.list_arg = a0;
      break;
  }
  return r;
}

void EncodeServers(const std::vector<const Server*>& servers, size_t max_bytes, size_t* dropped,
                   std::string* out, size_t local) {
  local = std::min(local, servers.size());
  const auto item_size = [&](size_t i) {
    return 1 + StrSize(servers[i]->host.size()) + servers[i]->port.size();
  };
  // Keep the newest local servers that fit: walk back from the end.
  size_t keep = 0;
  size_t body = 0;
  for (size_t i = local; i-- > 0;) {
    const size_t item = item_size(i);
    if (TupleHeaderSize(keep + 1) + body + item > max_bytes) break;
    body += item;
    ++keep;
  }
  // Then the mirrored ones, in order, while they fit.
  size_t more = 0;
  if (keep == local) {
    for (size_t i = local; i < servers.size(); ++i) {
      const size_t item = item_size(i);
      if (TupleHeaderSize(keep + more + 1) + body + item > max_bytes) break;
      body += item;
      ++more;
    }
  }
  *dropped = servers.size() - keep - more;
  out->resize(TupleHeaderSize(keep + more) + body);
  char* p = PutTupleHeader(keep + more, out->data());
  for (size_t i = local - keep; i < local + more; ++i) {
    *p++ = static_cast<char>(brine::kTagTuple1 + 1);
    p = PutStr(servers[i]->host, p);
    const std::string& port = servers[i]->port;
    std::memcpy(p, port.data(), port.size());
    p += port.size();
  }
}

std::string EncodeNames(const std::vector<std::string>& names, size_t max_bytes, size_t* dropped) {
  size_t keep = 0;
  size_t body = 0;
  for (const auto& n : names) {
    const size_t item = StrSize(n.size());
    if (TupleHeaderSize(keep + 1) + body + item > max_bytes) break;
    body += item;
    ++keep;
  }
  *dropped = names.size() - keep;
  std::string out(TupleHeaderSize(keep) + body, '\0');
  char* p = PutTupleHeader(keep, out.data());
  for (size_t i = 0; i < keep; ++i) p = PutStr(names[i], p);
  return out;
}

uint16_t IntPort(const std::string& brine_port) {
  auto v = brine::Load(brine_port);
  if (!v) return 0;
  const auto* i = v->get_if<brine::Int>();
  if (i == nullptr || !i->is_small() || i->small() < 1 || i->small() > 65535) return 0;
  return static_cast<uint16_t>(i->small());
}

std::string HostPort(std::string_view host, std::string_view port) {
  std::string out;
  const bool v6 = host.find(':') != std::string_view::npos;
  if (v6) out += '[';
  out += host;
  if (v6) out += ']';
  out += ':';
  out += port;
  return out;
}

bool Handler::AllowWarning(const core::transport::PeerAddress& peer, Sources::State& source,
                           double now) {
  if (!source.warnings.Allow(now) || !warn_limit_.Allow(now)) return false;
  if (const uint64_t n = source.warnings.TakeSuppressed()) {
    log_.Log(core::log::Level::warn, {{"RPYC_PEER", peer.text()}},
             "{} more warning(s) about {} were suppressed (more than {} in {} s)", n, peer.host(),
             kWarningBurst, kLogInterval);
  }
  if (const uint64_t n = warn_limit_.TakeSuppressed()) {
    log_.Warn("{} more bad-request warning(s) were suppressed", n);
  }
  return true;
}

void Handler::WarnPeer(const core::transport::PeerAddress& peer, const std::string& what,
                       double now) {
  if (!AllowWarning(peer, sources_.Get(RegistryHost(peer.host()), now), now)) return;
  log_.Log(core::log::Level::warn, {{"RPYC_PEER", peer.text()}}, "bad request from {}: {}",
           peer.text(), core::log::Escape(what));
}

std::optional<std::string_view> FastQueryName(std::string_view data) {
  // 12 | 08 0d "RPYC" | 08 0e 05 "QUERY" | 10 08 | <bytes value>: what the clients send.
  static constexpr char kCanonical[17] = {'\x12', '\x08', '\x0d', 'R',    'P',   'Y',
                                          'C',    '\x08', '\x0e', '\x05', 'Q',   'U',
                                          'E',    'R',    'Y',    '\x10', '\x08'};
  if (data.size() < 18) return std::nullopt;
  if (std::memcmp(data.data(), kCanonical, sizeof kCanonical) != 0) {
    // The same with the command in another case ("query", "Query", ...).
    if (std::memcmp(data.data(), kCanonical, 10) != 0 ||
        std::memcmp(data.data() + 15, kCanonical + 15, 2) != 0) {
      return std::nullopt;
    }
    // x | 0x20 equals a lower-case ASCII letter only for that letter and its upper case.
    for (size_t i = 10; i < 15; ++i) {
      if ((data[i] | 0x20) != (kCanonical[i] | 0x20)) return std::nullopt;
    }
  }
  const auto tag = static_cast<uint8_t>(data[17]);
  size_t pos = 18;
  size_t len = 0;
  if (tag == brine::kTagEmptyBytes) {
    len = 0;
  } else if (tag >= brine::kTagBytes1 && tag < brine::kTagBytesShort) {
    len = tag - brine::kTagBytes1 + 1u;
  } else if (tag == brine::kTagBytesShort && data.size() > pos) {
    len = static_cast<uint8_t>(data[pos++]);
  } else {
    return std::nullopt;  // the long form and anything odd: the general path
  }
  if (data.size() != pos + len) return std::nullopt;
  const std::string_view name = data.substr(pos, len);
  for (const char c : name) {
    if ((c & 0x80) != 0) return brine::IsValidUtf8(name) ? std::optional(name) : std::nullopt;
  }
  return name;  // ASCII
}

std::optional<std::string_view> Handler::Handle(std::string_view data,
                                                const core::transport::PeerAddress& peer,
                                                double now) {
  Sources::State& source = sources_.Get(RegistryHost(peer.host()), now);
  log_request_ = log_.enabled(core::log::Level::debug) && source.requests.Allow(now);
  if (log_request_) {
    if (const uint64_t n = source.requests.TakeSuppressed()) {
      log_.Log(core::log::Level::debug, {{"RPYC_PEER", peer.text()}},
               "{} request(s) from {} were not logged (more than {} in {} s)", n, peer.host(),
               kRequestLogBurst, kLogInterval);
    }
  }
  auto reply = Dispatch(data, peer, source, now);
  if (!reply || !limits_.per_source_budget) return reply;
  if (sources_.AllowReply(source, reply->size(), now)) return reply;
  ++source.refused_replies;
  source.reply_bytes_refused += reply->size();
  if (AllowWarning(peer, source, now)) {
    log_.Log(core::log::Level::warn, {{"RPYC_PEER", peer.text()}},
             "reply budget of {} ({} bytes/s) exceeded: {} repl{} ({} bytes) not sent since the "
             "last warning",
             peer.host(), sources_.limits().reply_bytes_per_second, source.refused_replies,
             source.refused_replies == 1 ? "y" : "ies", source.reply_bytes_refused);
    source.refused_replies = 0;
    source.reply_bytes_refused = 0;
  }
  return std::nullopt;
}

std::optional<std::string_view> Handler::Dispatch(std::string_view data,
                                                  const core::transport::PeerAddress& peer,
                                                  Sources::State& source, double now) {
  if (auto name = FastQueryName(data)) return Query(*name, false, peer, now);
  auto request = ParseRequest(data);
  if (!request) {
    WarnPeer(peer, request.error().message(), now);
    return std::nullopt;
  }
  switch (request->command) {
    case Command::kQuery:
      return Query(request->names[0], request->name_is_bytes, peer, now);
    case Command::kRegister:
      return Register(*request, peer, source, now);
    case Command::kUnregister: {
      const std::string host(request->advertised_host.empty() ? RegistryHost(peer.host())
                                                              : request->advertised_host);
      const size_t n = registry_.Unregister(Server{host, request->port});
      if (link_ != nullptr) link_->Unregistered(Server{host, request->port});
      if (dnssd_ != nullptr) dnssd_->Unregistered(Server{host, request->port});
      if (log_request_) {
        log_.Log(core::log::Level::debug,
                 {{"RPYC_PEER", peer.text()}, {"RPYC_COMMAND", "UNREGISTER"}},
                 "unregistering {} ({} entr{})",
                 HostPort(host, core::log::Escape(request->port_text)), n, n == 1 ? "y" : "ies");
      }
      return kOk;
    }
    case Command::kList:
      return List(*request, peer, now);
  }
  return std::nullopt;
}

std::string_view Handler::Query(std::string_view raw_name, bool name_is_bytes,
                                const core::transport::PeerAddress& peer, double now) {
  // Upper-cased into a fixed buffer: a QUERY name fits one datagram, and needs no allocation.
  const size_t n = std::min(raw_name.size(), sizeof name_);
  for (size_t i = 0; i < n; ++i) {
    const char c = raw_name[i];
    name_[i] = c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
  }
  const std::string_view name(name_, n);
  const bool debug = log_request_;
  std::string shown;  // the name as logged: escaped
  if (debug) {
    shown = core::log::Escape(name);
    log_.Log(core::log::Level::debug, {{"RPYC_PEER", peer.text()}, {"RPYC_SERVICE", shown}},
             "querying for '{}'", shown);
  }
  size_t pruned = 0;
  size_t dropped = 0;
  size_t total = 0;
  size_t local = 0;
  std::string_view out;
  servers_.clear();
  // Servers mirrored from etcd under this name: merged with the local ones, and kept while
  // neither changes.
  const bool mirrored = link_ != nullptr && !name_is_bytes && link_->mirror().Has(name);
  const MergedReply* merged = nullptr;
  if (mirrored && !debug) {
    auto it = merged_.find(name);
    if (it != merged_.end() && it->second.registry_version == registry_.version() &&
        it->second.mirror_version == link_->mirror().version() && now <= it->second.fresh_until) {
      merged = &it->second;
    }
  }
  if (merged != nullptr) {
    out = merged->bytes;  // valid until the next QUERY
    dropped = merged->dropped;
    total = merged->total;
  } else if (debug || mirrored) {  // the slow path, which can list the servers
    if (!name_is_bytes) pruned = registry_.Query(name, now, &servers_);
    local = servers_.size();
    if (mirrored) {
      std::vector<const Server*> others;
      link_->mirror().Servers(name, &others);
      for (const Server* s : others) {
        const bool known = std::any_of(servers_.begin(), servers_.begin() + local, [s](auto* l) {
          return l->host == s->host && l->port == s->port;
        });
        if (!known) servers_.push_back(s);
      }
    }
    EncodeServers(servers_, limits_.query, &dropped, &reply_, local);
    total = servers_.size();
    if (mirrored) {
      if (merged_.size() >= kMaxMergedReplies) merged_.clear();
      MergedReply& m = merged_[std::string(name)];
      m = MergedReply{registry_.version(),
                      link_->mirror().version(),
                      registry_.FreshUntil(name).value_or(HUGE_VAL),
                      reply_,
                      dropped,
                      total};
    }
  } else {
    const Registry::CachedReply* cached =
        name_is_bytes ? nullptr
                      : registry_.QueryCached(
                            name, now, limits_.query, &pruned,
                            [](const std::vector<const Server*>& live, Registry::CachedReply* r) {
                              EncodeServers(live, r->max_bytes, &r->dropped, &r->bytes);
                            });
    if (cached == nullptr) {
      reply_.assign(1, static_cast<char>(brine::kTagEmptyTuple));
    } else {
      // Valid until the registry changes, which only a later request or timer can do.
      out = cached->bytes;
      dropped = cached->dropped;
      total = cached->total;
    }
  }
  if (pruned > 0 && debug) {
    log_.Debug("discarding {} stale server{} of {}", pruned, pruned == 1 ? "" : "s", shown);
  }
  if (dropped > 0 && AllowWarning(peer, sources_.Get(RegistryHost(peer.host()), now), now)) {
    if (shown.empty()) shown = core::log::Escape(name);
    log_.Log(core::log::Level::warn, {{"RPYC_PEER", peer.text()}, {"RPYC_SERVICE", shown}},
             "reply to {} truncated to {} bytes: {} of {} servers of {} left out (oldest first)",
             peer.text(), limits_.query, dropped, total, shown);
  }
  if (debug) {
    if (servers_.empty()) {
      log_.Debug("no such service");
    } else {
      // Sent: the newest local servers that fit, then the mirrored ones that fit.
      const size_t others = servers_.size() - local;
      const size_t first = dropped > others ? dropped - others : 0;
      const size_t end = dropped > others ? local : servers_.size() - dropped;
      std::string text = "[";
      for (size_t i = first; i < end; ++i) {
        text += (i > first ? ", ('" : "('") + core::log::Escape(servers_[i]->host) + "', ";
        auto port = core::brine::Load(servers_[i]->port);
        text += (port ? port->Repr() : "?") + ")";
      }
      log_.Debug("replying with {}]", text);
    }
  }
  return out.data() != nullptr ? out : std::string_view(reply_);
}

std::optional<std::string_view> Handler::Register(const Request& r,
                                                  const core::transport::PeerAddress& peer,
                                                  Sources::State& source, double now) {
  // Limits count per packet source (`source`); the entry is recorded under the advertised host.
  const std::string host(r.advertised_host.empty() ? RegistryHost(peer.host()) : r.advertised_host);
  const auto joined = [&r] {
    std::string out;
    for (const auto& n : r.names) out += (out.empty() ? "" : ", ") + core::log::Escape(n);
    return out;
  };
  if (!sources_.AllowRegister(source, now)) {
    ++source.refused_registers;
    if (AllowWarning(peer, source, now)) {
      log_.Log(core::log::Level::warn, {{"RPYC_PEER", peer.text()}, {"RPYC_COMMAND", "REGISTER"}},
               "REGISTER rate of {} over {}/s: {} REGISTER(s) refused since the last warning; no "
               "reply sent",
               RegistryHost(peer.host()), sources_.limits().registers_per_second,
               source.refused_registers);
      source.refused_registers = 0;
    }
    return std::nullopt;
  }
  if (log_request_) {
    const std::string names = joined();
    log_.Log(core::log::Level::debug,
             {{"RPYC_PEER", peer.text()}, {"RPYC_SERVICE", names}, {"RPYC_COMMAND", "REGISTER"}},
             "registering {} as {}", HostPort(host, core::log::Escape(r.port_text)), names);
  }
  size_t full = 0;
  size_t over_host = 0;
  for (const auto& n : r.names) {
    switch (registry_.Register(Upper(n), Server{host, r.port}, now)) {
      case Registry::AddResult::kRefused:
        ++full;
        break;
      case Registry::AddResult::kRefusedHost:
        ++over_host;
        break;
      default:
        break;
    }
  }
  if (full == 0 && over_host == 0) {
    if (link_ != nullptr || dnssd_ != nullptr) {
      std::vector<std::string> names;
      names.reserve(r.names.size());
      for (const auto& n : r.names) names.push_back(Upper(n));
      if (link_ != nullptr) link_->Registered(Server{host, r.port}, names, now);
      if (dnssd_ != nullptr) dnssd_->Registered(Server{host, r.port}, names, now);
    }
    return kOk;
  }
  if (full > 0 && full_limit_.Allow(now)) {
    const std::string names = joined();
    log_.Log(core::log::Level::warn, {{"RPYC_PEER", peer.text()}, {"RPYC_SERVICE", names}},
             "registry full ({} entr{}): refused {} new entr{} from {} (and {} more since the "
             "last warning); no reply sent",
             registry_.max_entries(), registry_.max_entries() == 1 ? "y" : "ies", full,
             full == 1 ? "y" : "ies", peer.text(), full_limit_.TakeSuppressed());
  }
  if (over_host > 0 && AllowWarning(peer, source, now)) {
    const std::string names = joined();
    log_.Log(core::log::Level::warn, {{"RPYC_PEER", peer.text()}, {"RPYC_SERVICE", names}},
             "{} has {} entr{} (max-entries-per-source): refused {} new entr{} from {}; no "
             "reply sent",
             host, registry_.entries_of(host), registry_.entries_of(host) == 1 ? "y" : "ies",
             over_host, over_host == 1 ? "y" : "ies", peer.text());
  }
  return std::nullopt;
}

std::optional<std::string_view> Handler::List(const Request& r,
                                              const core::transport::PeerAddress& peer,
                                              double now) {
  if (log_request_) log_.Debug("querying for services list:");
  if (!listing_) {
    if (log_request_) log_.Debug("listing is disabled");
    return kNone;
  }
  // The reference evaluates filter_host[0]: a tuple's first item or a str's first character.
  std::optional<Value> first;
  if (const auto* t = r.list_arg.get_if<core::brine::Tuple>()) {
    if (!t->items.empty()) first = t->items[0];
  } else if (const auto* s = r.list_arg.get_if<core::brine::Str>()) {
    if (!s->utf8.empty()) first = core::brine::Str{Utf8Chars(s->utf8)[0]};
  }
  if (!first) {
    WarnPeer(peer, "list argument is not a non-empty tuple: " + r.list_arg.Repr(), now);
    return std::nullopt;
  }
  // Unlike the reference, LIST never shows servers past the timeout.
  registry_.Prune(now);
  std::vector<std::string> names;
  const auto* host = first->get_if<core::brine::Str>();
  const bool falsy = first->is<core::brine::NoneType>() || (host != nullptr && host->utf8.empty());
  if (falsy) {
    names = registry_.List(std::nullopt);
  } else if (host != nullptr) {
    names = registry_.List(host->utf8);
  }  // any other truthy filter matches no host, as in the reference
  if (link_ != nullptr && (falsy || host != nullptr)) {
    // The names only other registries know follow this registry's own.
    std::vector<std::string> more =
        link_->mirror().Names(falsy ? std::nullopt : std::optional<std::string_view>(host->utf8));
    const std::unordered_set<std::string_view> known(names.begin(), names.end());
    std::erase_if(more, [&known](const std::string& n) { return known.count(n) != 0; });
    names.insert(names.end(), std::make_move_iterator(more.begin()),
                 std::make_move_iterator(more.end()));
  }
  size_t dropped = 0;
  reply_ = EncodeNames(names, limits_.list, &dropped);
  if (dropped > 0 && AllowWarning(peer, sources_.Get(RegistryHost(peer.host()), now), now)) {
    log_.Log(core::log::Level::warn, {{"RPYC_PEER", peer.text()}},
             "reply to {} truncated to {} bytes: {} of {} service names left out", peer.text(),
             limits_.list, dropped, names.size());
  }
  if (log_request_) log_.Debug("replying with {}", QuoteList(names));
  return reply_;
}

}  // namespace registryd
