// Times the projections of one decode step of a LLaMA shape (SmolLM2-135M by default: 30
// layers of d 576, kv 192, ffn 1536) through the CPU kernels' DenseWeight, per weight layout
// and token-row count, all variants alternating in one process (this VM's bandwidth drifts).
// Built and run by `python scripts/bench.py kernels` with the library's flags and generated
// header. Prints the CPU's vector paths and, per variant, the best and median ms of all
// projections of a step.
//
//   kernel_bench ROUNDS LAYERS D KV FFN ROWS,ROWS,... VARIANT...
//   VARIANT: f32 | f32p (float32 panels) | bf16 | f16 | q8_0 | q4_0 | q4_1 | q4_k | q6_k (rows as
//            stored, float32 activations) | q8_0p8 | q4_0p8 | q4_1p8 | q8_0p16 | q4_0p16 | q4_1p16
//            (integer panels with 8- or 16-bit activations)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "gemv.h"

using namespace cold;

struct Matrix {
  std::vector<uint8_t> bytes;
  WeightRef ref;
};

// Random weights of type t in the variant's layout: float values for float types; for block
// types random bytes with small, finite fp16 scales (every bit pattern of the values is valid).
Matrix Make(const std::string& variant, int64_t out, int64_t in, std::mt19937* rng) {
  const size_t cut = variant.find('p', 1);  // "q4_1p16": type q4_1, panels, 16-bit activations
  const std::string name = cut == std::string::npos ? variant : variant.substr(0, cut);
  const bool panels = cut != std::string::npos, qpanels = panels && name != "f32";
  int code = -1;
  for (int c = 0; c < kNumWTypes; ++c)
    if (name == kWTypes[c].name) code = c;
  if (code < 0) {
    std::fprintf(stderr, "unknown variant %s\n", variant.c_str());
    std::exit(2);
  }
  const WType& t = kWTypes[code];
  Matrix m;  // ref.data is set by the caller once the bytes stay put
  m.ref.type = &t;
  m.ref.in = in;
  m.ref.out = out;
  m.ref.panels = panels;
  m.ref.act_bits = qpanels ? std::atoi(variant.c_str() + cut + 1) : 0;
  m.ref.row_bytes = in / t.block * t.bytes;
  const int64_t total = qpanels ? out / 16 * (in / 32) * t.panel_bytes : out * m.ref.row_bytes;
  m.bytes.resize(total);
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  if (code == kF32) {
    for (int64_t i = 0; i < total; i += 4) {
      const float v = normal(*rng);
      std::memcpy(&m.bytes[i], &v, 4);
    }
  } else {
    for (auto& b : m.bytes) b = static_cast<uint8_t>(byte(*rng));
    // scales: overwrite every 2-byte word that may hold one with a small fp16 (values stay random)
    const _Float16 small = static_cast<_Float16>(0.01f);
    if (t.block > 1)
      for (int64_t i = 0; i + 2 <= total; i += 2) {
        if ((i / 2) % 4 == 0) std::memcpy(&m.bytes[i], &small, 2);
      }
  }
  return m;
}

int main(int argc, char** argv) {
  if (argc < 8) {
    std::fprintf(stderr, "usage: kernel_bench ROUNDS LAYERS D KV FFN ROWS,... VARIANT...\n");
    return 2;
  }
  const int rounds = std::atoi(argv[1]), layers = std::atoi(argv[2]);
  const int64_t d = std::atoll(argv[3]), kv = std::atoll(argv[4]), ffn = std::atoll(argv[5]);
  std::vector<int64_t> rows;
  for (char* s = argv[6]; *s;) {
    rows.push_back(std::strtoll(s, &s, 10));
    if (*s == ',') ++s;
  }
  std::printf("paths: %s%s%s, integer panels %s, %d threads\n",
#if defined(__AVX512F__)
              "avx512f",
#else
              "avx2",
#endif
#if defined(__AVX512VNNI__)
              " +vnni",
#else
              "",
#endif
#if defined(__AVX512BF16__)
              " +bf16",
#else
              "",
#endif
              kIntegerPanels ? "yes" : "no", Threads());
  const int64_t shapes[7][2] = {{d, d}, {kv, d}, {kv, d}, {d, d}, {ffn, d}, {ffn, d}, {d, ffn}};
  std::mt19937 rng(7);
  std::vector<std::vector<Matrix>> weights(argc - 7);  // per layout, all projections of a step
  for (int i = 7; i < argc; ++i)
    for (int l = 0; l < layers; ++l)
      for (const auto& s : shapes) weights[i - 7].push_back(Make(argv[i], s[0], s[1], &rng));
  for (auto& layout : weights)
    for (auto& m : layout) m.ref.data = m.bytes.data();
  struct Variant {
    std::string name;
    int64_t rows;
    const std::vector<Matrix>* weights;
    std::vector<double> ms;
  };
  std::vector<Variant> variants;
  for (int i = 7; i < argc; ++i)
    for (int64_t r : rows) variants.push_back({argv[i], r, &weights[i - 7], {}});
  std::vector<float> x(16 * 1024 * 64), y(16 * 1024 * 64);
  for (auto& v : x) v = std::normal_distribution<float>(0.0f, 1.0f)(rng);
  for (int round = 0; round < rounds; ++round)
    for (auto& v : variants) {
      const auto start = std::chrono::steady_clock::now();
      for (const auto& w : *v.weights) DenseWeight(x.data(), w.ref, y.data(), v.rows);
      v.ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
  for (auto& v : variants) {
    std::sort(v.ms.begin(), v.ms.end());
    std::printf("%-6s rows %3lld  best %7.2f ms  median %7.2f ms\n", v.name.c_str(), static_cast<long long>(v.rows),
                v.ms.front(), v.ms[v.ms.size() / 2]);
  }
  return 0;
}
