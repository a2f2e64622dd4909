#pragma once

// The classic object space of one connection (docs/protocol.md §4-§8). Its parts live in one file
// each:
//   object_space.cc   life cycle, Handle() and the connection's per-thread Python data
//   lent_objects.h    the table of objects lent to the peer and the id_pack rules (§4.2, §4.3)
//   boxing.cc         boxing (§4.1) straight into bytes or into a brine tree, and unboxing
//   handlers.cc       the 20 handlers with SlaveService semantics (§5), the gated ones asking
//                     the access policy (access_policy.h)
//   vinegar.cc        exceptions both ways (§6)
//   proxies.cc        proxies for the client's objects, the requests they send (§8), and the
//                     _classicd_native module they reach C++ through
// Python-heavy cold paths live in support_*.py. Needs <Python.h>.

#include <Python.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "daemons/classicd/objspace/access_policy.h"
#include "daemons/classicd/objspace/internal.h"
#include "daemons/classicd/objspace/lent_objects.h"
#include "daemons/classicd/objspace/py_ref.h"
#include "libcore/brine/value.h"
#include "libcore/protocol/object_space.h"

namespace classicd::objspace {

struct Link;

class ClassicObjectSpace final : public core::protocol::ObjectSpace {
 public:
  // `policy` must outlive the space.
  ClassicObjectSpace(Interpreter::Support& support, core::protocol::Peer& peer,
                     const AccessPolicy& policy);
  ~ClassicObjectSpace() override;
  ClassicObjectSpace(const ClassicObjectSpace&) = delete;
  ClassicObjectSpace& operator=(const ClassicObjectSpace&) = delete;
  ClassicObjectSpace(ClassicObjectSpace&&) = delete;
  ClassicObjectSpace& operator=(ClassicObjectSpace&&) = delete;

  bool Init(bool classic_root);  // GIL held
  // A hosted service's root and conn instead (GIL held). When they cannot be made, OnConnect()
  // fails with the reason.
  void InitHosted(const HostedService& service, const ConnectionInfo& info);
  // rpyc's conn.close() from the service's code (any thread, GIL held): Peer::Close(), CLOSE to
  // the peer and the connection's end; on_disconnect runs when the serving thread sees it end.
  void Close();
  // GIL held: conn._config["credentials"] of the classic conn object.
  void SetClassicCredentials(const Credentials& credentials);
  core::Status OnConnect() override;
  core::protocol::Outcome Handle(core::protocol::Handler h,
                                 const core::brine::Value& boxed_args) override;
  void OnDisconnect() override;
  size_t LocalObjectCount() const override { return lent_.size(); }

  // A request from one of our proxies to the client (GIL held). NULL + Python error on failure.
  PyRef Request(int handler, PyObject* args);

 private:
  bool v6() const { return peer_.generation() == core::protocol::Generation::kV6; }
  // The rpyc version the peer is told (exceptions carry it, §6).
  const char* version() const { return v6() ? "6.0.1" : "5.3.0"; }

  // --- boxing.cc ---
  // Boxing. False means a Python error is set; `added` collects the table keys added, so that a
  // failed reply can be rolled back. BoxEncoded() appends the brine encoding of what Box() makes.
  bool Box(PyObject* o, core::brine::Value* out, std::vector<IdKey>* added, int depth = 0);
  bool BoxEncoded(PyObject* o, std::string* out, std::vector<IdKey>* added, int depth = 0);
  // How `o` is boxed: by value (into `value`), as a tuple of boxed items (at `depth`), as the
  // client's own object (its id_pack into `value`) or as ours (its id_pack into `key`, lent:
  // counted in the table and added to `added` unless that is null). kError: a Python error is
  // set.
  enum class BoxAs { kError, kValue, kTuple, kLocalRef, kRemoteRef };
  BoxAs Classify(PyObject* o, core::brine::Value* value, IdKey* key, std::vector<IdKey>* added,
                 int depth);
  // BoxEncoded() once `o` is classified (not kError).
  bool AppendBoxed(PyObject* o, BoxAs as, const core::brine::Value& v, const IdKey& key,
                   std::string* out, std::vector<IdKey>* added, int depth);
  // A handler's result boxed for the reply (an exception reply when it cannot be boxed).
  core::protocol::Outcome BoxReply(PyObject* result);
  PyRef Unbox(const core::brine::Value& boxed);
  // A lent object by its id_pack (a new reference), or NULL with KeyError(id_pack) set.
  PyRef LookupLocal(const core::brine::Value& id_pack);

  // --- handlers.cc ---
  PyRef Dispatch(core::protocol::Handler h, PyObject* args);
  PyRef OldSlicing(PyObject* obj, PyObject* attempt, PyObject* fallback, PyObject* start,
                   PyObject* stop, PyObject* args);
  PyRef Call(PyObject* fn, PyObject* args, PyObject* kwargs);
  PyRef InstanceCheck(PyObject* obj, PyObject* id_pack);
  core::protocol::Outcome Inspect(PyObject* args);
  core::protocol::Outcome HandleDel(const core::brine::Value& boxed_args);

  // --- vinegar.cc ---
  // The pending Python exception as an exception reply (clears it). For a hosted service whose
  // rules propagate that exception locally, the connection is closed instead (the reply made is
  // then never sent).
  core::protocol::Outcome ExceptionOutcome();
  // Raises the client's exception of an exception reply here.
  void RaiseRemote(const core::brine::Value& raw);
  // rpyc's propagate_*_locally: the exception ends this connection (logged, conn.close()).
  bool PropagatesLocally(PyObject* type) const;
  void PropagateLocally(PyObject* type, PyObject* value, PyObject* trace);

  // --- proxies.cc ---
  PyObject* Proxies();  // borrowed; NULL + Python error on failure
  bool IsOurNetref(PyObject* o);
  void FlushDels();

  // --- object_space.cc ---
  void SyncGeneration();
  void SwapThreadData();

  Interpreter::Support& sup_;
  core::protocol::Peer& peer_;
  const AccessPolicy& policy_;
  PyRef root_, conn_obj_, proxy_conn_, capsule_;
  bool hosted_ = false;  // root_ is a hosted service's: OnConnect() calls its on_connect(conn)
  // A hosted service's exception rules (owned by its HostedService); null: the classic rules.
  const ProtocolConfig* exception_rules_ = nullptr;
  std::string init_error_;  // why InitHosted() failed
  // How long a request to the client waits for its reply (rpyc's sync_request_timeout).
  int request_timeout_ms_ = 30000;
  Link* link_ = nullptr;  // owned by capsule_
  LentObjects lent_;
  // Request()s in progress, on any thread: a Python thread other than the serving one may still
  // wait for its reply, or unbox it, when the connection ends. OnDisconnect() waits for them to
  // leave before it tears the space down.
  std::mutex requests_mu_;
  std::condition_variable requests_cv_;
  int requests_ = 0;  // guarded by requests_mu_
  bool disconnected_ = false;
  int last_v6_ = -1;
  bool data_in_ = false;                // under the GIL: a Handle() has swapped the thread data in
  PyObject* thread_dict_ = nullptr;     // owned; see SwapThreadData()
  PyObject* thread_context_ = nullptr;  // owned
  std::thread::id maker_;               // the thread that made this space
  std::shared_ptr<std::atomic<int>> spaces_;  // maker_'s ThreadSpaceCount()
};

// What a proxy reaches its connection through. Owned by a capsule that the ProxyConn holds, so
// proxies that outlive their connection find `space == nullptr` instead of a dangling pointer.
struct Link {
  ClassicObjectSpace* space = nullptr;
  // Boxed DEL args, sent from the connection's thread.
  std::vector<core::brine::Value> pending_dels;
};

}  // namespace classicd::objspace
