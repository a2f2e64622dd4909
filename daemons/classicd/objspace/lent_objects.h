#pragma once

// The objects a connection lends its peer (docs/protocol.md §4.3), keyed by id_pack (§4.2): the
// table, the id_pack as a key and on the wire, and the rules that make an object's id_pack. Needs
// <Python.h>; GIL held throughout.

#include <Python.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "daemons/classicd/objspace/internal.h"
#include "daemons/classicd/objspace/py_ref.h"
#include "libcore/brine/brine.h"
#include "libcore/brine/value.h"
#include "libcore/protocol/consts.h"

namespace classicd::objspace {

// An id_pack (§4.2) as a table key.
struct IdKey {
  std::string name;
  int64_t class_id = 0;
  int64_t instance_id = 0;
  bool operator==(const IdKey&) const = default;
};
// An id_pack looked up without a copy of its name (a received LOCAL_REF, a DEL).
struct IdKeyView {
  std::string_view name;
  int64_t class_id = 0;
  int64_t instance_id = 0;
  IdKeyView() = default;
  IdKeyView(const IdKey& k)  // NOLINT(google-explicit-constructor): a key is a view of itself
      : name(k.name), class_id(k.class_id), instance_id(k.instance_id) {}
};
// Hash and equality for both, so that the table finds an IdKeyView without making an IdKey.
struct IdKeyHash {
  using is_transparent = void;
  size_t operator()(const IdKeyView& k) const {
    size_t h = std::hash<std::string_view>()(k.name);
    h ^= std::hash<int64_t>()(k.class_id) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h ^= std::hash<int64_t>()(k.instance_id) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h;
  }
};
struct IdKeyEqual {
  using is_transparent = void;
  bool operator()(const IdKeyView& a, const IdKeyView& b) const {
    return a.class_id == b.class_id && a.instance_id == b.instance_id && a.name == b.name;
  }
};

inline core::brine::Value KeyToValue(const IdKey& k) {
  namespace brine = core::brine;
  return brine::TupleOf(brine::MakeStr(k.name), brine::Int(k.class_id), brine::Int(k.instance_id));
}

// Appends Encode() of KeyToValue(k).
inline void EncodeKey(const IdKey& k, std::string* out) {
  namespace brine = core::brine;
  brine::EncodeTupleHeader(3, out);
  brine::EncodeStr(k.name, out);
  brine::EncodeInt(brine::Int(k.class_id), out);
  brine::EncodeInt(brine::Int(k.instance_id), out);
}

// False when `v` is not a (str, small int, small int) tuple. The view points into `v`.
inline bool ValueToKeyView(const core::brine::Value& v, IdKeyView* key) {
  namespace brine = core::brine;
  const auto* t = v.get_if<brine::Tuple>();
  if (t == nullptr || t->items.size() != 3) return false;
  const auto* name = t->items[0].get_if<brine::Str>();
  const auto* cls = t->items[1].get_if<brine::Int>();
  const auto* inst = t->items[2].get_if<brine::Int>();
  if (name == nullptr || cls == nullptr || inst == nullptr || !cls->is_small() ||
      !inst->is_small()) {
    return false;
  }
  key->name = name->utf8;
  key->class_id = cls->small();
  key->instance_id = inst->small();
  return true;
}

// ValueToKeyView() with a copy of the name.
inline bool ValueToKey(const core::brine::Value& v, IdKey* key) {
  IdKeyView view;
  if (!ValueToKeyView(v, &view)) return false;
  *key = IdKey{std::string(view.name), view.class_id, view.instance_id};
  return true;
}

// A small brine Int's value.
inline bool SmallInt(const core::brine::Value& v, int64_t* out) {
  const auto* i = v.get_if<core::brine::Int>();
  if (i == nullptr || !i->is_small()) return false;
  *out = i->small();
  return true;
}

// A by-value box (kLabelValue, small int)'s value.
inline bool BoxedSmallInt(const core::brine::Value& v, int64_t* out) {
  const auto* t = v.get_if<core::brine::Tuple>();
  int64_t label = -1;
  return t != nullptr && t->items.size() == 2 && SmallInt(t->items[0], &label) &&
         label == core::protocol::kLabelValue && SmallInt(t->items[1], out);
}

// Raises KeyError(id_pack) as the reference does for an unknown LOCAL_REF.
void RaiseKeyError(const core::brine::Value& id_pack);

// The id_pack of `o` by the rules of §4.2 for the given generation (a proxy of another
// connection keeps its own). False: a Python error is set.
bool MakeIdPack(const Interpreter::Support& sup, bool v6, PyObject* o, IdKey* key);

// Lent objects with the count of references the peer holds to each.
class LentObjects {
 public:
  // One more reference to `o` under `key`; a new entry keeps `o` alive.
  void Lend(PyObject* o, const IdKey& key) {
    auto [it, inserted] = table_.try_emplace(key);
    if (inserted) it->second.obj = PyRef::Borrow(o);
    it->second.refs += 1;
  }
  // Borrowed; nullptr when not lent.
  PyObject* Find(const IdKeyView& key) const {
    auto it = table_.find(key);
    return it != table_.end() ? it->second.obj.get() : nullptr;
  }
  // `count` fewer references (DEL); the object is released when none is left. False when `key`
  // is not lent.
  bool Release(const IdKeyView& key, int64_t count);
  // Takes back the references a failed reply added.
  void Rollback(const std::vector<IdKey>& added);
  // Releases everything. Objects' finalisers may run Python code, so the table is empty (and
  // consistent) before the first one runs.
  void Clear() {
    auto table = std::move(table_);
    table_.clear();
    table.clear();
  }
  size_t size() const { return table_.size(); }

 private:
  struct Entry {
    PyRef obj;
    int64_t refs = 0;
  };
  std::unordered_map<IdKey, Entry, IdKeyHash, IdKeyEqual> table_;
};

}  // namespace classicd::objspace
