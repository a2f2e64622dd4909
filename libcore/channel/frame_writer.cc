#include "libcore/channel/frame_writer.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <memory>
#include <new>

#include <zlib.h>

namespace core::channel {
namespace {

// The adaptive policy compresses this much of a large payload first and compresses the rest
// only when the sample shrank to at most kWorthRatio of its size. Payloads up to
// kSampleWhole bytes are tried whole.
constexpr size_t kSampleSize = size_t{8} << 10;
constexpr size_t kSampleWhole = size_t{16} << 10;
constexpr double kWorthRatio = 0.9;

struct DeflateEnd {
  void operator()(z_stream* zs) const { deflateEnd(zs); }
};

// Order-0 entropy of `data` in bits per byte (0..8).
double Entropy(std::string_view data) {
  uint32_t counts[256] = {};
  for (char c : data) ++counts[static_cast<uint8_t>(c)];
  double bits = 0;
  const auto n = static_cast<double>(data.size());
  for (uint32_t c : counts) {
    if (c != 0) bits -= static_cast<double>(c) * std::log2(static_cast<double>(c) / n);
  }
  return bits / n;
}

// Above this many bits per byte a sample is taken for noise (random, encrypted or already
// compressed data) without asking zlib, which costs about 80 instructions a byte on such input.
// Data that deflate could still shrink at this entropy (long repeats of random blocks) is rare,
// and is merely sent raw.
constexpr double kNoiseEntropy = 7.9;

bool SampleShrinks(std::string_view payload) {
  const std::string_view sample = payload.substr(0, kSampleSize);
  if (Entropy(sample) >= kNoiseEntropy) return false;
  std::string compressed;
  Deflate(sample, kCompressLevel, &compressed);
  return static_cast<double>(compressed.size()) <= kWorthRatio * static_cast<double>(sample.size());
}

}  // namespace

Error PayloadTooLarge(size_t length) {
  return Error::Limit("frame: payload of " + std::to_string(length) +
                      " bytes does not fit a frame (at most 4294967295)");
}

void Deflate(std::string_view data, int level, std::string* out) {
  z_stream zs{};
  // deflateInit fails only for a level outside -1..9 (a caller bug) or when out of memory: the
  // same failure as a std::string that cannot grow.
  if (deflateInit(&zs, level) != Z_OK) throw std::bad_alloc();
  std::unique_ptr<z_stream, DeflateEnd> guard(&zs);
  size_t start = out->size();
  size_t used = 0;
  out->resize(start + deflateBound(&zs, static_cast<uLong>(data.size())));
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  size_t in_left = data.size();
  for (;;) {
    if (zs.avail_in == 0 && in_left > 0) {
      auto n = static_cast<uInt>(std::min<size_t>(in_left, UINT_MAX));
      zs.avail_in = n;
      in_left -= n;
    }
    if (start + used == out->size()) out->resize(out->size() + 4096);  // bound was too low
    size_t room = std::min<size_t>(out->size() - start - used, UINT_MAX);
    zs.next_out = reinterpret_cast<Bytef*>(out->data() + start + used);
    zs.avail_out = static_cast<uInt>(room);
    int ret = deflate(&zs, in_left == 0 ? Z_FINISH : Z_NO_FLUSH);
    used += room - zs.avail_out;
    if (ret == Z_STREAM_END) break;
  }
  out->resize(start + used);
}

bool WouldCompress(std::string_view payload, Compression compression) {
  if (compression == Compression::kNever || payload.size() <= kCompressThreshold) return false;
  return compression == Compression::kPython || payload.size() <= kSampleWhole ||
         SampleShrinks(payload);
}

Status AppendFrame(std::string_view payload, std::string* out, Compression compression) {
  if (auto ok = CheckPayloadSize(payload.size()); !ok) return ok;
  const bool compress = WouldCompress(payload, compression);
  size_t start = out->size();
  if (compress) {
    out->resize(start + kHeaderSize);
    Deflate(payload, kCompressLevel, out);
    size_t length = out->size() - start - kHeaderSize;
    bool keep = compression == Compression::kPython || length < payload.size();
    if (keep && CheckPayloadSize(length)) {
      PutHeader(static_cast<uint32_t>(length), kFlagZlib, out->data() + start);
      out->push_back(kTrailer);
      return {};
    }
    out->resize(start);  // it did not pay: send raw
  }
  out->resize(start + kHeaderSize);
  PutHeader(static_cast<uint32_t>(payload.size()), kFlagRaw, out->data() + start);
  out->append(payload);
  out->push_back(kTrailer);
  return {};
}

}  // namespace core::channel

namespace core::channel {

Result<FrameParts> SealCompressedFrame(std::string_view payload, Compression compression,
                                       std::string* scratch) {
  scratch->clear();
  if (auto st = AppendFrame(payload, scratch, compression); !st) return Fail(st.error());
  FrameParts f;
  f.parts[0] = *scratch;
  f.count = 1;
  return f;
}

}  // namespace core::channel
