#include "libcore/etcd/codec.h"

#include <charconv>
#include <sstream>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

namespace core::etcd {

namespace {

using nlohmann::json;

// Printable, at most 200 bytes: peer text quoted in an error message.
std::string Excerpt(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 200)) {
    auto u = static_cast<unsigned char>(c);
    out.push_back(u >= 0x20 && u < 0x7f ? c : '?');
  }
  if (text.size() > 200) out += "...";
  return out;
}

Result<json> ParseObject(std::string_view body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Fail(Error::Protocol("etcd reply is not JSON: " + Excerpt(body)));
  if (!j.is_object()) return Fail(Error::Protocol("etcd reply is not an object: " + Excerpt(body)));
  return j;
}

// A proto3 int64/uint64 field: a string of digits (what the gateway writes) or a JSON integer;
// absent means 0. Throws json::type_error (caught by the callers' Guard) when it is neither.
int64_t Int64(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  const auto& s = it->get_ref<const std::string&>();
  int64_t v = 0;
  // uint64 lease IDs above INT64_MAX do not occur: etcd makes IDs with the top bit clear.
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) {
    throw json::type_error::create(302, std::string(name) + " is not an integer: " + Excerpt(s),
                                   nullptr);
  }
  return v;
}

bool Bool(const json& obj, const char* name) {
  auto it = obj.find(name);
  return it != obj.end() && !it->is_null() && it->get<bool>();
}

std::string String(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return {};
  return it->get<std::string>();
}

// A member that must be an object (or an array): absent or null gives an empty one.
const json& Child(const json& obj, const char* name, bool array) {
  static const json kEmptyObject = json::object();
  static const json kEmptyArray = json::array();
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return array ? kEmptyArray : kEmptyObject;
  if (array ? !it->is_array() : !it->is_object()) {
    throw json::type_error::create(
        302, std::string(name) + (array ? " is not an array" : " is not an object"), nullptr);
  }
  return *it;
}

const json& Object(const json& obj, const char* name) { return Child(obj, name, false); }
const json& Array(const json& obj, const char* name) { return Child(obj, name, true); }

// Base64 fields: a decode failure is thrown as a type_error so Guard reports it with the rest.
std::string Bytes(const json& obj, const char* name) {
  auto decoded = Base64Decode(String(obj, name));
  if (!decoded) {
    throw json::type_error::create(302, std::string(name) + ": " + decoded.error().message(),
                                   nullptr);
  }
  return std::move(*decoded);
}

KeyValue ToKeyValue(const json& j) {
  KeyValue kv;
  kv.key = Bytes(j, "key");
  kv.value = Bytes(j, "value");
  kv.create_revision = Int64(j, "create_revision");
  kv.mod_revision = Int64(j, "mod_revision");
  kv.version = Int64(j, "version");
  kv.lease = Int64(j, "lease");
  return kv;
}

// Runs `f` over the parsed body, turning nlohmann's type errors (a field of the wrong type) into
// a Protocol error: the one place this library meets the throwing JSON API (STYLE.md §3).
template <typename F>
auto Guard(std::string_view what, std::string_view body, F f) -> decltype(f(json())) {
  auto j = ParseObject(body);
  if (!j) return Fail(j.error().WithContext(what));
  try {
    if (j->contains("error") && !j->contains("result")) {
      return Fail(Error::Protocol(std::string(what) + ": etcd error: " + ErrorReplyText(body)));
    }
    return f(*j);
  } catch (const json::exception& e) {
    return Fail(Error::Protocol(std::string(what) + ": malformed reply (" + e.what() +
                                "): " + Excerpt(body)));
  }
}

int64_t HeaderRevision(const json& j) { return Int64(Object(j, "header"), "revision"); }

}  // namespace

std::string Base64Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  if (bytes.empty()) return out;
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) {
    return Fail(Error::Protocol("base64 length is not a multiple of 4: " + Excerpt(text)));
  }
  size_t pad = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (c == '=' && i + 2 >= text.size()) {
      ++pad;
    } else if (pad > 0 || !(alnum || c == '+' || c == '/')) {
      return Fail(Error::Protocol("not base64: " + Excerpt(text)));
    }
  }
  if (text.empty()) return std::string();
  std::string out(text.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return Fail(Error::Protocol("not base64: " + Excerpt(text)));
  out.resize(static_cast<size_t>(n) - pad);  // EVP_DecodeBlock counts padding as zero bytes
  return out;
}

std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

std::string RangeRequest(std::string_view key, std::string_view range_end) {
  json j = {{"key", Base64Encode(key)}};
  if (!range_end.empty()) j["range_end"] = Base64Encode(range_end);
  return j.dump();
}

std::string TxnRequest(const std::vector<Put>& puts, const std::vector<std::string>& deletes) {
  json ops = json::array();
  for (const auto& p : puts) {
    json put = {{"key", Base64Encode(p.key)}, {"value", Base64Encode(p.value)}};
    if (p.lease != 0) put["lease"] = std::to_string(p.lease);
    ops.push_back({{"requestPut", std::move(put)}});
  }
  for (const auto& k : deletes) {
    ops.push_back({{"requestDeleteRange", {{"key", Base64Encode(k)}}}});
  }
  return json{{"success", std::move(ops)}}.dump();
}

std::string TxnPutRequest(const std::vector<std::pair<std::string, std::string>>& kvs,
                          int64_t lease) {
  std::vector<Put> puts;
  puts.reserve(kvs.size());
  for (const auto& [k, v] : kvs) puts.push_back({k, v, lease});
  return TxnRequest(puts, {});
}

std::string LeaseGrantRequest(int64_t ttl_seconds) {
  return json{{"TTL", std::to_string(ttl_seconds)}}.dump();
}

std::string LeaseIdRequest(int64_t id) { return json{{"ID", std::to_string(id)}}.dump(); }

std::string CompactRequest(int64_t revision) {
  return json{{"revision", std::to_string(revision)}}.dump();
}

std::string WatchRequest(std::string_view key, std::string_view range_end, int64_t start_revision,
                         bool prev_kv) {
  json create = {{"key", Base64Encode(key)}};
  if (!range_end.empty()) create["range_end"] = Base64Encode(range_end);
  if (start_revision > 0) create["start_revision"] = std::to_string(start_revision);
  if (prev_kv) create["prev_kv"] = true;
  return json{{"create_request", std::move(create)}}.dump();
}

Result<RangeReply> ParseRangeReply(std::string_view body) {
  return Guard("range", body, [](const json& j) -> Result<RangeReply> {
    RangeReply r;
    r.revision = HeaderRevision(j);
    for (const auto& kv : Array(j, "kvs")) r.kvs.push_back(ToKeyValue(kv));
    r.count = Int64(j, "count");
    r.more = Bool(j, "more");
    return r;
  });
}

Result<TxnReply> ParseTxnReply(std::string_view body) {
  return Guard("txn", body, [](const json& j) -> Result<TxnReply> {
    TxnReply r;
    r.revision = HeaderRevision(j);
    r.succeeded = Bool(j, "succeeded");
    return r;
  });
}

Result<LeaseReply> ParseLeaseGrantReply(std::string_view body) {
  auto r = Guard("lease grant", body, [](const json& j) -> Result<LeaseReply> {
    LeaseReply l;
    l.id = Int64(j, "ID");
    l.ttl = Int64(j, "TTL");
    return l;
  });
  if (r && (r->id == 0 || r->ttl <= 0)) {
    return Fail(Error::Protocol("lease grant: no ID or TTL in reply: " + Excerpt(body)));
  }
  return r;
}

Result<KeepAliveReply> ParseKeepAliveReply(std::string_view body) {
  // A streaming call: one {"result":...} per line; the gateway ends after the first.
  auto line = body.substr(0, body.find('\n'));
  return Guard("lease keepalive", line, [&](const json& j) -> Result<KeepAliveReply> {
    if (!j.contains("result")) {
      return Fail(Error::Protocol("lease keepalive: no result: " + Excerpt(body)));
    }
    const json& res = Object(j, "result");
    KeepAliveReply r;
    r.id = Int64(res, "ID");
    r.ttl = Int64(res, "TTL");
    return r;
  });
}

Status ParseRevokeReply(std::string_view body) {
  return Guard("lease revoke", body, [](const json&) -> Status { return {}; });
}

Result<WatchUpdate> ParseWatchMessage(std::string_view line) {
  return Guard("watch", line, [&](const json& j) -> Result<WatchUpdate> {
    if (!j.contains("result")) return Fail(Error::Protocol("watch: no result: " + Excerpt(line)));
    const json& res = Object(j, "result");
    WatchUpdate u;
    u.revision = HeaderRevision(res);
    u.created = Bool(res, "created");
    u.canceled = Bool(res, "canceled");
    u.compact_revision = Int64(res, "compact_revision");
    u.cancel_reason = String(res, "cancel_reason");
    for (const auto& e : Array(res, "events")) {
      WatchEvent ev;
      auto type = String(e, "type");
      if (type == "DELETE") {
        ev.type = WatchEvent::Type::kDelete;
      } else if (!type.empty() && type != "PUT") {
        return Fail(Error::Protocol("watch: unknown event type " + Excerpt(type)));
      }
      ev.kv = ToKeyValue(Object(e, "kv"));
      if (e.contains("prev_kv")) ev.prev_kv = ToKeyValue(Object(e, "prev_kv"));
      u.events.push_back(std::move(ev));
    }
    return u;
  });
}

std::string ErrorReplyText(std::string_view body) {
  // operator>> reads one JSON value and leaves what follows (the gateway appends gRPC trailers).
  std::istringstream in{std::string(body)};
  json j;
  try {
    in >> j;
    if (j.is_object()) {
      std::string msg;
      for (const char* field : {"message", "error"}) {
        if (msg.empty() && j.contains(field) && j[field].is_string()) msg = j[field];
      }
      if (!msg.empty()) {
        if (j.contains("code") && j["code"].is_number_integer()) {
          msg += " (code " + std::to_string(j["code"].get<int64_t>()) + ")";
        }
        return Excerpt(msg);
      }
    }
  } catch (const json::exception&) {
  }
  return Excerpt(body);
}

}  // namespace core::etcd
