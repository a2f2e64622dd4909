#include "libcore/channel/frame_writer.h"

#include <algorithm>
#include <climits>
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

void PutHeader(uint32_t length, uint8_t flag, char* p) {
  p[0] = static_cast<char>(length >> 24);
  p[1] = static_cast<char>(length >> 16);
  p[2] = static_cast<char>(length >> 8);
  p[3] = static_cast<char>(length);
  p[4] = static_cast<char>(flag);
}

bool SampleShrinks(std::string_view payload) {
  std::string sample;
  Deflate(payload.substr(0, kSampleSize), kCompressLevel, &sample);
  return static_cast<double>(sample.size()) <=
         kWorthRatio * static_cast<double>(std::min(payload.size(), kSampleSize));
}

Status CheckLength(size_t length) {
  if (length > UINT32_MAX) {
    return Fail(Error::Limit("frame: payload of " + std::to_string(length) +
                             " bytes does not fit a frame (at most 4294967295)"));
  }
  return {};
}

}  // namespace

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

Status AppendFrame(std::string_view payload, std::string* out, Compression compression) {
  if (auto ok = CheckLength(payload.size()); !ok) return ok;
  bool compress = false;
  if (compression != Compression::kNever && payload.size() > kCompressThreshold) {
    compress = compression == Compression::kPython || payload.size() <= kSampleWhole ||
               SampleShrinks(payload);
  }
  size_t start = out->size();
  if (compress) {
    out->resize(start + kHeaderSize);
    Deflate(payload, kCompressLevel, out);
    size_t length = out->size() - start - kHeaderSize;
    bool keep = compression == Compression::kPython || length < payload.size();
    if (keep && CheckLength(length)) {
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
