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

struct FreeDeleter {
  void operator()(char* p) const;
};

// Inflates zlib (RFC 1950) streams into an output buffer it keeps from one call to the next, with
// one zlib state it resets: a peer's large compressed frames (the 5.x and 6.x clients compress
// every frame over 3000 bytes, even random data that does not shrink) then cost no fresh
// allocation, page faults and zlib set-up each.
class Inflater {
 public:
  Inflater();
  ~Inflater();
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  // The decompressed bytes of the zlib stream `compressed` starts with, refusing output past
  // `max_output` bytes without producing more than about that much (the output buffer grows as
  // output comes, never beyond max_output + 1). Bytes after the end of the stream are ignored, as
  // Python's zlib.decompress does. The view is valid until the next call of any method, or as
  // long as a reference Output() gave for it lives.
  Result<std::string_view> Run(std::string_view compressed, size_t max_output);

  // Shared ownership of the buffer the last Run() wrote to (null before any). While a copy of it
  // lives, the next Run() writes to a new buffer and this one stays as it is: values decoded
  // from the output may point into it instead of copying it (brine::Load()).
  std::shared_ptr<const void> Output() const;

  // Gives the output buffer back when it is larger than `keep` bytes.
  void Trim(size_t keep) {
    if (capacity_ > keep) Release();
  }

 private:
  void Release();

  struct Buffer;
  struct State;
  std::unique_ptr<State> state_;
  size_t capacity_ = 0;  // of the output buffer
};

class FrameReader {
 public:
  explicit FrameReader(FrameLimits limits = {});
  ~FrameReader();
  FrameReader(const FrameReader&) = delete;
  FrameReader& operator=(const FrameReader&) = delete;

  // Buffers `data` (copied; the view need not outlive the call). Any split is fine: half a
  // header, several frames at once.
  void Append(std::string_view data);

  // For reading straight into the buffer, without a copy: free space at the end of the buffer,
  // at least `min_size` bytes, and more when a started frame needs more, up to as many bytes as
  // that frame has received so far: the buffer doubles as a large frame arrives (so it is read in
  // few calls and copied an amortised once), and memory follows the bytes received, not the
  // length a header announces (a header alone reserves nothing). A buffer over kKeepBuffer bytes
  // is given back once nothing is buffered. Write into it, then Commit() the bytes written. The
  // span is valid until the next call of any other method.
  std::span<char> WriteSpace(size_t min_size);
  void Commit(size_t n);

  // The next complete payload, decompressed; std::nullopt when more bytes are needed. Empty
  // frames come out as empty payloads (callers ignore them, as Python does). After an error the
  // stream cannot be resynchronised: every later call returns the same error.
  Result<std::optional<std::string>> Next();
  // The same without copying a raw payload: the view points into the reader's buffer and is
  // valid until the next call of any method.
  Result<std::optional<std::string_view>> NextView();
  // Shared ownership of the buffer holding the payload NextView() last returned, when that one was
  // inflated (Inflater::Output()); null for a raw payload, which lives in the receive buffer.
  std::shared_ptr<const void> PayloadOwner() const {
    return inflated_ ? inflater_.Output() : nullptr;
  }

  // For end of stream: an error when a frame was started but not finished.
  Status CheckEof() const;

  // Bytes the stream must still bring before the next payload can come out: the rest of the
  // frame that has started (or of its header); 0 when a complete frame is buffered.
  uint64_t needed() const {
    const size_t have = buffered();
    if (have < kHeaderSize) return kHeaderSize - have;
    const uint64_t total = FrameSize(HeaderLength(buffer_.get() + pos_));
    return total > have ? total - have : 0;
  }

  // Bytes received but not yet returned as payloads.
  size_t buffered() const { return end_ - pos_; }
  // Bytes of buffer held for them (tests).
  size_t capacity() const { return capacity_; }

  // Buffers (received and inflated bytes) up to this size are kept for the next frames; larger
  // ones are given back once their frame is consumed.
  static constexpr size_t kKeepBuffer = size_t{4} << 20;

 private:
  // Makes room for `n` more bytes after end_ (dropping consumed bytes first); never zero-fills.
  void Reserve(size_t n);

  FrameLimits limits_;
  std::unique_ptr<char, FreeDeleter> buffer_;  // malloc'd: grown with realloc
  size_t capacity_ = 0;
  size_t pos_ = 0;         // start of the unparsed bytes in buffer_
  size_t end_ = 0;         // end of the received bytes in buffer_
  Inflater inflater_;      // holds the last decompressed payload, for NextView()
  bool inflated_ = false;  // the last payload NextView() gave came from inflater_
  std::optional<Error> failed_;
};

// Inflates one zlib (RFC 1950) stream, as Inflater::Run, into a string of its own.
Result<std::string> Inflate(std::string_view compressed, size_t max_output);

}  // namespace core::channel
