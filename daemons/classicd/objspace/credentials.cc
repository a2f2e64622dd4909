// What authenticated a connection, as Python objects (objspace.h): a client certificate decoded
// as getpeercert() decodes it, a Unix peer's SO_PEERCRED, or an authenticator's answer
// (authenticator.cc).
//
// The certificate goes through CPython's own decoder (_ssl's, which getpeercert() calls) rather
// than a C++ copy of it: the dict is then the reference's by construction, for every field
// (subject and issuer RDNs, every subjectAltName kind, OCSP, caIssuers, crlDistributionPoints,
// the time and serial spellings) and in every Python version. Decoding costs about what the
// handshake's RSA signature does (~0.26 ms), so support_auth.py keeps the dicts of recent
// certificates (a client reconnects with the same one) and hands each connection a copy.

#include <Python.h>

#include <string>

#include "daemons/classicd/objspace/credentials.h"
#include "daemons/classicd/objspace/internal.h"

namespace classicd::objspace {

namespace {

void DestroyCredentials(const Credentials* c) {
  if (!Py_IsInitialized()) {  // after finalising: nothing to release
    return;
  }
  GilHold gil;
  delete c;
}

PyRef SupportFunction(Interpreter& interpreter, const char* name) {
  return PyRef::Steal(PyObject_GetAttrString(interpreter.support().module.get(), name));
}

}  // namespace

core::Result<CredentialsPtr> MakeCredentials(Interpreter& interpreter, PyRef object) {
  PyRef text_fn = SupportFunction(interpreter, "credentials_text");
  PyRef text = text_fn ? PyRef::Steal(PyObject_CallOneArg(text_fn.get(), object.get())) : PyRef();
  const char* utf8 = text ? PyUnicode_AsUTF8(text.get()) : nullptr;
  if (utf8 == nullptr) return core::Fail(core::Error::Python(FetchErrorText()));
  auto* c = new Credentials();
  c->object = std::move(object);
  c->text = utf8;
  return CredentialsPtr(c, &DestroyCredentials);
}

const std::string& CredentialsText(const Credentials& credentials) { return credentials.text; }

core::Status PrepareCertificates(Interpreter& interpreter) {
  GilHold gil;
  PyRef fn = SupportFunction(interpreter, "warm_certificates");
  PyRef r = fn ? PyRef::Steal(PyObject_CallNoArgs(fn.get())) : PyRef();
  if (!r) return core::Fail(core::Error::Python(FetchErrorText()));
  return {};
}

core::Result<CredentialsPtr> CertificateCredentials(Interpreter& interpreter,
                                                    const std::string& der) {
  GilHold gil;
  PyRef fn = SupportFunction(interpreter, "decode_certificate");
  PyRef bytes =
      PyRef::Steal(PyBytes_FromStringAndSize(der.data(), static_cast<Py_ssize_t>(der.size())));
  PyRef dict = fn && bytes ? PyRef::Steal(PyObject_CallOneArg(fn.get(), bytes.get())) : PyRef();
  if (!dict) {
    return core::Fail(core::Error::Python("decoding the client certificate: " + FetchErrorText()));
  }
  return MakeCredentials(interpreter, std::move(dict));
}

core::Result<CredentialsPtr> PeerCredentials(Interpreter& interpreter, int64_t uid, int64_t gid,
                                             int64_t pid) {
  GilHold gil;
  PyRef fn = SupportFunction(interpreter, "peer_credentials");
  PyRef dict = fn ? PyRef::Steal(PyObject_CallFunction(fn.get(), "LLL", static_cast<long long>(uid),
                                                       static_cast<long long>(gid),
                                                       static_cast<long long>(pid)))
                  : PyRef();
  if (!dict) return core::Fail(core::Error::Python(FetchErrorText()));
  return MakeCredentials(interpreter, std::move(dict));
}

}  // namespace classicd::objspace
