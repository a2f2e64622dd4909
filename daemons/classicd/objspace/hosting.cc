// Hosting a user's rpyc.Service (--service): loading it once at start (support_hosting.py's
// load_service), and the per-connection root and `conn` its code sees, with on_connect(conn)
// before the connection is served and on_disconnect(conn) after it ends (object_space.cc).

#include <Python.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "daemons/classicd/objspace/access_policy.h"
#include "daemons/classicd/objspace/classic_object_space.h"
#include "daemons/classicd/objspace/credentials.h"
#include "daemons/classicd/objspace/internal.h"
#include "daemons/classicd/objspace/objspace.h"
#include "daemons/classicd/objspace/py_ref.h"

namespace classicd::objspace {

namespace {

PyRef StrList(const std::vector<std::string>& items) {
  PyRef list = PyRef::Steal(PyList_New(0));
  if (!list) return list;
  for (const auto& s : items) {
    PyRef item =
        PyRef::Steal(PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "strict"));
    if (!item || PyList_Append(list.get(), item.get()) < 0) return PyRef();
  }
  return list;
}

// A socket address as Python's socket module gives it (socketmodule.c's makesockaddr): AF_INET
// (host, port); AF_INET6 (host, port, flowinfo, scope_id); AF_UNIX the path as str, an abstract
// name as bytes, '' for an unnamed socket. Null without a Python error for other families.
PyRef PythonSockAddr(const sockaddr_storage& ss, socklen_t len) {
  switch (ss.ss_family) {
    case AF_INET: {
      // inet_ntop's text, without its sprintf (a quarter of a connection's set-up otherwise).
      const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
      const auto* b = reinterpret_cast<const unsigned char*>(&a->sin_addr);
      char host[16];
      char* p = host;
      for (int i = 0; i < 4; ++i) {
        if (i > 0) *p++ = '.';
        const unsigned v = b[i];
        if (v >= 100) *p++ = static_cast<char>('0' + v / 100);
        if (v >= 10) *p++ = static_cast<char>('0' + v / 10 % 10);
        *p++ = static_cast<char>('0' + v % 10);
      }
      PyRef text = PyRef::Steal(PyUnicode_FromStringAndSize(host, p - host));
      PyRef port = text ? PyRef::Steal(PyLong_FromLong(ntohs(a->sin_port))) : PyRef();
      return port ? PyRef::Steal(PyTuple_Pack(2, text.get(), port.get())) : PyRef();
    }
    case AF_INET6: {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
      char host[INET6_ADDRSTRLEN] = {};
      if (inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host) == nullptr) return PyRef();
      return PyRef::Steal(Py_BuildValue("(siII)", host, ntohs(a->sin6_port),
                                        ntohl(a->sin6_flowinfo), a->sin6_scope_id));
    }
    case AF_UNIX: {
      const auto* a = reinterpret_cast<const sockaddr_un*>(&ss);
      const size_t n = static_cast<size_t>(len) - offsetof(sockaddr_un, sun_path);
      if (static_cast<size_t>(len) > offsetof(sockaddr_un, sun_path) && a->sun_path[0] == '\0') {
        return PyRef::Steal(PyBytes_FromStringAndSize(a->sun_path, static_cast<Py_ssize_t>(n)));
      }
      // The storage is zeroed and larger than sun_path: the text always ends.
      return PyRef::Steal(PyUnicode_DecodeFSDefault(a->sun_path));
    }
    default:
      return PyRef();
  }
}

// conn._config["endpoints"]: (getsockname(), getpeername()) of the connection's socket `fd`, as
// Python's socket gives them (what rpyc's server stores), or None when `fd` is no connected
// socket. Two system calls, where a Python socket object over the descriptor would cost five
// (and most of a connection's set-up in instructions).
PyRef Endpoints(int fd) {
  if (fd < 0) return PyRef::Borrow(Py_None);
  sockaddr_storage local{}, peer{};
  socklen_t local_len = sizeof local, peer_len = sizeof peer;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0 ||
      ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) {
    return PyRef::Borrow(Py_None);
  }
  PyRef a = PythonSockAddr(local, local_len);
  PyRef b = a ? PythonSockAddr(peer, peer_len) : PyRef();
  if (!b) {
    if (PyErr_Occurred() != nullptr) PyErr_Clear();
    return PyRef();  // another family: the caller asks Python's socket module
  }
  return PyRef::Steal(PyTuple_Pack(2, a.get(), b.get()));
}

void DestroyHosted(HostedService* service) {
  GilHold gil;
  delete service;
}

}  // namespace

std::string LoadErrorText(PyObject* support_module) {
  PyObject *t = nullptr, *v = nullptr, *tb = nullptr;
  PyErr_Fetch(&t, &v, &tb);
  PyErr_NormalizeException(&t, &v, &tb);
  PyRef type = PyRef::Steal(t), value = PyRef::Steal(v), trace = PyRef::Steal(tb);
  PyRef load_error = PyRef::Steal(PyObject_GetAttrString(support_module, "ServiceLoadError"));
  std::string why = "cannot be loaded";
  if (value && load_error && PyObject_IsInstance(value.get(), load_error.get()) == 1) {
    PyRef text = PyRef::Steal(PyObject_Str(value.get()));
    if (text && PyUnicode_Check(text.get())) why = PyUnicode_AsUTF8(text.get());
  } else if (type) {
    PyErr_Restore(type.release(), value.release(), trace.release());
    why = FetchErrorText();
  }
  PyErr_Clear();
  return why;
}

PyRef ProtocolConfigDict(const ProtocolConfig& c) {
  PyRef d = PyRef::Steal(PyDict_New());
  if (!d) return d;
  PyRef safe_list = StrList(c.safe_attrs);
  PyRef safe = safe_list ? PyRef::Steal(PySet_New(safe_list.get())) : PyRef();
  PyRef timeout = c.sync_request_timeout ? PyRef::Steal(PyFloat_FromDouble(*c.sync_request_timeout))
                                         : PyRef::Borrow(Py_None);
  if (!safe || !timeout) return PyRef();
  // A timeout that is a whole number is an int, as rpyc's default (30) is.
  if (c.sync_request_timeout &&
      *c.sync_request_timeout == static_cast<int64_t>(*c.sync_request_timeout)) {
    timeout = PyRef::Steal(PyLong_FromLongLong(static_cast<int64_t>(*c.sync_request_timeout)));
    if (!timeout) return timeout;
  }
  PyRef prefix = PyRef::Steal(PyUnicode_DecodeUTF8(
      c.exposed_prefix.data(), static_cast<Py_ssize_t>(c.exposed_prefix.size()), "strict"));
  if (!prefix) return prefix;
  struct {
    const char* key;
    PyObject* value;
  } items[] = {
      {"allow_safe_attrs", c.allow_safe_attrs ? Py_True : Py_False},
      {"safe_attrs", safe.get()},
      {"allow_exposed_attrs", c.allow_exposed_attrs ? Py_True : Py_False},
      {"exposed_prefix", prefix.get()},
      {"allow_public_attrs", c.allow_public_attrs ? Py_True : Py_False},
      {"allow_all_attrs", c.allow_all_attrs ? Py_True : Py_False},
      {"allow_getattr", c.allow_getattr ? Py_True : Py_False},
      {"allow_setattr", c.allow_setattr ? Py_True : Py_False},
      {"allow_delattr", c.allow_delattr ? Py_True : Py_False},
      {"allow_pickle", c.allow_pickle ? Py_True : Py_False},
      {"include_local_traceback", c.include_local_traceback ? Py_True : Py_False},
      {"include_local_version", c.include_local_version ? Py_True : Py_False},
      {"import_custom_exceptions", c.import_custom_exceptions ? Py_True : Py_False},
      {"instantiate_custom_exceptions", c.instantiate_custom_exceptions ? Py_True : Py_False},
      {"instantiate_oldstyle_exceptions", c.instantiate_oldstyle_exceptions ? Py_True : Py_False},
      {"propagate_SystemExit_locally", c.propagate_SystemExit_locally ? Py_True : Py_False},
      {"propagate_KeyboardInterrupt_locally",
       c.propagate_KeyboardInterrupt_locally ? Py_True : Py_False},
      {"sync_request_timeout", timeout.get()},
  };
  for (const auto& item : items) {
    if (PyDict_SetItemString(d.get(), item.key, item.value) < 0) return PyRef();
  }
  return d;
}

core::Result<HostedServicePtr> LoadService(Interpreter& interpreter, const std::string& spec,
                                           const ProtocolConfig& config) {
  GilHold gil;
  auto fail = [&spec](const std::string& why) {
    return core::Fail(core::Error::Config("service '" + spec + "': " + why));
  };
  HostedServicePtr service(new HostedService(), &DestroyHosted);
  service->interpreter = &interpreter;
  PyObject* module = interpreter.support().module.get();
  PyRef load = PyRef::Steal(PyObject_GetAttrString(module, "load_service"));
  PyRef spec_str = load ? PyRef::Steal(PyUnicode_DecodeUTF8(
                              spec.data(), static_cast<Py_ssize_t>(spec.size()), "replace"))
                        : PyRef();
  PyRef loaded = spec_str ? PyRef::Steal(PyObject_CallOneArg(load.get(), spec_str.get())) : PyRef();
  if (!loaded) return fail(LoadErrorText(module));
  service->make_root = PyRef::Borrow(PyTuple_GET_ITEM(loaded.get(), 0));
  service->make_conn = PyRef::Steal(PyObject_GetAttrString(module, "make_hosted_root"));
  if (!service->make_conn) return fail(FetchErrorText());
  PyObject* aliases = PyTuple_GET_ITEM(loaded.get(), 1);
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(aliases); ++i) {
    const char* a = PyUnicode_AsUTF8(PyTuple_GET_ITEM(aliases, i));
    if (a == nullptr) return fail(FetchErrorText());
    service->aliases.emplace_back(a);
  }
  PyRef ours = ProtocolConfigDict(config);
  PyRef base = PyRef::Steal(PyObject_GetAttrString(module, "hosted_config"));
  service->config =
      ours && base ? PyRef::Steal(PyObject_CallOneArg(base.get(), ours.get())) : PyRef();
  if (!service->config) return fail(FetchErrorText());
  service->request_timeout_ms =
      config.sync_request_timeout
          ? static_cast<int>(std::min(*config.sync_request_timeout * 1000.0, 2147483647.0))
          : std::numeric_limits<int>::max();
  service->policy = AccessPolicy::Make(config);
  if (!service->policy) return fail(FetchErrorText());
  service->protocol = config;
  return service;
}

core::Status PrependSysPath(Interpreter& /*interpreter*/, const std::vector<std::string>& dirs) {
  if (dirs.empty()) return {};
  GilHold gil;
  PyObject* path = PySys_GetObject("path");  // borrowed
  PyRef items = StrList(dirs);
  if (path == nullptr || !PyList_Check(path) || !items ||
      PyList_SetSlice(path, 0, 0, items.get()) < 0) {
    std::string why = PyErr_Occurred() != nullptr ? FetchErrorText() : "sys.path is not a list";
    PyErr_Clear();
    return core::Fail(core::Error::Python("service-path: " + why));
  }
  return {};
}

const std::vector<std::string>& ServiceAliases(const HostedService& service) {
  return service.aliases;
}

namespace {

constexpr const char kSinkCapsule[] = "classicd.LogSink";

void DestroySink(PyObject* capsule) {
  delete static_cast<LogSink*>(PyCapsule_GetPointer(capsule, kSinkCapsule));
}

// emit(levelno, message): the service logger's handler writing to the daemon's log.
PyObject* EmitToSink(PyObject* capsule, PyObject* const* args, Py_ssize_t nargs) {
  auto* sink = static_cast<LogSink*>(PyCapsule_GetPointer(capsule, kSinkCapsule));
  if (sink == nullptr) return nullptr;
  if (nargs != 2 || !PyUnicode_Check(args[1])) {
    PyErr_SetString(PyExc_TypeError, "emit(levelno, message)");
    return nullptr;
  }
  const long level = PyLong_AsLong(args[0]);
  if (level == -1 && PyErr_Occurred()) return nullptr;
  Py_ssize_t n = 0;
  const char* text = PyUnicode_AsUTF8AndSize(args[1], &n);
  if (text == nullptr) return nullptr;
  (*sink)(static_cast<int>(level), std::string_view(text, static_cast<size_t>(n)));
  Py_RETURN_NONE;
}

PyMethodDef kEmitDef = {"emit",
                        reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&EmitToSink)),
                        METH_FASTCALL, "Write a record to the daemon's log."};

}  // namespace

core::Status SetServiceLogger(HostedService& service, const std::string& name, LogSink sink,
                              int levelno) {
  GilHold gil;
  auto* owned = new LogSink(std::move(sink));
  PyRef capsule = PyRef::Steal(PyCapsule_New(owned, kSinkCapsule, &DestroySink));
  if (!capsule) delete owned;
  PyRef emit = capsule ? PyRef::Steal(PyCFunction_New(&kEmitDef, capsule.get())) : PyRef();
  PyRef make = PyRef::Steal(
      PyObject_GetAttrString(service.interpreter->support().module.get(), "service_logger"));
  PyRef logger = emit && make ? PyRef::Steal(PyObject_CallFunction(make.get(), "sOi", name.c_str(),
                                                                   emit.get(), levelno))
                              : PyRef();
  if (!logger || PyDict_SetItemString(service.config.get(), "logger", logger.get()) < 0) {
    return core::Fail(core::Error::Python("the service's logger: " + FetchErrorText()));
  }
  return {};
}

core::Status SetServiceLogLevel(HostedService& service, int levelno) {
  GilHold gil;
  PyObject* logger = PyDict_GetItemString(service.config.get(), "logger");  // borrowed
  PyRef r = logger != nullptr ? PyRef::Steal(PyObject_CallMethod(logger, "setLevel", "i", levelno))
                              : PyRef();
  if (!r) {
    if (logger == nullptr) return core::Fail(core::Error::Python("the service has no logger"));
    return core::Fail(core::Error::Python("the service's logger level: " + FetchErrorText()));
  }
  return {};
}

namespace {

// make_hosted_root's `tls`: None without TLS, else (version, cipher() or None, the client
// certificate's DER or None, verified).
PyRef TlsInfo(const ConnectionInfo& info) {
  if (!info.tls) return PyRef::Borrow(Py_None);
  const ConnectionInfo::Tls& t = *info.tls;
  PyRef cipher = t.cipher.empty()
                     ? PyRef::Borrow(Py_None)
                     : PyRef::Steal(Py_BuildValue("(ssi)", t.cipher.c_str(),
                                                  t.cipher_protocol.c_str(), t.secret_bits));
  PyRef der =
      t.certificate_der.empty()
          ? PyRef::Borrow(Py_None)
          : PyRef::Steal(PyBytes_FromStringAndSize(
                t.certificate_der.data(), static_cast<Py_ssize_t>(t.certificate_der.size())));
  if (!cipher || !der) return PyRef();
  return PyRef::Steal(Py_BuildValue("(sOOO)", t.version.c_str(), cipher.get(), der.get(),
                                    t.verified ? Py_True : Py_False));
}

}  // namespace

void ClassicObjectSpace::InitHosted(const HostedService& service, const ConnectionInfo& info) {
  hosted_ = true;
  exception_rules_ = &service.protocol;
  request_timeout_ms_ = service.request_timeout_ms;
  PyObject* proxies = Proxies();
  PyRef id = PyRef::Steal(PyLong_FromUnsignedLongLong(info.id));
  PyRef fd = PyRef::Steal(PyLong_FromLong(info.fd));
  PyObject* credentials = info.credentials ? info.credentials->object.get() : Py_None;
  // Null (no error): a family the C++ side does not spell; make_hosted_root asks Python's socket.
  PyRef endpoints = Endpoints(info.fd);
  PyRef tls = TlsInfo(info);
  PyRef pair = proxies != nullptr && id && fd && tls
                   ? PyRef::Steal(PyObject_CallFunctionObjArgs(
                         service.make_conn.get(), service.make_root.get(), service.config.get(),
                         proxies, id.get(), fd.get(), credentials,
                         endpoints ? endpoints.get() : Py_Ellipsis, tls.get(), nullptr))
                   : PyRef();
  if (!pair) {
    // The instance could not be made (its __init__ raised): OnConnect() refuses the connection.
    init_error_ = FetchErrorText();
    return;
  }
  root_ = PyRef::Borrow(PyTuple_GET_ITEM(pair.get(), 0));
  conn_obj_ = PyRef::Borrow(PyTuple_GET_ITEM(pair.get(), 1));
}

core::Status ClassicObjectSpace::OnConnect() {
  if (!hosted_) return {};
  GilHold gil;
  if (!root_) return core::Fail(core::Error::Python(init_error_));
  PyRef name = PyRef::Steal(PyUnicode_InternFromString("on_connect"));
  PyRef r = name ? PyRef::Steal(PyObject_CallMethodOneArg(root_.get(), name.get(), conn_obj_.get()))
                 : PyRef();
  if (!r) return core::Fail(core::Error::Python(FetchErrorText()));
  FlushDels();
  return {};
}

void ClassicObjectSpace::Close() {
  GilRelease nogil;  // the write may wait on the peer
  peer_.Close();
}

std::unique_ptr<core::protocol::ObjectSpace> MakeServiceObjectSpace(Interpreter& interpreter,
                                                                    core::protocol::Peer& peer,
                                                                    const HostedService& service,
                                                                    const ConnectionInfo& info) {
  GilHold gil;
  auto space = std::make_unique<ClassicObjectSpace>(interpreter.support(), peer, *service.policy);
  space->InitHosted(service, info);
  return space;
}

}  // namespace classicd::objspace
