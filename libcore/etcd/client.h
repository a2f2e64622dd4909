#pragma once

// An asynchronous client for etcd v3's JSON gateway (POST /v3/...), over libevent's evhttp on
// the caller's loop: every call returns at once and its callback runs later on the loop, never
// inside the call. Calls run concurrently, each on its own HTTP/1.1 connection, kept alive and
// reused by later calls (Options::max_idle_connections per endpoint; a watch has its own
// connection). Each call has a deadline (Options::timeout) and is tried
// on each endpoint in turn, starting with the last one that answered, until one answers with
// HTTP < 500; a 4xx answer (a dead lease...) is final. http:// and https:// endpoints (OpenSSL
// through bufferevent_openssl; server verified against ca_file, client certificate optional).
//
// Lifetimes: callbacks are dropped, never called, once the Client is destroyed. A Watch must
// not outlive its Client. Destroying a Watch inside its own callback is fine (connections are
// freed later on the loop); destroying the Client inside a callback is not: defer it.

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "libcore/base/result.h"
#include "libcore/daemon/loop.h"
#include "libcore/etcd/codec.h"

struct evdns_base;
struct evhttp_request;

namespace core::etcd {

struct Options {
  std::vector<std::string> endpoints;               // "http://127.0.0.1:2379", "https://etcd1:2379"
  std::chrono::milliseconds timeout{5'000};         // per attempt, per endpoint
  std::chrono::milliseconds watch_idle{3'600'000};  // a watch with no data this long ends
  std::string ca_file;    // https: the CA that signed the servers (empty: system default)
  std::string cert_file;  // https: client certificate and key (both or neither)
  std::string key_file;
  size_t max_reply_bytes = 16 << 20;
  size_t max_idle_connections = 64;  // kept alive per endpoint for the next calls
};

class Watch;
using WatchCallback = std::function<void(Result<WatchUpdate>)>;

class Client {
 public:
  template <typename T>
  using Callback = std::function<void(Result<T>)>;

  // Config errors: no endpoint, a URL that is not http(s)://host:port, unreadable TLS files.
  static Result<std::unique_ptr<Client>> Create(daemon::EventLoop& loop, Options options);
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client();

  // One key (range_end empty) or [key, range_end); PrefixEnd(prefix) reads a prefix.
  void Range(std::string key, std::string range_end, Callback<RangeReply> cb);
  // Every (key, value) in one transaction under `lease` (0: none).
  void PutAll(std::vector<std::pair<std::string, std::string>> kvs, int64_t lease,
              Callback<TxnReply> cb);
  // Every put (each under its own lease) and every delete in one transaction (etcd: at most
  // --max-txn-ops operations, 128 by default; a key at most once).
  void Write(std::vector<Put> puts, std::vector<std::string> deletes, Callback<TxnReply> cb);
  void LeaseGrant(std::chrono::seconds ttl, Callback<LeaseReply> cb);
  // reply.expired(): the lease is gone (grant again and rewrite the keys).
  void LeaseKeepAlive(int64_t id, Callback<KeepAliveReply> cb);
  void LeaseRevoke(int64_t id, std::function<void(Status)> cb);
  // Drops history before `revision` (a watch starting there then reports compaction).
  void Compact(int64_t revision, std::function<void(Status)> cb);
  // Events on [key, range_end) after start_revision - 1 (0: from now on).
  std::unique_ptr<Watch> StartWatch(std::string key, std::string range_end, int64_t start_revision,
                                    bool prev_kv, WatchCallback cb);

  size_t pending() const { return calls_.size(); }
  // The endpoint calls start with (the last one that answered).
  const std::string& current_endpoint() const;

 private:
  friend class Watch;
  struct Endpoint;
  struct Tls;
  struct Call;
  struct Connection;
  Client(daemon::EventLoop& loop, Options options);
  void OnCallTimer(Call& call);

  // The body of a 2xx reply, or an error.
  void Post(std::string path, std::string body, std::function<void(Result<std::string>)> done);
  void StartAttempt(Call& call);
  void FinishAttempt(Call& call, Result<std::string> reply, bool retry);
  // A kept-alive connection failed before any answer: the same endpoint on a new connection.
  void RetryFresh(Call& call);
  // A connection to endpoint `index` (an idle kept-alive one when `pooled` and there is one),
  // owned by the graveyard once buried.
  Result<std::unique_ptr<Connection>> Connect(size_t index, std::chrono::milliseconds timeout,
                                              bool pooled);
  // After a whole answer: the connection goes back to its endpoint's idle list.
  void Recycle(Connection& conn);
  void Bury(std::unique_ptr<Connection> conn);

  daemon::EventLoop& loop_;
  Options options_;
  std::vector<Endpoint> endpoints_;
  std::unique_ptr<Tls> tls_;
  evdns_base* dns_ = nullptr;  // owned; freed last
  size_t current_ = 0;
  std::list<std::unique_ptr<Call>> calls_;
  std::vector<std::unique_ptr<Call>> finished_;  // freed by the reaper
  std::vector<std::unique_ptr<Connection>> graveyard_;
  daemon::Timer reaper_;
};

// A running watch: updates arrive on the callback until an error (the stream failed, ended or
// could not start on any endpoint) or a compacted/canceled update; after either the watch is
// over (active() false) and the caller reads again and starts a new one.
class Watch {
 public:
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;
  ~Watch();
  bool active() const { return active_; }

 private:
  friend class Client;
  Watch(Client& client, std::string body, WatchCallback cb);
  void OnTimer();
  void Start();
  void Retry(const std::string& why);
  void OnChunk(evhttp_request* req);
  void End(Result<WatchUpdate> last);

  Client& client_;
  std::string body_;
  WatchCallback callback_;
  daemon::Timer timer_;  // first a zero delay (start on the loop), then "created" in time
  std::unique_ptr<Client::Connection> attempt_;
  std::string line_;  // bytes after the last complete line
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool active_ = true;
  bool started_ = false;
  bool created_ = false;
  size_t endpoint_ = 0;
  size_t tries_left_ = 0;
  std::string errors_;
};

}  // namespace core::etcd
