// Adler32() against zlib's adler32(): every length around the 16- and 32-byte steps and the
// reduction runs, every alignment, extreme bytes (the sums' worst case) and continuation across
// calls; for each kernel (AVX2 where the CPU has it, the portable one), with and without the copy.

#include "libcore/channel/adler32.h"

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <zlib.h>

namespace core::channel {
namespace {

uint32_t Zlib(uint32_t adler, std::string_view data) {
  return static_cast<uint32_t>(
      adler32(adler, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
}

std::string Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// One way of computing the checksum; the copying ones also check the bytes they copied.
struct Kernel {
  const char* name;
  std::function<uint32_t(uint32_t, std::string_view)> run;
};

template <uint32_t (*kCopy)(uint32_t, char*, std::string_view)>
uint32_t Copied(uint32_t adler, std::string_view data) {
  // Guard bytes around the destination: nothing is written outside it.
  std::string dst(data.size() + 2, '\x5a');
  const uint32_t sum = kCopy(adler, dst.data() + 1, data);
  EXPECT_EQ(std::string_view(dst).substr(1, data.size()), data);
  EXPECT_EQ(dst.front(), '\x5a');
  EXPECT_EQ(dst.back(), '\x5a');
  return sum;
}

std::vector<Kernel> Kernels() {
  std::vector<Kernel> k = {{"portable", Adler32Portable},
                           {"portable copy", Copied<CopyAdler32Portable>}};
  if (Adler32UsesAvx2()) {
    k.push_back({"avx2", Adler32});
    k.push_back({"avx2 copy", Copied<CopyAdler32>});
  } else {
    k.push_back({"default", Adler32});
    k.push_back({"default copy", Copied<CopyAdler32>});
  }
  return k;
}

TEST(Adler32Test, EmptyIsTheInitialValue) {
  for (const Kernel& k : Kernels()) {
    EXPECT_EQ(k.run(kAdler32Initial, ""), 1u) << k.name;
    EXPECT_EQ(k.run(kAdler32Initial, "Wikipedia"), 0x11E60398u) << k.name;  // RFC 1950's example
  }
}

TEST(Adler32Test, MatchesZlibAtEveryLengthAndAlignment) {
  const std::string data = Random(20000, 1);
  for (const Kernel& k : Kernels()) {
    for (size_t offset = 0; offset < 32; ++offset) {
      for (size_t n = 0; n < 600; ++n) {
        const std::string_view v = std::string_view(data).substr(offset, n);
        ASSERT_EQ(k.run(kAdler32Initial, v), Zlib(1, v))
            << k.name << " offset " << offset << " n " << n;
      }
    }
    // Around the reduction runs (5552 bytes; 5536 in 32-byte steps) and a few of them.
    for (size_t n : {5535, 5536, 5537, 5551, 5552, 5553, 5567, 5568, 11072, 11104, 11105, 19999}) {
      const std::string_view v = std::string_view(data).substr(1, n);
      ASSERT_EQ(k.run(kAdler32Initial, v), Zlib(1, v)) << k.name << " n " << n;
    }
  }
}

TEST(Adler32Test, LargestSumsDoNotOverflow) {
  for (const Kernel& k : Kernels()) {
    for (char c : {'\xff', '\xfe', '\x00'}) {
      const std::string data((size_t{3} << 20) + 7, c);
      EXPECT_EQ(k.run(kAdler32Initial, data), Zlib(1, data)) << k.name << " " << int{c};
      // From the largest sums a stream can have so far.
      EXPECT_EQ(k.run(0xfff0fff0u, data), Zlib(0xfff0fff0u, data)) << k.name << " " << int{c};
    }
  }
}

TEST(Adler32Test, ContinuesAcrossCallsFromAnyValue) {
  const std::string data = Random(100000, 2);
  for (const Kernel& k : Kernels()) {
    uint32_t ours = kAdler32Initial, theirs = 1;
    size_t pos = 0;
    for (size_t step : {1, 15, 16, 17, 31, 32, 33, 4000, 5552, 30000}) {
      ours = k.run(ours, std::string_view(data).substr(pos, step));
      theirs = Zlib(theirs, std::string_view(data).substr(pos, step));
      ASSERT_EQ(ours, theirs) << k.name << " " << pos;
      pos += step;
    }
    EXPECT_EQ(k.run(0xfff0fff0u, data), Zlib(0xfff0fff0u, data)) << k.name;
  }
}

}  // namespace
}  // namespace core::channel
