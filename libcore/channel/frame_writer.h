#pragma once

// Frame writer: header, payload (compressed or not), trailer.

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

// Compresses `data` into one zlib (RFC 1950) stream at `level` (-1..9), appending it to `*out`.
void Deflate(std::string_view data, int level, std::string* out);

}  // namespace core::channel
