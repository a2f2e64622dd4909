#pragma once

// The per-connection protocol engine (PROTOCOL.md §3, §8, §9): frames and messages in the peer's
// wire generation, sequence numbers, request dispatch to an ObjectSpace, and the
// wait-for-reply loop that keeps serving the peer's requests while it waits (nesting).
//
// Threading: one thread serves a connection (Serve()); it reads every frame. A Call() on that
// thread (nested inside a Handle()) serves the peer's requests while it waits. A Call() from any
// other thread sends its request and sleeps until the serving thread hands it the reply (the
// peer's requests meanwhile are served by the serving thread). Notify() and Shutdown() may come
// from any thread. No Python here: the object space takes its interpreter lock inside Handle()
// and releases it around Call().

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

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

  // `space` must outlive every Serve()/Call() on this connection (it is destroyed after Serve()
  // returns, before the Connection).
  void set_object_space(ObjectSpace* space) { space_ = space; }

  // Serves the peer's requests until it sends CLOSE or closes the stream, or until Shutdown().
  // An error means the connection failed (I/O error, malformed frame or message, a frame
  // ended by EOF); its message names the peer. Either way the stream is shut down on return.
  Result<EndReason> Serve();

  // For event-driven servers (threadpool mode): serves, on the calling thread, what can be read
  // without waiting, then returns nullopt (call again once the stream is readable), or the end, as
  // Serve() reports it (the stream is then shut down). Successive calls may come from different
  // threads, never two at once.
  Result<std::optional<EndReason>> ServeAvailable();

  // Peer interface.
  // Any thread (see above). A timeout fails with Error::Code::kLimit ("result expired"), and a late
  // reply is dropped; a broken or closed connection fails with kIo / kProtocol / kClosed.
  Result<Outcome> Call(Handler h, brine::Value boxed_args, int timeout_ms = 30000) override;
  Status Notify(Handler h, brine::Value boxed_args) override;
  Generation generation() const override;

  // Ends the connection from any thread: Serve() returns kShutdown, a Call() waiting in it
  // fails with kClosed.
  void Shutdown();

  const std::string& peer_name() const { return peer_name_; }
  bool generation_known() const { return generation_.load() >= 0; }

 private:
  // A message read from the peer; nullopt from ReadMessage() means the deadline passed.
  Result<std::optional<Message>> ReadMessage(std::optional<int> timeout_ms);
  // The view is valid until the next read.
  Result<std::optional<std::string_view>> NextPayload(std::optional<int> timeout_ms);
  Status Send(const Message& m);
  Status Dispatch(Message request);
  // Builds the exception reply the engine sends itself (unknown handler, malformed request).
  brine::Value EngineException(const char* type_name, brine::Value arg,
                               const std::string& detail) const;
  // Handles a reply or exception from the peer. Returns true when it completes `awaited_seq`.
  bool AcceptReply(Message m, uint64_t awaited_seq, Outcome* out);
  Error Fatal(Error e);
  Result<Outcome> ReaderCall(Handler h, brine::Value boxed_args, int timeout_ms, bool outermost);
  Result<Outcome> ForeignCall(Handler h, brine::Value boxed_args, int timeout_ms);
  void EndForeignCalls();
  Error Expired(Handler h, int timeout_ms) const;

  transport::Stream& stream_;
  const ConnectionOptions options_;
  const std::string peer_name_;
  ObjectSpace* space_ = nullptr;

  std::atomic<int> generation_{-1};  // -1 until detected, else int(Generation)
  std::atomic<uint64_t> next_seq_{0};
  std::atomic<bool> shutdown_{false};
  std::atomic<bool> broken_{false};  // a write failed or the input was malformed

  // Owned by the serving thread.
  std::atomic<std::thread::id> reader_thread_{};  // the thread reading the stream, if any
  channel::FrameReader reader_;
  std::set<uint64_t> awaited_;             // seqs of Call()s waiting, at any nesting depth
  std::map<uint64_t, Outcome> completed_;  // replies for outer Call()s read by inner ones
  std::optional<EndReason> ended_;         // set once CLOSE or EOF was seen
  std::optional<Error> failed_;            // set once the connection failed

  std::mutex send_mu_;  // one frame at a time on the stream
  // Call()s from threads other than the reader, waiting for their replies.
  struct ForeignWait {
    std::optional<Outcome> outcome;
    std::optional<Error> error;
  };
  std::mutex foreign_mu_;
  std::condition_variable foreign_cv_;
  std::map<uint64_t, ForeignWait*> foreign_;  // guarded by foreign_mu_
  bool reader_gone_ = false;                  // guarded by foreign_mu_: Serve() returned

  std::mutex notified_mu_;
  std::set<uint64_t> notified_;  // guarded by notified_mu_: seqs of Notify()s not yet answered
};

}  // namespace core::protocol
