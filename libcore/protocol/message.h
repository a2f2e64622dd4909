#pragma once

// The message layer (docs/protocol.md §3): one frame payload is one message, in one of two wire
// generations. 5.x: brine((msg, seq, args)). 6.x: one msg-type byte, then brine((seq, args)).

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "libcore/base/result.h"
#include "libcore/brine/brine.h"
#include "libcore/protocol/args.h"
#include "libcore/protocol/consts.h"

namespace core::protocol {

struct Message {
  MsgType type = MsgType::kRequest;
  uint64_t seq = 0;
  Args args;
};

// Looks at the first payload a peer sends: 0x12 -> 5.x, 0x01..0x03 -> 6.x. Anything else is a
// thread-bound (RPYC_BIND_THREADS) or foreign frame: refused with an error that says so.
Result<Generation> DetectGeneration(std::string_view first_payload);

// Decodes one payload of a known generation. The seq must be a non-negative int that fits 64
// bits; the message type must be 1..3. `owner`, when set, keeps `payload` alive: large bytes
// values then share it instead of copying it (brine::Load()).
Result<Message> DecodeMessage(std::string_view payload, Generation gen,
                              const brine::DecodeLimits& limits = {},
                              const std::shared_ptr<const void>& owner = nullptr);

// Appends the payload of `m` in generation `gen` to `*out` (no frame header).
void EncodeMessage(const Message& m, Generation gen, std::string* out);
std::string EncodeMessage(const Message& m, Generation gen);

// Request args: (handler, boxed_args).
brine::Value MakeRequestArgs(Handler h, brine::Value boxed_args);
struct RequestArgs {
  int handler = 0;  // may be out of range: the dispatcher answers KeyError
  brine::Value boxed_args;
  // The handler key exactly as sent, for the KeyError message. `handler` is its value when it is
  // an int (or bool, as Python's dict lookup treats True as 1) that fits `int`, else 0.
  brine::Value handler_key;
};
// Fails only when `args` is not a 2-tuple: Python's `handler, args = raw_args` raises, and the
// reference answers that with an exception reply (the connection stays up).
Result<RequestArgs> ParseRequestArgs(const brine::Value& args);
Result<RequestArgs> ParseRequestArgs(brine::Value&& args);  // moves the boxed args out
// The same without moving anything: the pointers point into `args`, which must outlive them.
struct RequestArgsView {
  int handler = 0;
  brine::Value* boxed_args = nullptr;
  brine::Value* handler_key = nullptr;
};
Result<RequestArgsView> ViewRequestArgs(brine::Value& args);

// Boxing helpers for values (§4.1): (label, payload).
brine::Value BoxValue(brine::Value v);            // (1, v)
brine::Value BoxLocalRef(brine::Value id_pack);   // (3, id_pack)
brine::Value BoxRemoteRef(brine::Value id_pack);  // (4, id_pack)

}  // namespace core::protocol
