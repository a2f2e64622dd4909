#pragma once

// Credentials and authenticators (objspace.h) between the files of the object space; needs
// <Python.h>.

#include <Python.h>

#include <string>

#include "daemons/classicd/objspace/objspace.h"
#include "daemons/classicd/objspace/py_ref.h"

namespace classicd::objspace {

// Released with the GIL (credentials.cc's deleter).
struct Credentials {
  PyRef object;
  std::string text;  // CredentialsText()
};

// `object` as credentials (GIL held).
core::Result<CredentialsPtr> MakeCredentials(Interpreter& interpreter, PyRef object);

}  // namespace classicd::objspace
