// Adler32() against zlib's adler32(): every length around the 16-byte steps and the reduction
// runs, every alignment, extreme bytes (the sums' worst case) and continuation across calls.

#include "libcore/channel/adler32.h"

#include <cstdint>
#include <random>
#include <string>
#include <string_view>

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

TEST(Adler32Test, EmptyIsTheInitialValue) {
  EXPECT_EQ(Adler32(kAdler32Initial, ""), 1u);
  EXPECT_EQ(Adler32(kAdler32Initial, "Wikipedia"), 0x11E60398u);  // RFC 1950's worked example
}

TEST(Adler32Test, MatchesZlibAtEveryLengthAndAlignment) {
  const std::string data = Random(20000, 1);
  for (size_t offset = 0; offset < 16; ++offset) {
    for (size_t n = 0; n < 600; ++n) {
      const std::string_view v = std::string_view(data).substr(offset, n);
      ASSERT_EQ(Adler32(kAdler32Initial, v), Zlib(1, v)) << "offset " << offset << " n " << n;
    }
  }
  // Around the reduction runs (5552 bytes) and a few of them.
  for (size_t n : {5535, 5536, 5537, 5551, 5552, 5553, 11104, 11105, 19999}) {
    const std::string_view v = std::string_view(data).substr(1, n);
    ASSERT_EQ(Adler32(kAdler32Initial, v), Zlib(1, v)) << n;
  }
}

TEST(Adler32Test, LargestSumsDoNotOverflow) {
  for (char c : {'\xff', '\xfe', '\x00'}) {
    const std::string data((size_t{3} << 20) + 7, c);
    EXPECT_EQ(Adler32(kAdler32Initial, data), Zlib(1, data)) << static_cast<int>(c);
  }
}

TEST(Adler32Test, ContinuesAcrossCallsFromAnyValue) {
  const std::string data = Random(100000, 2);
  uint32_t ours = kAdler32Initial, theirs = 1;
  size_t pos = 0;
  for (size_t step : {1, 15, 16, 17, 4000, 5552, 30000}) {
    ours = Adler32(ours, std::string_view(data).substr(pos, step));
    theirs = Zlib(theirs, std::string_view(data).substr(pos, step));
    ASSERT_EQ(ours, theirs) << pos;
    pos += step;
  }
  EXPECT_EQ(Adler32(0xfff0fff0u, data), Zlib(0xfff0fff0u, data));
}

}  // namespace
}  // namespace core::channel
