#pragma once

// The per-connection protocol engine (docs/protocol.md §3, §8, §9): frames and messages in the
// peer's wire generation, sequence numbers, request dispatch to an ObjectSpace, and the
// wait-for-reply loop that keeps serving the peer's requests while it waits (nesting).
//
// Threading, as rpyc's own Connection does it. At most one thread at a time holds the read role
// and reads one message from the stream. A reply goes to the Call() waiting for it (which is
// woken); then the role is given back, and a request is served by the thread that read it, on its
// own stack and without the role (so while one thread runs a handler, another may read). Threads
// that need to read while the role is taken sleep until it is free, their reply has come or the
// connection has ended; nobody polls.
// - Serve(): the serving thread takes the role whenever it is free and reads, with no deadline.
// - Call(), from any thread: sends its request, then until its reply is there takes the role when
//   it is free and reads (serving the peer's requests it reads, nested), or sleeps. So a Call()
//   from a thread other than the serving one makes progress while the serving thread is busy
//   inside a handler, and nested calls on the serving thread work the same way.
// - ServeAvailable() (threadpool mode) is called by one pool thread at a time. It takes the role
//   (when a Call() holds it, that caller is reading this very input: the pool thread sleeps until
//   the caller has read its next message) and serves what can be read without waiting; it never
//   reads beside a caller. The rule that keeps pool and callers from racing: frames already in
//   the buffer are served by whoever reads next, and a Call() that returns while no Serve() or
//   ServeAvailable() runs and nobody else waits to read first serves the complete frames left in
//   the buffer (read together with its reply): the stream may not become readable again for
//   them, so the pool would not come. This holds from the first Call(), also before the first
//   ServeAvailable(): callers may drain the stream before the pool ever sees it readable. A
//   caller may thus keep a pool thread waiting as long as its own read of one message takes
//   (bounded by its timeout).
// Shutdown(), CLOSE, EOF or a failure wake every waiting Call(); it fails with kClosed (or the
// failure). Notify() and Shutdown() may come from any thread. No Python here: the object space
// takes its interpreter lock inside Handle() and releases it around Call().

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "libcore/base/result.h"
#include "libcore/brine/brine.h"
#include "libcore/channel/frame_reader.h"
#include "libcore/channel/frame_writer.h"
#include "libcore/protocol/message.h"
#include "libcore/protocol/object_space.h"
#include "libcore/transport/stream.h"

namespace core::protocol {

struct ConnectionOptions {
  channel::FrameLimits frame_limits;
  brine::DecodeLimits decode_limits;
  channel::Compression compression = channel::Compression::kAdaptive;
  // Known in advance (for a side that speaks first); otherwise detected from the first frame.
  std::optional<Generation> generation;
  // Incremented (relaxed) for every request this side dispatches, when set: a daemon's live
  // "requests served" count. Must outlive the Connection.
  std::atomic<uint64_t>* requests_served = nullptr;
};

// Why Serve() returned normally.
enum class EndReason {
  kClose,     // the peer sent CLOSE
  kEof,       // the peer closed the stream between two frames
  kShutdown,  // Shutdown() was called (by this process)
};
const char* EndReasonName(EndReason r);

class Connection final : public Peer {
 public:
  // `stream` must outlive the Connection. Call set_object_space() before Serve().
  Connection(transport::Stream& stream, ConnectionOptions options = {});
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() override;

  // `space` must outlive every Serve()/ServeAvailable()/Call() on this connection (it is destroyed
  // after Serve() returns, before the Connection; a Call() from another thread may still be
  // inside it then: the object space must wait for those, see ObjectSpace::OnDisconnect()).
  void set_object_space(ObjectSpace* space) { space_ = space; }

  // Serves the peer's requests until it sends CLOSE or closes the stream, or until Shutdown().
  // An error means the connection failed (I/O error, malformed frame or message, a frame
  // ended by EOF); its message names the peer. Either way the stream is shut down on return.
  Result<EndReason> Serve();

  // For event-driven servers (threadpool mode): serves, on the calling thread, what can be read
  // without waiting, then returns nullopt (call again once the stream is readable), or the end, as
  // Serve() reports it (the stream is then shut down). Successive calls may come from different
  // threads, never two at once. May wait while a Call() from another thread holds the read role
  // (see above).
  Result<std::optional<EndReason>> ServeAvailable();

  // Peer interface.
  // Any thread (see above), also with no Serve() at all (the caller reads). A timeout fails with
  // Error::Code::kLimit ("result expired"), and a late reply is dropped; a broken or closed
  // connection fails with kIo / kProtocol / kClosed.
  Result<Outcome> Call(Handler h, brine::Value boxed_args, int timeout_ms = 30000) override;
  Status Notify(Handler h, brine::Value boxed_args) override;
  Generation generation() const override;

  // Ends the connection from any thread: Serve() returns kShutdown, a Call() waiting in it
  // fails with kClosed.
  void Shutdown();
  void Close() override;

  const std::string& peer_name() const { return peer_name_; }
  bool generation_known() const { return generation_.load() >= 0; }

 private:
  // What ReadStep() did.
  enum class Step {
    kIdle,   // nothing to read within the time (or, buffered_only, no complete frame buffered)
    kDone,   // a message was read and handled
    kEnded,  // the connection has ended or failed
  };

  // With `lock` (on mu_) held and the read role taken by this thread: reads one message, hands a
  // reply to its waiter, gives the role back and serves a request (role given back first, mu_ not
  // held while it runs). `lock` is held again on return; the role is never held on return.
  // One step of a Call() waiting for what a frame brings (its reply, the peer's generation):
  // waits while another thread reads, else reads a frame itself. The error when the connection
  // has ended or `deadline` has passed.
  std::optional<Error> AwaitFrameLocked(std::unique_lock<std::mutex>& lock,
                                        std::chrono::steady_clock::time_point deadline, Handler h,
                                        int timeout_ms);
  Step ReadStep(std::unique_lock<std::mutex>& lock, std::optional<int> timeout_ms,
                bool buffered_only);
  // A message read from the peer; nullopt means the deadline passed (or, buffered_only, that no
  // complete frame is buffered). Role holder only.
  Result<std::optional<Message>> ReadMessage(std::optional<int> timeout_ms, bool buffered_only);
  // The view is valid until the next read. Role holder only.
  Result<std::optional<std::string_view>> NextPayload(std::optional<int> timeout_ms,
                                                      bool buffered_only);
  Status Send(const Message& m);
  // Close()'s CLOSE and shutdown, once the generation is known.
  void SendCloseAndShutdown();
  Status Dispatch(Message&& request);
  // Builds the exception reply the engine sends itself (unknown handler, malformed request).
  brine::Value EngineException(const char* type_name, brine::Value arg,
                               const std::string& detail) const;
  // mu_ held: a reply or exception from the peer goes to the Call() waiting for its seq.
  void DeliverLocked(Message m);
  // mu_ held: gives the read role back, waking whoever waits.
  void ReleaseRoleLocked();
  // mu_ held: why a Call() cannot go on (ended, failed or shut down), if so.
  std::optional<Error> EndErrorLocked() const;
  // mu_ held: the threadpool rule above (serve the frames nobody else would).
  void ServeStrandedLocked(std::unique_lock<std::mutex>& lock);
  // Record the end / a failure (mu_ not held) and wake every waiter.
  void SetEnded(EndReason r);
  Error Fatal(Error e);
  Error Expired(Handler h, int timeout_ms) const;

  transport::Stream& stream_;
  const ConnectionOptions options_;
  const std::string peer_name_;
  ObjectSpace* space_ = nullptr;

  std::atomic<int> generation_{-1};  // -1 until detected, else int(Generation)
  std::atomic<uint64_t> next_seq_{0};
  std::atomic<bool> shutdown_{false};
  // Close() came before the peer's generation was known: the first frame's reader closes.
  std::atomic<bool> close_pending_{false};
  std::atomic<bool> broken_{false};  // a write failed or the input was malformed

  // Owned by the holder of the read role (handed over under mu_).
  channel::FrameReader reader_;
  bool expecting_ = false;  // the stream was last told to expect a large rest (read role only)

  std::mutex send_mu_;  // one frame at a time on the stream

  std::mutex mu_;
  std::condition_variable cv_;  // the role was given back, a reply came, or the end
  // Guarded by mu_:
  bool reading_ = false;  // a thread holds the read role
  int waiting_ = 0;       // threads sleeping on cv_
  int serving_ = 0;       // threads inside Serve() / ServeAvailable()
  std::map<uint64_t, std::optional<Outcome>*> pending_;  // Call()s waiting, by seq
  std::optional<EndReason> ended_;                       // set once CLOSE, EOF or shutdown was seen
  std::optional<Error> failed_;                          // set once the connection failed
  std::set<uint64_t> notified_;                          // seqs of Notify()s not yet answered
};

}  // namespace core::protocol
