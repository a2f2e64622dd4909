#pragma once

// The args of a message (docs/protocol.md §3) as this side holds them. Header-only, so that the
// object space (which links the brine codec, not the engine) can make and read them.

#include <memory>
#include <string>
#include <utility>

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
  Args(brine::Value tree) : tree_(std::move(tree)) {}  // NOLINT(google-explicit-constructor)
  // The brine encoding of the args (never empty: no brine encoding is).
  static Args Encoded(std::string bytes) {
    Args a;
    a.own_ = std::move(bytes);
    return a;
  }
  static Args Encoded(std::shared_ptr<const std::string> bytes) {
    Args a;
    a.shared_ = std::move(bytes);
    return a;
  }

  // Appends the brine encoding to `*out`.
  void AppendTo(std::string* out) const {
    if (shared_) {
      out->append(*shared_);
    } else if (!own_.empty()) {
      out->append(own_);
    } else {
      brine::Encode(tree_, out);
    }
  }
  // The tree when the args are held as one (always, for args the engine decoded), else nullptr.
  const brine::Value* tree() const { return is_tree() ? &tree_ : nullptr; }
  brine::Value* tree() { return is_tree() ? &tree_ : nullptr; }
  // The value whatever the form: the tree (copied), or the encoding decoded.
  Result<brine::Value> Decoded() const {
    if (shared_) return brine::Load(*shared_);
    if (!own_.empty()) return brine::Load(own_);
    return tree_;
  }
  // Python-like repr of the value, for logs and test messages.
  std::string Repr() const {
    auto v = Decoded();
    return v ? v->Repr() : "<undecodable args: " + v.error().message() + ">";
  }
  // Equal to `v` once decoded.
  bool operator==(const brine::Value& v) const {
    if (is_tree()) return tree_ == v;
    auto mine = Decoded();
    return mine && *mine == v;
  }

 private:
  bool is_tree() const { return !shared_ && own_.empty(); }

  // One form at a time: the tree unless an encoding is set. (Three members rather than a
  // std::variant: moving these on every message costs less than visiting a variant of variants.)
  brine::Value tree_;
  std::string own_;                            // the encoding, made for these args alone
  std::shared_ptr<const std::string> shared_;  // the encoding, shared (a cache's)
};

}  // namespace core::protocol
