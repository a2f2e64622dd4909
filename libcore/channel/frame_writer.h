#pragma once

// Frame writer: header, payload (compressed or not), trailer.

#include <cstddef>
#include <cstdint>
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

// The error for a payload that does not fit the 32-bit length field (over 4 GiB): Error::Limit.
Error PayloadTooLarge(size_t length);
inline Status CheckPayloadSize(size_t length) {
  if (length <= UINT32_MAX) return {};
  return Fail(PayloadTooLarge(length));
}

// A frame as the parts of one write, in order.
struct FrameParts {
  std::string_view parts[2];
  size_t count = 0;
  std::span<const std::string_view> span() const { return {parts, count}; }
};

// The compressed case of SealFrame().
Result<FrameParts> SealCompressedFrame(std::string_view payload, Compression compression,
                                       std::string* scratch);

// Frames a payload without copying it when it goes out raw: `*buffer` holds kHeaderSize bytes
// of room followed by the payload (the caller encoded it there). A raw frame is the buffer, its
// header written into the room, and the trailer; a compressed one is built in `*scratch`. The
// parts point into *buffer or *scratch (or static storage), valid while those are unchanged.
// Fails as AppendFrame does, with nothing written. Inline: every reply and request goes through
// it.
inline Result<FrameParts> SealFrame(std::string* buffer, Compression compression,
                                    std::string* scratch) {
  static constexpr char kTrailerByte[1] = {kTrailer};
  const std::string_view payload = std::string_view(*buffer).substr(kHeaderSize);
  if (payload.size() > UINT32_MAX) return Fail(PayloadTooLarge(payload.size()));
  if (WouldCompress(payload, compression))
    return SealCompressedFrame(payload, compression, scratch);
  PutHeader(static_cast<uint32_t>(payload.size()), kFlagRaw, buffer->data());
  FrameParts f;
  f.parts[0] = *buffer;
  f.parts[1] = std::string_view(kTrailerByte, 1);
  f.count = 2;
  return f;
}

// Compresses `data` into one zlib (RFC 1950) stream at `level` (-1..9), appending it to `*out`.
void Deflate(std::string_view data, int level, std::string* out);

}  // namespace core::channel
