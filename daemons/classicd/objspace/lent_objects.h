#pragma once

// The objects a connection lends its peer (docs/protocol.md §4.3), keyed by id_pack (§4.2): the
// table, the id_pack as a key and on the wire, and the rules that make an object's id_pack. Needs
// <Python.h>; GIL held throughout.

#include <Python.h>

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "daemons/classicd/objspace/internal.h"
#include "daemons/classicd/objspace/py_ref.h"
#include "libcore/brine/brine.h"
#include "libcore/brine/value.h"

namespace classicd::objspace {

// An id_pack (§4.2) as a table key.
struct IdKey {
  std::string name;
  int64_t class_id = 0;
  int64_t instance_id = 0;
  bool operator==(const IdKey&) const = default;
};
struct IdKeyHash {
  size_t operator()(const IdKey& k) const {
    size_t h = std::hash<std::string>()(k.name);
    h ^= std::hash<int64_t>()(k.class_id) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h ^= std::hash<int64_t>()(k.instance_id) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h;
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

// False when `v` is not a (str, small int, small int) tuple.
inline bool ValueToKey(const core::brine::Value& v, IdKey* key) {
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
  *key = IdKey{name->utf8, cls->small(), inst->small()};
  return true;
}

// A small brine Int's value.
inline bool SmallInt(const core::brine::Value& v, int64_t* out) {
  const auto* i = v.get_if<core::brine::Int>();
  if (i == nullptr || !i->is_small()) return false;
  *out = i->small();
  return true;
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
  PyObject* Find(const IdKey& key) const {
    auto it = table_.find(key);
    return it != table_.end() ? it->second.obj.get() : nullptr;
  }
  // `count` fewer references (DEL); the object is released when none is left. False when `key`
  // is not lent.
  bool Release(const IdKey& key, int64_t count);
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
  std::unordered_map<IdKey, Entry, IdKeyHash> table_;
};

}  // namespace classicd::objspace
