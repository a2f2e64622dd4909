#include "libcore/protocol/connection.h"

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "libcore/channel/frame_reader.h"
#include "libcore/channel/frame_writer.h"
#include "libcore/transport/memory_stream.h"

namespace core::protocol {
namespace {

using brine::MakeStr;
using brine::MakeTuple;
using brine::Value;
using transport::MemoryStream;

Value Vinegar(const char* type, Value arg) {
  return MakeTuple({MakeTuple({MakeStr("builtins"), MakeStr(type)}), MakeTuple({std::move(arg)}),
                    MakeTuple({}), MakeStr("fake traceback\n")});
}

// A scripted object space. Requests are CALLs whose boxed args are (1, (op, arg...)):
//   ("echo", x)        -> x
//   ("raise", msg)     -> exception ValueError(msg)
//   ("stop",)          -> StopIteration (exception value 1)
//   ("bounce", n)      -> n == 0 ? 0 : 1 + (the peer's answer to ("bounce", n - 1))
//   ("ask", ms, op...) -> the peer's answer to (op...), waiting at most ms; a failed Call comes
//                         back as exception RuntimeError(<error message>)
//   ("notify", n)      -> sends n DELs to the peer without waiting, then returns n
//   ("sleep", ms)      -> None, after ms
//   ("hook", ...)      -> what the test's `hook` returns (on the thread that read the request)
// DEL requests count the references released; GETROOT returns (1, 'root').
class FakeSpace : public ObjectSpace {
 public:
  void set_peer(Peer* p) { peer_ = p; }

  Outcome Handle(Handler h, const Value& boxed) override {
    ++handled;
    if (h == Handler::kGetRoot) return Outcome::Reply(BoxValue(MakeStr("root")));
    if (h == Handler::kDel) {
      ++dels;
      return Outcome::Reply(BoxValue(brine::NoneType{}));
    }
    if (h == Handler::kPing) {  // only non-value pings reach the object space
      ++pings;
      return Outcome::Reply(BoxValue(MakeStr("space-ping")));
    }
    if (h != Handler::kCall) return Outcome::Exception(Vinegar("NotImplementedError", 0));
    const auto& args = boxed.as<brine::Tuple>().items[1].as<brine::Tuple>().items;
    const std::string op = args[0].as<brine::Str>().utf8;
    if (op == "echo") return Outcome::Reply(BoxValue(args[1]));
    if (op == "hook") return hook(args);
    if (op == "raise") return Outcome::Exception(Vinegar("ValueError", args[1]));
    if (op == "stop") return Outcome::Exception(Value(kExcStopIteration));
    if (op == "sleep") {
      std::this_thread::sleep_for(std::chrono::milliseconds(args[1].as<brine::Int>().small()));
      return Outcome::Reply(BoxValue(brine::NoneType{}));
    }
    if (op == "notify") {
      const int64_t n = args[1].as<brine::Int>().small();
      for (int64_t i = 0; i < n; ++i) {
        EXPECT_TRUE(peer_->Notify(Handler::kDel, BoxValue(MakeTuple({MakeStr("x"), 1}))));
      }
      return Outcome::Reply(BoxValue(n));
    }
    if (op == "bounce") {
      const int64_t n = args[1].as<brine::Int>().small();
      for (int64_t seen = max_depth.load();
           n > seen && !max_depth.compare_exchange_weak(seen, n);) {
      }
      if (n == 0) return Outcome::Reply(BoxValue(0));
      auto r = peer_->Call(Handler::kCall, BoxValue(MakeTuple({MakeStr("bounce"), n - 1})));
      if (!r) return Outcome::Exception(Vinegar("RuntimeError", MakeStr(r.error().message())));
      if (r->kind != Outcome::Kind::kReply) return *r;
      const int64_t inner = r->value.tree()->as<brine::Tuple>().items[1].as<brine::Int>().small();
      return Outcome::Reply(BoxValue(inner + 1));
    }
    if (op == "ask") {
      const int ms = static_cast<int>(args[1].as<brine::Int>().small());
      std::vector<Value> rest(args.begin() + 2, args.end());
      auto r = peer_->Call(Handler::kCall, BoxValue(MakeTuple(std::move(rest))), ms);
      if (!r) {
        last_call_error = r.error();
        return Outcome::Exception(Vinegar("RuntimeError", MakeStr(r.error().message())));
      }
      return *r;
    }
    return Outcome::Exception(Vinegar("KeyError", MakeStr(op)));
  }
  void OnDisconnect() override { disconnected = true; }
  size_t LocalObjectCount() const override { return 0; }

  std::atomic<int> handled{0};
  std::atomic<int> dels{0};
  std::atomic<int> pings{0};
  std::atomic<int64_t> max_depth{0};
  std::function<Outcome(const std::vector<Value>&)> hook;
  std::atomic<bool> disconnected{false};
  std::optional<Error> last_call_error;

 private:
  Peer* peer_ = nullptr;
};

Value CallArgs(std::vector<Value> op) { return BoxValue(MakeTuple(std::move(op))); }

std::string Frame(const Message& m, Generation g) {
  std::string out;
  channel::AppendFrame(EncodeMessage(m, g), &out, channel::Compression::kNever);
  return out;
}

std::string RawFrame(std::string_view payload) {
  std::string out;
  channel::AppendFrame(payload, &out, channel::Compression::kNever);
  return out;
}

Message Request(uint64_t seq, Handler h, Value boxed) {
  return Message{MsgType::kRequest, seq, MakeRequestArgs(h, std::move(boxed))};
}

std::string Hex(std::string_view s) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    if (!out.empty()) out += ' ';
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

// The server: a Connection with a FakeSpace serving one end of a MemoryStream pair on its own
// thread. The test drives the other end, raw or through a client Connection.
class Server {
 public:
  explicit Server(std::unique_ptr<MemoryStream> stream, ConnectionOptions opts = {})
      : stream_(std::move(stream)), conn_(*stream_, opts) {
    space_.set_peer(&conn_);
    conn_.set_object_space(&space_);
    thread_ = std::thread([this] {
      result_ = conn_.Serve();
      space_.OnDisconnect();
      done_ = true;
    });
  }
  ~Server() {
    conn_.Shutdown();
    Join();
  }
  Result<EndReason> Join() {
    if (thread_.joinable()) thread_.join();
    return result_;
  }
  Connection& conn() { return conn_; }
  FakeSpace& space() { return space_; }
  bool done() const { return done_; }

 private:
  std::unique_ptr<MemoryStream> stream_;
  Connection conn_;
  FakeSpace space_;
  std::thread thread_;
  Result<EndReason> result_ = Fail(Error::Usage("not run"));
  std::atomic<bool> done_{false};
};

// Reads frames from the raw end of the pair.
class RawPeer {
 public:
  explicit RawPeer(MemoryStream& s) : s_(s) {}
  void Write(std::string_view bytes) { ASSERT_TRUE(s_.WriteAll(bytes).has_value()); }
  // The next payload, or nullopt at end of stream.
  std::optional<std::string> Next() {
    for (;;) {
      auto p = reader_.Next();
      EXPECT_TRUE(p.has_value());
      if (!p) return std::nullopt;
      if (*p) return **p;
      std::array<char, 4096> buf{};
      auto n = s_.Read(buf);
      EXPECT_TRUE(n.has_value());
      if (!n || *n == 0) return std::nullopt;
      reader_.Append(std::string_view(buf.data(), *n));
    }
  }
  Message NextMessage(Generation g) {
    auto p = Next();
    EXPECT_TRUE(p.has_value());
    if (!p) return {};
    auto m = DecodeMessage(*p, g);
    EXPECT_TRUE(m.has_value()) << m.error().ToString();
    return m ? *m : Message{};
  }

 private:
  MemoryStream& s_;
  channel::FrameReader reader_;
};

class ConnectionTest : public ::testing::TestWithParam<Generation> {
 protected:
  Generation gen() const { return GetParam(); }
  const char* version() const { return gen() == Generation::kV5 ? "5.3.0" : "6.0.1"; }
};

INSTANTIATE_TEST_SUITE_P(BothGenerations, ConnectionTest,
                         ::testing::Values(Generation::kV5, Generation::kV6),
                         [](const ::testing::TestParamInfo<Generation>& p) {
                           return p.param == Generation::kV5 ? std::string("V5")
                                                             : std::string("V6");
                         });

TEST(ConnectionGolden, PingRepliesInTheGenerationOfTheRequest) {
  // docs/protocol.md §3.3: REQ seq=160 PING 'hi'.
  const std::string v5_req(
      "\x00\x00\x00\x10\x00\x12\x51\x16\x03\x31\x36\x30\x11\x51\x11\x51\x10"
      "\x08\x0b\x68\x69\x0a",
      22);
  const std::string v6_req = std::string("\x00\x00\x00\x10\x00\x01\x11", 7) + v5_req.substr(7);
  for (const auto& [req, rep] :
       {std::pair{v5_req, std::string("\x00\x00\x00\x0d\x00\x12\x52\x16\x03\x31\x36\x30\x11\x51"
                                      "\x08\x0b\x68\x69\x0a",
                                      19)},
        std::pair{v6_req, std::string("\x00\x00\x00\x0d\x00\x02\x11\x16\x03\x31\x36\x30\x11\x51"
                                      "\x08\x0b\x68\x69\x0a",
                                      19)}}) {
    auto [client, server_end] = MemoryStream::Pair();
    Server server(std::move(server_end));
    ASSERT_TRUE(client->WriteAll(req).has_value());
    std::string got;
    while (got.size() < rep.size()) {
      std::array<char, 64> buf{};
      auto n = client->Read(buf);
      ASSERT_TRUE(n.has_value());
      ASSERT_NE(*n, 0u);
      got.append(buf.data(), *n);
    }
    EXPECT_EQ(Hex(got), Hex(rep));
    client->Shutdown();
    auto end = server.Join();
    ASSERT_TRUE(end.has_value()) << end.error().ToString();
    EXPECT_EQ(*end, EndReason::kEof);
    EXPECT_EQ(server.space().handled, 0);  // the engine answered PING itself
  }
}

TEST_P(ConnectionTest, RepliesAndExceptionsInPeerGeneration) {
  auto [client, server_end] = MemoryStream::Pair();
  Server server(std::move(server_end));
  RawPeer raw(*client);
  raw.Write(Frame(Request(0, Handler::kGetRoot, BoxValue(MakeTuple({}))), gen()));
  raw.Write(Frame(Request(1, Handler::kCall, CallArgs({MakeStr("raise"), MakeStr("bad")})), gen()));
  raw.Write(Frame(Request(2, Handler::kCall, CallArgs({MakeStr("stop")})), gen()));
  Message m = raw.NextMessage(gen());
  EXPECT_EQ(m.type, MsgType::kReply);
  EXPECT_EQ(m.seq, 0u);
  EXPECT_EQ(m.args, BoxValue(MakeStr("root")));
  m = raw.NextMessage(gen());
  EXPECT_EQ(m.type, MsgType::kException);
  EXPECT_EQ(m.seq, 1u);
  EXPECT_EQ(m.args, Vinegar("ValueError", MakeStr("bad")));
  m = raw.NextMessage(gen());
  EXPECT_EQ(m.type, MsgType::kException);
  EXPECT_EQ(m.seq, 2u);
  EXPECT_EQ(m.args, Value(1));
  EXPECT_EQ(server.conn().generation(), gen());
}

TEST_P(ConnectionTest, UnknownHandlerIsKeyErrorAndTheConnectionStaysUp) {
  auto [client, server_end] = MemoryStream::Pair();
  Server server(std::move(server_end));
  RawPeer raw(*client);
  Message req{MsgType::kRequest, 5, MakeTuple({99, BoxValue(MakeTuple({}))})};
  raw.Write(Frame(req, gen()));
  Message m = raw.NextMessage(gen());
  EXPECT_EQ(m.type, MsgType::kException);
  EXPECT_EQ(m.seq, 5u);
  const auto& v = m.args.tree()->as<brine::Tuple>().items;
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(v[0], MakeTuple({MakeStr("builtins"), MakeStr("KeyError")}));
  EXPECT_EQ(v[1], MakeTuple({99}));
  EXPECT_EQ(v[2], MakeTuple({MakeTuple({MakeStr("_remote_version"), MakeStr(version())})}));
  EXPECT_NE(v[3].as<brine::Str>().utf8.find("KeyError: 99"), std::string::npos);

  // A str handler key comes back as such: Python's dict lookup raised KeyError('x').
  req.args = MakeTuple({MakeStr("x"), BoxValue(MakeTuple({}))});
  req.seq = 6;
  raw.Write(Frame(req, gen()));
  m = raw.NextMessage(gen());
  EXPECT_EQ(m.args.tree()->as<brine::Tuple>().items[1], MakeTuple({MakeStr("x")}));

  raw.Write(Frame(Request(7, Handler::kPing, BoxValue(MakeTuple({MakeStr("still")}))), gen()));
  m = raw.NextMessage(gen());
  EXPECT_EQ(m.type, MsgType::kReply);
  EXPECT_EQ(m.args, BoxValue(MakeStr("still")));
  EXPECT_EQ(server.space().handled, 0);
}

TEST_P(ConnectionTest, BadRequestShapeIsTypeError) {
  auto [client, server_end] = MemoryStream::Pair();
  Server server(std::move(server_end));
  RawPeer raw(*client);
  raw.Write(Frame(Message{MsgType::kRequest, 0, Value(7)}, gen()));
  Message m = raw.NextMessage(gen());
  EXPECT_EQ(m.type, MsgType::kException);
  EXPECT_EQ(m.args.tree()->as<brine::Tuple>().items[0],
            MakeTuple({MakeStr("builtins"), MakeStr("TypeError")}));
  // CLOSE with arguments is a TypeError too, and does not close.
  raw.Write(Frame(Request(1, Handler::kClose, BoxValue(MakeTuple({1}))), gen()));
  m = raw.NextMessage(gen());
  EXPECT_EQ(m.type, MsgType::kException);
  EXPECT_EQ(m.seq, 1u);
  raw.Write(Frame(Request(2, Handler::kPing, BoxValue(MakeTuple({1}))), gen()));
  m = raw.NextMessage(gen());
  EXPECT_EQ(m.type, MsgType::kReply);
}

TEST_P(ConnectionTest, CloseEndsTheConnectionWithoutAReply) {
  auto [client, server_end] = MemoryStream::Pair();
  Server server(std::move(server_end));
  RawPeer raw(*client);
  raw.Write(Frame(Request(0, Handler::kPing, BoxValue(MakeTuple({1}))), gen()));
  raw.Write(Frame(Request(1, Handler::kClose, BoxValue(MakeTuple({}))), gen()));
  Message m = raw.NextMessage(gen());
  EXPECT_EQ(m.seq, 0u);
  EXPECT_FALSE(raw.Next().has_value());  // EOF, no reply to CLOSE: what the 6.x client waits for
  auto end = server.Join();
  ASSERT_TRUE(end.has_value()) << end.error().ToString();
  EXPECT_EQ(*end, EndReason::kClose);
  EXPECT_TRUE(server.space().disconnected);
}

// rpyc's conn.close() from the server's own code: CLOSE (no arguments, its reply not awaited),
// then the end.
void ExpectCloseRequest(RawPeer& raw, Generation g) {
  Message m = raw.NextMessage(g);
  EXPECT_EQ(m.type, MsgType::kRequest);
  ASSERT_NE(m.args.tree(), nullptr);
  const auto& items = m.args.tree()->as<brine::Tuple>().items;  // (handler, boxed args)
  EXPECT_EQ(items[0], Value(brine::Int(static_cast<int>(Handler::kClose))));
  EXPECT_EQ(items[1], MakeTuple({brine::Int(kLabelTuple), MakeTuple({})}));
  EXPECT_FALSE(raw.Next().has_value());  // then EOF
}

TEST_P(ConnectionTest, CloseFromThisSideSendsCloseThenEnds) {
  auto [client, server_end] = MemoryStream::Pair();
  Server server(std::move(server_end));
  RawPeer raw(*client);
  raw.Write(Frame(Request(0, Handler::kPing, BoxValue(MakeTuple({1}))), gen()));
  EXPECT_EQ(raw.NextMessage(gen()).seq, 0u);
  server.conn().Close();
  ExpectCloseRequest(raw, gen());
  auto end = server.Join();
  ASSERT_TRUE(end.has_value()) << end.error().ToString();
  EXPECT_EQ(*end, EndReason::kShutdown);
}

TEST_P(ConnectionTest, CloseBeforeThePeerSpeaksWaitsForItsFirstFrameAndServesNothing) {
  auto [client, server_end] = MemoryStream::Pair();
  Connection conn(*server_end, {});
  FakeSpace space;
  space.set_peer(&conn);
  conn.set_object_space(&space);
  conn.Close();  // as from on_connect: the generation is not known yet
  std::optional<Result<EndReason>> end;
  std::thread serving([&] { end = conn.Serve(); });
  RawPeer raw(*client);
  raw.Write(Frame(Request(7, Handler::kPing, BoxValue(MakeTuple({MakeStr("first")}))), gen()));
  ExpectCloseRequest(raw, gen());  // in the generation of the first frame, which has no reply
  serving.join();
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(space.handled, 0);  // and no reply to the ping (the next frame was CLOSE)
}

TEST_P(ConnectionTest, PingWithAReferenceGoesToTheObjectSpace) {
  auto [client, server_end] = MemoryStream::Pair();
  Server server(std::move(server_end));
  RawPeer raw(*client);
  const Value boxed =
      MakeTuple({kLabelTuple, MakeTuple({BoxRemoteRef(MakeTuple({MakeStr("a"), 1, 2}))})});
  raw.Write(Frame(Request(0, Handler::kPing, boxed), gen()));
  Message m = raw.NextMessage(gen());
  EXPECT_EQ(m.args, BoxValue(MakeStr("space-ping")));
  EXPECT_EQ(server.space().pings, 1);
}

TEST_P(ConnectionTest, PipelinedRequestsAreAllAnsweredBySeq) {
  auto [client, server_end] = MemoryStream::Pair();
  Server server(std::move(server_end));
  RawPeer raw(*client);
  std::string burst;
  for (int i = 0; i < 50; ++i) {
    burst += Frame(
        Request(static_cast<uint64_t>(i), Handler::kCall, CallArgs({MakeStr("echo"), i * 1000})),
        gen());
  }
  burst += RawFrame("");  // an empty frame in between is ignored, as Python does
  burst += Frame(Request(50, Handler::kCall, CallArgs({MakeStr("echo"), 50000})), gen());
  raw.Write(burst);
  for (int i = 0; i <= 50; ++i) {
    Message m = raw.NextMessage(gen());
    EXPECT_EQ(m.seq, static_cast<uint64_t>(i));
    EXPECT_EQ(m.args, BoxValue(i * 1000));
  }
}

// Two engines talking to each other: the client side is a Connection too, with its own space,
// so the server's callbacks are served by the client while it waits (docs/protocol.md §8).
struct Pair {
  explicit Pair(Generation g) {
    auto [c, s] = MemoryStream::Pair();
    client_stream = std::move(c);
    ConnectionOptions copts;
    copts.generation = g;
    client = std::make_unique<Connection>(*client_stream, copts);
    client_space.set_peer(client.get());
    client->set_object_space(&client_space);
    server = std::make_unique<Server>(std::move(s));
  }
  ~Pair() {
    client_stream->Shutdown();
    server->Join();
  }
  std::unique_ptr<MemoryStream> client_stream;
  std::unique_ptr<Connection> client;
  FakeSpace client_space;
  std::unique_ptr<Server> server;
};

TEST_P(ConnectionTest, NestedCallbacksGoArbitrarilyDeep) {
  Pair p(gen());
  auto r = p.client->Call(Handler::kCall, CallArgs({MakeStr("bounce"), 301}));
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  ASSERT_EQ(r->kind, Outcome::Kind::kReply);
  EXPECT_EQ(r->value, BoxValue(301));
  EXPECT_EQ(p.server->space().max_depth.load(), 301);  // odd depths ran on the server...
  EXPECT_EQ(p.client_space.max_depth.load(), 300);     // ...even ones on the client
  EXPECT_EQ(p.server->conn().generation(), gen());
}

TEST_P(ConnectionTest, ExceptionsTravelThroughNesting) {
  Pair p(gen());
  // The server asks the client to raise; the client's exception is the server's answer.
  auto r = p.client->Call(Handler::kCall,
                          CallArgs({MakeStr("ask"), 5000, MakeStr("raise"), MakeStr("deep")}));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->kind, Outcome::Kind::kException);
  EXPECT_EQ(r->value, Vinegar("ValueError", MakeStr("deep")));
}

TEST_P(ConnectionTest, NotifyRepliesAreDropped) {
  Pair p(gen());
  auto r = p.client->Call(Handler::kCall, CallArgs({MakeStr("notify"), 20}));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->value, BoxValue(20));
  // The client served the DELs (they came before the reply); their replies must not be taken
  // for the answer to this next call.
  r = p.client->Call(Handler::kCall, CallArgs({MakeStr("echo"), MakeStr("after")}));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->value, BoxValue(MakeStr("after")));
  EXPECT_EQ(p.client_space.dels, 20);
  // And the client's own Notify: the server answers, the client drops the reply.
  ASSERT_TRUE(p.client->Notify(Handler::kDel, BoxValue(MakeTuple({MakeStr("x"), 1}))));
  r = p.client->Call(Handler::kCall, CallArgs({MakeStr("echo"), 1}));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->value, BoxValue(1));
  EXPECT_EQ(p.server->space().dels, 1);
}

TEST_P(ConnectionTest, LargeValuesBothWays) {
  Pair p(gen());
  std::string big(16 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7919) >> 3);
  auto r = p.client->Call(
      Handler::kCall, CallArgs({MakeStr("ask"), 30000, MakeStr("echo"), brine::MakeBytes(big)}));
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  ASSERT_EQ(r->kind, Outcome::Kind::kReply);
  EXPECT_TRUE(r->value == BoxValue(brine::MakeBytes(big)));
}

TEST_P(ConnectionTest, OwnCallTimesOutAndTheLateReplyIsDropped) {
  auto [client, server_end] = MemoryStream::Pair();
  Server server(std::move(server_end));
  RawPeer raw(*client);
  raw.Write(Frame(Request(0, Handler::kCall, CallArgs({MakeStr("ask"), 100, MakeStr("echo"), 1})),
                  gen()));
  Message callback = raw.NextMessage(gen());  // the server's request to us: left unanswered
  EXPECT_EQ(callback.type, MsgType::kRequest);
  EXPECT_EQ(callback.seq, 0u);
  Message m = raw.NextMessage(gen());
  EXPECT_EQ(m.type, MsgType::kException);
  EXPECT_EQ(m.seq, 0u);
  ASSERT_TRUE(server.space().last_call_error.has_value());
  EXPECT_EQ(server.space().last_call_error->code(), Error::Code::kLimit);
  EXPECT_NE(server.space().last_call_error->message().find("result expired"), std::string::npos);
  // The late reply is ignored; the connection still works.
  raw.Write(Frame(Message{MsgType::kReply, 0, BoxValue(1)}, gen()));
  raw.Write(Frame(Request(1, Handler::kPing, BoxValue(MakeTuple({2}))), gen()));
  m = raw.NextMessage(gen());
  EXPECT_EQ(m.type, MsgType::kReply);
  EXPECT_EQ(m.seq, 1u);
  EXPECT_EQ(m.args, BoxValue(2));
}

// A hosted service's on_connect calls the client before the client has said anything: the call
// waits for the client's first frame (which tells the generation), serves the request in it, and
// then sends its own request in that generation.
TEST_P(ConnectionTest, CallBeforeThePeerSpeaksWaitsForItsFirstFrame) {
  auto [client, server_end] = MemoryStream::Pair();
  Connection conn(*server_end, {});
  FakeSpace space;
  space.set_peer(&conn);
  conn.set_object_space(&space);
  EXPECT_FALSE(conn.generation_known());
  std::optional<Result<Outcome>> result;
  std::thread caller([&] { result = conn.Call(Handler::kGetRoot, BoxValue(MakeTuple({})), 5000); });
  RawPeer raw(*client);
  raw.Write(Frame(Request(7, Handler::kPing, BoxValue(MakeTuple({MakeStr("first")}))), gen()));
  Message pong = raw.NextMessage(gen());  // served while the call waited
  EXPECT_EQ(pong.type, MsgType::kReply);
  EXPECT_EQ(pong.seq, 7u);
  Message request = raw.NextMessage(gen());  // then the call itself, in the client's generation
  EXPECT_EQ(request.type, MsgType::kRequest);
  raw.Write(Frame(Message{MsgType::kReply, request.seq, BoxValue(42)}, gen()));
  caller.join();
  ASSERT_TRUE(result.has_value());
  ASSERT_TRUE(result->has_value()) << (*result).error().ToString();
  EXPECT_EQ((*result)->kind, Outcome::Kind::kReply);
  EXPECT_EQ(conn.generation(), gen());
  conn.Shutdown();
}

TEST_P(ConnectionTest, OutOfOrderRepliesToNestedCallsAreMatchedBySeq) {
  auto [client, server_end] = MemoryStream::Pair();
  Server server(std::move(server_end));
  RawPeer raw(*client);
  // Request 0 makes the server call us (its seq 0). While it waits, our request 1 makes it call
  // us again (its seq 1). We answer seq 0 first: the inner wait must keep it for the outer one.
  raw.Write(Frame(
      Request(0, Handler::kCall, CallArgs({MakeStr("ask"), 5000, MakeStr("echo"), MakeStr("A")})),
      gen()));
  Message a = raw.NextMessage(gen());
  ASSERT_EQ(a.type, MsgType::kRequest);
  raw.Write(Frame(
      Request(1, Handler::kCall, CallArgs({MakeStr("ask"), 5000, MakeStr("echo"), MakeStr("B")})),
      gen()));
  Message b = raw.NextMessage(gen());
  ASSERT_EQ(b.type, MsgType::kRequest);
  EXPECT_EQ(a.seq, 0u);
  EXPECT_EQ(b.seq, 1u);
  raw.Write(Frame(Message{MsgType::kReply, a.seq, BoxValue(MakeStr("answer-A"))}, gen()));
  raw.Write(Frame(Message{MsgType::kReply, b.seq, BoxValue(MakeStr("answer-B"))}, gen()));
  Message r1 = raw.NextMessage(gen());  // the inner request (ours, seq 1) finishes first
  EXPECT_EQ(r1.seq, 1u);
  EXPECT_EQ(r1.args, BoxValue(MakeStr("answer-B")));
  Message r0 = raw.NextMessage(gen());
  EXPECT_EQ(r0.seq, 0u);
  EXPECT_EQ(r0.args, BoxValue(MakeStr("answer-A")));
}

TEST_P(ConnectionTest, CloseWhileTheServerWaitsEndsTheNestedCall) {
  auto [client, server_end] = MemoryStream::Pair();
  Server server(std::move(server_end));
  RawPeer raw(*client);
  raw.Write(Frame(Request(0, Handler::kCall, CallArgs({MakeStr("ask"), 5000, MakeStr("echo"), 1})),
                  gen()));
  EXPECT_EQ(raw.NextMessage(gen()).type, MsgType::kRequest);
  raw.Write(Frame(Request(1, Handler::kClose, BoxValue(MakeTuple({}))), gen()));
  EXPECT_FALSE(raw.Next().has_value());
  auto end = server.Join();
  ASSERT_TRUE(end.has_value()) << end.error().ToString();
  EXPECT_EQ(*end, EndReason::kClose);
  ASSERT_TRUE(server.space().last_call_error.has_value());
  EXPECT_EQ(server.space().last_call_error->code(), Error::Code::kClosed);
}

TEST_P(ConnectionTest, MalformedMessageClosesTheConnectionNamingThePeer) {
  auto [client, server_end] = MemoryStream::Pair();
  Server server(std::move(server_end));
  RawPeer raw(*client);
  raw.Write(Frame(Request(0, Handler::kPing, BoxValue(MakeTuple({1}))), gen()));
  EXPECT_EQ(raw.NextMessage(gen()).seq, 0u);
  // A valid frame whose payload is not a message: a truncated tuple.
  const std::string head =
      gen() == Generation::kV5 ? std::string("\x12\x51", 2) : std::string("\x01\x11", 2);
  raw.Write(RawFrame(head + "\x51"));
  EXPECT_FALSE(raw.Next().has_value());
  auto end = server.Join();
  ASSERT_FALSE(end.has_value());
  EXPECT_EQ(end.error().code(), Error::Code::kProtocol);
  EXPECT_NE(end.error().message().find("peer memory"), std::string::npos) << end.error().message();
}

TEST_P(ConnectionTest, SwitchingGenerationMidConnectionIsAnError) {
  auto [client, server_end] = MemoryStream::Pair();
  Server server(std::move(server_end));
  RawPeer raw(*client);
  const Generation other = gen() == Generation::kV5 ? Generation::kV6 : Generation::kV5;
  raw.Write(Frame(Request(0, Handler::kPing, BoxValue(MakeTuple({1}))), gen()));
  EXPECT_EQ(raw.NextMessage(gen()).seq, 0u);
  raw.Write(Frame(Request(1, Handler::kPing, BoxValue(MakeTuple({1}))), other));
  EXPECT_FALSE(raw.Next().has_value());
  EXPECT_FALSE(server.Join().has_value());
}

TEST(ConnectionErrors, ThreadBoundFrameIsRefusedClearly) {
  auto [client, server_end] = MemoryStream::Pair();
  Server server(std::move(server_end));
  // RPYC_BIND_THREADS: 16 bytes of thread ids, then a 6.x message.
  std::string payload(16, '\0');
  payload[1] = '\x7f';
  payload += EncodeMessage(Request(0, Handler::kPing, BoxValue(MakeTuple({1}))), Generation::kV6);
  ASSERT_TRUE(client->WriteAll(RawFrame(payload)).has_value());
  auto end = server.Join();
  ASSERT_FALSE(end.has_value());
  EXPECT_NE(end.error().message().find("peer memory"), std::string::npos);
  EXPECT_NE(end.error().message().find("thread"), std::string::npos) << end.error().message();
}

TEST(ConnectionErrors, GarbageFrameHeaderAndTruncatedFrame) {
  {
    auto [client, server_end] = MemoryStream::Pair();
    Server server(std::move(server_end));
    // Announces 4 GiB: refused from the header alone.
    ASSERT_TRUE(client->WriteAll(std::string("\xff\xff\xff\xff\x00", 5)).has_value());
    auto end = server.Join();
    ASSERT_FALSE(end.has_value());
    EXPECT_NE(end.error().message().find("peer memory"), std::string::npos);
  }
  {
    auto [client, server_end] = MemoryStream::Pair();
    Server server(std::move(server_end));
    ASSERT_TRUE(client->WriteAll(std::string("\x00\x00\x00\x08\x00\x12\x51", 7)).has_value());
    client->CloseWrite();
    auto end = server.Join();
    ASSERT_FALSE(end.has_value());
    EXPECT_EQ(end.error().code(), Error::Code::kProtocol);
  }
  {
    auto [client, server_end] = MemoryStream::Pair();
    Server server(std::move(server_end));
    client->CloseWrite();  // EOF before any frame: an orderly end
    auto end = server.Join();
    ASSERT_TRUE(end.has_value());
    EXPECT_EQ(*end, EndReason::kEof);
  }
}

TEST(ConnectionErrors, ShutdownFromAnotherThreadEndsServe) {
  auto [client, server_end] = MemoryStream::Pair();
  Server server(std::move(server_end));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  server.conn().Shutdown();
  auto end = server.Join();
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(*end, EndReason::kShutdown);
  std::array<char, 8> buf{};
  auto n = client->Read(buf);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 0u);
}

// A call waits for the peer's first frame (CallBeforeThePeerSpeaksWaitsForItsFirstFrame); a
// peer that says nothing makes it time out. A notification is not sent at all.
TEST(ConnectionErrors, CallBeforeTheGenerationIsKnownTimesOut) {
  auto [a, b] = MemoryStream::Pair();
  Connection conn(*a);
  auto r = conn.Call(Handler::kPing, BoxValue(MakeTuple({1})), 10);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Error::Code::kLimit);
  EXPECT_FALSE(conn.Notify(Handler::kDel, BoxValue(MakeTuple({}))).has_value());
}

TEST(ConnectionErrors, CallFromAnotherThreadGetsItsReplyThroughTheReader) {
  auto [client, server_end] = MemoryStream::Pair();
  ConnectionOptions opts;
  opts.generation = Generation::kV6;
  Server server(std::move(server_end), opts);
  RawPeer raw(*client);
  // Serve() owns the stream; make sure it runs before the foreign calls start.
  raw.Write(Frame(Request(0, Handler::kPing, BoxValue(MakeTuple({0}))), Generation::kV6));
  EXPECT_EQ(raw.NextMessage(Generation::kV6).seq, 0u);

  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  std::vector<Result<Outcome>> results(kThreads, Fail(Error::Usage("not run")));
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      results[static_cast<size_t>(i)] =
          server.conn().Call(Handler::kCall, CallArgs({MakeStr("echo"), i}), 10000);
    });
  }
  // Answer the four requests in reverse order, with a request of our own in between, which the
  // serving thread answers while the foreign callers wait.
  std::vector<Message> reqs;
  for (int i = 0; i < kThreads; ++i) reqs.push_back(raw.NextMessage(Generation::kV6));
  raw.Write(Frame(Request(1, Handler::kCall, CallArgs({MakeStr("echo"), MakeStr("mine")})),
                  Generation::kV6));
  Message mine = raw.NextMessage(Generation::kV6);
  EXPECT_EQ(mine.type, MsgType::kReply);
  EXPECT_EQ(mine.args, BoxValue(MakeStr("mine")));
  for (auto it = reqs.rbegin(); it != reqs.rend(); ++it) {
    ASSERT_EQ(it->type, MsgType::kRequest);
    // Echo the request's own argument back: (1, ('echo', i)) -> (1, i)
    const auto& items = it->args.tree()->as<brine::Tuple>().items[1].as<brine::Tuple>().items[1];
    raw.Write(Frame(Message{MsgType::kReply, it->seq, BoxValue(items.as<brine::Tuple>().items[1])},
                    Generation::kV6));
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) {
    auto& r = results[static_cast<size_t>(i)];
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    EXPECT_EQ(r->value, BoxValue(i));
  }
}

TEST(ConnectionErrors, ForeignCallTimesOutOrEndsWithTheConnection) {
  auto [client, server_end] = MemoryStream::Pair();
  ConnectionOptions opts;
  opts.generation = Generation::kV5;
  Server server(std::move(server_end), opts);
  RawPeer raw(*client);
  raw.Write(Frame(Request(0, Handler::kPing, BoxValue(MakeTuple({0}))), Generation::kV5));
  EXPECT_EQ(raw.NextMessage(Generation::kV5).seq, 0u);

  auto r = server.conn().Call(Handler::kPing, BoxValue(MakeTuple({1})), 50);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Error::Code::kLimit);
  EXPECT_NE(r.error().message().find("result expired"), std::string::npos);

  Result<Outcome> late = Fail(Error::Usage("not run"));
  std::thread waiter([&] { late = server.conn().Call(Handler::kPing, BoxValue(MakeTuple({2}))); });
  raw.NextMessage(Generation::kV5);  // the timed-out request
  raw.NextMessage(Generation::kV5);  // the waiter's request: we close instead of answering
  client->Shutdown();
  waiter.join();
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error().code(), Error::Code::kClosed);
  // After the end, calls fail at once.
  auto after = server.conn().Call(Handler::kPing, BoxValue(MakeTuple({3})), 10000);
  ASSERT_FALSE(after.has_value());
  EXPECT_EQ(after.error().code(), Error::Code::kClosed);
}

// --- Call()s from threads other than the serving one ------------------------------------------

// A served connection whose serving thread is blocked inside a handler (request 0, "hook") until
// Release(): the e2e case of a server thread joined by a handler while it calls the client back.
class BusyServer {
 public:
  explicit BusyServer(Generation g) : gen_(g) {
    auto [c, s] = MemoryStream::Pair();
    client_ = std::move(c);
    server_ = std::make_unique<Server>(std::move(s));
    raw_ = std::make_unique<RawPeer>(*client_);
    server_->space().hook = [this](const std::vector<Value>&) {
      entered_.set_value();
      released_.wait();
      return Outcome::Reply(BoxValue(MakeStr("unblocked")));
    };
    raw_->Write(Frame(Request(0, Handler::kCall, CallArgs({MakeStr("hook")})), g));
    entered_.get_future().wait();  // the serving thread now reads nothing
  }
  ~BusyServer() {
    if (!release_done_) Release();
    JoinCallers();
  }
  // Lets the handler return; its reply (seq 0) goes out.
  void Release() {
    release_done_ = true;
    release_.set_value();
  }
  // Starts `n` threads, each calling ('echo', i) on the server with `timeout_ms`, and waits until
  // their requests have arrived here (all are then waiting for replies).
  std::vector<Message> StartCallers(int n, int timeout_ms) {
    results_.assign(static_cast<size_t>(n), Fail(Error::Usage("not run")));
    for (int i = 0; i < n; ++i) {
      callers_.emplace_back([this, i, timeout_ms] {
        results_[static_cast<size_t>(i)] =
            conn().Call(Handler::kCall, CallArgs({MakeStr("echo"), i}), timeout_ms);
      });
    }
    std::vector<Message> reqs;
    for (int i = 0; i < n; ++i) reqs.push_back(raw_->NextMessage(gen_));
    return reqs;
  }
  std::vector<Result<Outcome>>& JoinCallers() {
    for (auto& t : callers_) t.join();
    callers_.clear();
    return results_;
  }
  Connection& conn() { return server_->conn(); }
  Server& server() { return *server_; }
  RawPeer& raw() { return *raw_; }
  MemoryStream& client() { return *client_; }

 private:
  const Generation gen_;
  std::unique_ptr<MemoryStream> client_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<RawPeer> raw_;
  std::promise<void> entered_;
  std::promise<void> release_;
  std::shared_future<void> released_ = release_.get_future().share();
  bool release_done_ = false;
  std::vector<std::thread> callers_;
  std::vector<Result<Outcome>> results_;
};

// The argument of a ('echo', x) CALL request.
Value EchoArg(const Message& req) {
  const auto& boxed = req.args.tree()->as<brine::Tuple>().items[1];
  return boxed.as<brine::Tuple>().items[1].as<brine::Tuple>().items[1];
}

TEST_P(ConnectionTest, ForeignCallGetsItsReplyWhileTheServingThreadIsInsideAHandler) {
  BusyServer busy(gen());
  RawPeer& raw = busy.raw();
  Message req = busy.StartCallers(1, 10000)[0];
  ASSERT_EQ(req.type, MsgType::kRequest);
  // A request of ours before the reply: the waiting caller, the only reader, serves it.
  raw.Write(Frame(Request(1, Handler::kCall, CallArgs({MakeStr("echo"), MakeStr("mine")})), gen()));
  Message mine = raw.NextMessage(gen());
  EXPECT_EQ(mine.type, MsgType::kReply);
  EXPECT_EQ(mine.seq, 1u);
  EXPECT_EQ(mine.args, BoxValue(MakeStr("mine")));
  raw.Write(Frame(Message{MsgType::kReply, req.seq, BoxValue(MakeStr("seven"))}, gen()));
  auto& r = busy.JoinCallers()[0];
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->kind, Outcome::Kind::kReply);
  EXPECT_EQ(r->value, BoxValue(MakeStr("seven")));

  busy.Release();
  Message first = raw.NextMessage(gen());
  EXPECT_EQ(first.seq, 0u);
  EXPECT_EQ(first.args, BoxValue(MakeStr("unblocked")));
}

TEST_P(ConnectionTest, SeveralForeignCallersWhileTheServingThreadIsBusy) {
  BusyServer busy(gen());
  RawPeer& raw = busy.raw();
  constexpr int kThreads = 4;
  std::vector<Message> reqs = busy.StartCallers(kThreads, 10000);
  // And one whose reply never comes in time: it expires while the others wait.
  auto expired = busy.conn().Call(Handler::kCall, CallArgs({MakeStr("echo"), -1}), 100);
  ASSERT_FALSE(expired.has_value());
  EXPECT_EQ(expired.error().code(), Error::Code::kLimit);
  reqs.push_back(raw.NextMessage(gen()));
  // Answered in reverse order, the expired one first (dropped), with a request of ours in between.
  for (auto it = reqs.rbegin(); it != reqs.rend(); ++it) {
    ASSERT_EQ(it->type, MsgType::kRequest);
    raw.Write(Frame(Message{MsgType::kReply, it->seq, BoxValue(EchoArg(*it))}, gen()));
    if (it == reqs.rbegin() + 1) {
      raw.Write(Frame(Request(1, Handler::kPing, BoxValue(MakeTuple({MakeStr("p")}))), gen()));
      Message pong = raw.NextMessage(gen());
      EXPECT_EQ(pong.seq, 1u);
      EXPECT_EQ(pong.args, BoxValue(MakeStr("p")));
    }
  }
  auto& results = busy.JoinCallers();
  for (int i = 0; i < kThreads; ++i) {
    auto& r = results[static_cast<size_t>(i)];
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    EXPECT_EQ(r->value, BoxValue(i));
  }
  busy.Release();
  EXPECT_EQ(raw.NextMessage(gen()).seq, 0u);
}

// Shutdown() or the peer's end while several foreign callers wait (one of them reading, the
// others asleep) and the serving thread is busy: all fail with kClosed at once, nobody hangs.
TEST_P(ConnectionTest, EndWhileForeignCallersWaitFailsThemAll) {
  for (const bool by_shutdown : {true, false}) {
    SCOPED_TRACE(by_shutdown ? "Shutdown()" : "peer closed");
    BusyServer busy(gen());
    busy.StartCallers(3, 30000);
    const auto start = std::chrono::steady_clock::now();
    if (by_shutdown) {
      busy.conn().Shutdown();
    } else {
      busy.client().Shutdown();
    }
    for (auto& r : busy.JoinCallers()) {
      ASSERT_FALSE(r.has_value());
      EXPECT_EQ(r.error().code(), Error::Code::kClosed) << r.error().ToString();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
    busy.Release();
    auto end = busy.server().Join();
    ASSERT_TRUE(end.has_value()) << end.error().ToString();
    EXPECT_EQ(*end, by_shutdown ? EndReason::kShutdown : EndReason::kEof);
    auto after = busy.conn().Call(Handler::kCall, CallArgs({MakeStr("echo"), 1}), 10000);
    ASSERT_FALSE(after.has_value());
    EXPECT_EQ(after.error().code(), Error::Code::kClosed);
  }
}

// A Connection of a known generation with its own FakeSpace, not served by anyone yet.
ConnectionOptions KnownGeneration(Generation g) {
  ConnectionOptions o;
  o.generation = g;
  return o;
}
struct Endpoint {
  Endpoint(MemoryStream& stream, Generation g) : conn(stream, KnownGeneration(g)) {
    space.set_peer(&conn);
    conn.set_object_space(&space);
  }
  Connection conn;
  FakeSpace space;
};

// Two engines, both serving, calling each other from several threads at once with nested
// callbacks (bounce): each side's waiting threads read and serve for each other, no deadlock.
TEST_P(ConnectionTest, NestedCallsFromSeveralThreadsOnBothSides) {
  auto [c, s] = MemoryStream::Pair();
  Endpoint client_end_point(*c, gen());
  Connection& client = client_end_point.conn;
  Server server(std::move(s));
  // Make the server learn the generation before its own threads call.
  auto first = client.Call(Handler::kCall, CallArgs({MakeStr("echo"), 0}));
  ASSERT_TRUE(first.has_value());
  Result<EndReason> client_end = Fail(Error::Usage("not run"));
  std::thread client_serving([&] { client_end = client.Serve(); });

  constexpr int kThreads = 4;
  constexpr int kDepth = 12;
  constexpr int kRounds = 5;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    // Server threads that are not serving: each bounce starts on the server.
    threads.emplace_back([&] {
      for (int k = 0; k < kRounds; ++k) {
        auto r = server.conn().Call(Handler::kCall, CallArgs({MakeStr("bounce"), kDepth}), 20000);
        if (r && r->value == BoxValue(kDepth)) ++ok;
      }
    });
    // Client threads that are not the client's serving thread.
    threads.emplace_back([&] {
      for (int k = 0; k < kRounds; ++k) {
        auto r = client.Call(Handler::kCall, CallArgs({MakeStr("bounce"), kDepth}), 20000);
        if (r && r->value == BoxValue(kDepth)) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 2 * kThreads * kRounds);
  c->Shutdown();
  client_serving.join();
  EXPECT_TRUE(client_end.has_value());
  EXPECT_TRUE(server.Join().has_value());
}

// Threadpool mode: no serving thread, ServeAvailable() called when the stream is readable.
// A foreign caller that reads its reply together with a request of the peer's (one chunk) serves
// that request before returning: the stream will not become readable again for it. Also when
// the pool has not had its first step yet (the stall of PoolAndForeignCallersShareTheStream: the
// callers drained the stream before the pool ever saw it readable, and the rule only held once
// ServeAvailable() had run).
TEST_P(ConnectionTest, ForeignCallerServesWhatItLeftInTheBufferInThreadpoolMode) {
  for (const bool pool_stepped : {true, false}) {
    SCOPED_TRACE(pool_stepped ? "after a pool step" : "before the first pool step");
    auto [client, server_end] = MemoryStream::Pair();
    Endpoint server(*server_end, gen());
    Connection& conn = server.conn;
    if (pool_stepped) {
      auto idle = conn.ServeAvailable();  // nothing to read yet
      ASSERT_TRUE(idle.has_value());
      EXPECT_FALSE(idle->has_value());
    }

    RawPeer raw(*client);
    Result<Outcome> r = Fail(Error::Usage("not run"));
    std::thread foreign([&] {
      r = conn.Call(Handler::kCall, CallArgs({MakeStr("echo"), 5}), 10000);
    });
    Message req = raw.NextMessage(gen());
    raw.Write(
        Frame(Message{MsgType::kReply, req.seq, BoxValue(5)}, gen()) +
        Frame(Request(0, Handler::kCall, CallArgs({MakeStr("echo"), MakeStr("left")})), gen()));
    foreign.join();
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    EXPECT_EQ(r->value, BoxValue(5));
    auto ready = client->WaitReadable(5000);
    ASSERT_TRUE(ready.has_value());
    ASSERT_TRUE(*ready) << "the request left in the buffer was not served";
    Message m = raw.NextMessage(gen());
    EXPECT_EQ(m.seq, 0u);
    EXPECT_EQ(m.args, BoxValue(MakeStr("left")));
    EXPECT_FALSE(*server_end->WaitReadable(0));  // and it is not read twice by a pool step
    conn.Shutdown();
  }
}

// Threadpool mode under load: a pool thread runs ServeAvailable() whenever the stream is
// readable, while four foreign threads call the peer and the peer calls in from two threads.
// (Under CPU load the foreign callers may read every byte before the pool thread first sees the
// stream readable: see ForeignCallerServesWhatItLeftInTheBufferInThreadpoolMode.)
TEST_P(ConnectionTest, PoolAndForeignCallersShareTheStream) {
  auto [c, s] = MemoryStream::Pair();
  Endpoint server_end_point(*s, gen());
  Connection& server = server_end_point.conn;
  Result<std::optional<EndReason>> pool_end = Fail(Error::Usage("not run"));
  MemoryStream* server_stream = s.get();  // (a lambda may not capture a structured binding)
  std::thread pool([&] {
    for (;;) {  // the event loop's part: wait until readable, then a pool step
      auto ready = server_stream->WaitReadable(-1);
      if (!ready) break;
      pool_end = server.ServeAvailable();
      if (!pool_end || *pool_end) break;
    }
  });
  Endpoint client_end_point(*c, gen());
  Connection& client = client_end_point.conn;
  Result<EndReason> client_end = Fail(Error::Usage("not run"));
  std::thread client_serving([&] { client_end = client.Serve(); });

  constexpr int kCalls = 50;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < kCalls; ++k) {
        const int v = i * 1000 + k;
        auto r = server.Call(Handler::kCall, CallArgs({MakeStr("echo"), v}), 20000);
        if (r && r->value == BoxValue(v)) ++ok;
      }
    });
  }
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < kCalls; ++k) {
        const int v = -(i * 1000 + k);
        // Every other one makes the server call back (nested, on whichever thread read it).
        auto r = k % 2 == 0
                     ? client.Call(Handler::kCall, CallArgs({MakeStr("echo"), v}), 20000)
                     : client.Call(Handler::kCall,
                                   CallArgs({MakeStr("ask"), 20000, MakeStr("echo"), v}), 20000);
        if (r && r->value == BoxValue(v)) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 6 * kCalls);
  c->Shutdown();
  client_serving.join();
  pool.join();
  ASSERT_TRUE(pool_end.has_value()) << pool_end.error().ToString();
  EXPECT_TRUE(pool_end->has_value());
}

}  // namespace
}  // namespace core::protocol
