#include "libcore/brine/brine.h"

#include <bit>
#include <charconv>
#include <cstring>
#include <optional>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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
  EncodeTupleHeader(items.size(), out);
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

void EncodeIntValue(const Int& i, std::string* out) {
  if (!i.is_small()) {
    EncodeIntText(i.big_decimal(), out);
    return;
  }
  int64_t v = i.small();
  if (v >= kImmMin && v <= kImmMax) {
    PutTag(static_cast<uint8_t>(v + kImmBias), out);
    return;
  }
  // Tag, length and digits (at most 20: always the short form) in one append.
  char buf[2 + 24];
  auto [ptr, ec] = std::to_chars(buf + 2, buf + sizeof buf, v);
  (void)ec;
  buf[0] = static_cast<char>(kTagIntShort);
  buf[1] = static_cast<char>(ptr - (buf + 2));
  out->append(buf, static_cast<size_t>(ptr - buf));
}

struct EncodeVisitor {
  std::string* out;
  void operator()(const NoneType&) const { PutTag(kTagNone, out); }
  void operator()(bool b) const { PutTag(b ? kTagTrue : kTagFalse, out); }
  void operator()(const Int& i) const { EncodeIntValue(i, out); }
  void operator()(double d) const {
    PutTag(kTagFloat, out);
    PutDouble(d, out);
  }
  void operator()(const Complex& c) const {
    PutTag(kTagComplex, out);
    PutDouble(c.real, out);
    PutDouble(c.imag, out);
  }
  void operator()(const Bytes& b) const { EncodeBytes(b.view(), out); }
  void operator()(const Str& s) const { EncodeStr(s.utf8, out); }
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
// remain, by subtraction, so nothing can overflow. Values are decoded in place into their final
// slot (a tuple's items are sized first, then filled), so nothing is moved or copied twice; the
// first error is kept in `error_` and every step returns false after it.
class Decoder {
 public:
  Decoder(std::string_view data, const DecodeLimits& limits,
          const std::shared_ptr<const void>& owner)
      : data_(data), limits_(limits), owner_(owner) {}

  Result<Value> DecodeAll() {
    Value v;
    if (!DecodeValue(0, &v)) return Fail(std::move(*error_));
    if (pos_ != data_.size()) {
      return Fail(Error::Protocol("brine: " + std::to_string(data_.size() - pos_) +
                                  " trailing byte(s) at offset " + std::to_string(pos_)));
    }
    return v;
  }

  // See LoadTupleOf().
  Result<bool> DecodeAllTupleOf(size_t n, Value* items, Value* other) {
    const bool matched =
        n >= 1 && n <= 4 && !data_.empty() && static_cast<uint8_t>(data_[0]) == kTagTuple1 + n - 1;
    if (matched) {
      ++values_;  // the tuple itself, as DecodeValue would count it
      pos_ = 1;
      if (n > remaining()) {
        Err(0, "tuple of " + std::to_string(n) + " items but only " + std::to_string(remaining()) +
                   " byte(s) left");
        return Fail(std::move(*error_));
      }
      for (size_t i = 0; i < n; ++i) {
        if (!DecodeValue(1, &items[i])) return Fail(std::move(*error_));
      }
    } else if (!DecodeValue(0, other)) {
      return Fail(std::move(*error_));
    }
    if (pos_ != data_.size()) {
      return Fail(Error::Protocol("brine: " + std::to_string(data_.size() - pos_) +
                                  " trailing byte(s) at offset " + std::to_string(pos_)));
    }
    return matched;
  }

 private:
  size_t remaining() const { return data_.size() - pos_; }

  bool Err(size_t offset, const std::string& what) {
    error_ = Error::Protocol("brine: " + what + " at offset " + std::to_string(offset));
    return false;
  }

  bool Truncated(size_t offset, const char* what) {
    return Err(offset, std::string("truncated input in ") + what);
  }

  bool ReadU32(size_t tag_offset, const char* what, size_t* n) {
    if (remaining() < 4) return Truncated(tag_offset, what);
    const auto* p = reinterpret_cast<const unsigned char*>(data_.data() + pos_);
    *n = (size_t{p[0]} << 24) | (size_t{p[1]} << 16) | (size_t{p[2]} << 8) | size_t{p[3]};
    pos_ += 4;
    return true;
  }

  bool ReadU8(size_t tag_offset, const char* what, size_t* n) {
    if (remaining() < 1) return Truncated(tag_offset, what);
    *n = static_cast<uint8_t>(data_[pos_++]);
    return true;
  }

  bool ReadDouble(size_t tag_offset, const char* what, double* d) {
    if (remaining() < 8) return Truncated(tag_offset, what);
    uint64_t bits = 0;
    for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<uint8_t>(data_[pos_++]);
    *d = std::bit_cast<double>(bits);
    return true;
  }

  bool ReadRaw(size_t n, size_t tag_offset, const char* what, std::string_view* s) {
    if (remaining() < n) return Truncated(tag_offset, what);
    *s = data_.substr(pos_, n);
    pos_ += n;
    return true;
  }

  // Reads the length of a bytes value whose tag is `tag`.
  bool BytesLength(uint8_t tag, size_t tag_offset, size_t* n) {
    if (tag == kTagEmptyBytes) {
      *n = 0;
      return true;
    }
    if (tag >= kTagBytes1 && tag <= kTagBytes1 + 3) {
      *n = size_t{tag - kTagBytes1 + 1u};
      return true;
    }
    if (tag == kTagBytesShort) return ReadU8(tag_offset, "bytes length", n);
    return ReadU32(tag_offset, "bytes length", n);
  }

  static bool IsBytesTag(uint8_t tag) {
    return tag == kTagEmptyBytes || (tag >= kTagBytes1 && tag <= kTagBytesLong);
  }

  bool DecodeItems(uint8_t tag, size_t tag_offset, int depth, std::vector<Value>* items) {
    size_t count = 0;
    if (tag == kTagEmptyTuple) return true;
    if (tag >= kTagTuple1 && tag <= kTagTuple1 + 3) {
      count = size_t{tag - kTagTuple1 + 1u};
    } else if (tag == kTagTupleShort) {
      if (!ReadU8(tag_offset, "tuple count", &count)) return false;
    } else {
      if (!ReadU32(tag_offset, "tuple count", &count)) return false;
    }
    // Every item takes at least one byte: a count past the remaining bytes is a lie, and is
    // refused before anything is allocated for it.
    if (count > remaining()) {
      return Err(tag_offset, "tuple of " + std::to_string(count) + " items but only " +
                                 std::to_string(remaining()) + " byte(s) left");
    }
    items->reserve(count);
    for (size_t i = 0; i < count; ++i) {
      if (!DecodeValue(depth + 1, &items->emplace_back())) return false;
    }
    return true;
  }

  static bool IsTupleTag(uint8_t tag) {
    return tag == kTagEmptyTuple || (tag >= kTagTuple1 && tag <= kTagTupleLong);
  }

  bool DecodeInt(uint8_t tag, size_t tag_offset, Value* out) {
    size_t n = 0;
    if (tag == kTagIntShort) {
      if (!ReadU8(tag_offset, "int length", &n)) return false;
    } else {
      if (!ReadU32(tag_offset, "int length", &n)) return false;
    }
    std::string_view text;
    if (!ReadRaw(n, tag_offset, "int literal", &text)) return false;
    // Fast path: up to 18 plain digits always fit int64_t (Python sends canonical text).
    if (!text.empty() && text.size() <= 18 && (text[0] != '0' || text.size() == 1)) {
      int64_t v = 0;
      bool digits = true;
      for (char c : text) {
        if (c < '0' || c > '9') {
          digits = false;
          break;
        }
        v = v * 10 + (c - '0');
      }
      if (digits) {
        out->variant().emplace<Int>(v);
        return true;
      }
    }
    auto i = Int::FromDecimal(text);
    if (!i) return Err(tag_offset, i.error().message());
    *out = std::move(*i);
    return true;
  }

  bool DecodeValue(int depth, Value* out) {
    if (depth > limits_.max_depth) {
      return Err(pos_, "nesting deeper than " + std::to_string(limits_.max_depth));
    }
    if (++values_ > limits_.max_values) {
      return Err(pos_, "more than " + std::to_string(limits_.max_values) + " values");
    }
    size_t tag_offset = pos_;
    if (remaining() == 0) return Err(tag_offset, "truncated input: expected a tag");
    auto tag = static_cast<uint8_t>(data_[pos_++]);
    if (tag >= kTagImmFirst && tag <= kTagImmLast) {
      out->variant().emplace<Int>(static_cast<int64_t>(tag) - kImmBias);
      return true;
    }
    switch (tag) {
      case kTagNone:
        *out = NoneType{};
        return true;
      case kTagTrue:
        *out = true;
        return true;
      case kTagFalse:
        *out = false;
        return true;
      case kTagNotImplemented:
        *out = NotImplementedType{};
        return true;
      case kTagEllipsis:
        *out = EllipsisType{};
        return true;
      case kTagEmptyBytes:
      case kTagBytes1:
      case kTagBytes1 + 1:
      case kTagBytes1 + 2:
      case kTagBytes1 + 3:
      case kTagBytesShort:
      case kTagBytesLong: {
        size_t n = 0;
        std::string_view raw;
        if (!BytesLength(tag, tag_offset, &n) || !ReadRaw(n, tag_offset, "bytes", &raw)) {
          return false;
        }
        if (owner_ != nullptr && n >= kShareBytesFrom) {
          out->variant().emplace<Bytes>(owner_, raw);
        } else {
          out->variant().emplace<Bytes>(raw);
        }
        return true;
      }
      case kTagStr: {
        size_t inner = pos_;
        if (remaining() == 0) return Truncated(tag_offset, "str");
        auto btag = static_cast<uint8_t>(data_[pos_++]);
        if (!IsBytesTag(btag)) {
          return Err(inner, "str payload must be bytes, found tag 0x" + Hex(btag));
        }
        size_t n = 0;
        std::string_view raw;
        if (!BytesLength(btag, tag_offset, &n) || !ReadRaw(n, tag_offset, "str", &raw)) {
          return false;
        }
        if (!IsValidUtf8(raw)) return Err(tag_offset, "invalid UTF-8 in str");
        out->variant().emplace<Str>().utf8.assign(raw);
        return true;
      }
      case kTagEmptyTuple:
      case kTagTuple1:
      case kTagTuple1 + 1:
      case kTagTuple1 + 2:
      case kTagTuple1 + 3:
      case kTagTupleShort:
      case kTagTupleLong:
        return DecodeItems(tag, tag_offset, depth, &out->variant().emplace<Tuple>().items);
      case kTagIntShort:
      case kTagIntLong:
        return DecodeInt(tag, tag_offset, out);
      case kTagFloat: {
        double d = 0;
        if (!ReadDouble(tag_offset, "float", &d)) return false;
        *out = d;
        return true;
      }
      case kTagComplex: {
        Complex c;
        if (!ReadDouble(tag_offset, "complex", &c.real) ||
            !ReadDouble(tag_offset, "complex", &c.imag)) {
          return false;
        }
        *out = c;
        return true;
      }
      case kTagSlice:
      case kTagFrozenSet: {
        const char* what = tag == kTagSlice ? "slice" : "frozenset";
        size_t inner = pos_;
        if (remaining() == 0) return Truncated(tag_offset, what);
        auto ttag = static_cast<uint8_t>(data_[pos_++]);
        if (!IsTupleTag(ttag)) {
          return Err(inner,
                     std::string(what) + " payload must be a tuple, found tag 0x" + Hex(ttag));
        }
        std::vector<Value> items;
        if (!DecodeItems(ttag, inner, depth + 1, &items)) return false;
        if (tag == kTagFrozenSet) {
          *out = FrozenSet{std::move(items)};
          return true;
        }
        if (items.size() != 3) {
          return Err(inner, "slice needs 3 items, found " + std::to_string(items.size()));
        }
        *out = Slice{std::move(items)};
        return true;
      }
      default:
        return Err(tag_offset, "unknown tag 0x" + Hex(tag));
    }
  }

  static std::string Hex(uint8_t b) {
    static constexpr char kDigits[] = "0123456789abcdef";
    return {kDigits[b >> 4], kDigits[b & 0xf]};
  }

  std::string_view data_;
  const DecodeLimits& limits_;
  const std::shared_ptr<const void>& owner_;  // of data_, when bytes values may share it
  size_t pos_ = 0;
  size_t values_ = 0;
  std::optional<Error> error_;
};

}  // namespace

void Encode(const Value& v, std::string* out) { std::visit(EncodeVisitor{out}, v.variant()); }

void EncodeInt(const Int& i, std::string* out) { EncodeIntValue(i, out); }

void EncodeStr(std::string_view utf8, std::string* out) {
  PutTag(kTagStr, out);
  EncodeBytes(utf8, out);
}

void EncodeTupleHeader(size_t n, std::string* out) {
  if (n == 0) {
    PutTag(kTagEmptyTuple, out);
    return;
  }
  EncodeCount(n, out);
}

std::string Dump(const Value& v) {
  std::string out;
  Encode(v, &out);
  return out;
}

Result<Value> Load(std::string_view data, const DecodeLimits& limits,
                   const std::shared_ptr<const void>& owner) {
  return Decoder(data, limits, owner).DecodeAll();
}

Result<bool> LoadTupleOf(std::string_view data, size_t n, Value* items, Value* other,
                         const DecodeLimits& limits, const std::shared_ptr<const void>& owner) {
  return Decoder(data, limits, owner).DecodeAllTupleOf(n, items, other);
}

bool IsValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // ASCII fast path: 64 (SSE2) or 32, then eight bytes at a time while none has its high
    // bit set.
#if defined(__SSE2__)
    while (n - i >= 64) {
      const auto* q = reinterpret_cast<const __m128i*>(p + i);
      __m128i any = _mm_or_si128(_mm_or_si128(_mm_loadu_si128(q), _mm_loadu_si128(q + 1)),
                                 _mm_or_si128(_mm_loadu_si128(q + 2), _mm_loadu_si128(q + 3)));
      if (_mm_movemask_epi8(any) != 0) break;
      i += 64;
    }
#endif
    while (n - i >= 32) {
      uint64_t w[4];
      std::memcpy(w, p + i, sizeof(w));
      if (((w[0] | w[1] | w[2] | w[3]) & 0x8080808080808080ull) != 0) break;
      i += 32;
    }
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
