#pragma once

// The JSON of etcd v3's gateway (grpc-gateway, proto3 JSON mapping), without any I/O: request
// bodies for the calls the client makes, and parsers for their replies. The mapping's pitfalls:
// keys and values are base64; 64-bit numbers (revisions, lease IDs, TTLs) come as strings; zero
// values are left out (an empty range has no "kvs", a PUT event has no "type", a keepalive on an
// expired lease has no "TTL"). Parsers take untrusted text and return Error::Protocol on anything
// malformed; they never throw.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "libcore/base/result.h"

namespace core::etcd {

std::string Base64Encode(std::string_view bytes);
// Standard alphabet with padding, as the gateway writes it; anything else is a Protocol error.
Result<std::string> Base64Decode(std::string_view text);

// The range_end that makes a range cover every key starting with `prefix` (etcd's rule: the
// prefix with its last byte below 0xff incremented, the rest dropped; "\0" for an empty or
// all-0xff prefix, meaning "to the end of the key space").
std::string PrefixEnd(std::string_view prefix);

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

struct RangeReply {
  int64_t revision = 0;  // header.revision: where a watch resumes (revision + 1)
  std::vector<KeyValue> kvs;
  int64_t count = 0;
  bool more = false;
};

struct TxnReply {
  int64_t revision = 0;
  bool succeeded = false;
};

struct LeaseReply {
  int64_t id = 0;
  int64_t ttl = 0;  // seconds granted (etcd may raise a short TTL)
};

struct KeepAliveReply {
  int64_t id = 0;
  int64_t ttl = 0;  // 0 when the lease has expired or was revoked: grant again and rewrite
  bool expired() const { return ttl <= 0; }
};

struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;                      // for a DELETE: the key and the deletion's mod_revision
  std::optional<KeyValue> prev_kv;  // when the watch asked for prev_kv
};

// One message of a watch stream.
struct WatchUpdate {
  int64_t revision = 0;  // header.revision
  bool created = false;
  bool canceled = false;
  int64_t compact_revision = 0;  // > 0: the start revision was compacted away; the watch ends
  std::string cancel_reason;
  std::vector<WatchEvent> events;
  bool compacted() const { return compact_revision > 0; }
};

// One put of a transaction.
struct Put {
  std::string key;
  std::string value;
  int64_t lease = 0;  // 0: none
};

// Request bodies.
std::string RangeRequest(std::string_view key, std::string_view range_end);
// Puts every (key, value) in one transaction, each under `lease` (0: none).
std::string TxnPutRequest(const std::vector<std::pair<std::string, std::string>>& kvs,
                          int64_t lease);
// Every put, each under its own lease, and every delete (one key each) in one transaction. A
// key may appear once (etcd refuses a transaction that names a key twice).
std::string TxnRequest(const std::vector<Put>& puts, const std::vector<std::string>& deletes);
std::string LeaseGrantRequest(int64_t ttl_seconds);
std::string LeaseIdRequest(int64_t id);  // keepalive and revoke
std::string CompactRequest(int64_t revision);
std::string WatchRequest(std::string_view key, std::string_view range_end, int64_t start_revision,
                         bool prev_kv);

// Reply parsers.
Result<RangeReply> ParseRangeReply(std::string_view body);
Result<TxnReply> ParseTxnReply(std::string_view body);
Result<LeaseReply> ParseLeaseGrantReply(std::string_view body);
Result<KeepAliveReply> ParseKeepAliveReply(std::string_view body);  // {"result":{...}}
Status ParseRevokeReply(std::string_view body);  // and any reply whose content is not needed
Result<WatchUpdate> ParseWatchMessage(std::string_view line);  // {"result":{...}} or {"error":..}

// The message of an error reply ({"code":5,"error":"...","message":"..."}, possibly followed
// by gRPC trailers); the body itself, shortened and printable, when it is not that JSON.
std::string ErrorReplyText(std::string_view body);

}  // namespace core::etcd
