#pragma once

// Frame writer: header, payload (compressed or not), trailer.

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "libcore/base/result.h"
#include "libcore/channel/frame_format.h"

namespace core::channel {

enum class Compression {
  // Compress payloads over kCompressThreshold only when it pays: a leading sample is compressed
  // first, and payloads that do not shrink go out raw (Python accepts raw frames of any size).
  kAdaptive,
  // Python's exact behaviour: every payload over kCompressThreshold is compressed, even when it
  // grows. Byte-identical to rpyc's Channel.send.
  kPython,
  // Never compress (Channel(compress=False)).
  kNever,
};

// True when AppendFrame would try to compress `payload` (for the adaptive policy: a leading
// sample shrank). A payload for which this is false goes out raw, so a caller may frame it
// itself (header, payload, trailer) without copying it.
bool WouldCompress(std::string_view payload, Compression compression);

// Appends one frame carrying `payload` to `*out`. Fails (Error::Limit, nothing appended) only
// for a payload that does not fit the 32-bit length field.
Status AppendFrame(std::string_view payload, std::string* out,
                   Compression compression = Compression::kAdaptive);

// Fails with Error::Limit for a payload that does not fit the 32-bit length field (over 4 GiB).
Status CheckPayloadSize(size_t length);

// A frame as the parts of one write, in order.
struct FrameParts {
  std::string_view parts[2];
  size_t count = 0;
  std::span<const std::string_view> span() const { return {parts, count}; }
};

// Frames a payload without copying it when it goes out raw: `*buffer` holds kHeaderSize bytes
// of room followed by the payload (the caller encoded it there). A raw frame is the buffer, its
// header written into the room, and the trailer; a compressed one is built in `*scratch`. The
// parts point into *buffer or *scratch, valid while those are unchanged. Fails as AppendFrame
// does, with nothing written.
Result<FrameParts> SealFrame(std::string* buffer, Compression compression, std::string* scratch);

// Compresses `data` into one zlib (RFC 1950) stream at `level` (-1..9), appending it to `*out`.
void Deflate(std::string_view data, int level, std::string* out);

}  // namespace core::channel
