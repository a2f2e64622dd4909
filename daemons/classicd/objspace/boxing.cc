// Boxing (docs/protocol.md §4.1): a Python object as a (label, payload) pair, straight into the
// bytes of a reply or into a brine tree for a request; and unboxing the peer's boxes.

#include <Python.h>

#include <cstdint>
#include <string>
#include <vector>

#include "daemons/classicd/objspace/classic_object_space.h"
#include "daemons/classicd/objspace/convert.h"
#include "daemons/classicd/objspace/lent_objects.h"
#include "daemons/classicd/objspace/py_ref.h"
#include "libcore/brine/brine.h"
#include "libcore/brine/value.h"
#include "libcore/protocol/consts.h"
#include "libcore/protocol/object_space.h"

namespace classicd::objspace {

namespace brine = core::brine;
using core::protocol::Handler;
using core::protocol::Outcome;

ClassicObjectSpace::BoxAs ClassicObjectSpace::Classify(PyObject* o, brine::Value* value, IdKey* key,
                                                       std::vector<IdKey>* added, int depth) {
  switch (ToValue(o, value)) {
    case Dump::kOk:
      return BoxAs::kValue;
    case Dump::kError:
      return BoxAs::kError;
    case Dump::kNotDumpable:
      break;
  }
  if (PyTuple_CheckExact(o)) {
    if (depth >= kMaxNesting) {
      PyErr_Format(PyExc_RecursionError, "value nested deeper than %d levels", kMaxNesting);
      return BoxAs::kError;
    }
    return BoxAs::kTuple;
  }
  if (IsOurNetref(o)) {
    PyRef idp = PyRef::Steal(PyObject_GetAttr(o, sup_.s_id_pack_attr.get()));
    if (!idp || ToValue(idp.get(), value) != Dump::kOk) {
      if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad proxy id_pack");
      return BoxAs::kError;
    }
    return BoxAs::kLocalRef;
  }
  if (!MakeIdPack(sup_, v6(), o, key)) return BoxAs::kError;
  lent_.Lend(o, *key);
  if (added != nullptr) added->push_back(*key);
  return BoxAs::kRemoteRef;
}

bool ClassicObjectSpace::Box(PyObject* o, brine::Value* out, std::vector<IdKey>* added, int depth) {
  brine::Value v;
  IdKey key;
  switch (Classify(o, &v, &key, added, depth)) {
    case BoxAs::kError:
      return false;
    case BoxAs::kValue:
      *out = brine::TupleOf(brine::Int(core::protocol::kLabelValue), std::move(v));
      return true;
    case BoxAs::kLocalRef:
      *out = brine::TupleOf(brine::Int(core::protocol::kLabelLocalRef), std::move(v));
      return true;
    case BoxAs::kRemoteRef:
      *out = brine::TupleOf(brine::Int(core::protocol::kLabelRemoteRef), KeyToValue(key));
      return true;
    case BoxAs::kTuple:
      break;
  }
  brine::Tuple items;
  Py_ssize_t n = PyTuple_GET_SIZE(o);
  items.items.reserve(static_cast<size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    brine::Value item;
    if (!Box(PyTuple_GET_ITEM(o, i), &item, added, depth + 1)) return false;
    items.items.push_back(std::move(item));
  }
  *out = brine::TupleOf(brine::Int(core::protocol::kLabelTuple), std::move(items));
  return true;
}

bool ClassicObjectSpace::BoxEncoded(PyObject* o, std::string* out, std::vector<IdKey>* added,
                                    int depth) {
  brine::Value v;
  IdKey key;
  const BoxAs as = Classify(o, &v, &key, added, depth);
  return as != BoxAs::kError && AppendBoxed(o, as, v, key, out, added, depth);
}

bool ClassicObjectSpace::AppendBoxed(PyObject* o, BoxAs as, const brine::Value& v, const IdKey& key,
                                     std::string* out, std::vector<IdKey>* added, int depth) {
  // The bytes Encode() gives for Box()'s value: (label, payload).
  brine::EncodeTupleHeader(2, out);
  switch (as) {
    case BoxAs::kError:
      return false;
    case BoxAs::kValue:
      brine::EncodeInt(brine::Int(core::protocol::kLabelValue), out);
      brine::Encode(v, out);
      return true;
    case BoxAs::kLocalRef:
      brine::EncodeInt(brine::Int(core::protocol::kLabelLocalRef), out);
      brine::Encode(v, out);
      return true;
    case BoxAs::kRemoteRef:
      brine::EncodeInt(brine::Int(core::protocol::kLabelRemoteRef), out);
      EncodeKey(key, out);
      return true;
    case BoxAs::kTuple:
      break;
  }
  brine::EncodeInt(brine::Int(core::protocol::kLabelTuple), out);
  const Py_ssize_t n = PyTuple_GET_SIZE(o);
  brine::EncodeTupleHeader(static_cast<size_t>(n), out);
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (!BoxEncoded(PyTuple_GET_ITEM(o, i), out, added, depth + 1)) return false;
  }
  return true;
}

PyRef ClassicObjectSpace::LookupLocal(const brine::Value& id_pack) {
  IdKeyView key;
  if (ValueToKeyView(id_pack, &key)) {
    if (PyObject* o = lent_.Find(key); o != nullptr) return PyRef::Borrow(o);
  }
  RaiseKeyError(id_pack);
  return PyRef();
}

PyRef ClassicObjectSpace::Unbox(const brine::Value& boxed) {
  const auto* pair = boxed.get_if<brine::Tuple>();
  int64_t label = 0;
  if (pair == nullptr || pair->items.size() != 2 || !SmallInt(pair->items[0], &label)) {
    PyErr_SetString(PyExc_ValueError, "malformed boxed value");
    return PyRef();
  }
  const brine::Value& payload = pair->items[1];
  switch (label) {
    case core::protocol::kLabelValue:
      return ToPython(payload);
    case core::protocol::kLabelTuple: {
      const auto* items = payload.get_if<brine::Tuple>();
      if (items == nullptr) {
        PyErr_SetString(PyExc_ValueError, "malformed boxed tuple");
        return PyRef();
      }
      PyRef t = PyRef::Steal(PyTuple_New(static_cast<Py_ssize_t>(items->items.size())));
      if (!t) return t;
      for (size_t i = 0; i < items->items.size(); ++i) {
        PyRef item = Unbox(items->items[i]);
        if (!item) return item;
        PyTuple_SET_ITEM(t.get(), static_cast<Py_ssize_t>(i), item.release());
      }
      return t;
    }
    case core::protocol::kLabelLocalRef:
      return LookupLocal(payload);
    case core::protocol::kLabelRemoteRef: {
      IdKey key;
      if (!ValueToKey(payload, &key)) {
        PyErr_SetString(PyExc_ValueError, "malformed id_pack");
        return PyRef();
      }
      PyRef idp = ToPython(payload);
      if (!idp) return idp;
      PyObject* proxies = Proxies();
      if (proxies == nullptr) return PyRef();
      return PyRef::Steal(PyObject_CallMethodOneArg(proxies, sup_.s_proxy.get(), idp.get()));
    }
    default:
      PyErr_Format(PyExc_ValueError, "invalid label %lld", static_cast<long long>(label));
      return PyRef();
  }
}

Outcome ClassicObjectSpace::BoxReply(PyObject* result) {
  std::vector<IdKey> added;
  brine::Value v;
  IdKey key;
  // The reply's own object needs no record for a rollback: once lent, nothing below fails (a
  // tuple is not lent; its items are, and are recorded).
  const BoxAs as = Classify(result, &v, &key, nullptr, 0);
  if (as == BoxAs::kError) return ExceptionOutcome();
  if (as == BoxAs::kValue) {
    // A value (a large bytes or str among them) is encoded once, straight into the frame.
    return Outcome::Reply(brine::TupleOf(brine::Int(core::protocol::kLabelValue), std::move(v)));
  }
  // References and tuples of boxes: straight into bytes, no tree.
  std::string encoded;
  encoded.reserve(128);  // one allocation for most replies (a reference's is ~50 bytes)
  if (!AppendBoxed(result, as, v, key, &encoded, &added, 0)) {
    lent_.Rollback(added);
    return ExceptionOutcome();
  }
  return Outcome::EncodedReply(std::move(encoded));
}

}  // namespace classicd::objspace
