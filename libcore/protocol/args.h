#pragma once

// The args of a message (PROTOCOL.md §3) as this side holds them. Header-only, so that the object
// space (which links the brine codec, not the engine) can make and read them.

#include <memory>
#include <string>
#include <utility>
#include <variant>

#include "libcore/base/result.h"
#include "libcore/brine/brine.h"

namespace core::protocol {

// A message's args (request: (handler, boxed_args); reply: boxed; exception: vinegar or 1) in
// whichever form they were made: a value tree, or its brine encoding made ahead (by the object
// space, for a reply it boxed straight into bytes, or once for a reply it caches, then shared).
// The form is nobody else's business: the engine encodes any of them with AppendTo(), and
// whoever wants the value asks Decoded() or, for args the engine decoded, tree().
class Args {
 public:
  Args() = default;
  Args(brine::Value tree) : v_(std::move(tree)) {}  // NOLINT(google-explicit-constructor)
  // The brine encoding of the args (never empty: no brine encoding is).
  static Args Encoded(std::string bytes) { return Args(Form(std::move(bytes))); }
  static Args Encoded(std::shared_ptr<const std::string> bytes) {
    return Args(Form(std::move(bytes)));
  }

  // Appends the brine encoding to `*out`.
  void AppendTo(std::string* out) const {
    if (const auto* t = tree()) {
      brine::Encode(*t, out);
    } else if (const auto* own = std::get_if<std::string>(&v_)) {
      out->append(*own);
    } else {
      out->append(*std::get<std::shared_ptr<const std::string>>(v_));
    }
  }
  // The tree when the args are held as one (always, for args the engine decoded), else nullptr.
  const brine::Value* tree() const { return std::get_if<brine::Value>(&v_); }
  brine::Value* tree() { return std::get_if<brine::Value>(&v_); }
  // The value whatever the form: the tree (copied), or the encoding decoded.
  Result<brine::Value> Decoded() const {
    if (const auto* t = tree()) return *t;
    if (const auto* own = std::get_if<std::string>(&v_)) return brine::Load(*own);
    return brine::Load(*std::get<std::shared_ptr<const std::string>>(v_));
  }
  // Python-like repr of the value, for logs and test messages.
  std::string Repr() const {
    auto v = Decoded();
    return v ? v->Repr() : "<undecodable args: " + v.error().message() + ">";
  }
  // Equal to `v` once decoded.
  bool operator==(const brine::Value& v) const {
    if (const auto* t = tree()) return *t == v;
    auto mine = Decoded();
    return mine && *mine == v;
  }

 private:
  using Form = std::variant<brine::Value, std::string, std::shared_ptr<const std::string>>;
  explicit Args(Form f) : v_(std::move(f)) {}
  Form v_;
};

}  // namespace core::protocol
