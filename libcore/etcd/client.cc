#include "libcore/etcd/client.h"

#include <algorithm>
#include <cstring>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

namespace core::etcd {

namespace {

std::string SslErrorText() {
  unsigned long e = ERR_get_error();  // NOLINT(google-runtime-int): OpenSSL's type
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

const char* RequestErrorText(int err) {
  switch (err) {
    case EVREQ_HTTP_TIMEOUT:
      return "timed out";
    case EVREQ_HTTP_EOF:
      return "connection closed";
    case EVREQ_HTTP_INVALID_HEADER:
      return "malformed HTTP reply";
    case EVREQ_HTTP_BUFFER_ERROR:
      return "connection failed";
    case EVREQ_HTTP_REQUEST_CANCEL:
      return "canceled";
    case EVREQ_HTTP_DATA_TOO_LONG:
      return "reply too long";
    default:
      return "connection failed";
  }
}

timeval ToTimeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

std::string Drain(evbuffer* buf) {
  std::string out(evbuffer_get_length(buf), '\0');
  if (!out.empty()) evbuffer_remove(buf, out.data(), out.size());
  return out;
}

}  // namespace

struct Client::Endpoint {
  std::string url;
  std::string host;
  uint16_t port = 0;
  bool https = false;
  // Kept-alive connections that answered their last request, most recent last. evhttp watches
  // an idle connection and reconnects by itself when the server has closed it meanwhile.
  std::vector<evhttp_connection*> idle;
};

struct Client::Tls {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx{nullptr, &SSL_CTX_free};
};

// One evhttp connection carrying one request at a time. The request's callbacks get this object;
// once buried (handed to the graveyard) its handlers are cleared, so a late callback does
// nothing, and the reaper frees it on a later loop turn, never inside its own callback. A call's
// connection that got a whole HTTP answer goes back to its endpoint's idle list (Recycle) for
// the next call, so calls do not pay a TCP (and TLS) handshake each.
struct Client::Connection {
  evhttp_connection* conn = nullptr;
  evhttp_request* req = nullptr;  // owned by conn (libevent frees it after the done callback)
  std::string endpoint;
  size_t index = 0;  // in endpoints_
  bool https = false;
  bool reused = false;  // taken from the idle list: the server may have closed it meanwhile
  int error = -1;       // the last evhttp_request_error, -1: none
  std::function<void(evhttp_request*)> on_done;
  std::function<void(evhttp_request*)> on_chunk;

  Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() {
    on_done = nullptr;
    on_chunk = nullptr;
    if (conn != nullptr) evhttp_connection_free(conn);
  }

  std::string FailureText() const {
    std::string text =
        endpoint + ": " + RequestErrorText(error == -1 ? EVREQ_HTTP_BUFFER_ERROR : error);
    // A TLS failure says why (certificate verify failed...), from the bufferevent's queue.
    bufferevent* bev = https ? evhttp_connection_get_bufferevent(conn) : nullptr;
    while (bev != nullptr) {
      unsigned long e = bufferevent_get_openssl_error(bev);  // NOLINT(google-runtime-int)
      if (e == 0) break;
      char buf[256];
      ERR_error_string_n(e, buf, sizeof buf);
      text += std::string(" (") + buf + ")";
    }
    return text;
  }

  static void DoneTrampoline(evhttp_request* req, void* self) noexcept {
    auto* c = static_cast<Connection*>(self);
    try {
      c->req = nullptr;  // libevent frees it after this callback
      if (c->on_done) c->on_done(req);
    } catch (...) {
    }
  }
  static void ChunkTrampoline(evhttp_request* req, void* self) noexcept {
    auto* c = static_cast<Connection*>(self);
    try {
      if (c->on_chunk) c->on_chunk(req);
    } catch (...) {
    }
  }
  static void ErrorTrampoline(evhttp_request_error err, void* self) noexcept {
    static_cast<Connection*>(self)->error = err;
  }

  // Sends POST `path` with a JSON body; false when evhttp refused (req already freed then).
  bool Post(const std::string& host, const std::string& path, const std::string& body,
            bool streaming) {
    req = evhttp_request_new(&DoneTrampoline, this);
    if (req == nullptr) return false;
    evhttp_request_set_error_cb(req, &ErrorTrampoline);
    if (streaming) evhttp_request_set_chunked_cb(req, &ChunkTrampoline);
    evkeyvalq* headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Host", host.c_str());
    evhttp_add_header(headers, "Content-Type", "application/json");
    if (streaming) evhttp_add_header(headers, "Connection", "close");  // never reused
    evbuffer_add(evhttp_request_get_output_buffer(req), body.data(), body.size());
    if (evhttp_make_request(conn, req, EVHTTP_REQ_POST, path.c_str()) != 0) {
      req = nullptr;
      return false;
    }
    NoDelay();
    return true;
  }

  // A request goes out in one write() and without Nagle's delay: bufferevents write at most
  // 16 KiB at a time, and a later small segment waited for the server's delayed ACK (40 ms
  // per transaction of a few dozen KiB). The socket exists once the request started
  // connecting (an address literal; a resolved name gets it later, then only the larger
  // writes apply). Set again for each request: evhttp makes a new socket when it reconnects.
  void NoDelay() {
    bufferevent* bev = evhttp_connection_get_bufferevent(conn);
    if (bev == nullptr) return;
    bufferevent_set_max_single_write(bev, 1 << 20);
    const evutil_socket_t fd = bufferevent_getfd(bev);
    const int one = 1;
    if (fd >= 0) (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
};

struct Client::Call {
  Call(daemon::EventLoop& loop, Client* client)
      : timer(loop, [this, client] { client->OnCallTimer(*this); }) {}
  std::string path;
  std::string body;
  std::function<void(Result<std::string>)> done;
  size_t endpoint = 0;
  size_t tries_left = 0;
  bool started = false;
  bool fresh_retry = false;  // a kept-alive connection failed before any answer: one more, new
  std::string errors;
  std::unique_ptr<Connection> conn;
  daemon::Timer timer;  // first a zero delay (start on the loop), then the attempt's deadline
};

Client::Client(daemon::EventLoop& loop, Options options)
    : loop_(loop), options_(std::move(options)), reaper_(loop, [this] {
        graveyard_.clear();
        finished_.clear();
      }) {}

Client::~Client() {
  calls_.clear();
  finished_.clear();
  graveyard_.clear();
  for (auto& e : endpoints_) {
    for (evhttp_connection* c : e.idle) evhttp_connection_free(c);
    e.idle.clear();
  }
  if (dns_ != nullptr) evdns_base_free(dns_, 0);  // after every connection that used it
}

Result<std::unique_ptr<Client>> Client::Create(daemon::EventLoop& loop, Options options) {
  if (options.endpoints.empty()) return Fail(Error::Config("etcd: no endpoint"));
  std::unique_ptr<Client> c(new Client(loop, std::move(options)));
  bool any_https = false;
  for (const auto& url : c->options_.endpoints) {
    std::unique_ptr<evhttp_uri, decltype(&evhttp_uri_free)> uri(evhttp_uri_parse(url.c_str()),
                                                                &evhttp_uri_free);
    const char* scheme = uri ? evhttp_uri_get_scheme(uri.get()) : nullptr;
    const char* host = uri ? evhttp_uri_get_host(uri.get()) : nullptr;
    int port = uri ? evhttp_uri_get_port(uri.get()) : -1;
    if (scheme == nullptr || host == nullptr || *host == '\0' ||
        (std::strcmp(scheme, "http") != 0 && std::strcmp(scheme, "https") != 0)) {
      return Fail(Error::Config("etcd: endpoint is not http(s)://host:port: " + url));
    }
    Endpoint e;
    e.url = url;
    e.host = host;
    e.https = std::strcmp(scheme, "https") == 0;
    e.port = static_cast<uint16_t>(port > 0 && port < 65536 ? port : 2379);
    any_https = any_https || e.https;
    c->endpoints_.push_back(std::move(e));
  }
  // Host names are resolved without blocking the loop (resolv.conf and /etc/hosts); without a
  // resolver evhttp falls back to a blocking getaddrinfo.
  c->dns_ = evdns_base_new(loop.base(),
                           EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
  const auto& o = c->options_;
  if (o.cert_file.empty() != o.key_file.empty()) {
    return Fail(Error::Config("etcd: cert_file and key_file go together"));
  }
  if (any_https) {
    c->tls_ = std::make_unique<Tls>();
    c->tls_->ctx.reset(SSL_CTX_new(TLS_client_method()));
    SSL_CTX* ctx = c->tls_->ctx.get();
    if (ctx == nullptr) return Fail(Error::Tls("etcd: SSL_CTX_new: " + SslErrorText()));
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    int ok = o.ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx)
                               : SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr);
    if (ok != 1) return Fail(Error::Config("etcd: ca_file " + o.ca_file + ": " + SslErrorText()));
    if (!o.cert_file.empty()) {
      if (SSL_CTX_use_certificate_chain_file(ctx, o.cert_file.c_str()) != 1 ||
          SSL_CTX_use_PrivateKey_file(ctx, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
          SSL_CTX_check_private_key(ctx) != 1) {
        return Fail(Error::Config("etcd: cert_file/key_file " + o.cert_file + ", " + o.key_file +
                                  ": " + SslErrorText()));
      }
    }
  }
  return c;
}

const std::string& Client::current_endpoint() const { return endpoints_[current_].url; }

Result<std::unique_ptr<Client::Connection>> Client::Connect(size_t index,
                                                            std::chrono::milliseconds timeout,
                                                            bool pooled) {
  Endpoint& e = endpoints_[index];
  if (pooled && !e.idle.empty()) {
    auto c = std::make_unique<Connection>();
    c->endpoint = e.url;
    c->index = index;
    c->https = e.https;
    c->reused = true;
    c->conn = e.idle.back();
    e.idle.pop_back();
    timeval tv = ToTimeval(timeout);
    evhttp_connection_set_timeout_tv(c->conn, &tv);
    return c;
  }
  bufferevent* bev = nullptr;
  if (e.https) {
    SSL* ssl = SSL_new(tls_->ctx.get());
    if (ssl == nullptr) return Fail(Error::Tls(e.url + ": SSL_new: " + SslErrorText()));
    in6_addr ip{};
    bool literal = inet_pton(AF_INET, e.host.c_str(), &ip) == 1 ||
                   inet_pton(AF_INET6, e.host.c_str(), &ip) == 1;
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    int ok = literal ? X509_VERIFY_PARAM_set1_ip_asc(param, e.host.c_str())
                     : X509_VERIFY_PARAM_set1_host(param, e.host.c_str(), 0);
    if (!literal) SSL_set_tlsext_host_name(ssl, e.host.c_str());
    if (ok != 1) {
      SSL_free(ssl);
      return Fail(Error::Tls(e.url + ": cannot verify host " + e.host));
    }
    // Takes the SSL (freed with the bufferevent, BEV_OPT_CLOSE_ON_FREE).
    bev = bufferevent_openssl_socket_new(loop_.base(), -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (bev == nullptr) {
      SSL_free(ssl);
      return Fail(Error::Tls(e.url + ": bufferevent_openssl_socket_new failed"));
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);  // the gateway closes without notify
  }
  auto c = std::make_unique<Connection>();
  c->endpoint = e.url;
  c->index = index;
  c->https = e.https;
  // Without a DNS base, a host name is resolved with a blocking getaddrinfo (README).
  c->conn =
      evhttp_connection_base_bufferevent_new(loop_.base(), nullptr, bev, e.host.c_str(), e.port);
  if (c->conn == nullptr) {
    if (bev != nullptr) bufferevent_free(bev);
    return Fail(Error::Io(e.url + ": cannot make an HTTP connection"));
  }
  timeval tv = ToTimeval(timeout);
  evhttp_connection_set_timeout_tv(c->conn, &tv);
  evhttp_connection_set_max_headers_size(c->conn, 64 << 10);
  evhttp_connection_set_max_body_size(c->conn, static_cast<ev_ssize_t>(options_.max_reply_bytes));
  return c;
}

void Client::Recycle(Connection& conn) {
  auto& idle = endpoints_[conn.index].idle;
  if (conn.conn == nullptr || idle.size() >= options_.max_idle_connections) return;
  idle.push_back(conn.conn);
  conn.conn = nullptr;  // the idle list owns it now
}

void Client::Bury(std::unique_ptr<Connection> conn) {
  if (!conn) return;
  conn->on_done = nullptr;
  conn->on_chunk = nullptr;
  graveyard_.push_back(std::move(conn));
  if (!reaper_.pending()) reaper_.Start(std::chrono::milliseconds(0));
}

void Client::Post(std::string path, std::string body,
                  std::function<void(Result<std::string>)> done) {
  auto call = std::make_unique<Call>(loop_, this);
  Call& c = *call;
  c.path = std::move(path);
  c.body = std::move(body);
  c.done = std::move(done);
  c.endpoint = current_;
  c.tries_left = endpoints_.size();
  calls_.push_back(std::move(call));
  c.timer.Start(std::chrono::milliseconds(0));  // the callback never runs inside the call
}

void Client::OnCallTimer(Call& c) {
  if (!c.started) {
    c.started = true;
    StartAttempt(c);
    return;
  }
  std::string why = c.conn ? c.conn->endpoint : std::string("etcd");
  FinishAttempt(c,
                Fail(Error::Io(why + ": no reply within " +
                               std::to_string(options_.timeout.count()) + " ms")),
                true);
}

void Client::StartAttempt(Call& call) {
  while (call.tries_left > 0) {
    --call.tries_left;
    size_t idx = call.endpoint;
    // evhttp's inactivity timeout backs up the call's own deadline, which reports first.
    auto conn = Connect(idx, options_.timeout * 2, !call.fresh_retry);
    if (conn && (*conn)->Post(endpoints_[idx].host, call.path, call.body, false)) {
      Connection& cn = **conn;
      cn.on_done = [this, &call, &cn](evhttp_request* req) {
        int code = req != nullptr ? evhttp_request_get_response_code(req) : 0;
        if (code == 0 && cn.reused && !call.fresh_retry) {
          // Closed by the server while idle (a restart...): once more on a new connection to
          // the same endpoint, without counting it as the endpoint's try.
          RetryFresh(call);  // frees this callback: nothing after
          return;
        }
        if (code == 0) {
          FinishAttempt(call, Fail(Error::Io(cn.FailureText())), true);
          return;
        }
        std::string body = Drain(evhttp_request_get_input_buffer(req));
        Recycle(cn);  // a whole answer: the connection can carry the next call
        if (code >= 200 && code < 300) {
          FinishAttempt(call, std::move(body), false);
        } else {
          auto e = Error::Protocol(cn.endpoint + ": HTTP " + std::to_string(code) + ": " +
                                   ErrorReplyText(body));
          FinishAttempt(call, Fail(std::move(e)), code >= 500);
        }
      };
      call.conn = std::move(*conn);
      call.timer.Start(options_.timeout);
      return;
    }
    call.errors += (call.errors.empty() ? "" : "; ") +
                   (conn ? endpoints_[idx].url + ": request refused" : conn.error().message());
    if (conn) Bury(std::move(*conn));
    call.endpoint = (idx + 1) % endpoints_.size();
  }
  FinishAttempt(call, Fail(Error::Io("etcd: no endpoint answered (" + call.errors + ")")), false);
}

void Client::RetryFresh(Call& call) {
  call.fresh_retry = true;
  call.timer.Stop();
  Bury(std::move(call.conn));
  ++call.tries_left;
  StartAttempt(call);
}

void Client::FinishAttempt(Call& call, Result<std::string> reply, bool retry) {
  call.timer.Stop();
  Bury(std::move(call.conn));
  if (!reply && retry) {
    call.errors += (call.errors.empty() ? "" : "; ") + reply.error().message();
    call.endpoint = (call.endpoint + 1) % endpoints_.size();
    if (call.tries_left > 0) {
      StartAttempt(call);
      return;
    }
    reply = Fail(Error(reply.error().code(), "etcd: no endpoint answered (" + call.errors + ")"));
  }
  if (reply) current_ = call.endpoint;
  auto done = std::move(call.done);
  // The Call (and the timer whose callback may be running) is freed by the reaper.
  auto it = std::find_if(calls_.begin(), calls_.end(), [&](auto& p) { return p.get() == &call; });
  if (it != calls_.end()) {
    finished_.push_back(std::move(*it));
    calls_.erase(it);
    if (!reaper_.pending()) reaper_.Start(std::chrono::milliseconds(0));
  }
  if (done) done(std::move(reply));
}

void Client::Range(std::string key, std::string range_end, Callback<RangeReply> cb) {
  Post("/v3/kv/range", RangeRequest(key, range_end), [cb = std::move(cb)](auto r) {
    cb(r.and_then([](const std::string& b) { return ParseRangeReply(b); }));
  });
}

void Client::PutAll(std::vector<std::pair<std::string, std::string>> kvs, int64_t lease,
                    Callback<TxnReply> cb) {
  Post("/v3/kv/txn", TxnPutRequest(kvs, lease), [cb = std::move(cb)](auto r) {
    cb(r.and_then([](const std::string& b) { return ParseTxnReply(b); }));
  });
}

void Client::Write(std::vector<Put> puts, std::vector<std::string> deletes, Callback<TxnReply> cb) {
  Post("/v3/kv/txn", TxnRequest(puts, deletes), [cb = std::move(cb)](auto r) {
    cb(r.and_then([](const std::string& b) { return ParseTxnReply(b); }));
  });
}

void Client::LeaseGrant(std::chrono::seconds ttl, Callback<LeaseReply> cb) {
  Post("/v3/lease/grant", LeaseGrantRequest(ttl.count()), [cb = std::move(cb)](auto r) {
    cb(r.and_then([](const std::string& b) { return ParseLeaseGrantReply(b); }));
  });
}

void Client::LeaseKeepAlive(int64_t id, Callback<KeepAliveReply> cb) {
  Post("/v3/lease/keepalive", LeaseIdRequest(id), [cb = std::move(cb)](auto r) {
    cb(r.and_then([](const std::string& b) { return ParseKeepAliveReply(b); }));
  });
}

void Client::LeaseRevoke(int64_t id, std::function<void(Status)> cb) {
  Post("/v3/lease/revoke", LeaseIdRequest(id), [cb = std::move(cb)](auto r) {
    cb(r.and_then([](const std::string& b) { return ParseRevokeReply(b); }));
  });
}

void Client::Compact(int64_t revision, std::function<void(Status)> cb) {
  Post("/v3/kv/compaction", CompactRequest(revision), [cb = std::move(cb)](auto r) {
    cb(r.and_then([](const std::string& b) { return ParseRevokeReply(b); }));
  });
}

std::unique_ptr<Watch> Client::StartWatch(std::string key, std::string range_end,
                                          int64_t start_revision, bool prev_kv, WatchCallback cb) {
  std::unique_ptr<Watch> w(
      new Watch(*this, WatchRequest(key, range_end, start_revision, prev_kv), std::move(cb)));
  w->endpoint_ = current_;
  w->tries_left_ = endpoints_.size();
  w->timer_.Start(std::chrono::milliseconds(0));
  return w;
}

// --- Watch -------------------------------------------------------------------------------------

Watch::Watch(Client& client, std::string body, WatchCallback cb)
    : client_(client),
      body_(std::move(body)),
      callback_(std::move(cb)),
      timer_(client.loop_, [this] { OnTimer(); }) {}

Watch::~Watch() {
  *alive_ = false;
  client_.Bury(std::move(attempt_));
}

void Watch::OnTimer() {
  if (!started_) {
    started_ = true;
    Start();
    return;
  }
  // The stream did not say "created" in time: next endpoint.
  Retry(attempt_ ? attempt_->endpoint + ": no watch reply within " +
                       std::to_string(client_.options_.timeout.count()) + " ms"
                 : std::string("watch: no reply"));
}

void Watch::Start() {
  auto& eps = client_.endpoints_;
  while (tries_left_ > 0) {
    --tries_left_;
    size_t idx = endpoint_;
    auto conn = client_.Connect(idx, client_.options_.watch_idle, false);
    if (conn && (*conn)->Post(eps[idx].host, "/v3/watch", body_, true)) {
      evhttp_connection_set_max_body_size((*conn)->conn, -1);  // a stream: bounded per line
      Client::Connection& cn = **conn;
      cn.on_chunk = [this](evhttp_request* req) { OnChunk(req); };
      cn.on_done = [this, &cn](evhttp_request* req) {
        int code = req != nullptr ? evhttp_request_get_response_code(req) : 0;
        if (req != nullptr) line_ += Drain(evhttp_request_get_input_buffer(req));
        std::string why = code == 0     ? cn.FailureText()
                          : code == 200 ? cn.endpoint + ": the server ended the watch"
                                        : cn.endpoint + ": HTTP " + std::to_string(code) + ": " +
                                              ErrorReplyText(line_);
        if (!created_ && (code == 0 || code >= 500)) {
          Retry(why);
        } else {
          End(Fail(Error::Io(why)));
        }
      };
      attempt_ = std::move(*conn);
      timer_.Start(client_.options_.timeout);
      return;
    }
    errors_ += (errors_.empty() ? "" : "; ") +
               (conn ? eps[idx].url + ": request refused" : conn.error().message());
    if (conn) client_.Bury(std::move(*conn));
    endpoint_ = (idx + 1) % eps.size();
  }
  End(Fail(Error::Io("etcd watch: no endpoint answered (" + errors_ + ")")));
}

void Watch::Retry(const std::string& why) {
  timer_.Stop();
  client_.Bury(std::move(attempt_));
  line_.clear();
  errors_ += (errors_.empty() ? "" : "; ") + why;
  endpoint_ = (endpoint_ + 1) % client_.endpoints_.size();
  if (tries_left_ == 0) {
    End(Fail(Error::Io("etcd watch: no endpoint answered (" + errors_ + ")")));
    return;
  }
  Start();
}

void Watch::OnChunk(evhttp_request* req) {
  line_ += Drain(evhttp_request_get_input_buffer(req));
  if (evhttp_request_get_response_code(req) != 200) {  // an error body: read whole in on_done
    if (line_.size() > client_.options_.max_reply_bytes) line_.resize(4096);
    return;
  }
  size_t start = 0;
  for (size_t nl; active_ && (nl = line_.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string_view line(line_.data() + start, nl - start);
    if (line.find_first_not_of(" \r\t") == std::string_view::npos) continue;
    auto update = ParseWatchMessage(line);
    if (!update) {
      End(Fail(update.error().WithContext(attempt_->endpoint)));
      return;
    }
    if (update->created && !created_) {
      created_ = true;
      timer_.Stop();
      client_.current_ = endpoint_;
    }
    if (update->compacted() || update->canceled) {
      End(std::move(update));
      return;
    }
    auto alive = alive_;
    callback_(std::move(update));
    if (!*alive) return;
  }
  line_.erase(0, start);
  if (line_.size() > client_.options_.max_reply_bytes) {
    End(Fail(Error::Limit(attempt_->endpoint + ": watch message longer than " +
                          std::to_string(client_.options_.max_reply_bytes) + " bytes")));
  }
}

void Watch::End(Result<WatchUpdate> last) {
  if (!active_) return;
  active_ = false;
  timer_.Stop();
  client_.Bury(std::move(attempt_));
  line_.clear();
  auto cb = std::move(callback_);
  cb(std::move(last));  // may destroy this Watch: nothing after
}

}  // namespace core::etcd
