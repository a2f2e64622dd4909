#pragma once

// hash() of CPython's built-in types as the Python server gives it. A type hashes by its
// address; /usr/bin/python3 is not position-independent and has libpython linked in, so `object`,
// `int`, ... sit at the same address in every python3 process, and a client compares
// hash(object) computed on its side with the server's (rpyc's tests/test_magic.py
// test_hash_class). The daemon's libpython is a shared library loaded at a random address.

#include <string>

namespace classicd::objspace {

// Makes hash() of each static type that `executable` exports (PyBaseObject_Type, PyLong_Type, ...)
// the hash of that type's address in `executable`, when that is a fixed-address (ET_EXEC)
// executable. Before Py_InitializeFromConfig (no type may have been hashed yet). False when it
// changed nothing (the executable could not be read, or its addresses are not fixed).
bool MatchTypeHashes(const std::string& executable);

}  // namespace classicd::objspace
