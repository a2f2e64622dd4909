// libFuzzer target: brine decode. Whatever decodes must re-encode and decode to the same value.

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "libcore/brine/brine.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto v = core::brine::Load(in);
  if (!v) return 0;
  std::string enc = core::brine::Dump(*v);
  auto again = core::brine::Load(enc);
  if (!again || !(*again == *v) || core::brine::Dump(*again) != enc) std::abort();
  return 0;
}
