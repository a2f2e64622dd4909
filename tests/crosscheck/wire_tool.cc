// wire_tool: drives the C++ codecs from the Python cross-check (test_crosscheck.py).
//
// stdin and stdout carry records: a 4-byte big-endian length, then that many bytes. Every output
// record starts with a status byte: 0 = ok (the result follows), 1 = error (the message follows).
//
//   brine-roundtrip        record = brine bytes        -> Load, then Dump
//   brine-gen SEED N       (no input)                  -> N pairs of records: Dump(v), Describe(v)
//   frame-roundtrip MODE   record = a stream of frames -> the payloads framed again (MODE: python
//                                                         or adaptive)
//   frame-decode           record = a stream of frames -> the payloads, each length-prefixed
//   frame-encode MODE      record = a payload          -> one frame
//   message-roundtrip      record = a message payload  -> generation byte (5 or 6), re-encoding
//   message-encode         record = brine((gen, msg, seq, args)) -> the message payload
//
// Describe(v) is a brine-independent text form that the Python side parses by itself:
// N T F E(llipsis) I(NotImplemented), i<decimal>; f<16 hex bits> c<32 hex bits>, b<n>:<bytes>,
// s<n>:<utf8>, t<n>:<items> (tuple), z<n>:<items> (frozenset), l<3 items> (slice).

#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "libcore/brine/brine.h"
#include "libcore/channel/frame_reader.h"
#include "libcore/channel/frame_writer.h"
#include "libcore/protocol/message.h"

namespace {

using core::Result;
using core::brine::Value;
namespace brine = core::brine;
namespace channel = core::channel;
namespace protocol = core::protocol;

void PutU32(size_t n, std::string* out) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>(n >> shift));
}

void PutRecord(std::string_view data, std::string* out) {
  PutU32(data.size(), out);
  out->append(data);
}

void PutResult(const Result<std::string>& r, std::string* out) {
  std::string rec = r ? std::string(1, '\0') + *r : std::string(1, '\1') + r.error().ToString();
  PutRecord(rec, out);
}

bool ReadRecords(std::string_view in, std::vector<std::string_view>* records) {
  while (!in.empty()) {
    if (in.size() < 4) return false;
    const auto* p = reinterpret_cast<const unsigned char*>(in.data());
    size_t n = (size_t{p[0]} << 24) | (size_t{p[1]} << 16) | (size_t{p[2]} << 8) | p[3];
    in.remove_prefix(4);
    if (in.size() < n) return false;
    records->push_back(in.substr(0, n));
    in.remove_prefix(n);
  }
  return true;
}

std::string ReadStdin() {
  std::string in;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  return in;
}

bool WriteStdout(std::string_view out) {
  while (!out.empty()) {
    ssize_t n = ::write(1, out.data(), out.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    out.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// ---- Describe: the brine-independent form ---------------------------------------------------

void Describe(const Value& v, std::string* out);

void DescribeItems(char tag, const std::vector<Value>& items, std::string* out) {
  out->push_back(tag);
  out->append(std::to_string(items.size()));
  out->push_back(':');
  for (const auto& i : items) Describe(i, out);
}

void PutHex64(double d, std::string* out) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx",
                static_cast<unsigned long long>(std::bit_cast<uint64_t>(d)));
  out->append(buf);
}

void Describe(const Value& v, std::string* out) {
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, brine::NoneType>) {
          out->push_back('N');
        } else if constexpr (std::is_same_v<T, bool>) {
          out->push_back(x ? 'T' : 'F');
        } else if constexpr (std::is_same_v<T, brine::EllipsisType>) {
          out->push_back('E');
        } else if constexpr (std::is_same_v<T, brine::NotImplementedType>) {
          out->push_back('I');
        } else if constexpr (std::is_same_v<T, brine::Int>) {
          out->append("i" + x.ToDecimal() + ";");
        } else if constexpr (std::is_same_v<T, double>) {
          out->push_back('f');
          PutHex64(x, out);
        } else if constexpr (std::is_same_v<T, brine::Complex>) {
          out->push_back('c');
          PutHex64(x.real, out);
          PutHex64(x.imag, out);
        } else if constexpr (std::is_same_v<T, brine::Bytes>) {
          out->append("b" + std::to_string(x.size()) + ":");
          out->append(x.view());
        } else if constexpr (std::is_same_v<T, brine::Str>) {
          out->append("s" + std::to_string(x.utf8.size()) + ":");
          out->append(x.utf8);
        } else if constexpr (std::is_same_v<T, brine::Tuple>) {
          DescribeItems('t', x.items, out);
        } else if constexpr (std::is_same_v<T, brine::FrozenSet>) {
          DescribeItems('z', x.items, out);
        } else if constexpr (std::is_same_v<T, brine::Slice>) {
          out->push_back('l');
          for (const auto& p : x.parts) Describe(p, out);
        }
      },
      v.variant());
}

// ---- Random values ----------------------------------------------------------------------------

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) {}

  Value Any(int depth) {
    int kind = Below(depth >= 4 ? 9 : 13);
    switch (kind) {
      case 0:
        return brine::NoneType{};
      case 1:
        return Below(2) == 0;
      case 2:
        return Below(2) == 0 ? Value(brine::EllipsisType{}) : Value(brine::NotImplementedType{});
      case 3:
      case 4:
        return AnyInt();
      case 5:
        return AnyDouble();
      case 6:
        return brine::Complex{AnyDouble(), AnyDouble()};
      case 7:
        return brine::Bytes{AnyBytes()};
      case 8:
        return brine::Str{AnyStr()};
      case 9:
      case 10:
        return AnyTuple(depth);
      case 11:
        return AnyFrozenSet();
      default:
        return brine::Slice{{Any(depth + 1), Any(depth + 1), Any(depth + 1)}};
    }
  }

 private:
  uint64_t Below(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }

  // Lengths of every class the encoding distinguishes: 0, 1..4, 5..255, 256.., 65536...
  size_t AnyLength(size_t big_max) {
    switch (Below(10)) {
      case 0:
        return 0;
      case 1:
      case 2:
      case 3:
        return 1 + Below(4);
      case 4:
      case 5:
      case 6:
        return 5 + Below(251);
      case 7:
      case 8:
        return 256 + Below(1000);
      default:
        return Below(20) == 0 ? 65536 + Below(big_max) : 5 + Below(60);
    }
  }

  Value AnyInt() {
    switch (Below(6)) {
      case 0:
        return static_cast<int64_t>(Below(208)) - 48;  // immediate
      case 1: {
        static const char* kEdges[] = {"160",
                                       "-49",
                                       "255",
                                       "9223372036854775807",
                                       "-9223372036854775808",
                                       "9223372036854775808",
                                       "-9223372036854775809",
                                       "18446744073709551615",
                                       "18446744073709551616"};
        return *brine::Int::FromDecimal(kEdges[Below(std::size(kEdges))]);
      }
      case 2:
      case 3: {
        auto bits = static_cast<int>(Below(64));
        auto v = static_cast<int64_t>(rng_() >> bits);
        return Below(2) == 0 ? v : -v;
      }
      default: {
        // 20 to 4000 digits: Python refuses ints over 4300 digits.
        size_t n = Below(3) == 0 ? 20 + Below(3980) : 20 + Below(80);
        std::string d = Below(2) == 0 ? "-" : "";
        d.push_back(static_cast<char>('1' + Below(9)));
        for (size_t i = 1; i < n; ++i) d.push_back(static_cast<char>('0' + Below(10)));
        return *brine::Int::FromDecimal(d);
      }
    }
  }

  double AnyDouble() {
    static const uint64_t kSpecial[] = {0x7ff8000000000000,  // nan
                                        0x7ff0000000000000,  // inf
                                        0xfff0000000000000,  // -inf
                                        0x8000000000000000,  // -0.0
                                        0x0000000000000000, 0x0000000000000001, 0x7fefffffffffffff};
    switch (Below(4)) {
      case 0:
        return std::bit_cast<double>(kSpecial[Below(std::size(kSpecial))]);
      case 1:
        return static_cast<double>(static_cast<int64_t>(rng_() >> 40)) / 8.0;
      default: {
        uint64_t bits = rng_();
        double d = std::bit_cast<double>(bits);
        return d != d ? 1.25 : d;  // NaN payloads other than the canonical one: not portable
      }
    }
  }

  std::string AnyBytes() {
    std::string s(AnyLength(8000), '\0');
    for (auto& c : s) c = static_cast<char>(rng_());
    return s;
  }

  void PutCodePoint(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
      out->push_back(static_cast<char>(0xf0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
  }

  std::string AnyStr() { return AnyStr(AnyLength(4000)); }

  std::string AnyStr(size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) {
      uint32_t cp = 0;
      switch (Below(8)) {
        case 0:
          cp = static_cast<uint32_t>(0x80 + Below(0x800 - 0x80));
          break;
        case 1:
          do {
            cp = static_cast<uint32_t>(0x800 + Below(0x10000 - 0x800));
          } while (cp >= 0xd800 && cp <= 0xdfff);  // no surrogates in UTF-8
          break;
        case 2:
          cp = static_cast<uint32_t>(0x10000 + Below(0x110000 - 0x10000));
          break;
        default:
          cp = static_cast<uint32_t>(Below(0x80));
      }
      PutCodePoint(cp, &s);
    }
    return s;
  }

  Value AnyTuple(int depth) {
    size_t n = 0;
    switch (Below(10)) {
      case 0:
        break;
      case 1:
      case 2:
      case 3:
      case 4:
        n = 1 + Below(4);
        break;
      case 9:
        n = Below(8) == 0 ? 256 + Below(300) : 5 + Below(251);
        break;
      default:  // wide tuples of nested values only at the top, or the tree explodes
        n = depth == 0 ? 5 + Below(36) : 1 + Below(4);
    }
    std::vector<Value> items;
    for (size_t i = 0; i < n; ++i) items.push_back(n > 60 ? Scalar() : Any(depth + 1));
    return brine::Tuple{std::move(items)};
  }

  // Cheap items for long tuples.
  Value Scalar() {
    if (Below(2) == 0) return static_cast<int64_t>(rng_() >> Below(64));
    return brine::Str{AnyStr(Below(8))};
  }

  // Elements that are distinct under Python's equality (so 1, True and 1.0 never meet): all
  // ints, all strs or all bytes, each value once.
  Value AnyFrozenSet() {
    size_t n = Below(10);
    int kind = static_cast<int>(Below(3));
    std::vector<Value> items;
    std::vector<std::string> seen;
    while (items.size() < n) {
      Value v = kind == 0   ? AnyInt()
                : kind == 1 ? Value(brine::Str{AnyStr(Below(7))})
                            : Value(brine::Bytes{AnyBytes().substr(0, 6)});
      std::string key = brine::Dump(v);
      bool dup = false;
      for (const auto& s : seen) dup = dup || s == key;
      if (dup) continue;
      seen.push_back(key);
      items.push_back(std::move(v));
    }
    return brine::FrozenSet{std::move(items)};
  }

  std::mt19937_64 rng_;
};

// ---- Modes ------------------------------------------------------------------------------------

Result<std::string> BrineRoundTrip(std::string_view in) {
  auto v = brine::Load(in);
  if (!v) return core::Fail(v.error());
  return brine::Dump(*v);
}

Result<std::vector<std::string>> DecodeFrames(std::string_view in) {
  channel::FrameReader reader;
  reader.Append(in);
  std::vector<std::string> payloads;
  for (;;) {
    auto p = reader.Next();
    if (!p) return core::Fail(p.error());
    if (!p->has_value()) break;
    payloads.push_back(std::move(**p));
  }
  if (auto eof = reader.CheckEof(); !eof) return core::Fail(eof.error());
  return payloads;
}

Result<std::string> FrameRoundTrip(std::string_view in, channel::Compression mode) {
  auto payloads = DecodeFrames(in);
  if (!payloads) return core::Fail(payloads.error());
  std::string out;
  for (const auto& p : *payloads) {
    if (auto ok = channel::AppendFrame(p, &out, mode); !ok) return core::Fail(ok.error());
  }
  return out;
}

Result<std::string> FrameDecode(std::string_view in) {
  auto payloads = DecodeFrames(in);
  if (!payloads) return core::Fail(payloads.error());
  std::string out;
  for (const auto& p : *payloads) PutRecord(p, &out);
  return out;
}

Result<std::string> FrameEncode(std::string_view in, channel::Compression mode) {
  std::string out;
  if (auto ok = channel::AppendFrame(in, &out, mode); !ok) return core::Fail(ok.error());
  return out;
}

Result<std::string> MessageRoundTrip(std::string_view in) {
  auto gen = protocol::DetectGeneration(in);
  if (!gen) return core::Fail(gen.error());
  auto m = protocol::DecodeMessage(in, *gen);
  if (!m) return core::Fail(m.error());
  std::string out(1, *gen == protocol::Generation::kV5 ? '\5' : '\6');
  protocol::EncodeMessage(*m, *gen, &out);
  return out;
}

Result<std::string> MessageEncode(std::string_view in) {
  auto v = brine::Load(in);
  if (!v) return core::Fail(v.error());
  const auto* t = v->get_if<brine::Tuple>();
  if (t == nullptr || t->items.size() != 4 || !t->items[0].is<brine::Int>() ||
      !t->items[1].is<brine::Int>() || !t->items[2].is<brine::Int>()) {
    return core::Fail(core::Error::Usage("expected (gen, msg, seq, args), got " + v->Repr()));
  }
  auto gen = t->items[0].as<brine::Int>().small() == 5 ? protocol::Generation::kV5
                                                       : protocol::Generation::kV6;
  const auto& seq = t->items[2].as<brine::Int>();
  protocol::Message m;
  m.type = static_cast<protocol::MsgType>(t->items[1].as<brine::Int>().small());
  m.seq = seq.is_small() ? static_cast<uint64_t>(seq.small()) : std::stoull(seq.big_decimal());
  m.args = t->items[3];
  return protocol::EncodeMessage(m, gen);
}

Result<channel::Compression> ParseMode(std::string_view s) {
  if (s == "python") return channel::Compression::kPython;
  if (s == "adaptive") return channel::Compression::kAdaptive;
  return core::Fail(core::Error::Usage("unknown compression mode: " + std::string(s)));
}

int Usage() {
  std::cerr << "usage: wire_tool brine-roundtrip | brine-gen SEED N | frame-roundtrip MODE |\n"
               "                 frame-decode | frame-encode MODE | message-roundtrip |\n"
               "                 message-encode      (MODE: python | adaptive)\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  std::string_view mode = argv[1];
  std::string out;
  if (mode == "brine-gen") {
    if (argc != 4) return Usage();
    Generator gen(std::stoull(argv[2]));
    for (unsigned long i = 0, n = std::stoul(argv[3]); i < n; ++i) {
      Value v = gen.Any(0);
      PutRecord(brine::Dump(v), &out);
      std::string d;
      Describe(v, &d);
      PutRecord(d, &out);
    }
  } else {
    std::string in = ReadStdin();
    std::vector<std::string_view> records;
    if (!ReadRecords(in, &records)) {
      std::cerr << "wire_tool: truncated input record\n";
      return 1;
    }
    channel::Compression compression = channel::Compression::kPython;
    if (mode == "frame-roundtrip" || mode == "frame-encode") {
      if (argc != 3) return Usage();
      auto m = ParseMode(argv[2]);
      if (!m) return Usage();
      compression = *m;
    }
    for (std::string_view r : records) {
      if (mode == "brine-roundtrip") {
        PutResult(BrineRoundTrip(r), &out);
      } else if (mode == "frame-roundtrip") {
        PutResult(FrameRoundTrip(r, compression), &out);
      } else if (mode == "frame-decode") {
        PutResult(FrameDecode(r), &out);
      } else if (mode == "frame-encode") {
        PutResult(FrameEncode(r, compression), &out);
      } else if (mode == "message-roundtrip") {
        PutResult(MessageRoundTrip(r), &out);
      } else if (mode == "message-encode") {
        PutResult(MessageEncode(r), &out);
      } else {
        return Usage();
      }
    }
  }
  return WriteStdout(out) ? 0 : 1;
}
