// --authenticator (objspace.h): rpyc's authenticator contract over the connection's own socket
// (support_auth.py's load_authenticator and authenticate).

#include <Python.h>

#include <algorithm>
#include <chrono>
#include <string>

#include <fcntl.h>

#include "daemons/classicd/objspace/credentials.h"
#include "daemons/classicd/objspace/internal.h"

namespace classicd::objspace {

struct Authenticator {
  Interpreter* interpreter = nullptr;
  PyRef callable;
  PyRef run;  // support.authenticate
};

namespace {

void DestroyAuthenticator(const Authenticator* a) {
  if (!Py_IsInitialized()) return;
  GilHold gil;
  delete a;
}

}  // namespace

core::Result<AuthenticatorPtr> LoadAuthenticator(Interpreter& interpreter,
                                                 const std::string& spec) {
  GilHold gil;
  PyObject* module = interpreter.support().module.get();
  auto* a = new Authenticator();
  AuthenticatorPtr out(a, &DestroyAuthenticator);
  a->interpreter = &interpreter;
  PyRef load = PyRef::Steal(PyObject_GetAttrString(module, "load_authenticator"));
  a->run = PyRef::Steal(PyObject_GetAttrString(module, "authenticate"));
  PyRef text = PyRef::Steal(
      PyUnicode_DecodeUTF8(spec.data(), static_cast<Py_ssize_t>(spec.size()), "replace"));
  if (load && a->run && text)
    a->callable = PyRef::Steal(PyObject_CallOneArg(load.get(), text.get()));
  if (!a->callable) {
    return core::Fail(
        core::Error::Config("authenticator '" + spec + "': " + LoadErrorText(module)));
  }
  return out;
}

AuthOutcome Authenticate(const Authenticator& authenticator, int fd, int timeout_ms) {
  AuthOutcome out;
  const int flags = ::fcntl(fd, F_GETFL);
  const auto start = std::chrono::steady_clock::now();
  {
    GilHold gil;
    PyRef timeout = PyRef::Steal(PyFloat_FromDouble(std::max(timeout_ms, 1) / 1000.0));
    PyRef fd_obj = PyRef::Steal(PyLong_FromLong(fd));
    PyRef r = timeout && fd_obj ? PyRef::Steal(PyObject_CallFunctionObjArgs(
                                      authenticator.run.get(), authenticator.callable.get(),
                                      fd_obj.get(), timeout.get(), nullptr))
                                : PyRef();
    if (!r || !PyTuple_Check(r.get()) || PyTuple_GET_SIZE(r.get()) != 2) {
      out.reason = r ? "the authenticator could not be called" : FetchErrorText();
    } else {
      const long code = PyLong_AsLong(PyTuple_GET_ITEM(r.get(), 0));
      PyObject* value = PyTuple_GET_ITEM(r.get(), 1);
      if (code == 0) {
        auto c = MakeCredentials(*authenticator.interpreter, PyRef::Borrow(value));
        if (c) {
          out.kind = AuthOutcome::Kind::kAccepted;
          out.credentials = std::move(*c);
        } else {
          out.reason = "its credentials have no repr: " + c.error().message();
        }
      } else {
        const char* text = PyUnicode_Check(value) ? PyUnicode_AsUTF8(value) : nullptr;
        out.reason = text != nullptr ? text : "?";
        PyErr_Clear();
        out.kind = code == 1 ? AuthOutcome::Kind::kRefused : AuthOutcome::Kind::kFailed;
      }
    }
  }
  if (flags >= 0) (void)::fcntl(fd, F_SETFL, flags);
  if (out.kind == AuthOutcome::Kind::kAccepted &&
      std::chrono::steady_clock::now() - start > std::chrono::milliseconds(timeout_ms)) {
    out = {};
    out.reason = "the authenticator took longer than " + std::to_string(timeout_ms / 1000) +
                 " s (tls_handshake_timeout)";
  }
  return out;
}

}  // namespace classicd::objspace
