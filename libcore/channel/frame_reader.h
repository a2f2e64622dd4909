#pragma once

// Incremental frame parser: feed it bytes as they arrive, split anywhere, and take complete
// payloads out. No I/O of its own, so the transport decides how to read.

#include <cstddef>
#include <optional>
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

  // The next complete payload, decompressed; std::nullopt when more bytes are needed. Empty
  // frames come out as empty payloads (callers ignore them, as Python does). After an error the
  // stream cannot be resynchronised: every later call returns the same error.
  Result<std::optional<std::string>> Next();

  // For end of stream: an error when a frame was started but not finished.
  Status CheckEof() const;

  // Bytes received but not yet returned as payloads.
  size_t buffered() const { return buffer_.size() - pos_; }

 private:
  FrameLimits limits_;
  std::string buffer_;
  size_t pos_ = 0;  // start of the unparsed bytes in buffer_
  std::optional<Error> failed_;
};

// Inflates one zlib (RFC 1950) stream, refusing output past `max_output` bytes without
// producing more than about that much. Bytes after the end of the stream are ignored, as
// Python's zlib.decompress does.
Result<std::string> Inflate(std::string_view compressed, size_t max_output);

}  // namespace core::channel
