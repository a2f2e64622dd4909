// libFuzzer target: the frame parser, fed the input in two chunks split where the first byte
// says. Whatever comes out must frame again and parse back to the same payloads.

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "libcore/channel/frame_reader.h"
#include "libcore/channel/frame_writer.h"

namespace {

// Small limits keep each run fast; the limit paths are part of what is fuzzed.
constexpr core::channel::FrameLimits kLimits{size_t{1} << 20, size_t{4} << 20};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  size_t split = data[0] % (in.size() + 1);
  core::channel::FrameReader reader(kLimits);
  std::vector<std::string> payloads;
  bool failed = false;
  for (std::string_view chunk : {in.substr(0, split), in.substr(split)}) {
    reader.Append(chunk);
    for (;;) {
      auto p = reader.Next();
      if (!p) {
        failed = true;
        break;
      }
      if (!p->has_value()) break;
      payloads.push_back(std::move(**p));
    }
    if (failed) break;
  }
  if (!failed) (void)reader.CheckEof();
  // Round trip: our own frames, in every compression mode, must parse back identically.
  for (auto mode : {core::channel::Compression::kAdaptive, core::channel::Compression::kPython}) {
    std::string out;
    for (const auto& p : payloads) {
      if (!core::channel::AppendFrame(p, &out, mode)) std::abort();
    }
    core::channel::FrameReader again(core::channel::FrameLimits{size_t{8} << 20, size_t{8} << 20});
    again.Append(out);
    for (const auto& want : payloads) {
      auto got = again.Next();
      if (!got || !got->has_value() || **got != want) std::abort();
    }
    auto end = again.Next();
    if (!end || end->has_value() || again.buffered() != 0) std::abort();
  }
  return 0;
}
