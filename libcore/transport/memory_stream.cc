#include "libcore/transport/memory_stream.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>

namespace core::transport {

struct MemoryStream::Pipe {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<char> bytes;  // guarded by mu
  bool closed = false;     // guarded by mu: no more bytes will come

  void Close() {
    {
      std::lock_guard<std::mutex> lock(mu);
      closed = true;
    }
    cv.notify_all();
  }
};

std::pair<std::unique_ptr<MemoryStream>, std::unique_ptr<MemoryStream>> MemoryStream::Pair() {
  auto a_to_b = std::make_shared<Pipe>();
  auto b_to_a = std::make_shared<Pipe>();
  return {std::make_unique<MemoryStream>(b_to_a, a_to_b),
          std::make_unique<MemoryStream>(a_to_b, b_to_a)};
}

MemoryStream::MemoryStream(std::shared_ptr<Pipe> in, std::shared_ptr<Pipe> out)
    : in_(std::move(in)), out_(std::move(out)) {}

MemoryStream::~MemoryStream() { Shutdown(); }

Result<size_t> MemoryStream::Read(std::span<char> buf) {
  std::unique_lock<std::mutex> lock(in_->mu);
  in_->cv.wait(lock, [&] { return !in_->bytes.empty() || in_->closed; });
  const size_t n = std::min(buf.size(), in_->bytes.size());
  std::copy_n(in_->bytes.begin(), n, buf.begin());
  in_->bytes.erase(in_->bytes.begin(), in_->bytes.begin() + static_cast<std::ptrdiff_t>(n));
  return n;
}

Result<bool> MemoryStream::WaitReadable(int timeout_ms) {
  std::unique_lock<std::mutex> lock(in_->mu);
  auto ready = [&] { return !in_->bytes.empty() || in_->closed; };
  if (timeout_ms < 0) {
    in_->cv.wait(lock, ready);
    return true;
  }
  return in_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), ready);
}

Status MemoryStream::WriteAll(std::span<const std::string_view> parts) {
  {
    std::lock_guard<std::mutex> lock(out_->mu);
    if (out_->closed) return Fail(Error::Io("write to memory: stream closed"));
    for (std::string_view p : parts) out_->bytes.insert(out_->bytes.end(), p.begin(), p.end());
  }
  out_->cv.notify_all();
  return {};
}

void MemoryStream::Shutdown() {
  in_->Close();
  out_->Close();
}

void MemoryStream::CloseWrite() { out_->Close(); }

}  // namespace core::transport
