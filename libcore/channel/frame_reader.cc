#include "libcore/channel/frame_reader.h"

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <utility>

#include <zlib.h>

#include "libcore/channel/adler32.h"

namespace core::channel {
namespace {

// The smallest output buffer an inflate starts with.
constexpr size_t kInflateChunk = size_t{64} << 10;

std::string ZlibMessage(const z_stream& zs, int ret) {
  std::string text = zs.msg != nullptr ? zs.msg : "zlib error";
  return text + " (" + std::to_string(ret) + ")";
}

// Grows (or first allocates) a malloc'd buffer to `size` bytes, keeping its first `keep` bytes.
// realloc: a large block is moved by remapping its pages, not by copying them.
void Regrow(std::unique_ptr<char, FreeDeleter>* buffer, size_t keep, size_t size) {
  if (keep == 0) buffer->reset();  // nothing to carry over: no copy at all
  void* p = std::realloc(buffer->get(), size);
  if (p == nullptr) throw std::bad_alloc();
  (void)buffer->release();
  buffer->reset(static_cast<char*>(p));
}

}  // namespace

void FreeDeleter::operator()(char* p) const { std::free(p); }

struct Inflater::Buffer {
  std::unique_ptr<char, FreeDeleter> bytes;
  size_t capacity = 0;
};

struct Inflater::State {
  z_stream zs{};
  bool started = false;  // inflateInit done (then inflateReset for each stream)
  // Shared with the values decoded from the last output that point into it (Output()): while
  // one lives, the next stream goes to a new buffer.
  std::shared_ptr<Inflater::Buffer> out;
  ~State() {
    if (started) inflateEnd(&zs);
  }
};

Inflater::Inflater() : state_(std::make_unique<State>()) {}
Inflater::~Inflater() = default;

void Inflater::Release() {
  state_->out.reset();
  capacity_ = 0;
}

std::shared_ptr<const void> Inflater::Output() const { return state_->out; }

Result<std::string_view> Inflater::Run(std::string_view compressed, size_t max_output) {
  State& s = *state_;
  z_stream& zs = s.zs;
  // The zlib wrapper (RFC 1950: two header bytes before the deflate data, the Adler-32 of the
  // output after it) is read here and the deflate data inflated raw, so that the checksum is
  // Adler32()'s rather than zlib's byte-at-a-time one. The errors are the ones zlib gives.
  if (!s.started) {
    if (int ret = inflateInit2(&zs, -MAX_WBITS); ret != Z_OK) {
      return Fail(Error::Limit("frame: cannot start inflating: " + ZlibMessage(zs, ret)));
    }
    s.started = true;
  } else if (int ret = inflateReset(&zs); ret != Z_OK) {
    return Fail(Error::Limit("frame: cannot start inflating: " + ZlibMessage(zs, ret)));
  }
  auto corrupt = [](const char* what) {
    return Fail(Error::Protocol(std::string("frame: corrupt zlib payload: ") + what + " (" +
                                std::to_string(Z_DATA_ERROR) + ")"));
  };
  auto truncated = [&compressed] {
    return Fail(Error::Protocol("frame: truncated zlib payload (" +
                                std::to_string(compressed.size()) + " bytes, no end of stream)"));
  };
  constexpr size_t kZlibHeader = 2, kDictId = 4, kZlibTrailer = 4;
  if (compressed.size() < kZlibHeader) return truncated();
  const auto cmf = static_cast<unsigned char>(compressed[0]);
  const auto flg = static_cast<unsigned char>(compressed[1]);
  if (((cmf << 8) | flg) % 31 != 0) return corrupt("incorrect header check");
  if ((cmf & 0x0f) != Z_DEFLATED) return corrupt("unknown compression method");
  if ((cmf >> 4) + 8 > MAX_WBITS) return corrupt("invalid window size");
  if ((flg & 0x20) != 0) {
    if (compressed.size() < kZlibHeader + kDictId) return truncated();
    return Fail(Error::Protocol("frame: corrupt zlib payload: needs a preset dictionary"));
  }
  const std::string_view deflated = compressed.substr(kZlibHeader);

  // The buffer holds at most one byte past the limit, which is how a bomb is detected without
  // inflating further. A first guess from the input size (twice it: random data, which the
  // clients compress too, comes out as large as it went in), then doubling.
  const size_t cap = max_output == SIZE_MAX ? max_output : max_output + 1;
  const size_t guess = std::min(std::max(kInflateChunk, compressed.size() * 2), cap);
  if (s.out != nullptr && s.out.use_count() > 1) s.out.reset();  // the last output is in use
  if (s.out == nullptr) {
    s.out = std::make_shared<Inflater::Buffer>();
    capacity_ = 0;
  }
  Inflater::Buffer& o = *s.out;
  if (o.capacity < guess) {
    Regrow(&o.bytes, 0, guess);
    o.capacity = capacity_ = guess;
  }
  size_t filled = 0;
  auto too_large = [max_output] {
    return Fail(Error::Limit("frame: decompressed payload exceeds the limit of " +
                             std::to_string(max_output) + " bytes"));
  };

  // Stored blocks first (RFC 1951 §3.2.4: BTYPE 00, the bytes as they are after a byte-aligned
  // LEN and its complement NLEN). The clients compress incompressible data too (random bytes,
  // packed files), which zlib level 1 sends as stored blocks of about 16 KiB: they are copied here
  // with their checksum in the same pass (CopyAdler32()), without zlib's call per block and the
  // separate checksum pass over the output. At the first block of another type zlib inflates the
  // rest, given the output so far as its window.
  uint32_t adler = kAdler32Initial;  // of the output the stored blocks gave
  size_t at = 0;                     // bytes of `deflated` the stored blocks took
  bool final_block = false;
  while (!final_block) {
    if (at == deflated.size()) return truncated();
    const auto h = static_cast<unsigned char>(deflated[at]);
    if (((h >> 1) & 3) != 0) break;  // BFINAL is bit 0, BTYPE bits 1-2; the rest pads to a byte
    constexpr size_t kStoredHeader = 5;
    if (deflated.size() - at < kStoredHeader) return truncated();
    const auto* b = reinterpret_cast<const unsigned char*>(deflated.data() + at + 1);
    const uint32_t len = b[0] | (uint32_t{b[1]} << 8), nlen = b[2] | (uint32_t{b[3]} << 8);
    if ((len ^ nlen) != 0xffff) {
      return Fail(Error::Protocol("frame: corrupt zlib payload: invalid stored block lengths (" +
                                  std::to_string(Z_DATA_ERROR) + ")"));
    }
    at += kStoredHeader;
    const size_t take = std::min<size_t>(len, deflated.size() - at);
    if (take > max_output - filled) return too_large();
    if (o.capacity - filled < take) {  // not with the first guess (twice the input), but safe
      const size_t bigger = std::min(std::max(filled + take, o.capacity * 2), cap);
      Regrow(&o.bytes, filled, bigger);
      o.capacity = capacity_ = bigger;
    }
    adler = CopyAdler32(adler, o.bytes.get() + filled, deflated.substr(at, take));
    filled += take;
    at += take;
    if (take < len) return truncated();
    final_block = (h & 1) != 0;
  }
  const size_t stored = filled;  // output of the stored blocks, already in `adler`

  size_t after = at;  // where the deflate data ends
  if (!final_block) {
    if (filled > 0) {
      // Later blocks may copy from up to 32 KiB back, into what the stored blocks gave.
      const size_t window = std::min<size_t>(filled, size_t{1} << MAX_WBITS);
      if (int ret = inflateSetDictionary(
              &zs, reinterpret_cast<const Bytef*>(o.bytes.get() + filled - window),
              static_cast<uInt>(window));
          ret != Z_OK) {
        return Fail(Error::Limit("frame: cannot continue inflating: " + ZlibMessage(zs, ret)));
      }
    }
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(deflated.data() + at));
    zs.avail_in = 0;
    size_t in_left = deflated.size() - at;  // not yet handed to zlib
    for (;;) {
      if (zs.avail_in == 0 && in_left > 0) {
        auto n = static_cast<uInt>(std::min<size_t>(in_left, UINT_MAX));
        zs.avail_in = n;
        in_left -= n;
      }
      const size_t limit = std::min(o.capacity, cap);  // a kept buffer may be larger than cap
      if (filled == limit) {
        const size_t bigger = std::min(std::max(o.capacity, kInflateChunk / 2) * 2, cap);
        Regrow(&o.bytes, filled, bigger);
        o.capacity = capacity_ = bigger;
        continue;
      }
      const size_t room = std::min<size_t>(limit - filled, UINT_MAX);
      zs.next_out = reinterpret_cast<Bytef*>(o.bytes.get() + filled);
      zs.avail_out = static_cast<uInt>(room);
      int ret = inflate(&zs, Z_NO_FLUSH);
      filled += room - zs.avail_out;
      if (filled > max_output) return too_large();
      if (ret == Z_STREAM_END) break;
      if (ret != Z_OK && ret != Z_BUF_ERROR) {
        return Fail(Error::Protocol("frame: corrupt zlib payload: " + ZlibMessage(zs, ret)));
      }
      // All input consumed and room left over: the stream stops before its end.
      if (zs.avail_in == 0 && in_left == 0 && zs.avail_out != 0) return truncated();
    }
    after = deflated.size() - in_left - zs.avail_in;
  }
  // The Adler-32 follows the deflate data; bytes after it are ignored, as zlib.decompress does.
  if (deflated.size() - after < kZlibTrailer) return truncated();
  const auto* t = reinterpret_cast<const unsigned char*>(deflated.data() + after);
  const uint32_t want = HeaderLength(t);  // the same big-endian uint32 as a frame length
  const std::string_view out(o.bytes.get(), filled);
  if (Adler32(adler, out.substr(stored)) != want) return corrupt("incorrect data check");
  return out;
}

Result<std::string> Inflate(std::string_view compressed, size_t max_output) {
  Inflater inflater;
  auto out = inflater.Run(compressed, max_output);
  if (!out) return Fail(out.error());
  return std::string(*out);
}

FrameReader::FrameReader(FrameLimits limits) : limits_(limits) {}
FrameReader::~FrameReader() = default;

void FrameReader::Reserve(size_t n) {
  if (pos_ > 0) {  // drop what was consumed
    std::memmove(buffer_.get(), buffer_.get() + pos_, end_ - pos_);
    end_ -= pos_;
    pos_ = 0;
  }
  if (capacity_ - end_ >= n) return;
  size_t want = std::max(end_ + n, capacity_ * 2);
  Regrow(&buffer_, end_, want);  // not zero-filled
  capacity_ = want;
}

void FrameReader::Append(std::string_view data) {
  if (data.empty()) return;
  Reserve(data.size());
  std::memcpy(buffer_.get() + end_, data.data(), data.size());
  end_ += data.size();
}

std::span<char> FrameReader::WriteSpace(size_t min_size) {
  // The views NextView() gave are dead now: large buffers go back.
  if (pos_ == end_ && capacity_ > kKeepBuffer) {
    buffer_.reset();
    capacity_ = pos_ = end_ = 0;
  }
  inflater_.Trim(kKeepBuffer);
  if (capacity_ - end_ >= min_size) return std::span<char>(buffer_.get() + end_, capacity_ - end_);
  if (pos_ > 0) {  // drop what was consumed first
    std::memmove(buffer_.get(), buffer_.get() + pos_, end_ - pos_);
    end_ -= pos_;
    pos_ = 0;
    if (capacity_ - end_ >= min_size)
      return std::span<char>(buffer_.get() + end_, capacity_ - end_);
  }
  size_t more = min_size;
  if (end_ >= kHeaderSize) {
    // A frame has started: room for more of it, as much as it has received so far, so the
    // buffer doubles as its bytes come and holds at most about twice what was received.
    const uint32_t length = HeaderLength(buffer_.get());
    if (length <= limits_.max_frame_size && FrameSize(length) > end_) {
      more = std::max<size_t>(more, std::min<uint64_t>(FrameSize(length) - end_, end_));
    }
  }
  Regrow(&buffer_, end_, end_ + more);  // not zero-filled
  capacity_ = end_ + more;
  return std::span<char>(buffer_.get() + end_, capacity_ - end_);
}

void FrameReader::Commit(size_t n) { end_ += std::min(n, capacity_ - end_); }

Result<std::optional<std::string>> FrameReader::Next() {
  auto view = NextView();
  if (!view) return Fail(view.error());
  if (!*view) return std::nullopt;
  return std::optional<std::string>(std::in_place, **view);
}

Result<std::optional<std::string_view>> FrameReader::NextView() {
  if (failed_) return Fail(*failed_);
  if (buffered() < kHeaderSize) return std::nullopt;
  const char* header = buffer_.get() + pos_;
  uint32_t length = HeaderLength(header);
  auto flag = static_cast<uint8_t>(header[4]);
  if (length > limits_.max_frame_size) {
    failed_ =
        Error::Limit("frame: payload length " + std::to_string(length) + " exceeds the limit of " +
                     std::to_string(limits_.max_frame_size) + " bytes");
    return Fail(*failed_);
  }
  const uint64_t total = FrameSize(length);
  if (buffered() < total) return std::nullopt;
  std::string_view payload(buffer_.get() + pos_ + kHeaderSize, length);
  pos_ += total;  // the trailer byte is dropped unchecked
  if (pos_ == end_) {
    // Everything consumed: the next bytes go to the start. The payload stays readable until
    // then, because nothing is written before the next WriteSpace()/Append().
    pos_ = 0;
    end_ = 0;
  }
  inflated_ = flag != kFlagRaw;
  if (!inflated_) return std::optional<std::string_view>(payload);
  auto inflated = inflater_.Run(payload, limits_.max_decompressed_size);
  if (!inflated) {
    failed_ = inflated.error();
    return Fail(*failed_);
  }
  return std::optional<std::string_view>(*inflated);
}

Status FrameReader::CheckEof() const {
  if (failed_) return Fail(*failed_);
  size_t have = buffered();
  if (have == 0) return {};
  if (have < kHeaderSize) {
    return Fail(Error::Protocol("frame: stream ended inside a frame header (" +
                                std::to_string(have) + " of 5 bytes)"));
  }
  uint32_t length = HeaderLength(buffer_.get() + pos_);
  return Fail(Error::Protocol("frame: stream ended inside a frame (" + std::to_string(have) +
                              " of " + std::to_string(FrameSize(length)) + " bytes)"));
}

}  // namespace core::channel
