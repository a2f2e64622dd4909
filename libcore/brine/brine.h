#pragma once

// The brine codec (docs/protocol.md §1): byte-identical to Python rpyc's brine.dump, with a strict,
// bounded decoder for untrusted bytes.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "libcore/base/result.h"
#include "libcore/brine/value.h"

namespace core::brine {

// Tags, as in docs/protocol.md §1.1.
inline constexpr uint8_t kTagNone = 0x00;
inline constexpr uint8_t kTagEmptyBytes = 0x01;
inline constexpr uint8_t kTagEmptyTuple = 0x02;
inline constexpr uint8_t kTagTrue = 0x03;
inline constexpr uint8_t kTagFalse = 0x04;
inline constexpr uint8_t kTagNotImplemented = 0x05;
inline constexpr uint8_t kTagEllipsis = 0x06;
inline constexpr uint8_t kTagStr = 0x08;
inline constexpr uint8_t kTagBytes1 = 0x0a;  // 0x0a..0x0d: bytes of length 1..4
inline constexpr uint8_t kTagBytesShort = 0x0e;
inline constexpr uint8_t kTagBytesLong = 0x0f;
inline constexpr uint8_t kTagTuple1 = 0x10;  // 0x10..0x13: tuples of 1..4 items
inline constexpr uint8_t kTagTupleShort = 0x14;
inline constexpr uint8_t kTagTupleLong = 0x15;
inline constexpr uint8_t kTagIntShort = 0x16;
inline constexpr uint8_t kTagIntLong = 0x17;
inline constexpr uint8_t kTagFloat = 0x18;
inline constexpr uint8_t kTagSlice = 0x19;
inline constexpr uint8_t kTagFrozenSet = 0x1a;
inline constexpr uint8_t kTagComplex = 0x1b;
inline constexpr uint8_t kTagImmFirst = 0x20;
inline constexpr uint8_t kTagImmLast = 0xef;
inline constexpr int kImmBias = 0x50;  // immediate int value = tag - 0x50: -48 .. 159
inline constexpr int64_t kImmMin = -48;
inline constexpr int64_t kImmMax = 159;

struct DecodeLimits {
  int max_depth = 256;  // nesting of tuples, frozensets, slices
  // Values in one decode, all levels counted. Each costs sizeof(Value) (48 bytes) however small
  // its encoding, so this bounds memory per message: 4 Mi values = 192 MiB at most.
  size_t max_values = size_t{1} << 22;
};

// Appends the encoding of `v` to `*out`. Encoding cannot fail.
void Encode(const Value& v, std::string* out);
// Encode() of an int, without building a Value around it.
void EncodeInt(const Int& i, std::string* out);
// Encode() of a str (`utf8` must be valid UTF-8), without building a Value around it.
void EncodeStr(std::string_view utf8, std::string* out);
// The start of a tuple of `n` items, as Encode() writes it before the items (for n == 0, the
// whole empty tuple): a tuple is encoded by hand as this, then each item's encoding.
void EncodeTupleHeader(size_t n, std::string* out);
std::string Dump(const Value& v);

// Bytes values of at least this size share the decoded buffer instead of copying it, when the
// caller says who owns that buffer (the `owner` of Load()).
inline constexpr size_t kShareBytesFrom = size_t{64} << 10;

// Decodes exactly one value that spans all of `data`. Errors say what went wrong and at which
// byte offset; trailing bytes are an error. When `owner` is set it keeps `data` alive: bytes
// values of kShareBytesFrom bytes or more then point into `data` and hold a reference to `owner`
// (no copy); the buffer lives as long as any of them.
Result<Value> Load(std::string_view data, const DecodeLimits& limits = {},
                   const std::shared_ptr<const void>& owner = nullptr);

// Load() for a value expected to be a tuple of `n` items (1..4), such as a message envelope:
// when it is one, its items are decoded straight into items[0..n) (no tuple is built) and the
// result is true; otherwise the value is decoded into `*other` and the result is false. Limits
// and errors are exactly Load()'s.
Result<bool> LoadTupleOf(std::string_view data, size_t n, Value* items, Value* other,
                         const DecodeLimits& limits = {},
                         const std::shared_ptr<const void>& owner = nullptr);

// True when `s` is strict UTF-8 (no overlongs, no surrogates, nothing past U+10FFFF), as Python's
// bytes.decode('utf-8') requires.
bool IsValidUtf8(std::string_view s);

}  // namespace core::brine
