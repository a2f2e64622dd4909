// libFuzzer target: message decode in both generations. Whatever decodes must encode and
// decode back to the same message, and detection must agree with the first byte.

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "libcore/protocol/message.h"

namespace {

using core::protocol::Generation;

void Check(std::string_view in, Generation gen) {
  auto m = core::protocol::DecodeMessage(in, gen);
  if (!m) return;
  std::string enc = core::protocol::EncodeMessage(*m, gen);
  auto detected = core::protocol::DetectGeneration(enc);
  if (!detected || *detected != gen) std::abort();
  auto back = core::protocol::DecodeMessage(enc, gen);
  if (!back || back->type != m->type || back->seq != m->seq || !(back->args == *m->args.tree())) {
    std::abort();
  }
  if (m->type == core::protocol::MsgType::kRequest) {
    (void)core::protocol::ParseRequestArgs(*m->args.tree());  // decoded: a tree
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  (void)core::protocol::DetectGeneration(in);
  Check(in, Generation::kV5);
  Check(in, Generation::kV6);
  return 0;
}
