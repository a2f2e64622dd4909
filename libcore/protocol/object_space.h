#pragma once

// The seam between the protocol engine (libcore, no Python) and the object space (embedded
// CPython in daemons/classicd/objspace). The engine owns frames, messages, sequence numbers and
// the wait-for-reply loop; the object space owns objects: boxing, the table of objects lent to
// the peer, proxies for the peer's objects, and what each handler does.

#include <memory>
#include <string>

#include "libcore/base/result.h"
#include "libcore/brine/value.h"
#include "libcore/protocol/args.h"
#include "libcore/protocol/consts.h"

namespace core::protocol {

// What answers one request: a reply carrying a boxed value, or an exception carrying the vinegar
// tuple (or the int 1 for StopIteration), unboxed (§6). The value is made in whichever form suits
// the object space (Args): a tree, or brine bytes made for this reply or cached and shared.
struct Outcome {
  enum class Kind { kReply, kException };
  Kind kind = Kind::kReply;
  Args value;

  static Outcome Reply(Args boxed) { return {Kind::kReply, std::move(boxed)}; }
  static Outcome Reply(brine::Value boxed) { return Tree(Kind::kReply, std::move(boxed)); }
  static Outcome EncodedReply(std::shared_ptr<const std::string> bytes) {
    return {Kind::kReply, Args::Encoded(std::move(bytes))};
  }
  static Outcome EncodedReply(std::string bytes) {
    return {Kind::kReply, Args::Encoded(std::move(bytes))};
  }
  static Outcome Exception(Args v) { return {Kind::kException, std::move(v)}; }
  static Outcome Exception(brine::Value v) { return Tree(Kind::kException, std::move(v)); }

 private:
  // Moves the tree in once (every reply is made here: no intermediate Args to move again).
  static Outcome Tree(Kind kind, brine::Value v) {
    Outcome o;
    o.kind = kind;
    *o.value.tree() = std::move(v);
    return o;
  }
};

// The other side of the connection, as the object space sees it. Implemented by the engine's
// Connection. Call() and Notify() may come from any thread, several at once.
class Peer {
 public:
  virtual ~Peer() = default;

  // Sends a request to the peer and serves the peer's requests (nested, re-entrant) until the
  // reply arrives or `timeout_ms` passes. An error means the connection failed or timed out;
  // a remote exception is an Outcome of kind kException.
  virtual Result<Outcome> Call(Handler h, brine::Value boxed_args, int timeout_ms = 30000) = 0;

  // Sends a request whose reply is not awaited (DEL). Replies to it are dropped when they come.
  virtual Status Notify(Handler h, brine::Value boxed_args) = 0;

  virtual Generation generation() const = 0;

  // rpyc's conn.close(), from any thread (a hosted service's code closing its connection): sends
  // the peer CLOSE and ends the connection. Before the peer's first frame has told its wire
  // generation, CLOSE waits for that frame (which is then not served). A no-op by default.
  virtual void Close() {}
};

// One per connection. Handle() runs on the thread that read the request: the connection's serving
// thread, or any thread waiting in Peer::Call() (see connection.h), so on several threads at once;
// it may call back into the peer through the Peer it was given, which may in turn call Handle()
// again (nesting).
class ObjectSpace {
 public:
  virtual ~ObjectSpace() = default;

  // Answers one request. Handlers 1..20 as in docs/protocol.md §5.2; the engine answers CLOSE
  // itself and never passes handler numbers outside 1..20 (it replies KeyError(handler) itself).
  virtual Outcome Handle(Handler h, const brine::Value& boxed_args) = 0;

  // Once, after the space is attached to its connection and before the connection is served
  // (rpyc's Service.on_connect): it may already call the peer (Peer::Call() then first reads the
  // peer's first frame to learn its generation, serving it if it is a request). An error ends
  // the connection (rpyc's server logs it and closes the connection).
  virtual Status OnConnect() { return {}; }

  // The connection is over: release every object lent to the peer, drop every proxy (no DELs).
  // Calls from other threads may still be inside Peer::Call() (failing, as the connection has
  // ended) or handling its result: the space must not be destroyed under them.
  virtual void OnDisconnect() = 0;

  // Number of objects currently lent to the peer (tests and stats).
  virtual size_t LocalObjectCount() const = 0;
};

}  // namespace core::protocol
