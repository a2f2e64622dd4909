#pragma once

// Message types, boxing labels and handler numbers (docs/protocol.md §3, §4, §5.2).

#include <cstdint>

namespace core::protocol {

enum class MsgType : uint8_t { kRequest = 1, kReply = 2, kException = 3 };

// Boxing labels (§4.1).
inline constexpr int kLabelValue = 1;
inline constexpr int kLabelTuple = 2;
inline constexpr int kLabelLocalRef = 3;
inline constexpr int kLabelRemoteRef = 4;

// The exception value that means StopIteration (§6).
inline constexpr int kExcStopIteration = 1;

enum class Handler : int {
  kPing = 1,
  kClose = 2,
  kGetRoot = 3,
  kGetAttr = 4,
  kDelAttr = 5,
  kSetAttr = 6,
  kCall = 7,
  kCallAttr = 8,
  kRepr = 9,
  kStr = 10,
  kCmp = 11,
  kHash = 12,
  kDir = 13,
  kPickle = 14,
  kDel = 15,
  kInspect = 16,
  kBuffIter = 17,
  kOldSlicing = 18,
  kCtxExit = 19,
  kInstanceCheck = 20,
};
inline constexpr int kFirstHandler = 1;
inline constexpr int kLastHandler = 20;

const char* HandlerName(Handler h);

// The two wire generations (§3): rpyc 5.x and rpyc >= 6.0.0.
enum class Generation { kV5, kV6 };

}  // namespace core::protocol
