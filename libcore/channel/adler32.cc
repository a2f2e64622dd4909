#include "libcore/channel/adler32.h"

#include <cstddef>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace core::channel {
namespace {

constexpr uint32_t kBase = 65521;  // the largest prime below 2^16
// The most bytes after which the sums still fit 32 bits before a reduction (zlib's NMAX).
constexpr size_t kMaxRun = 5552;

void Scalar(const unsigned char* p, size_t n, uint32_t* s1, uint32_t* s2) {
  uint32_t a = *s1, b = *s2;
  while (n > 0) {
    size_t run = n < kMaxRun ? n : kMaxRun;
    n -= run;
    for (; run > 0; --run) {
      a += *p++;
      b += a;
    }
    a %= kBase;
    b %= kBase;
  }
  *s1 = a;
  *s2 = b;
}

#if defined(__SSE2__)

uint32_t Sum32(__m128i v) {
  v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 3, 0, 1)));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(v));
}

// Whole 16-byte blocks. Over a run of K blocks, with a and b the sums before it:
//   a' = a + (all bytes)
//   b' = b + 16K*a + 16 * (sum over blocks of the bytes of all earlier blocks)
//          + (sum over blocks of the bytes weighted 16, 15, ..., 1 by their place)
// The three sums are kept in 32-bit lanes, which a run of at most kMaxRun bytes cannot
// overflow; the result is reduced after each run.
void Blocks(const unsigned char* p, size_t blocks, uint32_t* s1, uint32_t* s2) {
  const __m128i zero = _mm_setzero_si128();
  const __m128i weights_lo = _mm_setr_epi16(16, 15, 14, 13, 12, 11, 10, 9);
  const __m128i weights_hi = _mm_setr_epi16(8, 7, 6, 5, 4, 3, 2, 1);
  uint64_t a = *s1, b = *s2;
  while (blocks > 0) {
    const size_t run = blocks < kMaxRun / 16 ? blocks : kMaxRun / 16;
    blocks -= run;
    __m128i sum = zero;      // bytes of the blocks so far in this run
    __m128i earlier = zero;  // for each block, `sum` before it
    __m128i weighted = zero;
    for (size_t k = 0; k < run; ++k, p += 16) {
      const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      earlier = _mm_add_epi32(earlier, sum);
      sum = _mm_add_epi32(sum, _mm_sad_epu8(x, zero));
      weighted = _mm_add_epi32(weighted, _mm_madd_epi16(_mm_unpacklo_epi8(x, zero), weights_lo));
      weighted = _mm_add_epi32(weighted, _mm_madd_epi16(_mm_unpackhi_epi8(x, zero), weights_hi));
    }
    b += 16 * run * a + 16 * uint64_t{Sum32(earlier)} + Sum32(weighted);
    a += Sum32(sum);
    a %= kBase;
    b %= kBase;
  }
  *s1 = static_cast<uint32_t>(a);
  *s2 = static_cast<uint32_t>(b);
}

#endif

}  // namespace

uint32_t Adler32(uint32_t adler, std::string_view data) {
  uint32_t s1 = adler & 0xffff, s2 = adler >> 16;
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  size_t n = data.size();
#if defined(__SSE2__)
  const size_t blocks = n / 16;
  Blocks(p, blocks, &s1, &s2);
  p += blocks * 16;
  n -= blocks * 16;
#endif
  Scalar(p, n, &s1, &s2);
  return (s2 << 16) | s1;
}

}  // namespace core::channel
