#include "libcore/brine/value.h"

#include <bit>
#include <charconv>
#include <cstdio>
#include <limits>

namespace core::brine {

Result<Int> Int::FromDecimal(std::string_view text) {
  std::string_view digits = text;
  bool negative = false;
  if (!digits.empty() && digits.front() == '-') {
    negative = true;
    digits.remove_prefix(1);
  }
  if (digits.empty()) return Fail(Error::Protocol("malformed int literal: no digits"));
  for (char c : digits) {
    if (c < '0' || c > '9') return Fail(Error::Protocol("malformed int literal: not a digit"));
  }
  while (digits.size() > 1 && digits.front() == '0') digits.remove_prefix(1);
  if (digits == "0") return Int(0);

  // Fits int64_t? Parse the signed text with from_chars, which reports overflow.
  std::string canonical;
  canonical.reserve(digits.size() + 1);
  if (negative) canonical.push_back('-');
  canonical.append(digits);
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(canonical.data(), canonical.data() + canonical.size(), v);
  if (ec == std::errc() && ptr == canonical.data() + canonical.size()) return Int(v);
  Int big;
  big.big_ = std::move(canonical);
  return big;
}

std::string Int::ToDecimal() const {
  if (!is_small()) return big_;
  char buf[24];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, small_);
  (void)ec;
  return std::string(buf, ptr);
}

Value MakeTuple(std::vector<Value> items) { return Tuple{std::move(items)}; }

namespace {

bool SameMultiset(const std::vector<Value>& a, const std::vector<Value>& b) {
  if (a.size() != b.size()) return false;
  std::vector<bool> used(b.size(), false);
  for (const Value& x : a) {
    bool found = false;
    for (size_t i = 0; i < b.size(); ++i) {
      if (!used[i] && x == b[i]) {
        used[i] = true;
        found = true;
        break;
      }
    }
    if (!found) return false;
  }
  return true;
}

struct EqVisitor {
  const Value::Variant& other;
  template <typename T>
  bool operator()(const T& a) const {
    const T& b = std::get<T>(other);
    if constexpr (std::is_same_v<T, double>) {
      return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b);
    } else if constexpr (std::is_same_v<T, Complex>) {
      return std::bit_cast<uint64_t>(a.real) == std::bit_cast<uint64_t>(b.real) &&
             std::bit_cast<uint64_t>(a.imag) == std::bit_cast<uint64_t>(b.imag);
    } else if constexpr (std::is_same_v<T, Bytes>) {
      return a == b;
    } else if constexpr (std::is_same_v<T, Str>) {
      return a.utf8 == b.utf8;
    } else if constexpr (std::is_same_v<T, Tuple> || std::is_same_v<T, Slice>) {
      const auto& ia = [](const T& t) -> const std::vector<Value>& {
        if constexpr (std::is_same_v<T, Tuple>)
          return t.items;
        else
          return t.parts;
      };
      return ia(a) == ia(b);
    } else if constexpr (std::is_same_v<T, FrozenSet>) {
      return SameMultiset(a.items, b.items);
    } else {
      return a == b;
    }
  }
};

void AppendRepr(const Value& v, std::string* out);

void AppendQuoted(std::string_view s, char prefix, std::string* out) {
  if (prefix) out->push_back(prefix);
  out->push_back('\'');
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '\'' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else if (c >= 0x20 && c < 0x7f) {
      out->push_back(static_cast<char>(c));
    } else if (prefix == 0 && c >= 0x80) {
      out->push_back(static_cast<char>(c));  // UTF-8 text passes through
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out->append(buf);
    }
  }
  out->push_back('\'');
}

void AppendItems(const std::vector<Value>& items, std::string* out) {
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out->append(", ");
    AppendRepr(items[i], out);
  }
}

void AppendRepr(const Value& v, std::string* out) {
  std::visit(
      [out](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, NoneType>) {
          out->append("None");
        } else if constexpr (std::is_same_v<T, bool>) {
          out->append(x ? "True" : "False");
        } else if constexpr (std::is_same_v<T, Int>) {
          out->append(x.ToDecimal());
        } else if constexpr (std::is_same_v<T, double>) {
          char buf[40];
          std::snprintf(buf, sizeof buf, "%.17g", x);
          out->append(buf);
        } else if constexpr (std::is_same_v<T, Complex>) {
          char buf[90];
          std::snprintf(buf, sizeof buf, "(%.17g%+.17gj)", x.real, x.imag);
          out->append(buf);
        } else if constexpr (std::is_same_v<T, Bytes>) {
          AppendQuoted(x.view(), 'b', out);
        } else if constexpr (std::is_same_v<T, Str>) {
          AppendQuoted(x.utf8, 0, out);
        } else if constexpr (std::is_same_v<T, Tuple>) {
          out->push_back('(');
          AppendItems(x.items, out);
          if (x.items.size() == 1) out->push_back(',');
          out->push_back(')');
        } else if constexpr (std::is_same_v<T, FrozenSet>) {
          out->append("frozenset({");
          AppendItems(x.items, out);
          out->append("})");
        } else if constexpr (std::is_same_v<T, Slice>) {
          out->append("slice(");
          AppendItems(x.parts, out);
          out->push_back(')');
        } else if constexpr (std::is_same_v<T, EllipsisType>) {
          out->append("Ellipsis");
        } else {
          out->append("NotImplemented");
        }
      },
      v.variant());
}

}  // namespace

bool Value::operator==(const Value& o) const {
  if (v_.index() != o.v_.index()) return false;
  return std::visit(EqVisitor{o.v_}, v_);
}

std::string Value::Repr() const {
  std::string out;
  AppendRepr(*this, &out);
  return out;
}

}  // namespace core::brine
