#pragma once

// Adler-32 (RFC 1950 §9), the checksum that ends every zlib stream: the same values as zlib's
// adler32(), several times faster on large inputs (16 bytes per step in SSE2 registers on x86-64;
// zlib 1.2.13 adds one byte at a time). The frame reader verifies compressed frames with it.

#include <cstdint>
#include <string_view>

namespace core::channel {

inline constexpr uint32_t kAdler32Initial = 1;

// The checksum of `data` continued from `adler` (kAdler32Initial for a new stream).
uint32_t Adler32(uint32_t adler, std::string_view data);

}  // namespace core::channel
