#include "libcore/channel/frame_reader.h"

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include <zlib.h>

namespace core::channel {
namespace {

// Inflate output grows by at most this much per step, so a bomb is caught within one step of
// the limit.
constexpr size_t kInflateChunk = size_t{64} << 10;

std::string ZlibMessage(const z_stream& zs, int ret) {
  std::string text = zs.msg != nullptr ? zs.msg : "zlib error";
  return text + " (" + std::to_string(ret) + ")";
}

struct InflateEnd {
  void operator()(z_stream* zs) const { inflateEnd(zs); }
};

}  // namespace

Result<std::string> Inflate(std::string_view compressed, size_t max_output) {
  z_stream zs{};
  if (int ret = inflateInit(&zs); ret != Z_OK) {
    return Fail(Error::Limit("frame: cannot start inflating: " + ZlibMessage(zs, ret)));
  }
  std::unique_ptr<z_stream, InflateEnd> guard(&zs);
  // Output goes into pieces that are never reallocated, so the peak is the output itself (plus
  // one copy when joining), never a doubled buffer. Together the pieces hold at most one byte
  // past the limit, which is how a bomb is detected without inflating further.
  const size_t cap = max_output == SIZE_MAX ? max_output : max_output + 1;
  std::vector<std::string> pieces;
  size_t total = 0;   // bytes in full pieces plus `filled`
  size_t filled = 0;  // bytes used in pieces.back()
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  size_t in_left = compressed.size();  // not yet handed to zlib
  for (;;) {
    if (zs.avail_in == 0 && in_left > 0) {
      auto n = static_cast<uInt>(std::min<size_t>(in_left, UINT_MAX));
      zs.avail_in = n;
      in_left -= n;
    }
    if (pieces.empty() || filled == pieces.back().size()) {
      // The first piece guesses from the input size; later ones double the total so far.
      size_t want = pieces.empty() ? compressed.size() * 4 : total;
      pieces.emplace_back(std::min(std::max(want, kInflateChunk), cap - total), '\0');
      filled = 0;
    }
    std::string& piece = pieces.back();
    size_t room = std::min<size_t>(piece.size() - filled, UINT_MAX);
    zs.next_out = reinterpret_cast<Bytef*>(piece.data() + filled);
    zs.avail_out = static_cast<uInt>(room);
    int ret = inflate(&zs, Z_NO_FLUSH);
    filled += room - zs.avail_out;
    total += room - zs.avail_out;
    if (total > max_output) {
      return Fail(Error::Limit("frame: decompressed payload exceeds the limit of " +
                               std::to_string(max_output) + " bytes"));
    }
    if (ret == Z_STREAM_END) break;  // trailing bytes are ignored, as zlib.decompress does
    if (ret == Z_NEED_DICT) {
      return Fail(Error::Protocol("frame: corrupt zlib payload: needs a preset dictionary"));
    }
    if (ret != Z_OK && ret != Z_BUF_ERROR) {
      return Fail(Error::Protocol("frame: corrupt zlib payload: " + ZlibMessage(zs, ret)));
    }
    // All input consumed and room left over: the stream stops before its end.
    if (zs.avail_in == 0 && in_left == 0 && zs.avail_out != 0) {
      return Fail(Error::Protocol("frame: truncated zlib payload (" +
                                  std::to_string(compressed.size()) + " bytes, no end of stream)"));
    }
  }
  pieces.back().resize(filled);
  if (pieces.size() == 1) return std::move(pieces.front());
  std::string out;
  out.reserve(total);
  for (const auto& p : pieces) out += p;
  return out;
}

void FrameReader::Reserve(size_t n) {
  if (pos_ > 0) {  // drop what was consumed
    std::memmove(buffer_.get(), buffer_.get() + pos_, end_ - pos_);
    end_ -= pos_;
    pos_ = 0;
  }
  if (capacity_ - end_ >= n) return;
  size_t want = std::max(end_ + n, capacity_ * 2);
  std::unique_ptr<char[]> bigger(new char[want]);  // not zero-filled
  if (end_ > 0) std::memcpy(bigger.get(), buffer_.get(), end_);
  buffer_ = std::move(bigger);
  capacity_ = want;
}

void FrameReader::Append(std::string_view data) {
  if (data.empty()) return;
  Reserve(data.size());
  std::memcpy(buffer_.get() + end_, data.data(), data.size());
  end_ += data.size();
}

std::span<char> FrameReader::WriteSpace(size_t min_size) {
  size_t want = min_size;
  if (buffered() >= kHeaderSize) {
    // A frame has started: room for all of it, so that it arrives in as few reads as possible.
    size_t length = HeaderLength(buffer_.get() + pos_);
    if (length <= limits_.max_frame_size) {
      size_t total = kHeaderSize + length + kTrailerSize;
      if (total > buffered()) want = std::max(want, total - buffered());
    }
  }
  if (capacity_ - end_ < want || (pos_ > 0 && pos_ == end_)) Reserve(want);
  return std::span<char>(buffer_.get() + end_, capacity_ - end_);
}

void FrameReader::Commit(size_t n) { end_ += std::min(n, capacity_ - end_); }

Result<std::optional<std::string>> FrameReader::Next() {
  auto view = NextView();
  if (!view) return Fail(view.error());
  if (!*view) return std::nullopt;
  if (view->value().data() == inflated_.data()) return std::move(inflated_);
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
  size_t total = kHeaderSize + size_t{length} + kTrailerSize;
  if (buffered() < total) return std::nullopt;
  std::string_view payload(buffer_.get() + pos_ + kHeaderSize, length);
  pos_ += total;  // the trailer byte is dropped unchecked
  if (pos_ == end_) {
    // Everything consumed: the next bytes go to the start. The payload stays readable until
    // then, because nothing is written before the next WriteSpace()/Append().
    pos_ = 0;
    end_ = 0;
  }
  if (flag == kFlagRaw) return std::optional<std::string_view>(payload);
  auto inflated = Inflate(payload, limits_.max_decompressed_size);
  if (!inflated) {
    failed_ = inflated.error();
    return Fail(*failed_);
  }
  inflated_ = std::move(*inflated);
  return std::optional<std::string_view>(inflated_);
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
                              " of " + std::to_string(kHeaderSize + size_t{length} + kTrailerSize) +
                              " bytes)"));
}

}  // namespace core::channel
