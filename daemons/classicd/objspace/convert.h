#pragma once

// brine::Value <-> Python objects (docs/protocol.md §1.2, docs/embedding.md §7). Only files in
// daemons/classicd/objspace include this (it needs <Python.h>).

#include <Python.h>

#include "daemons/classicd/objspace/py_ref.h"
#include "libcore/brine/value.h"

namespace classicd::objspace {

enum class Dump { kOk, kNotDumpable, kError };

// Containers nested deeper than this are refused (RecursionError) rather than overflowing the C
// stack; it matches the decoder's default depth limit.
inline constexpr int kMaxNesting = 256;

// Converts `o` when it is dumpable: its exact type is one of the brine types, containers
// recursively. kNotDumpable leaves no Python error set; kError does (for example a str with lone
// surrogates, which is dumpable but cannot be encoded). GIL held.
Dump ToValue(PyObject* o, core::brine::Value* out);

// A new Python object for `v`, or NULL with a Python error set. GIL held.
PyRef ToPython(const core::brine::Value& v);

// Python int <-> brine Int, of any size, without the 4300-digit limit (GMP, docs/embedding.md
// §7.1).
Dump IntToValue(PyObject* o, core::brine::Value* out);
PyRef IntToPython(const core::brine::Int& i);

}  // namespace classicd::objspace
