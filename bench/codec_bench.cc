// Codec throughput: brine encode/decode and frame write/read, on the same values that
// codec_python.py measures with rpyc (run both with bench/codec.sh).
//
// Values (identical in codec_python.py):
//   bytes_1mib   b'\x..' * 1 MiB from the xorshift64 stream below (incompressible)
//   tuple_10k    10,000 items: i for even i, 'item<i>' for odd i
//   text_1mib    (b'rpyc brine frame payload ' * n)[:1 MiB] (compressible)

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "libcore/brine/brine.h"
#include "libcore/channel/frame_reader.h"
#include "libcore/channel/frame_writer.h"

namespace {

namespace brine = core::brine;
namespace channel = core::channel;

constexpr size_t kMiB = size_t{1} << 20;

std::string NoiseMiB() {
  std::string s;
  s.reserve(kMiB);
  uint64_t x = 0x9E3779B97F4A7C15ULL;
  while (s.size() < kMiB) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(x >> (8 * i)));
  }
  return s;
}

std::string TextMiB() {
  std::string s;
  while (s.size() < kMiB) s += "rpyc brine frame payload ";
  s.resize(kMiB);
  return s;
}

brine::Value Tuple10k() {
  std::vector<brine::Value> items;
  items.reserve(10000);
  for (int i = 0; i < 10000; ++i) {
    items.push_back(i % 2 == 0 ? brine::Value(i) : brine::MakeStr("item" + std::to_string(i)));
  }
  return brine::MakeTuple(std::move(items));
}

void Encode(benchmark::State& state, const brine::Value& v) {
  std::string out;
  for (auto _ : state) {
    out.clear();
    brine::Encode(v, &out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * out.size()));
}

void Decode(benchmark::State& state, const brine::Value& v) {
  std::string enc = brine::Dump(v);
  for (auto _ : state) {
    auto back = brine::Load(enc);
    if (!back) std::abort();
    benchmark::DoNotOptimize(back->variant().index());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * enc.size()));
}

void BM_BrineEncode_bytes_1mib(benchmark::State& s) { Encode(s, brine::MakeBytes(NoiseMiB())); }
void BM_BrineDecode_bytes_1mib(benchmark::State& s) { Decode(s, brine::MakeBytes(NoiseMiB())); }
void BM_BrineEncode_tuple_10k(benchmark::State& s) { Encode(s, Tuple10k()); }
void BM_BrineDecode_tuple_10k(benchmark::State& s) { Decode(s, Tuple10k()); }

void Write(benchmark::State& state, const std::string& payload, channel::Compression mode) {
  std::string out;
  for (auto _ : state) {
    out.clear();
    if (!channel::AppendFrame(payload, &out, mode)) std::abort();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * payload.size()));
  state.counters["wire_bytes"] = static_cast<double>(out.size());
}

void Read(benchmark::State& state, const std::string& payload, channel::Compression mode) {
  std::string frame;
  if (!channel::AppendFrame(payload, &frame, mode)) std::abort();
  for (auto _ : state) {
    channel::FrameReader reader;
    reader.Append(frame);
    auto p = reader.Next();
    if (!p || !p->has_value() || (*p)->size() != payload.size()) std::abort();
    benchmark::DoNotOptimize((*p)->data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * payload.size()));
}

// Python's behaviour (always compress over 3000 bytes), then the adaptive default.
void BM_FrameWrite_noise_1mib(benchmark::State& s) {
  Write(s, NoiseMiB(), channel::Compression::kPython);
}
void BM_FrameRead_noise_1mib(benchmark::State& s) {
  Read(s, NoiseMiB(), channel::Compression::kPython);
}
void BM_FrameWrite_text_1mib(benchmark::State& s) {
  Write(s, TextMiB(), channel::Compression::kPython);
}
void BM_FrameRead_text_1mib(benchmark::State& s) {
  Read(s, TextMiB(), channel::Compression::kPython);
}
void BM_FrameWriteAdaptive_noise_1mib(benchmark::State& s) {
  Write(s, NoiseMiB(), channel::Compression::kAdaptive);
}
void BM_FrameReadAdaptive_noise_1mib(benchmark::State& s) {
  Read(s, NoiseMiB(), channel::Compression::kAdaptive);
}

BENCHMARK(BM_BrineEncode_bytes_1mib);
BENCHMARK(BM_BrineDecode_bytes_1mib);
BENCHMARK(BM_BrineEncode_tuple_10k);
BENCHMARK(BM_BrineDecode_tuple_10k);
BENCHMARK(BM_FrameWrite_noise_1mib);
BENCHMARK(BM_FrameRead_noise_1mib);
BENCHMARK(BM_FrameWrite_text_1mib);
BENCHMARK(BM_FrameRead_text_1mib);
BENCHMARK(BM_FrameWriteAdaptive_noise_1mib);
BENCHMARK(BM_FrameReadAdaptive_noise_1mib);

}  // namespace

BENCHMARK_MAIN();
