#include "libcore/dnssd/publisher.h"

#include <algorithm>
#include <cctype>

#include <arpa/inet.h>
#include <avahi-client/client.h>
#include <avahi-client/publish.h>
#include <avahi-common/alternative.h>
#include <avahi-common/domain.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>

#include "libcore/dnssd/avahi_poll.h"

namespace core::dnssd {

namespace {

constexpr size_t kMaxLabel = 63;
constexpr int kMaxRenames = 20;
constexpr size_t kMaxTxtString = 255;

std::string CutLabel(std::string s) {
  if (s.size() > kMaxLabel) s.resize(kMaxLabel);
  return s;
}

struct ParsedAddress {
  AvahiAddress addr{};
  bool ok = false;
};

ParsedAddress ParseAddress(const std::string& host) {
  ParsedAddress p;
  p.ok = avahi_address_parse(host.c_str(), AVAHI_PROTO_UNSPEC, &p.addr) != nullptr;
  return p;
}

}  // namespace

std::string AliasSubtype(std::string_view alias) {
  if (alias.empty() || alias.size() > kMaxLabel - 1) return {};
  std::string s = "_";
  for (char c : alias) s.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  s += std::string("._sub.") + kServiceType;
  return avahi_is_valid_service_subtype(s.c_str()) != 0 ? s : std::string();
}

std::string AddressRecordName(std::string_view host, uint16_t port) {
  std::string s = "rpyc-";
  for (char c : host) s.push_back(c == '.' || c == ':' ? '-' : c);
  return CutLabel(s + "-" + std::to_string(port)) + ".local";
}

struct Publisher::Impl {
  struct Entry {
    Impl* impl = nullptr;
    Service service;
    std::string name;  // current name (after renames)
    AvahiEntryGroup* group = nullptr;
    bool established = false;
    int renames = 0;
  };

  Impl(daemon::EventLoop& loop, WarningCallback w, Options o)
      : poll(loop), warn(std::move(w)), options(o), retry(loop, [this] { Connect(); }) {}

  ~Impl() {
    entries.clear();  // groups die with the client
    if (client != nullptr) avahi_client_free(client);
  }

  void Warn(std::string msg) {
    if (warn) warn(Error::Io("dnssd: " + msg));
  }

  void Connect() {
    if (client != nullptr) {  // failed: free it (not allowed inside its own callback) and redo
      avahi_client_free(client);
      client = nullptr;
    }
    int err = 0;
    client = avahi_client_new(poll.api(), AVAHI_CLIENT_NO_FAIL, &ClientCallback, this, &err);
    if (client == nullptr) {
      WarnOnce("cannot reach avahi-daemon (" + std::string(avahi_strerror(err)) +
               "); retrying every " + std::to_string(options.retry.count()) + " ms");
      retry.Start(options.retry);
    }
  }

  // One warning per outage, not one per retry.
  void WarnOnce(std::string msg) {
    if (warned) return;
    warned = true;
    Warn(std::move(msg));
  }

  static void ClientCallback(AvahiClient* c, AvahiClientState state, void* self) noexcept {
    auto* impl = static_cast<Impl*>(self);
    impl->client = c;  // the first call comes from inside avahi_client_new
    try {
      impl->OnClientState(state);
    } catch (...) {
    }
  }

  void OnClientState(AvahiClientState state) {
    switch (state) {
      case AVAHI_CLIENT_S_RUNNING:
        warned = false;
        for (auto& [id, e] : entries) Build(*e);
        break;
      case AVAHI_CLIENT_S_COLLISION:
      case AVAHI_CLIENT_S_REGISTERING:
        // The daemon's own host name changed: our records are re-announced once it settles.
        for (auto& [id, e] : entries) Reset(*e);
        break;
      case AVAHI_CLIENT_CONNECTING:
        WarnOnce("avahi-daemon is not running; services are published when it starts");
        break;
      case AVAHI_CLIENT_FAILURE: {
        int err = avahi_client_errno(client);
        WarnOnce("lost avahi-daemon (" + std::string(avahi_strerror(err)) + "); reconnecting");
        for (auto& [id, e] : entries) {
          e->group = nullptr;  // freed with the client
          e->established = false;
        }
        retry.Start(std::chrono::milliseconds(0));  // Connect() frees the client and redoes
        break;
      }
    }
  }

  void Reset(Entry& e) {
    if (e.group != nullptr) avahi_entry_group_reset(e.group);
    e.established = false;
  }

  static void GroupCallback(AvahiEntryGroup* g, AvahiEntryGroupState state, void* self) noexcept {
    auto* e = static_cast<Entry*>(self);
    e->group = g;
    try {
      e->impl->OnGroupState(*e, state);
    } catch (...) {
    }
  }

  void OnGroupState(Entry& e, AvahiEntryGroupState state) {
    switch (state) {
      case AVAHI_ENTRY_GROUP_ESTABLISHED:
        e.established = true;
        break;
      case AVAHI_ENTRY_GROUP_COLLISION:
        Rename(e);
        break;
      case AVAHI_ENTRY_GROUP_FAILURE:
        Warn("publishing " + e.name + " failed: " +
             avahi_strerror(avahi_client_errno(avahi_entry_group_get_client(e.group))));
        break;
      default:
        break;
    }
  }

  void Rename(Entry& e) {
    if (++e.renames > kMaxRenames) {
      Warn("giving up on " + e.service.name + " after " + std::to_string(kMaxRenames) +
           " name collisions");
      Reset(e);
      return;
    }
    char* alt = avahi_alternative_service_name(e.name.c_str());
    std::string old = e.name;
    e.name = CutLabel(alt != nullptr ? alt : e.name + " #2");
    avahi_free(alt);
    Warn("service name collision: " + old + " renamed to " + e.name);
    Reset(e);
    Build(e);
  }

  // Adds the entry's records to its group and commits; on a local name collision renames.
  void Build(Entry& e) {
    if (client == nullptr || avahi_client_get_state(client) != AVAHI_CLIENT_S_RUNNING) return;
    if (e.group == nullptr) {
      e.group = avahi_entry_group_new(client, &GroupCallback, &e);
      if (e.group == nullptr) {
        Warn("avahi_entry_group_new: " + std::string(avahi_strerror(avahi_client_errno(client))));
        return;
      }
    }
    if (avahi_entry_group_is_empty(e.group) == 0) return;  // already built
    const Service& s = e.service;
    std::string host;
    int rc = 0;
    if (!s.host.empty()) {
      auto addr = ParseAddress(s.host);
      host = AddressRecordName(s.host, s.port);
      rc = avahi_entry_group_add_address(e.group, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC,
                                         AVAHI_PUBLISH_NO_REVERSE, host.c_str(), &addr.addr);
    }
    AvahiStringList* txt = avahi_string_list_new("txtvers=1", nullptr);
    // One TXT string holds at most 255 bytes: the aliases that fit (every alias still gets its
    // subtype).
    std::string aliases = "aliases=";
    for (size_t i = 0; i < s.aliases.size(); ++i) {
      const std::string item = (i ? "," : "") + s.aliases[i];
      if (aliases.size() + item.size() > kMaxTxtString) break;
      aliases += item;
    }
    txt = avahi_string_list_add(txt, aliases.c_str());
    if (!s.site.empty()) txt = avahi_string_list_add(txt, ("site=" + s.site).c_str());
    if (rc == 0) {
      rc = avahi_entry_group_add_service_strlst(e.group, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC,
                                                static_cast<AvahiPublishFlags>(0), e.name.c_str(),
                                                kServiceType, nullptr,
                                                host.empty() ? nullptr : host.c_str(), s.port, txt);
    }
    avahi_string_list_free(txt);
    for (const auto& alias : s.aliases) {
      auto sub = AliasSubtype(alias);
      if (rc != 0) break;
      if (sub.empty()) {
        // Still published (TXT aliases=), only not browsable by this alias.
        Warn("alias " + alias + " of " + e.name + " cannot be a DNS-SD subtype; skipped");
        continue;
      }
      rc = avahi_entry_group_add_service_subtype(e.group, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC,
                                                 static_cast<AvahiPublishFlags>(0), e.name.c_str(),
                                                 kServiceType, nullptr, sub.c_str());
    }
    if (rc == 0) rc = avahi_entry_group_commit(e.group);
    if (rc == AVAHI_ERR_COLLISION) {
      Rename(e);
    } else if (rc != 0) {
      Warn("publishing " + e.name + ": " + avahi_strerror(rc));
      avahi_entry_group_reset(e.group);
    }
  }

  AvahiLoopPoll poll;
  WarningCallback warn;
  Options options;
  daemon::Timer retry;
  AvahiClient* client = nullptr;
  bool warned = false;
  uint64_t next_id = 1;
  std::map<uint64_t, std::unique_ptr<Entry>> entries;
};

Publisher::Publisher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Publisher::~Publisher() = default;

std::unique_ptr<Publisher> Publisher::Create(daemon::EventLoop& loop, WarningCallback warn,
                                             Options options) {
  auto impl = std::make_unique<Impl>(loop, std::move(warn), options);
  Impl* raw = impl.get();
  std::unique_ptr<Publisher> p(new Publisher(std::move(impl)));
  raw->Connect();
  return p;
}

Result<uint64_t> Publisher::Publish(Service service) {
  if (service.port == 0 || service.name.empty()) {
    return Fail(Error::Usage("dnssd: a service needs a name and a port"));
  }
  if (!service.host.empty() && !ParseAddress(service.host).ok) {
    return Fail(Error::Usage("dnssd: host is not an IPv4/IPv6 address: " + service.host));
  }
  auto e = std::make_unique<Impl::Entry>();
  e->impl = impl_.get();
  e->name = CutLabel(service.name);
  e->service = std::move(service);
  uint64_t id = impl_->next_id++;
  Impl::Entry& ref = *e;
  impl_->entries.emplace(id, std::move(e));
  impl_->Build(ref);
  return id;
}

void Publisher::Withdraw(uint64_t id) {
  auto it = impl_->entries.find(id);
  if (it == impl_->entries.end()) return;
  if (it->second->group != nullptr) avahi_entry_group_free(it->second->group);
  impl_->entries.erase(it);
}

std::string Publisher::established_name(uint64_t id) const {
  auto it = impl_->entries.find(id);
  return it != impl_->entries.end() && it->second->established ? it->second->name : "";
}

bool Publisher::connected() const {
  return impl_->client != nullptr &&
         avahi_client_get_state(impl_->client) == AVAHI_CLIENT_S_RUNNING;
}

}  // namespace core::dnssd
