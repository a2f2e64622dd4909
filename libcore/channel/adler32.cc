#include "libcore/channel/adler32.h"

#include <cstddef>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define RPYC_ADLER32_AVX2 1
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

// The block kernels below work on whole blocks of W bytes (16 or 32). Over a run of K blocks,
// with a and b the sums before it:
//   a' = a + (all bytes)
//   b' = b + W*K*a + W * (sum over blocks of the bytes of all earlier blocks)
//          + (sum over blocks of the bytes weighted W, W-1, ..., 1 by their place)
// The three sums are kept in 32-bit lanes, which a run of at most kMaxRun bytes cannot
// overflow; the result is reduced after each run. With kCopy, each block is also stored to
// `dst` as it is read.

// Adds a run of `run` blocks of `width` bytes to the sums a and b, from the kernel's totals.
void AddRun(size_t width, size_t run, uint32_t sum, uint32_t earlier, uint32_t weighted,
            uint64_t* a, uint64_t* b) {
  *b = (*b + width * run * *a + width * uint64_t{earlier} + weighted) % kBase;
  *a = (*a + sum) % kBase;
}

#if defined(__SSE2__)

uint32_t Sum32(__m128i v) {
  v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 3, 0, 1)));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(v));
}

template <bool kCopy>
void Blocks16(const unsigned char* p, unsigned char* dst, size_t blocks, uint32_t* s1,
              uint32_t* s2) {
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
      if constexpr (kCopy) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), x);
        dst += 16;
      }
      earlier = _mm_add_epi32(earlier, sum);
      sum = _mm_add_epi32(sum, _mm_sad_epu8(x, zero));
      weighted = _mm_add_epi32(weighted, _mm_madd_epi16(_mm_unpacklo_epi8(x, zero), weights_lo));
      weighted = _mm_add_epi32(weighted, _mm_madd_epi16(_mm_unpackhi_epi8(x, zero), weights_hi));
    }
    AddRun(16, run, Sum32(sum), Sum32(earlier), Sum32(weighted), &a, &b);
  }
  *s1 = static_cast<uint32_t>(a);
  *s2 = static_cast<uint32_t>(b);
}

#endif

#if defined(RPYC_ADLER32_AVX2)

__attribute__((target("avx2"))) uint32_t Sum32x8(__m256i v) {
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(h));
}

// 32-byte blocks: the weighted sum multiplies the bytes by their weights in one step
// (pmaddubsw: pairs of unsigned bytes times signed weights, at most 255 * (32 + 31), which fits
// 16 bits), then adds the pairs into 32-bit lanes (pmaddwd by ones).
template <bool kCopy>
__attribute__((target("avx2"))) void Blocks32(const unsigned char* p, unsigned char* dst,
                                              size_t blocks, uint32_t* s1, uint32_t* s2) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i weights =
      _mm256_setr_epi8(32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14,
                       13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1);
  const __m256i ones = _mm256_set1_epi16(1);
  uint64_t a = *s1, b = *s2;
  while (blocks > 0) {
    const size_t run = blocks < kMaxRun / 32 ? blocks : kMaxRun / 32;
    blocks -= run;
    __m256i sum = zero;
    __m256i earlier = zero;
    __m256i weighted = zero;
    for (size_t k = 0; k < run; ++k, p += 32) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
      if constexpr (kCopy) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), x);
        dst += 32;
      }
      earlier = _mm256_add_epi32(earlier, sum);
      sum = _mm256_add_epi32(sum, _mm256_sad_epu8(x, zero));
      weighted =
          _mm256_add_epi32(weighted, _mm256_madd_epi16(_mm256_maddubs_epi16(x, weights), ones));
    }
    AddRun(32, run, Sum32x8(sum), Sum32x8(earlier), Sum32x8(weighted), &a, &b);
  }
  *s1 = static_cast<uint32_t>(a);
  *s2 = static_cast<uint32_t>(b);
}

bool HaveAvx2() {
  static const bool have = __builtin_cpu_supports("avx2");
  return have;
}

#endif

// Adler-32 of `n` bytes at `p`, copying them to `dst` with kCopy, by the widest kernel allowed.
template <bool kCopy>
uint32_t Run(uint32_t adler, const unsigned char* p, unsigned char* dst, size_t n, bool wide) {
  uint32_t s1 = adler & 0xffff, s2 = adler >> 16;
  size_t done = 0;
#if defined(RPYC_ADLER32_AVX2)
  if (wide) {
    const size_t blocks = n / 32;
    Blocks32<kCopy>(p, dst, blocks, &s1, &s2);
    done = blocks * 32;
  }
#else
  (void)wide;
#endif
#if defined(__SSE2__)
  const size_t blocks = (n - done) / 16;
  Blocks16<kCopy>(p + done, kCopy ? dst + done : nullptr, blocks, &s1, &s2);
  done += blocks * 16;
#endif
  if constexpr (kCopy) {
    if (n > done) std::memcpy(dst + done, p + done, n - done);
  }
  Scalar(p + done, n - done, &s1, &s2);
  return (s2 << 16) | s1;
}

const unsigned char* Bytes(std::string_view data) {
  return reinterpret_cast<const unsigned char*>(data.data());
}

}  // namespace

bool Adler32UsesAvx2() {
#if defined(RPYC_ADLER32_AVX2)
  return HaveAvx2();
#else
  return false;
#endif
}

uint32_t Adler32(uint32_t adler, std::string_view data) {
  return Run<false>(adler, Bytes(data), nullptr, data.size(), Adler32UsesAvx2());
}

uint32_t CopyAdler32(uint32_t adler, char* dst, std::string_view src) {
  return Run<true>(adler, Bytes(src), reinterpret_cast<unsigned char*>(dst), src.size(),
                   Adler32UsesAvx2());
}

uint32_t Adler32Portable(uint32_t adler, std::string_view data) {
  return Run<false>(adler, Bytes(data), nullptr, data.size(), false);
}

uint32_t CopyAdler32Portable(uint32_t adler, char* dst, std::string_view src) {
  return Run<true>(adler, Bytes(src), reinterpret_cast<unsigned char*>(dst), src.size(), false);
}

}  // namespace core::channel
