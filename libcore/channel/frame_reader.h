#pragma once

// Incremental frame parser: feed it bytes as they arrive, split anywhere, and take complete
// payloads out. No I/O of its own, so the transport decides how to read.

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "libcore/base/result.h"
#include "libcore/channel/frame_format.h"

namespace core::channel {

class FrameReader {
 public:
  explicit FrameReader(FrameLimits limits = {}) : limits_(limits) {}
  FrameReader(const FrameReader&) = delete;
  FrameReader& operator=(const FrameReader&) = delete;

  // Buffers `data` (copied; the view need not outlive the call). Any split is fine: half a
  // header, several frames at once.
  void Append(std::string_view data);

  // For reading straight into the buffer, without a copy: free space at the end of the buffer,
  // at least `min_size` bytes, and more when a started frame needs more (so a large frame is
  // read in few calls). Write into it, then Commit() the bytes written. The span is valid until
  // the next call of any other method.
  std::span<char> WriteSpace(size_t min_size);
  void Commit(size_t n);

  // The next complete payload, decompressed; std::nullopt when more bytes are needed. Empty
  // frames come out as empty payloads (callers ignore them, as Python does). After an error the
  // stream cannot be resynchronised: every later call returns the same error.
  Result<std::optional<std::string>> Next();
  // The same without copying a raw payload: the view points into the reader's buffer and is
  // valid until the next call of any method.
  Result<std::optional<std::string_view>> NextView();

  // For end of stream: an error when a frame was started but not finished.
  Status CheckEof() const;

  // Bytes received but not yet returned as payloads.
  size_t buffered() const { return end_ - pos_; }

 private:
  // Makes room for `n` more bytes after end_ (dropping consumed bytes first); never zero-fills.
  void Reserve(size_t n);

  FrameLimits limits_;
  std::unique_ptr<char[]> buffer_;
  size_t capacity_ = 0;
  size_t pos_ = 0;        // start of the unparsed bytes in buffer_
  size_t end_ = 0;        // end of the received bytes in buffer_
  std::string inflated_;  // the last decompressed payload, for NextView()
  std::optional<Error> failed_;
};

// Inflates one zlib (RFC 1950) stream, refusing output past `max_output` bytes without
// producing more than about that much. Bytes after the end of the stream are ignored, as
// Python's zlib.decompress does.
Result<std::string> Inflate(std::string_view compressed, size_t max_output);

}  // namespace core::channel
