#include "libcore/protocol/connection.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace core::protocol {
namespace {

using brine::Value;

// Room offered to each read when no started frame needs more (a started frame gets room for
// all of it).
constexpr size_t kReadChunk = size_t{64} << 10;
// Notify()s whose replies never come are forgotten past this many (their replies are then
// ignored as unknown, which is the same outcome).
constexpr size_t kMaxNotified = 1 << 16;

// The `_remote_version` an engine-made exception carries: its major part matches the client's,
// so the client adds no version warning (§6).
const char* RemoteVersion(Generation g) { return g == Generation::kV5 ? "5.3.0" : "6.0.1"; }

std::string Shorten(std::string s, size_t max) {
  if (s.size() > max) {
    s.resize(max);
    s += "...";
  }
  return s;
}

// (1, ()) or (2, ()): a boxed empty argument tuple.
bool IsEmptyBoxedArgs(const Value& boxed) {
  const auto* t = boxed.get_if<brine::Tuple>();
  if (t == nullptr || t->items.size() != 2) return false;
  const auto* label = t->items[0].get_if<brine::Int>();
  const auto* args = t->items[1].get_if<brine::Tuple>();
  return label != nullptr && label->is_small() &&
         (label->small() == kLabelValue || label->small() == kLabelTuple) && args != nullptr &&
         args->items.empty();
}

// The data of a PING whose argument is a plain value: (1, (data,)).
Value* PingValue(Value& boxed) {
  auto* t = std::get_if<brine::Tuple>(&boxed.variant());
  if (t == nullptr || t->items.size() != 2) return nullptr;
  const auto* label = t->items[0].get_if<brine::Int>();
  auto* args = std::get_if<brine::Tuple>(&t->items[1].variant());
  if (label == nullptr || !label->is_small() || label->small() != kLabelValue || args == nullptr ||
      args->items.size() != 1) {
    return nullptr;
  }
  return &args->items[0];
}

}  // namespace

const char* EndReasonName(EndReason r) {
  switch (r) {
    case EndReason::kClose:
      return "closed by the peer";
    case EndReason::kEof:
      return "end of stream";
    case EndReason::kShutdown:
      return "shut down";
  }
  return "?";
}

Connection::Connection(transport::Stream& stream, ConnectionOptions options)
    : stream_(stream),
      options_(std::move(options)),
      peer_name_(stream.PeerName()),
      reader_(options_.frame_limits) {
  if (options_.generation) generation_ = static_cast<int>(*options_.generation);
}

Connection::~Connection() { stream_.Shutdown(); }

Generation Connection::generation() const {
  const int g = generation_.load();
  return g == static_cast<int>(Generation::kV5) ? Generation::kV5 : Generation::kV6;
}

void Connection::Shutdown() {
  shutdown_ = true;
  stream_.Shutdown();
  std::lock_guard<std::mutex> lock(mu_);
  cv_.notify_all();  // a Call() sleeping while nobody reads sees the shutdown
}

void Connection::Close() {
  if (generation_known()) {
    SendCloseAndShutdown();
    return;
  }
  close_pending_ = true;
  // The reader may have learnt the generation meanwhile, before it saw close_pending_.
  if (generation_known() && close_pending_.exchange(false)) SendCloseAndShutdown();
}

void Connection::SendCloseAndShutdown() {
  // rpyc's close(): HANDLE_CLOSE with no arguments, its reply not awaited.
  (void)Notify(Handler::kClose, brine::MakeTuple({brine::Int(kLabelTuple), brine::MakeTuple({})}));
  Shutdown();
}

void Connection::SetEnded(EndReason r) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!ended_) ended_ = r;
  cv_.notify_all();
}

Error Connection::Fatal(Error e) {
  broken_ = true;
  stream_.Shutdown();
  std::lock_guard<std::mutex> lock(mu_);
  if (!failed_) failed_ = e;
  cv_.notify_all();
  return e;
}

std::optional<Error> Connection::EndErrorLocked() const {
  if (failed_) return *failed_;
  if (ended_) {
    return Error::Closed("connection to " + peer_name_ + " " + EndReasonName(*ended_) +
                         " while waiting for a reply");
  }
  if (shutdown_) return Error::Closed("connection to " + peer_name_ + " shut down");
  return std::nullopt;
}

void Connection::ReleaseRoleLocked() {
  reading_ = false;
  if (waiting_ > 0) cv_.notify_all();
}

void Connection::DeliverLocked(Message m) {
  if (auto it = pending_.find(m.seq); it != pending_.end()) {
    *it->second = m.type == MsgType::kReply ? Outcome::Reply(std::move(m.args))
                                            : Outcome::Exception(std::move(m.args));
    if (waiting_ > 0) cv_.notify_all();
    return;
  }
  notified_.erase(m.seq);  // a Notify()'s reply, or one nobody waits for any more: dropped
}

Connection::Step Connection::ReadStep(std::unique_lock<std::mutex>& lock,
                                      std::optional<int> timeout_ms, bool buffered_only) {
  lock.unlock();
  auto msg = ReadMessage(timeout_ms, buffered_only);
  lock.lock();
  if (!msg) {
    // NextPayload()/ReadMessage() recorded the end or the failure; make sure of it.
    if (!ended_ && !failed_) failed_ = msg.error();
    ReleaseRoleLocked();
    cv_.notify_all();
    return Step::kEnded;
  }
  if (!*msg) {
    ReleaseRoleLocked();
    return Step::kIdle;
  }
  if ((*msg)->type != MsgType::kRequest) {
    DeliverLocked(std::move(**msg));
    ReleaseRoleLocked();
    return Step::kDone;
  }
  ReleaseRoleLocked();
  lock.unlock();
  Status st = Dispatch(std::move(**msg));
  lock.lock();
  if (!st && !ended_ && !failed_) {
    // The reply could not be sent: the stream is shut down, the connection is over.
    if (shutdown_) {
      ended_ = EndReason::kShutdown;
    } else {
      failed_ = st.error();
    }
    cv_.notify_all();
  }
  return ended_ || failed_ ? Step::kEnded : Step::kDone;
}

void Connection::ServeStrandedLocked(std::unique_lock<std::mutex>& lock) {
  // Not only once ServeAvailable() has run: a threadpool connection's callers may read the
  // stream dry before the pool's first step, and then the pool never comes for these frames.
  while (serving_ == 0 && waiting_ == 0 && !reading_ && !ended_ && !failed_ &&
         reader_.buffered() > 0) {
    reading_ = true;
    if (ReadStep(lock, 0, /*buffered_only=*/true) != Step::kDone) break;
  }
}

Result<EndReason> Connection::Serve() {
  if (space_ == nullptr) return Fail(Error::Usage("Connection::Serve without an object space"));
  std::unique_lock<std::mutex> lock(mu_);
  ++serving_;
  Result<EndReason> result = EndReason::kEof;
  for (;;) {
    if (ended_) {
      result = *ended_;
      break;
    }
    if (failed_) {
      result = Fail(*failed_);
      break;
    }
    if (reading_) {  // a Call() on another thread reads for now
      ++waiting_;
      cv_.wait(lock);
      --waiting_;
      continue;
    }
    reading_ = true;
    (void)ReadStep(lock, std::nullopt, /*buffered_only=*/false);
  }
  --serving_;
  lock.unlock();
  stream_.Shutdown();
  return result;
}

Result<std::optional<EndReason>> Connection::ServeAvailable() {
  if (space_ == nullptr) {
    return Fail(Error::Usage("Connection::ServeAvailable without an object space"));
  }
  std::unique_lock<std::mutex> lock(mu_);
  ++serving_;
  std::optional<Result<EndReason>> end;
  for (;;) {
    if (ended_) {
      end = *ended_;
      break;
    }
    if (failed_) {
      end = Fail(*failed_);
      break;
    }
    if (reading_) {  // a Call() on another thread reads what woke us: wait for its message
      ++waiting_;
      cv_.wait(lock);
      --waiting_;
      continue;
    }
    reading_ = true;
    if (ReadStep(lock, 0, /*buffered_only=*/false) == Step::kIdle) break;  // nothing more for now
  }
  --serving_;
  lock.unlock();
  if (!end) return std::optional<EndReason>();
  stream_.Shutdown();
  if (!*end) return Fail(end->error());
  return std::optional<EndReason>(**end);
}

Error Connection::Expired(Handler h, int timeout_ms) const {
  // "result expired" is what rpyc says; the object space raises TimeoutError for kLimit.
  return Error::Limit("result expired: no reply from " + peer_name_ + " to " + HandlerName(h) +
                      " within " + std::to_string(timeout_ms) + " ms");
}

Result<std::optional<std::string_view>> Connection::NextPayload(std::optional<int> timeout_ms,
                                                                bool buffered_only) {
  using Clock = std::chrono::steady_clock;
  // The clock only for a wait with a timeout (most reads have none).
  const auto deadline =
      timeout_ms ? Clock::now() + std::chrono::milliseconds(*timeout_ms) : Clock::time_point();
  for (;;) {
    auto next = reader_.NextView();
    if (!next) return Fail(Fatal(next.error().WithContext("peer " + peer_name_)));
    if (*next) return *next;
    if (buffered_only) return std::optional<std::string_view>();
    if (shutdown_) {
      SetEnded(EndReason::kShutdown);
      return Fail(Error::Closed("connection to " + peer_name_ + " shut down"));
    }
    // The rest of a large frame: the stream may wake once for it (SocketStream: SO_RCVLOWAT).
    if (const uint64_t needed = reader_.needed();
        needed >= transport::Stream::kExpectBytesFrom || expecting_) {
      expecting_ = needed >= transport::Stream::kExpectBytesFrom;
      stream_.ExpectBytes(static_cast<size_t>(std::min<uint64_t>(needed, SIZE_MAX)));
    }
    if (timeout_ms) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      auto ready =
          stream_.WaitReadable(static_cast<int>(std::max<int64_t>(left.count(), int64_t{0})));
      if (!ready) return Fail(Fatal(ready.error()));
      if (!*ready) return std::optional<std::string_view>();
    }
    auto n = stream_.Read(reader_.WriteSpace(kReadChunk));
    if (!n) return Fail(Fatal(n.error()));
    if (*n == 0) {
      if (shutdown_) {
        SetEnded(EndReason::kShutdown);
        return Fail(Error::Closed("connection to " + peer_name_ + " shut down"));
      }
      if (auto st = reader_.CheckEof(); !st) {
        return Fail(Fatal(st.error().WithContext("peer " + peer_name_)));
      }
      SetEnded(EndReason::kEof);
      return Fail(Error::Closed("peer " + peer_name_ + " closed the connection"));
    }
    reader_.Commit(*n);
  }
}

Result<std::optional<Message>> Connection::ReadMessage(std::optional<int> timeout_ms,
                                                       bool buffered_only) {
  for (;;) {
    auto payload = NextPayload(timeout_ms, buffered_only);
    if (!payload) return Fail(payload.error());
    if (!*payload) return std::optional<Message>();  // timed out, or nothing buffered
    if ((*payload)->empty()) continue;               // Python peers ignore empty frames too
    if (!generation_known()) {
      auto gen = DetectGeneration(**payload);
      if (!gen) return Fail(Fatal(gen.error().WithContext("peer " + peer_name_)));
      generation_ = static_cast<int>(*gen);
      if (close_pending_.exchange(false)) {  // Close() waited for this frame: not served
        SendCloseAndShutdown();
        return Fail(Error::Closed("connection to " + peer_name_ + " shut down"));
      }
    }
    // A large inflated payload is shared by the bytes values decoded from it, not copied.
    std::shared_ptr<const void> owner;
    if ((*payload)->size() >= brine::kShareBytesFrom) owner = reader_.PayloadOwner();
    auto msg = DecodeMessage(**payload, generation(), options_.decode_limits, owner);
    if (!msg) return Fail(Fatal(msg.error().WithContext("peer " + peer_name_)));
    return Result<std::optional<Message>>(tl::in_place, std::move(*msg));  // moved once
  }
}

Status Connection::Send(const Message& m) {
  if (broken_) return Fail(Error::Closed("connection to " + peer_name_ + " is broken"));
  // The message is encoded straight after room for the frame header, in a buffer each thread
  // reuses, and framed there (channel::SealFrame): a payload that goes out raw (small ones, and
  // large ones that do not compress) is never copied.
  thread_local std::string buffer;
  thread_local std::string framed;
  buffer.assign(channel::kHeaderSize, '\0');
  EncodeMessage(m, generation(), &buffer);
  auto frame = channel::SealFrame(&buffer, options_.compression, &framed);
  if (!frame) {
    std::string().swap(buffer);
    return Fail(frame.error());  // too large for a frame: nothing was sent
  }
  Status st;
  {
    std::lock_guard<std::mutex> lock(send_mu_);
    st = stream_.WriteAll(frame->span());
  }
  // Keep small buffers for the next message; give large ones back.
  constexpr size_t kKeep = size_t{1} << 20;
  if (buffer.capacity() > kKeep) std::string().swap(buffer);
  if (framed.capacity() > kKeep) std::string().swap(framed);
  if (!st) {
    // The reader sees end of stream next. A Notify() from another thread must not touch the
    // reader-owned state, so only the atomic flag and the stream.
    broken_ = true;
    stream_.Shutdown();
    return Fail(st.error());
  }
  return {};
}

Value Connection::EngineException(const char* type_name, Value arg,
                                  const std::string& detail) const {
  std::string text = "rpyc-classicd protocol engine: " + detail + "\n";
  text += type_name;
  text += ": " + arg.Repr() + "\n";
  return brine::MakeTuple({
      brine::MakeTuple({brine::MakeStr("builtins"), brine::MakeStr(type_name)}),
      brine::MakeTuple({std::move(arg)}),
      brine::MakeTuple({brine::MakeTuple(
          {brine::MakeStr("_remote_version"), brine::MakeStr(RemoteVersion(generation()))})}),
      brine::MakeStr(std::move(text)),
  });
}

Status Connection::Dispatch(Message&& request) {
  if (options_.requests_served != nullptr) {
    options_.requests_served->fetch_add(1, std::memory_order_relaxed);
  }
  const uint64_t seq = request.seq;
  auto reply = [&](Outcome o) {
    Message m{o.kind == Outcome::Kind::kReply ? MsgType::kReply : MsgType::kException, seq,
              std::move(o.value)};
    Status st = Send(m);
    if (!st && st.error().code() == Error::Code::kLimit) {
      // Too large for one frame (over 4 GiB): the peer gets an exception instead.
      m.type = MsgType::kException;
      m.args = EngineException("ValueError", brine::MakeStr(st.error().message()),
                               "the reply does not fit a frame");
      st = Send(m);
    }
    return st;
  };

  auto parsed = ViewRequestArgs(*request.args.tree());  // points into request.args (decoded)
  if (!parsed) {
    // Python's `handler, args = raw_args` failing: an exception reply, the connection stays up.
    return reply(Outcome::Exception(
        EngineException("TypeError", brine::MakeStr(Shorten(parsed.error().message(), 200)),
                        "a request must carry (handler, args)")));
  }
  if (parsed->handler < kFirstHandler || parsed->handler > kLastHandler) {
    return reply(Outcome::Exception(
        EngineException("KeyError", std::move(*parsed->handler_key), "unknown request handler")));
  }
  const auto h = static_cast<Handler>(parsed->handler);
  switch (h) {
    case Handler::kClose:
      if (!IsEmptyBoxedArgs(*parsed->boxed_args)) {
        return reply(Outcome::Exception(
            EngineException("TypeError", brine::MakeStr("_handle_close() takes no arguments"),
                            "CLOSE with arguments " + Shorten(parsed->boxed_args->Repr(), 200))));
      }
      // As the reference: tear down at once, no reply (the 6.x client waits for reply or EOF).
      SetEnded(EndReason::kClose);
      stream_.Shutdown();
      return Fail(Error::Closed("peer " + peer_name_ + " sent CLOSE"));
    case Handler::kPing:
      if (Value* data = PingValue(*parsed->boxed_args)) {
        return reply(Outcome::Reply(BoxValue(std::move(*data))));
      }
      break;
    default:
      break;
  }
  return reply(space_->Handle(h, *parsed->boxed_args));
}

std::optional<Error> Connection::AwaitFrameLocked(std::unique_lock<std::mutex>& lock,
                                                  std::chrono::steady_clock::time_point deadline,
                                                  Handler h, int timeout_ms) {
  if (auto e = EndErrorLocked()) return e;
  const auto left =
      std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) return Expired(h, timeout_ms);
  if (reading_) {  // another thread reads: it hands us our reply, or gives the role back
    ++waiting_;
    cv_.wait_until(lock, deadline);
    --waiting_;
    return std::nullopt;
  }
  reading_ = true;
  (void)ReadStep(lock, static_cast<int>(left.count()), /*buffered_only=*/false);
  return std::nullopt;
}

Result<Outcome> Connection::Call(Handler h, Value boxed_args, int timeout_ms) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
  if (!generation_known()) {
    // A call before the peer has said anything (a hosted service's on_connect calling the
    // client): its first frame tells the wire generation; a request in it is served meanwhile, as
    // rpyc's server serves the client's requests while on_connect waits for a reply.
    std::unique_lock<std::mutex> lock(mu_);
    while (!generation_known()) {
      if (auto e = AwaitFrameLocked(lock, deadline, h, timeout_ms)) return Fail(std::move(*e));
    }
  }
  std::optional<Outcome> reply;  // filled by whichever thread reads it, under mu_
  const uint64_t seq = next_seq_++;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto e = EndErrorLocked()) return Fail(std::move(*e));
    pending_.emplace(seq, &reply);
  }
  Message req;
  req.type = MsgType::kRequest;
  req.seq = seq;
  req.args = MakeRequestArgs(h, std::move(boxed_args));
  Status sent = Send(req);

  std::unique_lock<std::mutex> lock(mu_);
  Result<Outcome> result = Fail(Error::Closed("unreachable"));
  if (!sent) {
    result = Fail(sent.error());
  } else {
    for (;;) {
      if (reply) {
        result = std::move(*reply);
        break;
      }
      if (auto e = AwaitFrameLocked(lock, deadline, h, timeout_ms)) {
        result = Fail(std::move(*e));
        break;
      }
    }
  }
  pending_.erase(seq);  // a late reply is dropped as unknown
  ServeStrandedLocked(lock);
  return result;
}

Status Connection::Notify(Handler h, Value boxed_args) {
  if (shutdown_ || broken_) return Fail(Error::Closed("connection to " + peer_name_ + " closed"));
  if (!generation_known()) {
    return Fail(Error::Usage("connection to " + peer_name_ + ": generation not known yet"));
  }
  const uint64_t seq = next_seq_++;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (notified_.size() >= kMaxNotified) notified_.clear();
    notified_.insert(seq);
  }
  Message req;
  req.type = MsgType::kRequest;
  req.seq = seq;
  req.args = MakeRequestArgs(h, std::move(boxed_args));
  return Send(req);
}

}  // namespace core::protocol
