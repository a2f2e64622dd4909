#pragma once

// One classic connection, the same in every mode: the protocol engine over a stream, with the
// idle and whole-frame limits (DeadlineStream) when they are on, the object space, and the lines
// logged when the connection ends. The blocking modes (threaded, forking, oneshot, stdio, an
// inherited connection) call Run(); threadpool mode steps it with ServeAvailable() and ends it
// with Finish().

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "daemons/classicd/peer.h"
#include "libcore/base/result.h"
#include "libcore/channel/deadline_stream.h"
#include "libcore/protocol/connection.h"
#include "libcore/protocol/object_space.h"
#include "libcore/transport/stream.h"

namespace classicd {

struct SessionSettings {
  core::channel::DeadlineStream::Limits limits;  // both 0: no wrapper
  size_t max_frame_size = size_t{64} << 20;
  // Counts every request dispatched (shared by all connections); may be null.
  std::atomic<uint64_t>* requests_served = nullptr;
};

// What the object space of a new connection may learn of it (a hosted service's `conn`).
struct SpaceContext {
  uint64_t id = 0;
  int fd = -1;                                      // the stream's descriptor, -1 when it has none
  const Peer* peer = nullptr;                       // its credentials among the rest
  const core::transport::Stream* stream = nullptr;  // a TlsStream under TLS
};

// Makes the object space of a new connection (in the daemon, the embedded interpreter's).
using SpaceFactory = std::function<std::unique_ptr<core::protocol::ObjectSpace>(
    core::protocol::Connection&, const SpaceContext&)>;

class ClassicSession {
 public:
  // Builds the connection over `stream` (borrowed: it must outlive the session). Throws what
  // `make_space` throws.
  ClassicSession(core::transport::Stream& stream, Peer peer, uint64_t id,
                 const SessionSettings& settings, const SpaceFactory& make_space, ConnLog log);
  ClassicSession(const ClassicSession&) = delete;
  ClassicSession& operator=(const ClassicSession&) = delete;
  ~ClassicSession();

  // The blocking modes' whole connection: "welcome", served until it ends, the end lines,
  // "goodbye". Never throws.
  static void Run(core::transport::Stream& stream, const Peer& peer, uint64_t id,
                  const SessionSettings& settings, const SpaceFactory& make_space,
                  const ConnLog& log);

  // "welcome ADDR", or "welcome ADDR (credentials)" when the peer has true credentials, as
  // rpyc's server logs it.
  static void Welcome(const ConnLog& log, const Peer& peer, uint64_t id);

  // Serves until the connection ends (blocking modes).
  void Serve();
  // Serves what has arrived without waiting for more: true while the connection stays open
  // (threadpool mode).
  bool ServeAvailable();
  // Logs how the connection ended and releases the objects lent to the peer.
  void Finish();
  // Ends the connection through its stream; any thread, any number of times.
  void Shutdown() { stream_.Shutdown(); }
  // The time left for a frame that has begun, when the frame limit is on.
  std::optional<std::chrono::milliseconds> FrameTimeLeft() const {
    return limited_ ? limited_->FrameTimeLeft() : std::nullopt;
  }

  const Peer& peer() const { return peer_; }
  uint64_t id() const { return id_; }

 private:
  void EndedBy(const std::exception& e);

  core::transport::Stream& stream_;
  const Peer peer_;
  const uint64_t id_;
  const ConnLog log_;
  // Ended by the server while idle (it is stopping) unless serving saw another end.
  core::Result<core::protocol::EndReason> end_ = core::protocol::EndReason::kShutdown;
  bool refused_ = false;  // the object space's OnConnect() failed: nothing is served
  std::optional<core::channel::DeadlineStream> limited_;  // over stream_: the limits
  std::optional<core::protocol::Connection> conn_;
  std::unique_ptr<core::protocol::ObjectSpace> space_;
};

}  // namespace classicd
