#include "libcore/protocol/message.h"

#include <charconv>
#include <climits>
#include <cstdio>
#include <utility>

namespace core::protocol {
namespace {

// A 5.x payload starts with the brine 3-tuple tag; a 6.x payload with the raw message type.
constexpr uint8_t kV5FirstByte = 0x12;

std::string HexByte(uint8_t b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", b);
  return buf;
}

bool IsMsgType(int64_t v) { return v >= 1 && v <= 3; }

brine::Value SeqValue(uint64_t seq) {
  if (seq <= static_cast<uint64_t>(INT64_MAX)) return brine::Value(static_cast<int64_t>(seq));
  // Above int64: brine ints of any size are held as canonical decimal text.
  return brine::Value(*brine::Int::FromDecimal(std::to_string(seq)));
}

Result<uint64_t> ParseSeq(const brine::Value& v) {
  const auto* i = v.get_if<brine::Int>();
  if (i == nullptr) return Fail(Error::Protocol("message: seq is not an int: " + v.Repr()));
  if (i->is_small()) {
    if (i->small() < 0) {
      return Fail(Error::Protocol("message: negative seq " + std::to_string(i->small())));
    }
    return static_cast<uint64_t>(i->small());
  }
  const std::string& text = i->big_decimal();
  if (!text.empty() && text.front() == '-') {
    return Fail(Error::Protocol("message: negative seq " + text));
  }
  uint64_t seq = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seq);
  if (ec != std::errc() || end != text.data() + text.size()) {
    std::string shown = text.size() > 40 ? text.substr(0, 40) + "..." : text;
    return Fail(Error::Protocol("message: seq " + shown + " does not fit 64 bits"));
  }
  return seq;
}

}  // namespace

Result<Generation> DetectGeneration(std::string_view first_payload) {
  if (first_payload.empty()) {
    return Fail(Error::Protocol("message: empty payload, cannot detect the protocol generation"));
  }
  auto b = static_cast<uint8_t>(first_payload.front());
  if (b == kV5FirstByte) return Generation::kV5;
  if (IsMsgType(b)) return Generation::kV6;
  if (b == 0x00) {
    return Fail(Error::Protocol(
        "message: first byte 0x00 looks like a thread-bound frame (client runs with "
        "RPYC_BIND_THREADS=true); bound mode is not supported"));
  }
  return Fail(Error::Protocol("message: unknown protocol generation, first byte " + HexByte(b) +
                              " (expected 0x12 for rpyc 5.x or 0x01..0x03 for rpyc 6.x)"));
}

Result<Message> DecodeMessage(std::string_view payload, Generation gen,
                              const brine::DecodeLimits& limits,
                              const std::shared_ptr<const void>& owner) {
  if (payload.empty()) return Fail(Error::Protocol("message: empty payload"));
  Message m;
  // The envelope's items are decoded in place (no tuple built around them).
  brine::Value items[3];
  brine::Value other;
  if (gen == Generation::kV6) {
    auto type = static_cast<uint8_t>(payload.front());
    if (!IsMsgType(type)) {
      return Fail(Error::Protocol("message: invalid message type: " + std::to_string(type)));
    }
    m.type = static_cast<MsgType>(type);
    auto matched = brine::LoadTupleOf(payload.substr(1), 2, items, &other, limits, owner);
    if (!matched) return Fail(matched.error().WithContext("message"));
    if (!*matched) {
      return Fail(Error::Protocol("message: expected (seq, args) after the type byte, got " +
                                  other.Repr()));
    }
    *m.args.tree() = std::move(items[1]);  // a new Message holds a tree
  } else {
    auto matched = brine::LoadTupleOf(payload, 3, items, &other, limits, owner);
    if (!matched) return Fail(matched.error().WithContext("message"));
    if (!*matched) {
      return Fail(Error::Protocol("message: expected (msg, seq, args), got " + other.Repr()));
    }
    const auto* type = items[0].get_if<brine::Int>();
    if (type == nullptr || !type->is_small() || !IsMsgType(type->small())) {
      return Fail(Error::Protocol("message: invalid message type: " + items[0].Repr()));
    }
    m.type = static_cast<MsgType>(type->small());
    items[0] = std::move(items[1]);
    *m.args.tree() = std::move(items[2]);
  }
  auto s = ParseSeq(items[0]);
  if (!s) return Fail(s.error());
  m.seq = *s;
  return m;
}

void EncodeMessage(const Message& m, Generation gen, std::string* out) {
  // The tuple is assembled by hand around the args, so they are never copied.
  if (gen == Generation::kV6) {
    out->push_back(static_cast<char>(m.type));
    out->push_back(static_cast<char>(brine::kTagTuple1 + 1));  // 2-tuple
  } else {
    out->push_back(static_cast<char>(brine::kTagTuple1 + 2));  // 3-tuple
    brine::EncodeInt(brine::Int(static_cast<int64_t>(m.type)), out);
  }
  if (m.seq <= static_cast<uint64_t>(INT64_MAX)) {
    brine::EncodeInt(brine::Int(static_cast<int64_t>(m.seq)), out);
  } else {
    brine::Encode(SeqValue(m.seq), out);
  }
  m.args.AppendTo(out);
}

std::string EncodeMessage(const Message& m, Generation gen) {
  std::string out;
  EncodeMessage(m, gen, &out);
  return out;
}

brine::Value MakeRequestArgs(Handler h, brine::Value boxed_args) {
  return brine::TupleOf(brine::Value(static_cast<int>(h)), std::move(boxed_args));
}

Result<RequestArgs> ParseRequestArgs(const brine::Value& args) {
  brine::Value copy = args;
  return ParseRequestArgs(std::move(copy));
}

Result<RequestArgs> ParseRequestArgs(brine::Value&& args) {
  auto view = ViewRequestArgs(args);
  if (!view) return Fail(view.error());
  RequestArgs r;
  r.handler = view->handler;
  r.handler_key = std::move(*view->handler_key);
  r.boxed_args = std::move(*view->boxed_args);
  return r;
}

Result<RequestArgsView> ViewRequestArgs(brine::Value& args) {
  auto* t = std::get_if<brine::Tuple>(&args.variant());
  if (t == nullptr || t->items.size() != 2) {
    return Fail(Error::Protocol("request: expected (handler, args), got " + args.Repr()));
  }
  auto& items = t->items;
  RequestArgsView r;
  if (const auto* i = items[0].get_if<brine::Int>()) {
    if (i->is_small() && i->small() >= INT_MIN && i->small() <= INT_MAX) {
      r.handler = static_cast<int>(i->small());
    }
  } else if (const auto* b = items[0].get_if<bool>()) {
    r.handler = *b ? 1 : 0;
  }
  r.handler_key = &items[0];
  r.boxed_args = &items[1];
  return r;
}

brine::Value BoxValue(brine::Value v) {
  return brine::TupleOf(brine::Value(kLabelValue), std::move(v));
}

brine::Value BoxLocalRef(brine::Value id_pack) {
  return brine::TupleOf(brine::Value(kLabelLocalRef), std::move(id_pack));
}

brine::Value BoxRemoteRef(brine::Value id_pack) {
  return brine::TupleOf(brine::Value(kLabelRemoteRef), std::move(id_pack));
}

}  // namespace core::protocol
