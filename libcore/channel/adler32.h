#pragma once

// Adler-32 (RFC 1950 §9), the checksum that ends every zlib stream: the same values as zlib's
// adler32(), several times faster on large inputs (32 bytes per step in AVX2 registers where the
// CPU has them, else 16 in SSE2 ones, on x86-64; zlib 1.2.13 adds one byte at a time). The frame
// reader verifies compressed frames with it.

#include <cstdint>
#include <string_view>

namespace core::channel {

inline constexpr uint32_t kAdler32Initial = 1;

// The checksum of `data` continued from `adler` (kAdler32Initial for a new stream).
uint32_t Adler32(uint32_t adler, std::string_view data);

// Copies `src` to `dst` (src.size() bytes, not overlapping) and returns Adler32(adler, src), in
// one pass over the bytes: the inflater's copy of stored (uncompressed) deflate blocks.
uint32_t CopyAdler32(uint32_t adler, char* dst, std::string_view src);

// The same two without the AVX2 kernel (tests compare both against zlib), and whether Adler32()
// uses it on this CPU.
uint32_t Adler32Portable(uint32_t adler, std::string_view data);
uint32_t CopyAdler32Portable(uint32_t adler, char* dst, std::string_view src);
bool Adler32UsesAvx2();

}  // namespace core::channel
