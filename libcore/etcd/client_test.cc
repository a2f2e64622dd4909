#include "libcore/etcd/client.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libcore/testing/run_loop.h"
#include "libcore/testing/sockets.h"
#include "libcore/testing/temp_path.h"

extern char** environ;  // NOLINT(readability-redundant-declaration): for posix_spawn

namespace core::etcd {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kEtcd = "/usr/bin/etcd";

// A port that was free a moment ago (etcd binds it itself; a clash makes Start() fail and retry).
uint16_t FreePort() {
  auto l = testing::ListenLoopback();
  return l.port;
}

// A throw-away single-member etcd on loopback: its own data dir, free client and peer ports.
class EtcdServer {
 public:
  ~EtcdServer() { Stop(); }

  // With a directory holding ca.pem, server.pem and server.key: https only, client certificates
  // signed by that CA required.
  void UseTls(std::string dir) { tls_dir_ = std::move(dir); }
  // Also listen on [::1] (same port), so a name resolving to either loopback reaches it.
  void AlsoIpv6() { ipv6_ = true; }

  bool Start() {
    for (int attempt = 0; attempt < 3; ++attempt) {
      client_port_ = FreePort();
      uint16_t peer = FreePort();
      dir_ = testing::TempPath("etcd");
      std::filesystem::remove_all(dir_);
      std::string curl = url();
      std::string purl = "http://127.0.0.1:" + std::to_string(peer);
      std::vector<std::string> args = {
          kEtcd,
          "--name=t",
          "--data-dir=" + dir_,
          "--unsafe-no-fsync",
          "--listen-client-urls=" + curl +
              (ipv6_ ? ",http://[::1]:" + std::to_string(client_port_) : std::string()),
          "--advertise-client-urls=" + curl,
          "--listen-peer-urls=" + purl,
          "--initial-advertise-peer-urls=" + purl,
          "--initial-cluster=t=" + purl};
      if (!tls_dir_.empty()) {
        args.push_back("--cert-file=" + tls_dir_ + "/server.pem");
        args.push_back("--key-file=" + tls_dir_ + "/server.key");
        args.push_back("--trusted-ca-file=" + tls_dir_ + "/ca.pem");
        args.push_back("--client-cert-auth");
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      // Its chatter goes to a file beside the data dir (kept when a test fails: see TearDown).
      posix_spawn_file_actions_t fa;
      posix_spawn_file_actions_init(&fa);
      std::string log = dir_ + ".log";
      posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      posix_spawn_file_actions_adddup2(&fa, 1, 2);
      int rc = posix_spawn(&pid_, kEtcd, &fa, nullptr, argv.data(), environ);
      posix_spawn_file_actions_destroy(&fa);
      if (rc != 0) return false;
      // Ready when the client port accepts (etcd serves the gateway from then on).
      bool up = testing::Eventually(
          [&] {
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
              pid_ = -1;
              return true;
            }
            return static_cast<bool>(testing::ConnectLoopback(client_port_));
          },
          seconds(20));
      if (up && pid_ > 0) return true;
      Stop();
    }
    return false;
  }

  void Stop() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      if (::testing::Test::HasFailure()) {
        std::cerr << "etcd's log: " << dir_ << ".log\n";
      } else {
        std::filesystem::remove(dir_ + ".log", ec);
      }
      dir_.clear();
    }
  }

  std::string url() const {
    return (tls_dir_.empty() ? "http://127.0.0.1:" : "https://127.0.0.1:") +
           std::to_string(client_port_);
  }

 private:
  std::string tls_dir_;
  bool ipv6_ = false;
  pid_t pid_ = -1;
  uint16_t client_port_ = 0;
  std::string dir_;
};

std::unique_ptr<Client> NewClient(daemon::EventLoop& loop, std::vector<std::string> endpoints,
                                  milliseconds timeout) {
  Options o;
  o.endpoints = std::move(endpoints);
  o.timeout = timeout;
  auto c = Client::Create(loop, o);
  EXPECT_TRUE(c) << c.error().ToString();
  return c ? std::move(*c) : nullptr;
}

template <typename T>
struct Slot {
  std::optional<T> value;
  auto Setter() {
    return [this](T v) { value.emplace(std::move(v)); };
  }
};

class EtcdClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kEtcd, X_OK) != 0) GTEST_SKIP() << kEtcd << " absent (apt-get install etcd-server)";
    ASSERT_TRUE(etcd_.Start()) << "could not start a throw-away etcd";
    client_ = DefaultClient();
    ASSERT_TRUE(client_);
    // Serving once a read succeeds (the port accepts a little before the member is leader).
    ASSERT_TRUE(testing::Eventually(
        [&] {
          auto r = RangePrefix(*client_, "/");
          return r.has_value();
        },
        seconds(20)))
        << "the throw-away etcd never answered";
  }

  std::unique_ptr<Client> MakeClient(std::vector<std::string> endpoints,
                                     milliseconds timeout = milliseconds(10'000)) {
    return NewClient(loop_, std::move(endpoints), timeout);
  }
  virtual std::unique_ptr<Client> DefaultClient() { return MakeClient({etcd_.url()}); }

  template <typename T>
  T Wait(Slot<T>& slot) {
    EXPECT_TRUE(testing::RunLoopUntil(
        loop_, [&] { return slot.value.has_value(); }, seconds(20)));
    return slot.value ? std::move(*slot.value) : T(Fail(Error::Io("test: no answer")));
  }

  Result<RangeReply> RangePrefix(Client& c, const std::string& prefix) {
    Slot<Result<RangeReply>> s;
    c.Range(prefix, PrefixEnd(prefix), s.Setter());
    return Wait(s);
  }

  daemon::EventLoop loop_ = testing::NewLoop();
  EtcdServer etcd_;
  std::unique_ptr<Client> client_;
};

TEST_F(EtcdClientTest, LeasePutRangeKeepAliveRevoke) {
  Slot<Result<LeaseReply>> grant;
  client_->LeaseGrant(seconds(30), grant.Setter());
  EXPECT_FALSE(grant.value) << "a callback ran inside the call";
  auto lease = Wait(grant);
  ASSERT_TRUE(lease) << lease.error().ToString();
  EXPECT_EQ(lease->ttl, 30);

  Slot<Result<TxnReply>> put;
  client_->PutAll({{"/t/svc/A/h:1/r", "one"}, {"/t/svc/B/h:1/r", std::string("t\0wo", 4)}},
                  lease->id, put.Setter());
  auto txn = Wait(put);
  ASSERT_TRUE(txn) << txn.error().ToString();
  EXPECT_TRUE(txn->succeeded);

  auto range = RangePrefix(*client_, "/t/svc/");
  ASSERT_TRUE(range) << range.error().ToString();
  ASSERT_EQ(range->kvs.size(), 2u);
  EXPECT_EQ(range->kvs[0].key, "/t/svc/A/h:1/r");
  EXPECT_EQ(range->kvs[1].value, std::string("t\0wo", 4));
  EXPECT_EQ(range->kvs[0].lease, lease->id);
  EXPECT_EQ(range->revision, txn->revision);

  Slot<Result<KeepAliveReply>> ka;
  client_->LeaseKeepAlive(lease->id, ka.Setter());
  auto alive = Wait(ka);
  ASSERT_TRUE(alive) << alive.error().ToString();
  EXPECT_FALSE(alive->expired());

  Slot<Status> revoke;
  client_->LeaseRevoke(lease->id, revoke.Setter());
  auto revoked = Wait(revoke);
  ASSERT_TRUE(revoked) << revoked.error().ToString();
  range = RangePrefix(*client_, "/t/svc/");
  ASSERT_TRUE(range);
  EXPECT_TRUE(range->kvs.empty());

  // A keepalive on a lease that is gone answers without a TTL: reported as expired.
  Slot<Result<KeepAliveReply>> ka2;
  client_->LeaseKeepAlive(lease->id, ka2.Setter());
  auto gone = Wait(ka2);
  ASSERT_TRUE(gone) << gone.error().ToString();
  EXPECT_TRUE(gone->expired());
  EXPECT_EQ(client_->pending(), 0u);
}

TEST_F(EtcdClientTest, ExpiredLeaseKeepAliveSaysExpiredAndKeysAreGone) {
  Slot<Result<LeaseReply>> grant;
  client_->LeaseGrant(seconds(1), grant.Setter());  // etcd raises it to its minimum (2 s)
  auto lease = Wait(grant);
  ASSERT_TRUE(lease) << lease.error().ToString();
  Slot<Result<TxnReply>> put;
  client_->PutAll({{"/e/k", "v"}}, lease->id, put.Setter());
  ASSERT_TRUE(Wait(put));
  std::optional<Result<KeepAliveReply>> last;
  // No keepalive until it lapses; then one says so.
  testing::RunLoopUntil(
      loop_, [] { return false; }, milliseconds(lease->ttl * 1000 + 500));
  ASSERT_TRUE(testing::Eventually(
      [&] {
        Slot<Result<KeepAliveReply>> ka;
        client_->LeaseKeepAlive(lease->id, ka.Setter());
        last = Wait(ka);
        return !*last || (*last)->expired();
      },
      seconds(15)));
  ASSERT_TRUE(*last) << last->error().ToString();
  EXPECT_TRUE((*last)->expired());
  auto range = RangePrefix(*client_, "/e/");
  ASSERT_TRUE(range);
  EXPECT_TRUE(range->kvs.empty());
}

TEST_F(EtcdClientTest, PutUnderDeadLeaseIsAFinalError) {
  Slot<Result<TxnReply>> put;
  client_->PutAll({{"k", "v"}}, 12345, put.Setter());
  auto r = Wait(put);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("requested lease not found"), std::string::npos)
      << r.error().ToString();
}

TEST_F(EtcdClientTest, WriteMixesLeasesAndDeletesInOneTransaction) {
  Slot<Result<LeaseReply>> g1, g2;
  client_->LeaseGrant(seconds(30), g1.Setter());
  client_->LeaseGrant(seconds(60), g2.Setter());
  auto l1 = Wait(g1), l2 = Wait(g2);
  ASSERT_TRUE(l1 && l2);
  Slot<Result<TxnReply>> first;
  client_->Write({{"/m/a", "1", l1->id}, {"/m/b", "2", l2->id}, {"/m/c", "3", 0}}, {},
                 first.Setter());
  ASSERT_TRUE(Wait(first));
  Slot<Result<TxnReply>> second;
  client_->Write({{"/m/d", "4", l1->id}}, {"/m/a", "/m/c", "/m/none"}, second.Setter());
  auto txn = Wait(second);
  ASSERT_TRUE(txn) << txn.error().ToString();
  auto range = RangePrefix(*client_, "/m/");
  ASSERT_TRUE(range);
  ASSERT_EQ(range->kvs.size(), 2u);
  EXPECT_EQ(range->kvs[0].key, "/m/b");
  EXPECT_EQ(range->kvs[0].lease, l2->id);
  EXPECT_EQ(range->kvs[1].key, "/m/d");
  EXPECT_EQ(range->kvs[1].lease, l1->id);
  // One dead lease fails the whole transaction: nothing of it is written.
  Slot<Result<TxnReply>> third;
  client_->Write({{"/m/e", "5", l1->id}, {"/m/f", "6", 12345}}, {"/m/b"}, third.Setter());
  auto failed = Wait(third);
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message().find("lease not found"), std::string::npos);
  range = RangePrefix(*client_, "/m/");
  ASSERT_TRUE(range);
  EXPECT_EQ(range->kvs.size(), 2u);
}

TEST_F(EtcdClientTest, WatchSeesPutsAndLeaseDeletes) {
  auto before = RangePrefix(*client_, "/w/");
  ASSERT_TRUE(before);
  std::vector<WatchEvent> events;
  std::optional<Error> ended;
  bool created = false;
  auto watch = client_->StartWatch("/w/", PrefixEnd("/w/"), before->revision + 1, true,
                                   [&](Result<WatchUpdate> u) {
                                     if (!u) {
                                       ended = u.error();
                                       return;
                                     }
                                     created = created || u->created;
                                     for (auto& e : u->events) events.push_back(e);
                                   });
  ASSERT_TRUE(testing::RunLoopUntil(
      loop_, [&] { return created || ended; }, seconds(20)));
  ASSERT_FALSE(ended) << ended->ToString();

  Slot<Result<LeaseReply>> grant;
  client_->LeaseGrant(seconds(30), grant.Setter());
  auto lease = Wait(grant);
  ASSERT_TRUE(lease);
  Slot<Result<TxnReply>> put;
  client_->PutAll({{"/w/a", "1"}, {"/x/outside", "2"}}, lease->id, put.Setter());
  ASSERT_TRUE(Wait(put));
  Slot<Status> revoke;
  client_->LeaseRevoke(lease->id, revoke.Setter());
  ASSERT_TRUE(Wait(revoke));

  ASSERT_TRUE(testing::RunLoopUntil(
      loop_, [&] { return events.size() >= 2 || ended; }, seconds(20)));
  ASSERT_FALSE(ended) << ended->ToString();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, WatchEvent::Type::kPut);
  EXPECT_EQ(events[0].kv.key, "/w/a");
  EXPECT_EQ(events[0].kv.value, "1");
  EXPECT_EQ(events[1].type, WatchEvent::Type::kDelete);
  ASSERT_TRUE(events[1].prev_kv);
  EXPECT_EQ(events[1].prev_kv->value, "1");
  EXPECT_TRUE(watch->active());
  watch.reset();
  EXPECT_TRUE(testing::RunLoopUntil(loop_, [&] { return client_->pending() == 0; }));
}

TEST_F(EtcdClientTest, WatchFromACompactedRevisionSaysSo) {
  Slot<Result<TxnReply>> put1, put2;
  client_->PutAll({{"/c/a", "1"}}, 0, put1.Setter());
  ASSERT_TRUE(Wait(put1));
  client_->PutAll({{"/c/a", "2"}}, 0, put2.Setter());
  auto second = Wait(put2);
  ASSERT_TRUE(second);
  Slot<Status> compact;
  client_->Compact(second->revision, compact.Setter());
  auto compacted = Wait(compact);
  ASSERT_TRUE(compacted) << compacted.error().ToString();

  std::optional<Result<WatchUpdate>> last;
  int calls = 0;
  auto watch = client_->StartWatch("/c/", PrefixEnd("/c/"), 1, false, [&](Result<WatchUpdate> u) {
    ++calls;
    if (!u || u->compacted()) last = std::move(u);
  });
  ASSERT_TRUE(testing::RunLoopUntil(
      loop_, [&] { return last.has_value(); }, seconds(20)));
  ASSERT_TRUE(*last) << last->error().ToString();
  EXPECT_TRUE((*last)->compacted());
  EXPECT_EQ((*last)->compact_revision, second->revision);
  EXPECT_FALSE(watch->active());
  // Over: nothing more arrives.
  int seen = calls;
  testing::RunLoopUntil(
      loop_, [] { return false; }, milliseconds(200));
  EXPECT_EQ(calls, seen);
}

TEST_F(EtcdClientTest, WatchEndsWithAnErrorWhenTheServerDies) {
  std::optional<Result<WatchUpdate>> last;
  bool created = false;
  auto watch = client_->StartWatch("/d/", PrefixEnd("/d/"), 0, false, [&](Result<WatchUpdate> u) {
    if (u && u->created) {
      created = true;
    } else {
      last = std::move(u);
    }
  });
  ASSERT_TRUE(testing::RunLoopUntil(
      loop_, [&] { return created; }, seconds(20)));
  etcd_.Stop();
  ASSERT_TRUE(testing::RunLoopUntil(
      loop_, [&] { return last.has_value(); }, seconds(20)));
  ASSERT_FALSE(*last);
  EXPECT_FALSE(watch->active());
}

// True when a socket can be bound to [::1] (IPv6 loopback is up).
bool HaveIpv6Loopback() {
  UniqueFd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_addr = in6addr_loopback;
  return fd && ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
}

class EtcdNameTest : public EtcdClientTest {
 protected:
  void SetUp() override {
    if (HaveIpv6Loopback()) etcd_.AlsoIpv6();
    EtcdClientTest::SetUp();
  }
};

TEST_F(EtcdNameTest, HostNameIsResolvedOnTheLoop) {
  auto url = etcd_.url();
  auto c = MakeClient({"http://localhost" + url.substr(url.rfind(':'))});
  ASSERT_TRUE(c);
  auto r = RangePrefix(*c, "/");
  ASSERT_TRUE(r) << r.error().ToString();
}

TEST_F(EtcdClientTest, DeadEndpointIsSkipped) {
  auto dead = "http://127.0.0.1:" + std::to_string(FreePort());
  auto c = MakeClient({dead, etcd_.url()});
  ASSERT_TRUE(c);
  auto r = RangePrefix(*c, "/");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(c->current_endpoint(), etcd_.url());
  // The next call starts with the endpoint that answered.
  r = RangePrefix(*c, "/");
  ASSERT_TRUE(r) << r.error().ToString();
}

// A CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl
// tool into `dir`, and a self-signed "other" CA; false when that fails. The server certificate
// also allows clientAuth: etcd's gateway presents it when it dials its own gRPC port.
bool MakeCertificates(const std::string& dir) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/server.ext") << "subjectAltName=IP:127.0.0.1\n"
                                        "extendedKeyUsage=serverAuth,clientAuth\n";
  std::ofstream(dir + "/client.ext") << "extendedKeyUsage=clientAuth\n";
  std::string script =
      "set -e; cd '" + dir +
      "'; k='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';"
      " openssl req -x509 $k -keyout ca.key -out ca.pem -days 2 -subj /CN=rpyc-test-ca;"
      " for n in server client; do"
      "  openssl req $k -keyout $n.key -out $n.csr -subj /CN=$n;"
      "  openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
      "   -extfile $n.ext -out $n.pem;"
      " done; openssl req -x509 $k -keyout other.key -out other.pem -days 2 -subj /CN=other"
      " 2>/dev/null";
  return std::system(("(" + script + ") >/dev/null 2>&1").c_str()) == 0;  // NOLINT(cert-env33-c)
}

class EtcdTlsTest : public EtcdClientTest {
 protected:
  void SetUp() override {
    if (access(kEtcd, X_OK) != 0) GTEST_SKIP() << kEtcd << " absent (apt-get install etcd-server)";
    dir_ = testing::TempPath("tls");
    if (!MakeCertificates(dir_)) GTEST_SKIP() << "the openssl tool could not make certificates";
    etcd_.UseTls(dir_);
    EtcdClientTest::SetUp();
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  std::unique_ptr<Client> TlsClient(const std::string& ca, bool client_cert) {
    Options o;
    o.endpoints = {etcd_.url()};
    o.timeout = milliseconds(10'000);
    o.ca_file = dir_ + "/" + ca;
    if (client_cert) {
      o.cert_file = dir_ + "/client.pem";
      o.key_file = dir_ + "/client.key";
    }
    auto c = Client::Create(loop_, o);
    EXPECT_TRUE(c) << c.error().ToString();
    return c ? std::move(*c) : nullptr;
  }
  std::unique_ptr<Client> DefaultClient() override { return TlsClient("ca.pem", true); }
  std::string dir_;
};

TEST_F(EtcdTlsTest, HttpsWithClientCertificate) {
  Client* c = client_.get();
  Slot<Result<TxnReply>> put;
  c->PutAll({{"/tls/k", "v"}}, 0, put.Setter());
  auto txn = Wait(put);
  ASSERT_TRUE(txn) << txn.error().ToString();
  auto r = RangePrefix(*c, "/tls/");
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->kvs.size(), 1u);
  EXPECT_EQ(r->kvs[0].value, "v");

  // A watch streams over TLS too.
  std::optional<Result<WatchUpdate>> created;
  auto w = c->StartWatch("/tls/", PrefixEnd("/tls/"), 1, false, [&](Result<WatchUpdate> u) {
    if (!created) created = std::move(u);
  });
  ASSERT_TRUE(testing::RunLoopUntil(
      loop_, [&] { return created.has_value(); }, seconds(20)));
  ASSERT_TRUE(*created) << created->error().ToString();
}

TEST_F(EtcdTlsTest, WrongCaOrNoClientCertificateFails) {
  auto wrong_ca = TlsClient("other.pem", true);
  ASSERT_TRUE(wrong_ca);
  auto r = RangePrefix(*wrong_ca, "/");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("certificate verify failed"), std::string::npos)
      << r.error().ToString();
  auto no_cert = TlsClient("ca.pem", false);
  ASSERT_TRUE(no_cert);
  r = RangePrefix(*no_cert, "/");
  EXPECT_FALSE(r);
}

// --- against a fake server ----------------------------------------------------------------------

// Accepts connections on loopback and answers each with `reply` (then closes), or with nothing
// (hang: keeps the connection open until the test ends). With `keep`, a connection answers
// requests until the client closes it (kKeepAlive), or answers the first and closes at the
// second without answering (kFirstOnly: a server closing an idle kept-alive connection).
class FakeServer {
 public:
  enum class Keep { kNo, kKeepAlive, kFirstOnly };
  explicit FakeServer(std::string reply, bool hang = false, Keep keep = Keep::kNo)
      : reply_(std::move(reply)), hang_(hang), keep_(keep), listener_(testing::ListenLoopback()) {
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeServer() {
    stop_ = true;
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(listener_.port); }
  int accepted() const { return accepted_; }

 private:
  void Serve() {
    std::vector<UniqueFd> open;
    while (!stop_) {
      pollfd p{listener_.fd.get(), POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      UniqueFd fd(accept4(listener_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!fd) continue;
      ++accepted_;
      if (hang_) {
        open.push_back(std::move(fd));
        continue;
      }
      char buf[4096];
      pollfd r{fd.get(), POLLIN, 0};
      if (keep_ != Keep::kNo) {
        // One request per read (small requests on loopback); the next request or EOF.
        for (int n = 0; !stop_ && poll(&r, 1, 2000) > 0; ++n) {
          if (read(fd.get(), buf, sizeof buf) <= 0 || (n > 0 && keep_ == Keep::kFirstOnly)) break;
          (void)!write(fd.get(), reply_.data(), reply_.size());
        }
        continue;
      }
      // Read the request head before answering, so the client sees the reply and not a reset.
      if (poll(&r, 1, 2000) > 0) (void)!read(fd.get(), buf, sizeof buf);
      (void)!write(fd.get(), reply_.data(), reply_.size());
      shutdown(fd.get(), SHUT_WR);
      if (poll(&r, 1, 200) > 0) (void)!read(fd.get(), buf, sizeof buf);
    }
  }

  std::string reply_;
  bool hang_;
  Keep keep_;
  testing::LoopbackListener listener_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

class EtcdFakeTest : public ::testing::Test {
 protected:
  std::unique_ptr<Client> MakeClient(std::vector<std::string> endpoints,
                                     milliseconds timeout = milliseconds(5'000)) {
    return NewClient(loop_, std::move(endpoints), timeout);
  }
  Result<RangeReply> Range(Client& c) {
    std::optional<Result<RangeReply>> r;
    c.Range("k", "", [&](Result<RangeReply> v) { r.emplace(std::move(v)); });
    EXPECT_TRUE(testing::RunLoopUntil(
        loop_, [&] { return r.has_value(); }, seconds(20)));
    return r ? std::move(*r) : Result<RangeReply>(Fail(Error::Io("test: no answer")));
  }
  daemon::EventLoop loop_ = testing::NewLoop();
};

std::string HttpReply(std::string_view status, std::string_view body) {
  return "HTTP/1.1 " + std::string(status) +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + std::string(body);
}

std::string KeptAliveReply(std::string_view body) {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

TEST_F(EtcdFakeTest, CallsReuseAKeptAliveConnection) {
  FakeServer fake(KeptAliveReply(R"({"header":{"revision":"5"}})"), false,
                  FakeServer::Keep::kKeepAlive);
  auto c = MakeClient({fake.url()});
  for (int i = 0; i < 5; ++i) {
    auto r = Range(*c);
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_EQ(r->revision, 5);
  }
  EXPECT_EQ(fake.accepted(), 1);
}

TEST_F(EtcdFakeTest, KeptAliveConnectionClosedByTheServerIsRetriedOnANewOne) {
  FakeServer fake(KeptAliveReply(R"({"header":{"revision":"5"}})"), false,
                  FakeServer::Keep::kFirstOnly);
  auto c = MakeClient({fake.url()});  // one endpoint: the retry is not a next endpoint
  for (int i = 0; i < 3; ++i) {
    auto r = Range(*c);
    ASSERT_TRUE(r) << i << ": " << r.error().ToString();
  }
  EXPECT_EQ(fake.accepted(), 3);  // each call after the first: closed, then a new one
}

TEST_F(EtcdFakeTest, MalformedJsonIsAProtocolError) {
  FakeServer fake(HttpReply("200 OK", R"({"header":{"revision":"1"},"kvs":[{"key":)"));
  auto c = MakeClient({fake.url()});
  auto r = Range(*c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Error::Code::kProtocol) << r.error().ToString();
}

TEST_F(EtcdFakeTest, GarbageThatIsNotHttpIsAnError) {
  const char kGarbage[] = "\x16\x03\x01\x00\xff garbage\r\n\r\n";
  FakeServer fake(std::string(kGarbage, sizeof kGarbage - 1));
  auto c = MakeClient({fake.url()});
  auto r = Range(*c);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find(fake.url()), std::string::npos) << r.error().ToString();
}

TEST_F(EtcdFakeTest, HangingServerTimesOutWithoutBlockingTheLoop) {
  FakeServer fake("", /*hang=*/true);
  auto c = MakeClient({fake.url()}, milliseconds(300));
  bool ticked = false;
  daemon::Timer tick(loop_, [&] { ticked = true; });
  tick.Start(milliseconds(50));
  auto start = std::chrono::steady_clock::now();
  auto r = Range(*c);
  ASSERT_FALSE(r);
  EXPECT_TRUE(ticked) << "the loop was blocked";
  EXPECT_NE(r.error().message().find("300 ms"), std::string::npos) << r.error().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(10));
}

TEST_F(EtcdFakeTest, ServerErrorTriesTheNextEndpoint) {
  FakeServer bad(HttpReply("503 Service Unavailable", R"({"error":"no leader","code":14})"));
  FakeServer good(HttpReply("200 OK", R"({"header":{"revision":"5"}})"));
  auto c = MakeClient({bad.url(), good.url()});
  auto r = Range(*c);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->revision, 5);
  EXPECT_EQ(c->current_endpoint(), good.url());
}

TEST_F(EtcdFakeTest, AllEndpointsFailingNamesEach) {
  FakeServer bad(HttpReply("503 Service Unavailable", R"({"error":"no leader","code":14})"));
  auto dead = "http://127.0.0.1:" + std::to_string(FreePort());
  auto c = MakeClient({bad.url(), dead});
  auto r = Range(*c);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("no leader"), std::string::npos) << r.error().ToString();
  EXPECT_NE(r.error().message().find(dead), std::string::npos) << r.error().ToString();
}

TEST_F(EtcdFakeTest, ReplyOverTheLimitIsAnError) {
  std::string big = R"({"header":{"revision":"1"},"pad":")" + std::string(4096, 'x') + "\"}";
  FakeServer fake(HttpReply("200 OK", big));
  Options o;
  o.endpoints = {fake.url()};
  o.max_reply_bytes = 1024;
  auto c = Client::Create(loop_, o);
  ASSERT_TRUE(c);
  auto r = Range(**c);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("reply too long"), std::string::npos) << r.error().ToString();
}

TEST_F(EtcdFakeTest, UnresolvableNameIsAnError) {
  auto c = MakeClient({"http://rpyc-test.invalid:2379"}, milliseconds(1'000));
  auto r = Range(*c);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("rpyc-test.invalid"), std::string::npos)
      << r.error().ToString();
}

TEST_F(EtcdFakeTest, WatchGarbageLineEndsTheWatch) {
  FakeServer fake(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "8\r\n{\"a\":[1\n\r\n");
  auto c = MakeClient({fake.url()});
  std::optional<Result<WatchUpdate>> got;
  auto w = c->StartWatch("k", "", 0, false, [&](Result<WatchUpdate> u) { got = std::move(u); });
  ASSERT_TRUE(testing::RunLoopUntil(
      loop_, [&] { return got.has_value(); }, seconds(20)));
  ASSERT_FALSE(*got);
  EXPECT_EQ(got->error().code(), Error::Code::kProtocol) << got->error().ToString();
  EXPECT_FALSE(w->active());
}

TEST_F(EtcdFakeTest, WatchOnHangingServerEndsAfterTimeout) {
  FakeServer fake("", /*hang=*/true);
  auto c = MakeClient({fake.url()}, milliseconds(300));
  std::optional<Result<WatchUpdate>> got;
  auto w = c->StartWatch("k", "", 0, false, [&](Result<WatchUpdate> u) { got = std::move(u); });
  ASSERT_TRUE(testing::RunLoopUntil(
      loop_, [&] { return got.has_value(); }, seconds(20)));
  ASSERT_FALSE(*got);
  EXPECT_NE(got->error().message().find("no watch reply"), std::string::npos)
      << got->error().ToString();
}

TEST(EtcdClientCreate, RejectsBadEndpoints) {
  auto loop = testing::NewLoop();
  for (const char* url : {"127.0.0.1:2379", "ftp://h:1", "http://"}) {
    Options o;
    o.endpoints = {url};
    auto c = Client::Create(loop, o);
    ASSERT_FALSE(c) << url;
    EXPECT_EQ(c.error().code(), Error::Code::kConfig);
  }
  Options none;
  EXPECT_FALSE(Client::Create(loop, none));
  Options tls;
  tls.endpoints = {"https://127.0.0.1:1"};
  tls.ca_file = "/nonexistent/ca.pem";
  auto c = Client::Create(loop, tls);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find("/nonexistent/ca.pem"), std::string::npos);
}

}  // namespace
}  // namespace core::etcd
