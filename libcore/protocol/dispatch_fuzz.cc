// libFuzzer target: request dispatch. A Connection serves one end of an in-memory stream whose
// other end carries the fuzzed bytes, against a small in-memory object space that lends a few
// objects, unboxes and reboxes arguments, counts references (DEL), calls back into the peer
// (nesting) and answers with exceptions. The input is either the raw byte stream (frames as the
// peer sends them) or, with bit 0 of the first byte set, a list of payloads split on "|FRAME|"
// that are framed here (so mutations reach the message layer). Bit 1 serves through
// ServeAvailable() (threadpool mode) instead of Serve().
//
// Invariants: no crash, Serve() ends, no reference count ever drops to zero or below while
// listed, the table total matches LocalObjectCount(), everything sent back is a well-formed
// reply or exception (or a request of our own callbacks), and the table is empty after
// OnDisconnect().

#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "libcore/channel/frame_reader.h"
#include "libcore/channel/frame_writer.h"
#include "libcore/protocol/connection.h"
#include "libcore/transport/memory_stream.h"

namespace {

using core::brine::Int;
using core::brine::MakeStr;
using core::brine::MakeTuple;
using core::brine::Str;
using core::brine::Tuple;
using core::brine::Value;
using core::protocol::BoxValue;
using core::protocol::Handler;
using core::protocol::Outcome;

void Check(bool ok) {
  if (!ok) std::abort();
}

// The objects this space can lend: id_pack and plain attributes. Object 0 is the root.
struct FakeObject {
  const char* name_pack;
  int64_t class_id;
  int64_t instance_id;
};
constexpr FakeObject kObjects[] = {
    {"rpyc.core.service.SlaveService", 100, 1},     // 0: root; .modules, .func, .cls, .callback
    {"rpyc.core.service.ModuleNamespace", 101, 2},  // 1
    {"builtins.function", 102, 3},                  // 2: calling it echoes the arguments
    {"builtins.FakeClass", 103, 0},                 // 3: a class; calling it lends object 4
    {"builtins.FakeClass", 103, 4},                 // 4
};
constexpr int kObjectCount = static_cast<int>(std::size(kObjects));

Value IdPack(int i) {
  return MakeTuple({MakeStr(kObjects[i].name_pack), kObjects[i].class_id, kObjects[i].instance_id});
}

Value Vinegar(const char* type, Value arg) {
  return MakeTuple({MakeTuple({MakeStr("builtins"), MakeStr(type)}), MakeTuple({std::move(arg)}),
                    MakeTuple({}), MakeStr("fake traceback\n")});
}

// An unboxed argument: a plain value, one of our objects, a proxy for a peer object, or a tuple
// of those.
struct Unboxed {
  enum class Kind { kValue, kLocal, kRemote, kTuple } kind = Kind::kValue;
  Value value;  // kValue: the value; kRemote: the peer's id_pack
  int local = -1;
  std::vector<Unboxed> items;
};

struct Failure {
  const char* type;
  Value arg;
};

class FakeSpace : public core::protocol::ObjectSpace {
 public:
  explicit FakeSpace(core::protocol::Peer* peer) : peer_(peer) {}

  Outcome Handle(Handler h, const Value& boxed) override {
    CheckTable();
    Outcome out = HandleUnchecked(h, boxed);
    CheckTable();
    return out;
  }

  void OnDisconnect() override {
    refs_.clear();
    proxies_.clear();
  }

  size_t LocalObjectCount() const override {
    size_t n = 0;
    for (const auto& [obj, count] : refs_) n += static_cast<size_t>(count);
    return n;
  }

  void CheckTable() const {
    int64_t total = 0;
    for (const auto& [obj, count] : refs_) {
      Check(obj >= 0 && obj < kObjectCount);
      Check(count > 0);  // an entry whose count reached zero must be gone
      total += count;
    }
    Check(total == lent_ - released_);
    Check(static_cast<size_t>(total) == LocalObjectCount());
  }

 private:
  Value Lend(int obj) {
    ++refs_[obj];
    ++lent_;
    return MakeTuple({core::protocol::kLabelRemoteRef, IdPack(obj)});
  }

  Value Box(const Unboxed& u) {
    switch (u.kind) {
      case Unboxed::Kind::kValue:
        return BoxValue(u.value);
      case Unboxed::Kind::kLocal:
        return Lend(u.local);
      case Unboxed::Kind::kRemote:
        return core::protocol::BoxLocalRef(u.value);
      case Unboxed::Kind::kTuple: {
        std::vector<Value> items;
        items.reserve(u.items.size());
        for (const Unboxed& item : u.items) items.push_back(Box(item));
        return MakeTuple({core::protocol::kLabelTuple, MakeTuple(std::move(items))});
      }
    }
    return Value();
  }

  // The label rules of docs/protocol.md §4.1, in reverse.
  tl::expected<Unboxed, Failure> Unbox(const Value& boxed) {
    const auto* t = boxed.get_if<Tuple>();
    if (t == nullptr || t->items.size() != 2) return tl::unexpected(Failure{"TypeError", 0});
    const auto* label = t->items[0].get_if<Int>();
    if (label == nullptr || !label->is_small()) {
      return tl::unexpected(Failure{"ValueError", MakeStr("invalid label")});
    }
    const Value& payload = t->items[1];
    Unboxed u;
    switch (label->small()) {
      case core::protocol::kLabelValue:
        u.value = payload;
        return u;
      case core::protocol::kLabelTuple: {
        const auto* items = payload.get_if<Tuple>();
        if (items == nullptr) return tl::unexpected(Failure{"TypeError", 1});
        u.kind = Unboxed::Kind::kTuple;
        for (const Value& item : items->items) {
          auto inner = Unbox(item);
          if (!inner) return inner;
          u.items.push_back(std::move(*inner));
        }
        return u;
      }
      case core::protocol::kLabelLocalRef:
        for (int i = 0; i < kObjectCount; ++i) {
          if (payload == IdPack(i) && refs_.count(i) != 0) {
            u.kind = Unboxed::Kind::kLocal;
            u.local = i;
            return u;
          }
        }
        return tl::unexpected(Failure{"KeyError", payload});
      case core::protocol::kLabelRemoteRef: {
        const auto* id = payload.get_if<Tuple>();
        if (id == nullptr || id->items.size() != 3 || !id->items[0].is<Str>()) {
          return tl::unexpected(Failure{"TypeError", 2});
        }
        if (proxies_.size() < 64 || proxies_.count(payload.Repr()) != 0) {
          ++proxies_[payload.Repr()];
        }
        u.kind = Unboxed::Kind::kRemote;
        u.value = payload;
        return u;
      }
      default:
        return tl::unexpected(Failure{"ValueError", MakeStr("invalid label")});
    }
  }

  static Outcome Raise(const char* type, Value arg) {
    return Outcome::Exception(Vinegar(type, std::move(arg)));
  }

  // Calls object `obj` with the given (unboxed) positional arguments.
  Outcome Invoke(int obj, const Unboxed& args) {
    if (obj == 2) return Outcome::Reply(Box(args));
    if (obj == 3) return Outcome::Reply(Lend(4));
    return Raise("TypeError", MakeStr("object is not callable"));
  }

  // A nested call back into the peer, served while this request waits.
  Outcome Callback() {
    if (depth_ >= 4) return Raise("RecursionError", depth_);
    ++depth_;
    auto r = peer_->Call(Handler::kGetRoot, BoxValue(MakeTuple({})), /*timeout_ms=*/1000);
    --depth_;
    if (!r) return Raise("EOFError", MakeStr(r.error().message()));
    if (r->kind == Outcome::Kind::kException) return *r;
    auto u = Unbox(*r->value.tree());  // replies the engine read are trees
    if (!u) return Raise(u.error().type, u.error().arg);
    return Outcome::Reply(Box(*u));
  }

  Outcome GetAttr(int obj, const std::string& name) {
    if (auto it = attrs_.find({obj, name}); it != attrs_.end()) {
      return Outcome::Reply(BoxValue(it->second));
    }
    if (obj == 0) {
      if (name == "modules") return Outcome::Reply(Lend(1));
      if (name == "func") return Outcome::Reply(Lend(2));
      if (name == "cls") return Outcome::Reply(Lend(3));
      if (name == "callback") return Callback();
      if (name == "notify") {
        auto st = peer_->Notify(Handler::kDel, BoxValue(MakeTuple({MakeStr("x"), 1})));
        return Outcome::Reply(BoxValue(st.has_value()));
      }
      if (name == "stop") return Outcome::Exception(Value(core::protocol::kExcStopIteration));
    }
    return Raise("AttributeError", MakeStr(name));
  }

  Outcome HandleUnchecked(Handler h, const Value& boxed) {
    if (h == Handler::kGetRoot) return Outcome::Reply(Lend(0));
    auto unboxed = Unbox(boxed);
    if (!unboxed) return Raise(unboxed.error().type, unboxed.error().arg);
    // Every other handler takes an argument tuple whose first item is one of our objects
    // (INSPECT takes an id_pack value instead, PING any value).
    std::vector<Unboxed> args;
    if (unboxed->kind == Unboxed::Kind::kTuple) {
      args = std::move(unboxed->items);
    } else if (const auto* t = unboxed->value.get_if<Tuple>()) {
      for (const Value& v : t->items) args.push_back(Unboxed{Unboxed::Kind::kValue, v, -1, {}});
    }
    if (h == Handler::kPing) return Outcome::Reply(Box(*unboxed));
    if (h == Handler::kInspect) {
      return Outcome::Reply(BoxValue(MakeTuple({MakeTuple({MakeStr("__call__"), MakeStr("")})})));
    }
    if (args.empty() || args[0].kind != Unboxed::Kind::kLocal) {
      return Raise("TypeError", MakeStr("expected one of the server's objects"));
    }
    const int obj = args[0].local;
    auto text = [&](size_t i) -> const std::string* {
      if (i >= args.size() || args[i].kind != Unboxed::Kind::kValue) return nullptr;
      const auto* s = args[i].value.get_if<Str>();
      return s == nullptr ? nullptr : &s->utf8;
    };
    switch (h) {
      case Handler::kDel: {
        int64_t count = 1;
        if (args.size() > 1) {
          const auto* n =
              args[1].kind == Unboxed::Kind::kValue ? args[1].value.get_if<Int>() : nullptr;
          if (n == nullptr || !n->is_small()) return Raise("TypeError", MakeStr("count"));
          count = n->small();
        }
        // As the reference: remove `count` references; at zero or below the entry goes.
        auto it = refs_.find(obj);
        if (it == refs_.end()) return Raise("KeyError", IdPack(obj));
        if (count >= it->second) {
          released_ += it->second;
          refs_.erase(it);
        } else if (count > 0) {
          released_ += count;
          it->second -= count;
        }
        return Outcome::Reply(BoxValue(core::brine::NoneType{}));
      }
      case Handler::kGetAttr: {
        const std::string* name = text(1);
        if (name == nullptr) return Raise("TypeError", MakeStr("attribute name must be string"));
        return GetAttr(obj, *name);
      }
      case Handler::kSetAttr: {
        const std::string* name = text(1);
        if (name == nullptr || args.size() < 3 || args[2].kind != Unboxed::Kind::kValue) {
          return Raise("TypeError", MakeStr("setattr"));
        }
        if (attrs_.size() < 16) attrs_[{obj, *name}] = args[2].value;
        return Outcome::Reply(BoxValue(core::brine::NoneType{}));
      }
      case Handler::kDelAttr: {
        const std::string* name = text(1);
        if (name == nullptr || attrs_.erase({obj, *name}) == 0) {
          return Raise("AttributeError", MakeStr(name == nullptr ? "?" : *name));
        }
        return Outcome::Reply(BoxValue(core::brine::NoneType{}));
      }
      case Handler::kCall:
        return Invoke(obj, args.size() > 1 ? args[1] : Unboxed{});
      case Handler::kCallAttr: {
        const std::string* name = text(1);
        if (name == nullptr) return Raise("TypeError", MakeStr("attribute name must be string"));
        if (*name == "__call__") return Invoke(obj, args.size() > 2 ? args[2] : Unboxed{});
        return GetAttr(obj, *name);
      }
      case Handler::kRepr:
      case Handler::kStr:
        return Outcome::Reply(BoxValue(MakeStr(std::string("<") + kObjects[obj].name_pack + ">")));
      case Handler::kHash:
        return Outcome::Reply(BoxValue(kObjects[obj].instance_id));
      case Handler::kCmp:
        return Outcome::Reply(BoxValue(args.size() > 1 && args[1].kind == Unboxed::Kind::kLocal &&
                                       args[1].local == obj));
      case Handler::kDir:
        return Outcome::Reply(BoxValue(MakeTuple({MakeStr("func"), MakeStr("modules")})));
      case Handler::kBuffIter:
        return Outcome::Exception(Value(core::protocol::kExcStopIteration));
      default:
        return Raise("NotImplementedError", static_cast<int>(h));
    }
  }

  core::protocol::Peer* peer_;
  std::map<int, int64_t> refs_;  // object -> references lent and not yet released
  int64_t lent_ = 0;
  int64_t released_ = 0;
  std::map<std::string, int64_t> proxies_;  // peer objects seen (bounded)
  std::map<std::pair<int, std::string>, Value> attrs_;
  int depth_ = 0;
};

std::string Framed(std::string_view in, bool compress) {
  static constexpr std::string_view kSep = "|FRAME|";
  std::string out;
  size_t start = 0;
  for (;;) {
    const size_t end = in.find(kSep, start);
    const std::string_view payload =
        in.substr(start, end == std::string_view::npos ? end : end - start);
    (void)core::channel::AppendFrame(
        payload, &out,
        compress ? core::channel::Compression::kPython : core::channel::Compression::kNever);
    if (end == std::string_view::npos) break;
    start = end + kSep.size();
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string bytes = (mode & 1) != 0 ? Framed(in, (mode & 4) != 0) : std::string(in);

  auto [client, server] = core::transport::MemoryStream::Pair();
  Check(client->WriteAll(bytes).has_value());
  client->CloseWrite();

  core::protocol::ConnectionOptions opts;
  opts.frame_limits.max_frame_size = size_t{1} << 20;
  opts.frame_limits.max_decompressed_size = size_t{1} << 20;
  opts.decode_limits.max_values = size_t{1} << 16;
  core::protocol::Connection conn(*server, opts);
  FakeSpace space(&conn);
  conn.set_object_space(&space);
  if ((mode & 2) != 0) {
    int idle = 0;
    for (;;) {
      auto r = conn.ServeAvailable();
      if (!r || *r) break;
      Check(++idle < 1000);  // all input is there and the stream ends: it must finish
    }
  } else {
    (void)conn.Serve();
  }
  space.CheckTable();

  // What went back: whole frames, each a reply or exception (or a request: callbacks and DELs).
  std::string out;
  char buf[4096];
  for (;;) {
    auto n = client->Read(buf);
    if (!n || *n == 0) break;
    out.append(buf, *n);
  }
  if (!out.empty()) {
    Check(conn.generation_known());
    core::channel::FrameReader reader;
    reader.Append(out);
    for (;;) {
      auto p = reader.Next();
      Check(p.has_value());
      if (!*p) break;
      auto m = core::protocol::DecodeMessage(**p, conn.generation());
      Check(m.has_value());
    }
    Check(reader.CheckEof().has_value());
  }

  space.OnDisconnect();
  Check(space.LocalObjectCount() == 0);
  return 0;
}
