#pragma once

// The brine value model: every type the brine codec carries (docs/protocol.md §1), and nothing
// else. Values are plain data (no I/O, no Python).

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "libcore/base/result.h"

namespace core::brine {

struct NoneType {
  bool operator==(const NoneType&) const = default;
};
struct EllipsisType {
  bool operator==(const EllipsisType&) const = default;
};
struct NotImplementedType {
  bool operator==(const NotImplementedType&) const = default;
};

// An int of any size. Values that fit int64_t are held as such; the rest as canonical decimal
// text (optional '-', no leading zeros), exactly what Python's str(int) gives.
class Int {
 public:
  Int() = default;
  Int(int64_t v) : small_(v) {}  // NOLINT(google-explicit-constructor): ints convert naturally

  // Parses -?[0-9]+ (leading zeros allowed, normalised). Anything else is an error.
  static Result<Int> FromDecimal(std::string_view text);

  bool is_small() const { return big_.empty(); }
  int64_t small() const { return small_; }
  // Canonical decimal text of the value.
  std::string ToDecimal() const;
  // Only meaningful when !is_small().
  const std::string& big_decimal() const { return big_; }

  bool operator==(const Int& o) const { return small_ == o.small_ && big_ == o.big_; }

 private:
  int64_t small_ = 0;
  std::string big_;  // empty when the value fits int64_t
};

struct Complex {
  double real = 0;
  double imag = 0;
};

// A bytes value: bytes of its own, or a view into a buffer it shares ownership of (a large value
// decoded from a frame, see brine::Load(): the frame's buffer stays alive while the value does,
// and the bytes are not copied).
class Bytes {
 public:
  Bytes() = default;
  Bytes(std::string data)  // NOLINT(google-explicit-constructor): Bytes{std::move(s)}
      : v_(std::move(data)) {}
  explicit Bytes(std::string_view data) : v_(std::in_place_type<std::string>, data) {}
  // `view` lies in a buffer that `owner` keeps alive.
  Bytes(std::shared_ptr<const void> owner, std::string_view view)
      : v_(Shared{std::shared_ptr<const char>(std::move(owner), view.data()), view.size()}) {}

  std::string_view view() const {
    if (const auto* s = std::get_if<Shared>(&v_)) return {s->data.get(), s->size};
    return std::get<std::string>(v_);
  }
  size_t size() const { return view().size(); }
  // Whether the bytes live in a shared buffer (tests).
  bool shared() const { return std::holds_alternative<Shared>(v_); }

  bool operator==(const Bytes& o) const { return view() == o.view(); }

 private:
  struct Shared {
    std::shared_ptr<const char> data;  // aliases the owner: points at the first byte
    size_t size = 0;
  };
  // No larger than an Int, so that a Value stays 48 bytes.
  std::variant<std::string, Shared> v_;
};

struct Str {
  std::string utf8;  // always valid UTF-8
};

class Value;

struct Tuple {
  std::vector<Value> items;
};

struct FrozenSet {
  std::vector<Value> items;  // in the sender's iteration order
};

struct Slice {
  std::vector<Value> parts;  // exactly three: start, stop, step
};

class Value {
 public:
  using Variant = std::variant<NoneType, bool, Int, double, Complex, Bytes, Str, Tuple, FrozenSet,
                               Slice, EllipsisType, NotImplementedType>;

  Value() = default;
  template <typename T>
  Value(T v) : v_(std::move(v)) {}  // NOLINT(google-explicit-constructor)
  Value(int v) : v_(Int(v)) {}      // NOLINT(google-explicit-constructor)
  Value(int64_t v) : v_(Int(v)) {}  // NOLINT(google-explicit-constructor)
  Value(const char*) = delete;      // say Str{} or Bytes{}: the two are different on the wire

  template <typename T>
  bool is() const {
    return std::holds_alternative<T>(v_);
  }
  template <typename T>
  const T& as() const {
    return std::get<T>(v_);
  }
  template <typename T>
  T& as() {
    return std::get<T>(v_);
  }
  template <typename T>
  const T* get_if() const {
    return std::get_if<T>(&v_);
  }
  const Variant& variant() const { return v_; }
  Variant& variant() { return v_; }

  // Structural equality. Floats compare by bit pattern (NaN == NaN, 0.0 != -0.0); frozensets
  // compare as multisets, since their order is the sender's iteration order.
  bool operator==(const Value& o) const;

  // Python-like repr, for logs and test failure messages.
  std::string Repr() const;

 private:
  Variant v_;
};

// Convenience constructors.
inline Value MakeStr(std::string s) { return Str{std::move(s)}; }
inline Value MakeBytes(std::string s) { return Bytes{std::move(s)}; }
static_assert(sizeof(Bytes) <= sizeof(Int), "Bytes would make every Value larger");
Value MakeTuple(std::vector<Value> items);
// A tuple of the given items, each moved in when passed as an rvalue (a braced list for
// MakeTuple copies every item, which matters for large strings and deep trees).
template <typename... Items>
Value TupleOf(Items&&... items) {
  std::vector<Value> v;
  v.reserve(sizeof...(items));
  (v.emplace_back(std::forward<Items>(items)), ...);
  return Tuple{std::move(v)};
}

}  // namespace core::brine
