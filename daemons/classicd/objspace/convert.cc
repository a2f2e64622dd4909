#include "daemons/classicd/objspace/convert.h"
#include <Python.h>

#include <charconv>
#include <cstring>
#include <string>
#include <vector>

#include <gmp.h>

namespace classicd::objspace {
namespace {

namespace brine = core::brine;

Dump NestingError() {
  PyErr_Format(PyExc_RecursionError, "value nested deeper than %d levels", kMaxNesting);
  return Dump::kError;
}

// Owns an mpz_t.
class Mpz {
 public:
  Mpz() { mpz_init(z_); }
  ~Mpz() { mpz_clear(z_); }
  Mpz(const Mpz&) = delete;
  Mpz& operator=(const Mpz&) = delete;
  Mpz(Mpz&&) = delete;
  Mpz& operator=(Mpz&&) = delete;
  mpz_ptr get() { return z_; }

 private:
  mpz_t z_;
};

Dump ToValueAt(PyObject* o, brine::Value* out, int depth);

Dump SequenceToValues(PyObject* seq, std::vector<brine::Value>* out, int depth) {
  Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
  PyObject** items = PySequence_Fast_ITEMS(seq);
  out->reserve(static_cast<size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    brine::Value v;
    Dump d = ToValueAt(items[i], &v, depth);
    if (d != Dump::kOk) return d;
    out->push_back(std::move(v));
  }
  return Dump::kOk;
}

PyRef TupleToPython(const std::vector<brine::Value>& items) {
  PyRef t = PyRef::Steal(PyTuple_New(static_cast<Py_ssize_t>(items.size())));
  if (!t) return t;
  for (size_t i = 0; i < items.size(); ++i) {
    PyRef item = ToPython(items[i]);
    if (!item) return PyRef();
    PyTuple_SET_ITEM(t.get(), static_cast<Py_ssize_t>(i), item.release());
  }
  return t;
}

}  // namespace

Dump IntToValue(PyObject* o, brine::Value* out) {
  int overflow = 0;
  long long small = PyLong_AsLongLongAndOverflow(o, &overflow);
  if (overflow == 0) {
    if (small == -1 && PyErr_Occurred()) return Dump::kError;
    *out = brine::Int(static_cast<int64_t>(small));
    return Dump::kOk;
  }
  // Big: magnitude as little-endian bytes, then GMP for the decimal text.
  PyRef mag = PyRef::Steal(PyNumber_Absolute(o));
  if (!mag) return Dump::kError;
  size_t bits = _PyLong_NumBits(mag.get());
  if (bits == static_cast<size_t>(-1) && PyErr_Occurred()) return Dump::kError;
  std::vector<unsigned char> buf(bits / 8 + 1);
  if (_PyLong_AsByteArray(reinterpret_cast<PyLongObject*>(mag.get()), buf.data(), buf.size(),
                          /*little_endian=*/1, /*is_signed=*/0) < 0) {
    return Dump::kError;
  }
  Mpz z;
  mpz_import(z.get(), buf.size(), -1, 1, 0, 0, buf.data());
  if (overflow < 0) mpz_neg(z.get(), z.get());
  std::string text(mpz_sizeinbase(z.get(), 10) + 2, '\0');
  mpz_get_str(text.data(), 10, z.get());
  text.resize(std::strlen(text.c_str()));
  auto parsed = brine::Int::FromDecimal(text);
  if (!parsed) {
    PyErr_SetString(PyExc_ValueError, parsed.error().message().c_str());
    return Dump::kError;
  }
  *out = std::move(*parsed);
  return Dump::kOk;
}

PyRef IntToPython(const brine::Int& i) {
  if (i.is_small()) return PyRef::Steal(PyLong_FromLongLong(i.small()));
  const std::string& text = i.big_decimal();
  bool negative = !text.empty() && text[0] == '-';
  Mpz z;
  if (mpz_set_str(z.get(), text.c_str() + (negative ? 1 : 0), 10) != 0) {
    PyErr_SetString(PyExc_ValueError, "invalid decimal integer");
    return PyRef();
  }
  size_t count = 0;
  std::vector<unsigned char> buf(mpz_sizeinbase(z.get(), 256) + 1);
  mpz_export(buf.data(), &count, -1, 1, 0, 0, z.get());
  PyRef mag = PyRef::Steal(_PyLong_FromByteArray(buf.data(), count, /*little_endian=*/1,
                                                 /*is_signed=*/0));
  if (!mag || !negative) return mag;
  return PyRef::Steal(PyNumber_Negative(mag.get()));
}

namespace {

Dump ToValueAt(PyObject* o, brine::Value* out, int depth) {
  PyTypeObject* t = Py_TYPE(o);
  if (o == Py_None) {
    *out = brine::NoneType{};
  } else if (t == &PyBool_Type) {
    *out = (o == Py_True);
  } else if (t == &PyLong_Type) {
    return IntToValue(o, out);
  } else if (t == &PyUnicode_Type) {
    if (PyUnicode_IS_ASCII(o)) {  // its own buffer is the UTF-8 form: no copy, nothing cached
      *out = brine::Str{std::string(reinterpret_cast<const char*>(PyUnicode_DATA(o)),
                                    static_cast<size_t>(PyUnicode_GET_LENGTH(o)))};
    } else {
      // PyUnicode_AsUTF8AndSize would keep a UTF-8 copy inside the str for its lifetime
      // (docs/embedding.md §7.2); a temporary bytes object does not.
      PyRef utf8 = PyRef::Steal(PyUnicode_AsUTF8String(o));
      if (!utf8) return Dump::kError;
      *out = brine::Str{std::string(PyBytes_AS_STRING(utf8.get()),
                                    static_cast<size_t>(PyBytes_GET_SIZE(utf8.get())))};
    }
  } else if (t == &PyBytes_Type) {
    *out =
        brine::Bytes{std::string(PyBytes_AS_STRING(o), static_cast<size_t>(PyBytes_GET_SIZE(o)))};
  } else if (t == &PyFloat_Type) {
    *out = PyFloat_AS_DOUBLE(o);
  } else if (t == &PyTuple_Type) {
    if (depth >= kMaxNesting) return NestingError();
    brine::Tuple tuple;
    Dump d = SequenceToValues(o, &tuple.items, depth + 1);
    if (d != Dump::kOk) return d;
    *out = std::move(tuple);
  } else if (t == &PyComplex_Type) {
    *out = brine::Complex{PyComplex_RealAsDouble(o), PyComplex_ImagAsDouble(o)};
  } else if (o == Py_Ellipsis) {
    *out = brine::EllipsisType{};
  } else if (o == Py_NotImplemented) {
    *out = brine::NotImplementedType{};
  } else if (t == &PyFrozenSet_Type) {
    if (depth >= kMaxNesting) return NestingError();
    PyRef seq = PyRef::Steal(PySequence_Tuple(o));
    if (!seq) return Dump::kError;
    brine::FrozenSet set;
    Dump d = SequenceToValues(seq.get(), &set.items, depth + 1);
    if (d != Dump::kOk) return d;
    *out = std::move(set);
  } else if (t == &PySlice_Type) {
    if (depth >= kMaxNesting) return NestingError();
    auto* s = reinterpret_cast<PySliceObject*>(o);
    brine::Slice slice;
    for (PyObject* part : {s->start, s->stop, s->step}) {
      brine::Value v;
      Dump d = ToValueAt(part, &v, depth + 1);
      if (d != Dump::kOk) return d;
      slice.parts.push_back(std::move(v));
    }
    *out = std::move(slice);
  } else {
    return Dump::kNotDumpable;
  }
  return Dump::kOk;
}

}  // namespace

Dump ToValue(PyObject* o, brine::Value* out) { return ToValueAt(o, out, 0); }

PyRef ToPython(const brine::Value& v) {
  struct Visitor {
    PyRef operator()(const brine::NoneType&) { return PyRef::Borrow(Py_None); }
    PyRef operator()(bool b) { return PyRef::Borrow(b ? Py_True : Py_False); }
    PyRef operator()(const brine::Int& i) { return IntToPython(i); }
    PyRef operator()(double d) { return PyRef::Steal(PyFloat_FromDouble(d)); }
    PyRef operator()(const brine::Complex& c) {
      return PyRef::Steal(PyComplex_FromDoubles(c.real, c.imag));
    }
    PyRef operator()(const brine::Bytes& b) {
      return PyRef::Steal(
          PyBytes_FromStringAndSize(b.view().data(), static_cast<Py_ssize_t>(b.size())));
    }
    PyRef operator()(const brine::Str& s) {
      return PyRef::Steal(
          PyUnicode_DecodeUTF8(s.utf8.data(), static_cast<Py_ssize_t>(s.utf8.size()), "strict"));
    }
    PyRef operator()(const brine::Tuple& t) { return TupleToPython(t.items); }
    PyRef operator()(const brine::FrozenSet& s) {
      PyRef items = TupleToPython(s.items);
      if (!items) return items;
      return PyRef::Steal(PyFrozenSet_New(items.get()));
    }
    PyRef operator()(const brine::Slice& s) {
      if (s.parts.size() != 3) {
        PyErr_SetString(PyExc_ValueError, "slice needs three parts");
        return PyRef();
      }
      PyRef a = ToPython(s.parts[0]), b = ToPython(s.parts[1]), c = ToPython(s.parts[2]);
      if (!a || !b || !c) return PyRef();
      return PyRef::Steal(PySlice_New(a.get(), b.get(), c.get()));
    }
    PyRef operator()(const brine::EllipsisType&) { return PyRef::Borrow(Py_Ellipsis); }
    PyRef operator()(const brine::NotImplementedType&) { return PyRef::Borrow(Py_NotImplemented); }
  };
  return std::visit(Visitor{}, v.variant());
}

}  // namespace classicd::objspace
