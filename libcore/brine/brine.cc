#include "libcore/brine/brine.h"

#include <bit>
#include <charconv>
#include <cstring>
#include <string>

namespace core::brine {
namespace {

void PutU32(uint32_t n, std::string* out) {
  char b[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
               static_cast<char>(n)};
  out->append(b, 4);
}

void PutDouble(double d, std::string* out) {
  uint64_t bits = std::bit_cast<uint64_t>(d);
  char b[8];
  for (int i = 7; i >= 0; --i) {
    b[i] = static_cast<char>(bits & 0xff);
    bits >>= 8;
  }
  out->append(b, 8);
}

void PutTag(uint8_t tag, std::string* out) { out->push_back(static_cast<char>(tag)); }

void EncodeBytes(std::string_view data, std::string* out) {
  size_t n = data.size();
  if (n == 0) {
    PutTag(kTagEmptyBytes, out);
    return;
  }
  if (n <= 4) {
    PutTag(static_cast<uint8_t>(kTagBytes1 + n - 1), out);
  } else if (n <= 255) {
    PutTag(kTagBytesShort, out);
    out->push_back(static_cast<char>(n));
  } else {
    PutTag(kTagBytesLong, out);
    PutU32(static_cast<uint32_t>(n), out);
  }
  out->append(data);
}

void EncodeCount(size_t n, std::string* out) {
  // Called for n >= 1 (empty tuples have their own tag).
  if (n <= 4) {
    PutTag(static_cast<uint8_t>(kTagTuple1 + n - 1), out);
  } else if (n <= 255) {
    PutTag(kTagTupleShort, out);
    out->push_back(static_cast<char>(n));
  } else {
    PutTag(kTagTupleLong, out);
    PutU32(static_cast<uint32_t>(n), out);
  }
}

void EncodeItems(const std::vector<Value>& items, std::string* out) {
  if (items.empty()) {
    PutTag(kTagEmptyTuple, out);
    return;
  }
  EncodeCount(items.size(), out);
  for (const Value& item : items) Encode(item, out);
}

void EncodeIntText(std::string_view text, std::string* out) {
  if (text.size() < 256) {
    PutTag(kTagIntShort, out);
    out->push_back(static_cast<char>(text.size()));
  } else {
    PutTag(kTagIntLong, out);
    PutU32(static_cast<uint32_t>(text.size()), out);
  }
  out->append(text);
}

void EncodeInt(const Int& i, std::string* out) {
  if (!i.is_small()) {
    EncodeIntText(i.big_decimal(), out);
    return;
  }
  int64_t v = i.small();
  if (v >= kImmMin && v <= kImmMax) {
    PutTag(static_cast<uint8_t>(v + kImmBias), out);
    return;
  }
  char buf[24];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  EncodeIntText(std::string_view(buf, static_cast<size_t>(ptr - buf)), out);
}

struct EncodeVisitor {
  std::string* out;
  void operator()(const NoneType&) const { PutTag(kTagNone, out); }
  void operator()(bool b) const { PutTag(b ? kTagTrue : kTagFalse, out); }
  void operator()(const Int& i) const { EncodeInt(i, out); }
  void operator()(double d) const {
    PutTag(kTagFloat, out);
    PutDouble(d, out);
  }
  void operator()(const Complex& c) const {
    PutTag(kTagComplex, out);
    PutDouble(c.real, out);
    PutDouble(c.imag, out);
  }
  void operator()(const Bytes& b) const { EncodeBytes(b.data, out); }
  void operator()(const Str& s) const {
    PutTag(kTagStr, out);
    EncodeBytes(s.utf8, out);
  }
  void operator()(const Tuple& t) const { EncodeItems(t.items, out); }
  void operator()(const FrozenSet& f) const {
    PutTag(kTagFrozenSet, out);
    EncodeItems(f.items, out);
  }
  void operator()(const Slice& s) const {
    PutTag(kTagSlice, out);
    EncodeItems(s.parts, out);
  }
  void operator()(const EllipsisType&) const { PutTag(kTagEllipsis, out); }
  void operator()(const NotImplementedType&) const { PutTag(kTagNotImplemented, out); }
};

// The decoder: a cursor over untrusted bytes. Every length is checked against the bytes that
// remain, by subtraction, so nothing can overflow.
class Decoder {
 public:
  Decoder(std::string_view data, const DecodeLimits& limits) : data_(data), limits_(limits) {}

  Result<Value> DecodeAll() {
    auto v = DecodeValue(0);
    if (!v) return v;
    if (pos_ != data_.size()) {
      return Fail(Error::Protocol("brine: " + std::to_string(data_.size() - pos_) +
                                  " trailing byte(s) at offset " + std::to_string(pos_)));
    }
    return v;
  }

 private:
  size_t remaining() const { return data_.size() - pos_; }

  Error Err(size_t offset, const std::string& what) const {
    return Error::Protocol("brine: " + what + " at offset " + std::to_string(offset));
  }

  Error Truncated(size_t offset, const char* what) const {
    return Err(offset, std::string("truncated input in ") + what);
  }

  Result<uint32_t> ReadU32(size_t tag_offset, const char* what) {
    if (remaining() < 4) return Fail(Truncated(tag_offset, what));
    const auto* p = reinterpret_cast<const unsigned char*>(data_.data() + pos_);
    uint32_t n = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
    pos_ += 4;
    return n;
  }

  Result<uint8_t> ReadU8(size_t tag_offset, const char* what) {
    if (remaining() < 1) return Fail(Truncated(tag_offset, what));
    return static_cast<uint8_t>(data_[pos_++]);
  }

  Result<double> ReadDouble(size_t tag_offset, const char* what) {
    if (remaining() < 8) return Fail(Truncated(tag_offset, what));
    uint64_t bits = 0;
    for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<uint8_t>(data_[pos_++]);
    return std::bit_cast<double>(bits);
  }

  Result<std::string_view> ReadRaw(size_t n, size_t tag_offset, const char* what) {
    if (remaining() < n) return Fail(Truncated(tag_offset, what));
    std::string_view s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }

  // Returns the length of a bytes value whose tag is `tag`, or an error.
  Result<size_t> BytesLength(uint8_t tag, size_t tag_offset) {
    if (tag == kTagEmptyBytes) return size_t{0};
    if (tag >= kTagBytes1 && tag <= kTagBytes1 + 3) return size_t{tag - kTagBytes1 + 1u};
    if (tag == kTagBytesShort) {
      auto n = ReadU8(tag_offset, "bytes length");
      if (!n) return Fail(n.error());
      return size_t{*n};
    }
    auto n = ReadU32(tag_offset, "bytes length");
    if (!n) return Fail(n.error());
    return size_t{*n};
  }

  static bool IsBytesTag(uint8_t tag) {
    return tag == kTagEmptyBytes || (tag >= kTagBytes1 && tag <= kTagBytesLong);
  }

  Result<std::vector<Value>> DecodeItems(uint8_t tag, size_t tag_offset, int depth) {
    size_t count = 0;
    if (tag == kTagEmptyTuple) return std::vector<Value>{};
    if (tag >= kTagTuple1 && tag <= kTagTuple1 + 3) {
      count = size_t{tag - kTagTuple1 + 1u};
    } else if (tag == kTagTupleShort) {
      auto n = ReadU8(tag_offset, "tuple count");
      if (!n) return Fail(n.error());
      count = *n;
    } else {
      auto n = ReadU32(tag_offset, "tuple count");
      if (!n) return Fail(n.error());
      count = *n;
    }
    // Every item takes at least one byte: a count past the remaining bytes is a lie, and is
    // refused before anything is allocated for it.
    if (count > remaining()) {
      return Fail(Err(tag_offset, "tuple of " + std::to_string(count) + " items but only " +
                                      std::to_string(remaining()) + " byte(s) left"));
    }
    std::vector<Value> items;
    items.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      auto v = DecodeValue(depth + 1);
      if (!v) return Fail(v.error());
      items.push_back(std::move(*v));
    }
    return items;
  }

  static bool IsTupleTag(uint8_t tag) {
    return tag == kTagEmptyTuple || (tag >= kTagTuple1 && tag <= kTagTupleLong);
  }

  Result<Value> DecodeInt(uint8_t tag, size_t tag_offset) {
    size_t n = 0;
    if (tag == kTagIntShort) {
      auto len = ReadU8(tag_offset, "int length");
      if (!len) return Fail(len.error());
      n = *len;
    } else {
      auto len = ReadU32(tag_offset, "int length");
      if (!len) return Fail(len.error());
      n = *len;
    }
    auto text = ReadRaw(n, tag_offset, "int literal");
    if (!text) return Fail(text.error());
    auto i = Int::FromDecimal(*text);
    if (!i) return Fail(Err(tag_offset, i.error().message()));
    return Value(std::move(*i));
  }

  Result<Value> DecodeValue(int depth) {
    if (depth > limits_.max_depth) {
      return Fail(Err(pos_, "nesting deeper than " + std::to_string(limits_.max_depth)));
    }
    if (++values_ > limits_.max_values) {
      return Fail(Err(pos_, "more than " + std::to_string(limits_.max_values) + " values"));
    }
    size_t tag_offset = pos_;
    if (remaining() == 0) return Fail(Err(tag_offset, "truncated input: expected a tag"));
    auto tag = static_cast<uint8_t>(data_[pos_++]);
    if (tag >= kTagImmFirst && tag <= kTagImmLast) {
      return Value(Int(static_cast<int64_t>(tag) - kImmBias));
    }
    switch (tag) {
      case kTagNone:
        return Value(NoneType{});
      case kTagTrue:
        return Value(true);
      case kTagFalse:
        return Value(false);
      case kTagNotImplemented:
        return Value(NotImplementedType{});
      case kTagEllipsis:
        return Value(EllipsisType{});
      case kTagEmptyBytes:
      case kTagBytes1:
      case kTagBytes1 + 1:
      case kTagBytes1 + 2:
      case kTagBytes1 + 3:
      case kTagBytesShort:
      case kTagBytesLong: {
        auto n = BytesLength(tag, tag_offset);
        if (!n) return Fail(n.error());
        auto raw = ReadRaw(*n, tag_offset, "bytes");
        if (!raw) return Fail(raw.error());
        return Value(Bytes{std::string(*raw)});
      }
      case kTagStr: {
        size_t inner = pos_;
        if (remaining() == 0) return Fail(Truncated(tag_offset, "str"));
        auto btag = static_cast<uint8_t>(data_[pos_++]);
        if (!IsBytesTag(btag)) {
          return Fail(Err(inner, "str payload must be bytes, found tag 0x" + Hex(btag)));
        }
        auto n = BytesLength(btag, tag_offset);
        if (!n) return Fail(n.error());
        auto raw = ReadRaw(*n, tag_offset, "str");
        if (!raw) return Fail(raw.error());
        if (!IsValidUtf8(*raw)) return Fail(Err(tag_offset, "invalid UTF-8 in str"));
        return Value(Str{std::string(*raw)});
      }
      case kTagEmptyTuple:
      case kTagTuple1:
      case kTagTuple1 + 1:
      case kTagTuple1 + 2:
      case kTagTuple1 + 3:
      case kTagTupleShort:
      case kTagTupleLong: {
        auto items = DecodeItems(tag, tag_offset, depth);
        if (!items) return Fail(items.error());
        return Value(Tuple{std::move(*items)});
      }
      case kTagIntShort:
      case kTagIntLong:
        return DecodeInt(tag, tag_offset);
      case kTagFloat: {
        auto d = ReadDouble(tag_offset, "float");
        if (!d) return Fail(d.error());
        return Value(*d);
      }
      case kTagComplex: {
        auto re = ReadDouble(tag_offset, "complex");
        if (!re) return Fail(re.error());
        auto im = ReadDouble(tag_offset, "complex");
        if (!im) return Fail(im.error());
        return Value(Complex{*re, *im});
      }
      case kTagSlice:
      case kTagFrozenSet: {
        const char* what = tag == kTagSlice ? "slice" : "frozenset";
        size_t inner = pos_;
        if (remaining() == 0) return Fail(Truncated(tag_offset, what));
        auto ttag = static_cast<uint8_t>(data_[pos_++]);
        if (!IsTupleTag(ttag)) {
          return Fail(
              Err(inner, std::string(what) + " payload must be a tuple, found tag 0x" + Hex(ttag)));
        }
        auto items = DecodeItems(ttag, inner, depth + 1);
        if (!items) return Fail(items.error());
        if (tag == kTagFrozenSet) return Value(FrozenSet{std::move(*items)});
        if (items->size() != 3) {
          return Fail(Err(inner, "slice needs 3 items, found " + std::to_string(items->size())));
        }
        return Value(Slice{std::move(*items)});
      }
      default:
        return Fail(Err(tag_offset, "unknown tag 0x" + Hex(tag)));
    }
  }

  static std::string Hex(uint8_t b) {
    static constexpr char kDigits[] = "0123456789abcdef";
    return {kDigits[b >> 4], kDigits[b & 0xf]};
  }

  std::string_view data_;
  const DecodeLimits& limits_;
  size_t pos_ = 0;
  size_t values_ = 0;
};

}  // namespace

void Encode(const Value& v, std::string* out) { std::visit(EncodeVisitor{out}, v.variant()); }

std::string Dump(const Value& v) {
  std::string out;
  Encode(v, &out);
  return out;
}

Result<Value> Load(std::string_view data, const DecodeLimits& limits) {
  return Decoder(data, limits).DecodeAll();
}

bool IsValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // ASCII fast path: eight bytes at a time while none has its high bit set.
    while (n - i >= 8) {
      uint64_t word;
      std::memcpy(&word, p + i, sizeof(word));
      if ((word & 0x8080808080808080ull) != 0) break;
      i += 8;
    }
    if (i >= n) break;
    unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1fu;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0fu;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07u;
    } else {
      return false;  // continuation byte, overlong lead (c0/c1) or past f4
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      unsigned char cc = p[i + k];
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;  // overlong
    if (cp >= 0xd800 && cp <= 0xdfff) return false;                            // surrogate
    if (cp > 0x10ffff) return false;
    i += len;
  }
  return true;
}

}  // namespace core::brine
