// The frame layer (docs/protocol.md §2, §3.3): golden frames, any split of the byte stream,
// compression both ways, and every way a frame is refused, with the exact message.

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <time.h>
#include <zlib.h>

#include "libcore/base/hex.h"
#include "libcore/channel/frame_reader.h"
#include "libcore/channel/frame_writer.h"

namespace core::channel {
namespace {

// The golden frames of §3.3, header | payload | trailer, in both generations.
std::vector<std::string> GoldenFrames() {
  std::vector<std::string> hex = {
      "00 00 00 08 00 | 12 51 50 11 53 11 51 02 | 0a",
      "00 00 00 08 00 | 01 11 50 11 53 11 51 02 | 0a",
      "00 00 00 08 00 | 12 51 57 11 52 11 51 02 | 0a",
      "00 00 00 08 00 | 01 11 57 11 52 11 51 02 | 0a",
      "00 00 00 06 00 | 12 52 53 11 51 52 | 0a",
      "00 00 00 06 00 | 02 11 53 11 51 52 | 0a",
      "00 00 00 04 00 | 12 53 54 51 | 0a",
      "00 00 00 04 00 | 03 11 54 51 | 0a",
      "00 00 00 10 00 | 12 51 16 03 31 36 30 11 51 11 51 10 08 0b 68 69 | 0a",
      "00 00 00 10 00 | 01 11 16 03 31 36 30 11 51 11 51 10 08 0b 68 69 | 0a",
      "00 00 00 20 00 | 12 51 56 11 5f 11 52 11 11 53 12 08 0e 0d 62 75 69 6c 74 69 6e 73 2e 6c 69 "
      "73 74 6e 78 11 51 51 | 0a",
      "00 00 00 2a 00 | 12 51 53 11 57 11 52 12 11 53 12 08 0e 0f 62 75 69 6c 74 69 6e 73 2e 6d 65 "
      "74 68 6f 64 5a 64 11 51 10 08 0c 31 2b 31 11 51 02 | 0a",
  };
  std::vector<std::string> frames;
  for (const auto& h : hex) frames.push_back(FromHex(h));
  return frames;
}

std::string PayloadOf(const std::string& frame) {
  return frame.substr(kHeaderSize, frame.size() - kHeaderSize - kTrailerSize);
}

std::string Frame(std::string_view payload, Compression c = Compression::kPython) {
  std::string out;
  EXPECT_TRUE(AppendFrame(payload, &out, c));
  return out;
}

std::string Header(uint32_t length, uint8_t flag) {
  std::string h(kHeaderSize, '\0');
  h[0] = static_cast<char>(length >> 24);
  h[1] = static_cast<char>(length >> 16);
  h[2] = static_cast<char>(length >> 8);
  h[3] = static_cast<char>(length);
  h[4] = static_cast<char>(flag);
  return h;
}

std::string ZlibCompress(std::string_view data, int level) {
  uLongf n = compressBound(static_cast<uLong>(data.size()));
  std::string out(n, '\0');
  EXPECT_EQ(compress2(reinterpret_cast<Bytef*>(out.data()), &n,
                      reinterpret_cast<const Bytef*>(data.data()), static_cast<uLong>(data.size()),
                      level),
            Z_OK);
  out.resize(n);
  return out;
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

std::string Text(size_t n) {
  std::string s;
  while (s.size() < n)
    s += "the quick brown fox jumps over the lazy dog " + std::to_string(s.size());
  s.resize(n);
  return s;
}

// Feeds `stream` in chunks that end at `splits`, collecting every payload.
std::vector<std::string> ReadAll(std::string_view stream, const std::vector<size_t>& splits,
                                 FrameLimits limits = {}) {
  FrameReader r(limits);
  std::vector<std::string> got;
  size_t from = 0;
  auto drain = [&] {
    for (;;) {
      auto p = r.Next();
      EXPECT_TRUE(p) << p.error().ToString();
      if (!p || !p->has_value()) return;
      got.push_back(std::move(**p));
    }
  };
  for (size_t at : splits) {
    r.Append(stream.substr(from, at - from));
    from = at;
    drain();
  }
  r.Append(stream.substr(from));
  drain();
  EXPECT_TRUE(r.CheckEof());
  EXPECT_EQ(r.buffered(), 0u);
  return got;
}

// Short failure messages: payloads can be large.
std::string Summary(const std::vector<std::string>& payloads) {
  std::string s = std::to_string(payloads.size()) + " payloads:";
  for (const auto& p : payloads) s += " " + std::to_string(p.size());
  return s;
}

#define EXPECT_PAYLOADS(got, want)                                           \
  do {                                                                       \
    auto got_ = (got);                                                       \
    auto want_ = (want);                                                     \
    EXPECT_TRUE(got_ == want_) << Summary(got_) << " vs " << Summary(want_); \
  } while (0)

std::string ReadError(std::string_view stream, FrameLimits limits = {}) {
  FrameReader r(limits);
  r.Append(stream);
  for (;;) {
    auto p = r.Next();
    if (!p) return p.error().message();
    if (!p->has_value()) break;
  }
  auto eof = r.CheckEof();
  return eof ? "no error" : eof.error().message();
}

TEST(Frame, GoldenFramesWriteByteForByte) {
  for (const auto& f : GoldenFrames()) {
    EXPECT_EQ(ToHex(Frame(PayloadOf(f), Compression::kPython)), ToHex(f));
    EXPECT_EQ(ToHex(Frame(PayloadOf(f), Compression::kAdaptive)), ToHex(f));
    EXPECT_EQ(ToHex(Frame(PayloadOf(f), Compression::kNever)), ToHex(f));
  }
}

TEST(Frame, GoldenFramesRead) {
  for (const auto& f : GoldenFrames()) {
    auto got = ReadAll(f, {});
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(ToHex(got[0]), ToHex(PayloadOf(f)));
  }
}

// A stream with every kind of frame: golden ones, an empty one, compressed ones.
struct Stream {
  std::string bytes;
  std::vector<std::string> payloads;
};

Stream MixedStream() {
  Stream s;
  auto add = [&](const std::string& frame, std::string payload) {
    s.bytes += frame;
    s.payloads.push_back(std::move(payload));
  };
  for (const auto& f : GoldenFrames()) add(f, PayloadOf(f));
  add(FromHex("00 00 00 00 00 0a"), "");
  std::string big = Text(5000);
  add(Frame(big, Compression::kPython), big);
  std::string empty = ZlibCompress("", 1);
  add(Header(static_cast<uint32_t>(empty.size()), 7) + empty + "\n", "");  // flag 7, no output
  std::string hello = "hello";
  std::string z = ZlibCompress(hello, 9);
  add(Header(static_cast<uint32_t>(z.size()), 7) + z + "X", hello);  // wrong trailer: accepted
  return s;
}

TEST(Frame, SplitAtEveryByte) {
  Stream s = MixedStream();
  ASSERT_EQ(s.bytes.size() > 100, true);
  EXPECT_PAYLOADS(ReadAll(s.bytes, {}), s.payloads);  // all frames in one chunk
  for (size_t i = 0; i <= s.bytes.size(); ++i) {
    ASSERT_TRUE(ReadAll(s.bytes, {i}) == s.payloads) << "split at " << i;
  }
  std::vector<size_t> every;
  for (size_t i = 1; i < s.bytes.size(); ++i) every.push_back(i);
  EXPECT_PAYLOADS(ReadAll(s.bytes, every), s.payloads);  // one byte at a time
}

TEST(Frame, RandomSplits) {
  Stream s = MixedStream();
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    std::vector<size_t> splits;
    for (size_t at = 0;;) {
      at += rng() % 64;
      if (at >= s.bytes.size()) break;
      splits.push_back(at);
    }
    ASSERT_TRUE(ReadAll(s.bytes, splits) == s.payloads) << "round " << round;
  }
}

TEST(Frame, CompressesLikePython) {
  // Python: 3000 bytes stay raw, 3001 bytes are compressed with zlib.compress(data, 1).
  std::string at = Text(3000), over = Text(3001);
  EXPECT_EQ(Frame(at), Header(3000, 0) + at + "\n");
  std::string z = ZlibCompress(over, 1);
  EXPECT_EQ(z.substr(0, 2), FromHex("78 01"));
  EXPECT_EQ(ToHex(Frame(over)), ToHex(Header(static_cast<uint32_t>(z.size()), 1) + z + "\n"));
  // Python compresses even when the result grows; kPython does the same.
  std::string noise = RandomBytes(4000, 1);
  std::string zn = ZlibCompress(noise, 1);
  EXPECT_GT(zn.size(), noise.size());
  EXPECT_EQ(Frame(noise), Header(static_cast<uint32_t>(zn.size()), 1) + zn + "\n");
  EXPECT_EQ(Frame(over, Compression::kNever), Header(3001, 0) + over + "\n");
}

TEST(Frame, AdaptiveCompressesOnlyWhenItPays) {
  auto flag = [](const std::string& frame) { return static_cast<int>(frame[4]); };
  // Small incompressible and large incompressible payloads go out raw.
  for (size_t n : {size_t{3001}, size_t{20000}, size_t{1} << 20}) {
    std::string noise = RandomBytes(n, 2);
    std::string f = Frame(noise, Compression::kAdaptive);
    EXPECT_EQ(flag(f), 0) << n;
    EXPECT_EQ(f, Header(static_cast<uint32_t>(n), 0) + noise + "\n");
  }
  // Compressible payloads are compressed, exactly as Python would.
  for (size_t n : {size_t{3001}, size_t{20000}, size_t{1} << 20}) {
    std::string text = Text(n);
    std::string f = Frame(text, Compression::kAdaptive);
    EXPECT_EQ(flag(f), 1) << n;
    EXPECT_LT(f.size(), n / 2) << n;
    EXPECT_EQ(f, Frame(text, Compression::kPython)) << n;
    EXPECT_PAYLOADS(ReadAll(f, {}), std::vector<std::string>{text});
  }
}

TEST(Frame, AppendsToExistingOutput) {
  std::string out = "prefix";
  ASSERT_TRUE(AppendFrame("ab", &out));
  ASSERT_TRUE(AppendFrame(Text(4000), &out));
  EXPECT_EQ(out.substr(0, 6), "prefix");
  EXPECT_PAYLOADS(ReadAll(out.substr(6), {}), (std::vector<std::string>{"ab", Text(4000)}));
}

TEST(Frame, LengthOverLimitIsRefusedFromTheHeaderAlone) {
  FrameReader r(FrameLimits{1000, 1000});
  r.Append(Header(1001, 0));  // no payload bytes at all yet
  auto p = r.Next();
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code(), Error::Code::kLimit);
  EXPECT_EQ(p.error().message(), "frame: payload length 1001 exceeds the limit of 1000 bytes");
  // Sticky: the stream cannot be resynchronised.
  r.Append(std::string(2000, 'x'));
  auto again = r.Next();
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().message(), p.error().message());
  // The default limit (64 MiB), against the largest header.
  EXPECT_EQ(ReadError(Header(UINT32_MAX, 0)),
            "frame: payload length 4294967295 exceeds the limit of 67108864 bytes");
  // Exactly at the limit is fine.
  std::string at(1000, 'a');
  EXPECT_PAYLOADS(ReadAll(Frame(at, Compression::kNever), {}, FrameLimits{1000, 1000}),
                  std::vector<std::string>{at});
}

// Reads `stream` into `r` through WriteSpace()/Commit(), as the connection does, in pieces of at
// most `piece` bytes; returns the largest capacity seen.
size_t Feed(FrameReader& r, std::string_view stream, size_t piece) {
  size_t peak = r.capacity();
  while (!stream.empty()) {
    std::span<char> room = r.WriteSpace(64 << 10);
    const size_t n = std::min({room.size(), piece, stream.size()});
    std::memcpy(room.data(), stream.data(), n);
    r.Commit(n);
    stream.remove_prefix(n);
    peak = std::max(peak, r.capacity());
  }
  return peak;
}

TEST(Frame, AnnouncedLengthReservesNothingUntilBytesArrive) {
  // A header announcing 64 MiB (the default limit) and 1000 payload bytes: the buffer stays at a
  // first read's size instead of reserving the announced length (issue 12).
  FrameReader r;
  const std::string start = Header(64 << 20, 0) + std::string(1000, 'x');
  size_t peak = Feed(r, start, start.size());
  for (int i = 0; i < 3; ++i) peak = std::max(peak, r.WriteSpace(64 << 10).size() + r.buffered());
  EXPECT_LE(peak, size_t{256} << 10);
  auto p = r.NextView();
  ASSERT_TRUE(p);
  EXPECT_FALSE(*p);

  // As the frame's bytes come, the buffer grows with them, never to more than about twice what
  // was received (doubling: each byte is copied an amortised once), and the frame comes out whole.
  const std::string payload = Text(3 << 20);
  const std::string frame = Frame(payload, Compression::kNever);
  FrameReader big;
  std::string_view rest = frame;
  size_t received = 0;
  while (!rest.empty()) {
    const size_t n = std::min<size_t>(rest.size(), 100000);
    const size_t peak_now = Feed(big, rest.substr(0, n), 16 << 10);
    received += n;
    rest.remove_prefix(n);
    EXPECT_LE(peak_now, 2 * received + (size_t{128} << 10)) << "after " << received << " bytes";
  }
  auto whole = big.NextView();
  ASSERT_TRUE(whole);
  ASSERT_TRUE(*whole);
  EXPECT_TRUE(**whole == payload);
}

TEST(Frame, LargeBuffersAreGivenBackOnceConsumed) {
  FrameReader r;
  const std::string large = Text(FrameReader::kKeepBuffer + 1000);
  Feed(r, Frame(large, Compression::kNever), 1 << 20);
  auto p = r.NextView();
  ASSERT_TRUE(p && *p);
  EXPECT_GT(r.capacity(), FrameReader::kKeepBuffer);
  r.WriteSpace(64 << 10);
  EXPECT_LE(r.capacity(), size_t{64} << 10);
  // A buffer within the bound is kept for the next frames.
  const std::string small = Text(1 << 20);
  Feed(r, Frame(small, Compression::kNever), 1 << 20);
  ASSERT_TRUE(r.NextView());
  const size_t kept = r.capacity();
  EXPECT_GE(kept, small.size());
  r.WriteSpace(64 << 10);
  EXPECT_EQ(r.capacity(), kept);
}

TEST(Frame, InflaterIsReusedAcrossFramesAndStaysCorrect) {
  // Several compressed frames of different sizes through one reader: the kept output buffer and
  // the reset zlib state give each payload exactly.
  std::string stream;
  std::vector<std::string> want;
  for (size_t n : {size_t{5000}, size_t{3} << 20, size_t{4000}, size_t{200000}}) {
    want.push_back(Text(n));
    stream += Frame(want.back(), Compression::kPython);
  }
  EXPECT_PAYLOADS(ReadAll(stream, {}), want);
}

TEST(Frame, InflatedPayloadCanBeSharedAndIsNotOverwritten) {
  // A reference to the inflated buffer keeps the payload as it was while later frames are read
  // (they go to another buffer); once it is dropped, the buffer is reused.
  FrameReader r;
  const std::string first = RandomBytes(200000, 7), second = RandomBytes(150000, 8);
  Feed(r, Frame(first, Compression::kPython) + Frame(second, Compression::kPython), 1 << 20);
  auto p = r.NextView();
  ASSERT_TRUE(p && *p);
  std::shared_ptr<const void> owner = r.PayloadOwner();
  ASSERT_NE(owner, nullptr);
  const std::string_view held = **p;
  auto q = r.NextView();
  ASSERT_TRUE(q && *q);
  EXPECT_EQ(**q, second);
  EXPECT_NE(r.PayloadOwner(), owner);
  EXPECT_EQ(held, first);  // untouched by the second inflate
  // Nobody holds the second buffer: the third frame reuses it.
  const auto second_owner = r.PayloadOwner().get();
  Feed(r, Frame(first, Compression::kPython), 1 << 20);
  auto t = r.NextView();
  ASSERT_TRUE(t && *t);
  EXPECT_EQ(**t, first);
  EXPECT_EQ(r.PayloadOwner().get(), second_owner);
  // A raw payload lives in the receive buffer: no owner to share.
  Feed(r, Frame("raw", Compression::kNever), 1 << 20);
  auto raw = r.NextView();
  ASSERT_TRUE(raw && *raw);
  EXPECT_EQ(r.PayloadOwner(), nullptr);
}

TEST(Frame, DecompressedSizeLimit) {
  std::string text = Text(5000);
  std::string f = Frame(text);
  EXPECT_EQ(ReadError(f, FrameLimits{1 << 20, 4999}),
            "frame: decompressed payload exceeds the limit of 4999 bytes");
  EXPECT_PAYLOADS(ReadAll(f, {}, FrameLimits{1 << 20, 5000}), std::vector<std::string>{text});
  FrameReader r(FrameLimits{1 << 20, 10});
  r.Append(f);
  auto p = r.Next();
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code(), Error::Code::kLimit);
}

TEST(Frame, CorruptZlib) {
  std::string text = Text(5000);
  std::string f = Frame(text);
  // Not a zlib header.
  std::string bad_header = f;
  bad_header[kHeaderSize] = 0x00;
  EXPECT_EQ(ReadError(bad_header), "frame: corrupt zlib payload: incorrect header check (-3)");
  // Raw deflate (no RFC 1950 wrapper) is refused, as zlib.decompress refuses it.
  std::string garbage = FromHex("78 01") + "garbage";
  EXPECT_EQ(ReadError(Header(static_cast<uint32_t>(garbage.size()), 1) + garbage + "\n"),
            "frame: corrupt zlib payload: invalid block type (-3)");
  // A flipped bit in the Adler-32 checksum.
  std::string bad_sum = f;
  bad_sum[bad_sum.size() - 2] ^= 1;
  EXPECT_EQ(ReadError(bad_sum), "frame: corrupt zlib payload: incorrect data check (-3)");
  // A stream cut short inside a well-formed frame.
  std::string z = ZlibCompress(text, 1);
  std::string cut = z.substr(0, z.size() - 3);
  EXPECT_EQ(
      ReadError(Header(static_cast<uint32_t>(cut.size()), 1) + cut + "\n"),
      "frame: truncated zlib payload (" + std::to_string(cut.size()) + " bytes, no end of stream)");
  // A compressed empty frame is not a zlib stream.
  EXPECT_EQ(ReadError(Header(0, 1) + "\n"),
            "frame: truncated zlib payload (0 bytes, no end of stream)");
  // Bytes after the end of the zlib stream are ignored, as zlib.decompress ignores them.
  std::string tail = z + "junk";
  EXPECT_PAYLOADS(ReadAll(Header(static_cast<uint32_t>(tail.size()), 1) + tail + "\n", {}),
                  std::vector<std::string>{text});
}

TEST(Frame, CorruptErrorsAreProtocolErrors) {
  FrameReader r;
  r.Append(Header(3, 1) + "abc\n");
  auto p = r.Next();
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code(), Error::Code::kProtocol);
  EXPECT_FALSE(r.CheckEof());
}

TEST(Frame, TruncatedStreamAtEveryByte) {
  std::string f = GoldenFrames()[0];  // 14 bytes
  for (size_t n = 1; n < f.size(); ++n) {
    std::string want =
        n < kHeaderSize
            ? "frame: stream ended inside a frame header (" + std::to_string(n) + " of 5 bytes)"
            : "frame: stream ended inside a frame (" + std::to_string(n) + " of 14 bytes)";
    EXPECT_EQ(ReadError(f.substr(0, n)), want) << n;
  }
  EXPECT_EQ(ReadError(f), "no error");
  EXPECT_EQ(ReadError(""), "no error");
}

// `mib` MiB of zeros as one zlib stream, built without deflating all of it: one MiB deflated
// with a full flush is a byte-aligned run of blocks that refers to nothing before it, so it can
// be repeated. Then an empty final block and the Adler-32 of the whole.
std::string ZlibBomb(size_t mib) {
  std::string zeros(size_t{1} << 20, '\0');
  std::string first(compressBound(static_cast<uLong>(zeros.size())) + 64, '\0');
  z_stream zs{};
  EXPECT_EQ(deflateInit(&zs, 9), Z_OK);
  zs.next_in = reinterpret_cast<Bytef*>(zeros.data());
  zs.avail_in = static_cast<uInt>(zeros.size());
  zs.next_out = reinterpret_cast<Bytef*>(first.data());
  zs.avail_out = static_cast<uInt>(first.size());
  EXPECT_EQ(deflate(&zs, Z_FULL_FLUSH), Z_OK);
  first.resize(first.size() - zs.avail_out);
  deflateEnd(&zs);
  std::string block = first.substr(2);
  std::string out = first.substr(0, 2);  // the zlib header
  uLong one = adler32(adler32(0, nullptr, 0), reinterpret_cast<const Bytef*>(zeros.data()),
                      static_cast<uInt>(zeros.size()));
  uLong sum = adler32(0, nullptr, 0);
  for (size_t i = 0; i < mib; ++i) {
    out += block;
    sum = adler32_combine(sum, one, static_cast<z_off_t>(zeros.size()));
  }
  out += FromHex("03 00");  // final block, fixed Huffman, end-of-block only
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(sum >> shift));
  return out;
}

TEST(Frame, ZlibBombConstructionIsAValidStream) {
  auto small = Inflate(ZlibBomb(3), size_t{4} << 20);
  ASSERT_TRUE(small) << small.error().ToString();
  EXPECT_TRUE(*small == std::string(size_t{3} << 20, '\0'));
}

long MaxRssKiB() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

TEST(Frame, ZlibBombIsRefusedQuicklyWithBoundedMemory) {
  std::string bomb = ZlibBomb(1024);  // 1 GiB of zeros
  ASSERT_LT(bomb.size(), size_t{2} << 20);
  std::string frame = Header(static_cast<uint32_t>(bomb.size()), 1) + bomb + "\n";
  long rss_before = MaxRssKiB();
  const double cpu_before = ThreadCpuSeconds();
  std::string err = ReadError(frame);  // default limits: 64 MiB decompressed
  const double cpu = ThreadCpuSeconds() - cpu_before;
  EXPECT_EQ(err, "frame: decompressed payload exceeds the limit of 67108864 bytes");
  // Inflating all of it would take seconds of CPU and 1 GiB; stopping at 64 MiB takes a fraction.
  // CPU time, not wall time: a loaded machine must not fail this.
  EXPECT_LT(cpu, 2.0);
  // The decompressed buffer doubles as it fills: the 32 MiB generation is still held while the
  // 64 MiB one is filled. Under ASan every freed generation stays in the allocator's quarantine
  // and an eighth more is shadow memory, so the same growth shows as about 150 MiB there.
#if defined(__SANITIZE_ADDRESS__)
  const long bound_mib = 170;
#else
  const long bound_mib = 100;
#endif
  EXPECT_LT(MaxRssKiB() - rss_before, bound_mib * 1024)
      << "peak memory grew by more than " << bound_mib << " MiB";
}

}  // namespace
}  // namespace core::channel
