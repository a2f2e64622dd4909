#pragma once

// The channel frame format (docs/protocol.md §2), shared by FrameReader and FrameWriter.
//
//   +-------------------------+-----------+----------------------+------+
//   | length: uint32 BE       | flag: u8  | payload (length B)   | 0x0a |
//   +-------------------------+-----------+----------------------+------+
//
// `length` counts the payload as transmitted (after compression) and not the trailer. A nonzero
// flag means the payload is a zlib (RFC 1950) stream. The receiver drops the trailer byte
// without checking it, as Python does. An empty frame carries an empty payload, which Python
// peers ignore.

#include <cstddef>
#include <cstdint>

namespace core::channel {

inline constexpr size_t kHeaderSize = 5;   // struct "!LB"
inline constexpr size_t kTrailerSize = 1;  // '\n', for line-buffered transports
inline constexpr char kTrailer = '\n';

inline constexpr uint8_t kFlagRaw = 0;
inline constexpr uint8_t kFlagZlib = 1;  // what senders write; receivers accept any nonzero flag

// The payload length from the first four bytes of a header.
inline uint32_t HeaderLength(const unsigned char* h) {
  return (uint32_t{h[0]} << 24) | (uint32_t{h[1]} << 16) | (uint32_t{h[2]} << 8) | uint32_t{h[3]};
}
inline uint32_t HeaderLength(const char* h) {
  return HeaderLength(reinterpret_cast<const unsigned char*>(h));
}

// The whole frame (header, payload, trailer) that a header announcing `length` starts.
inline uint64_t FrameSize(uint32_t length) { return kHeaderSize + uint64_t{length} + kTrailerSize; }

// Writes the kHeaderSize bytes of a header at `out`.
inline void PutHeader(uint32_t length, uint8_t flag, char* out) {
  out[0] = static_cast<char>(length >> 24);
  out[1] = static_cast<char>(length >> 16);
  out[2] = static_cast<char>(length >> 8);
  out[3] = static_cast<char>(length);
  out[4] = static_cast<char>(flag);
}

// Python compresses payloads strictly longer than this, with zlib level 1.
inline constexpr size_t kCompressThreshold = 3000;
inline constexpr int kCompressLevel = 1;

// Bounds for untrusted peers. A frame whose header announces more than `max_frame_size` payload
// bytes is refused as soon as the header is read, before any of the payload is buffered. A
// compressed payload is inflated in bounded chunks and refused as soon as its output passes
// `max_decompressed_size`, so a zlib bomb costs at most that much memory and time.
struct FrameLimits {
  size_t max_frame_size = size_t{64} << 20;         // 64 MiB on the wire
  size_t max_decompressed_size = size_t{64} << 20;  // 64 MiB after inflating
};

}  // namespace core::channel
