#pragma once

// Shared between the files of the object space; needs <Python.h>.

#include <Python.h>

#include <string>

#include "daemons/classicd/objspace/objspace.h"
#include "daemons/classicd/objspace/py_ref.h"

namespace classicd::objspace {

// Python objects every object space uses, made once at interpreter start. Released (with the GIL)
// before Py_FinalizeEx.
struct Interpreter::Support {
  PyRef module;  // _classicd_support (support.py)
  PyRef get_methods, dump_exc, load_exc, make_root, proxy_conn_class, base_netref;
  PyRef ctxexit, instancecheck, pickle_dumps, oldslicing;
  // Interned names.
  PyRef s_rpyc_getattr, s_rpyc_setattr, s_rpyc_delattr, s_proxy, s_drop, s_conn_attr,
      s_id_pack_attr, s_v6, s_on_disconnect, s_closed, s_exit, s_cmp, s_class, s_module, s_name;
};

// The source of support.py (generated from the file by CMake).
extern const char kSupportSource[];

// Module init of _classicd_native (object_space.cc); registered with PyImport_AppendInittab.
PyObject* InitNativeModule();

// The text of the pending Python exception (clears it), for errors reported to C++.
std::string FetchErrorText();

}  // namespace classicd::objspace
