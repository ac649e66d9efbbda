// Decode-step projections for MindSpore's CPU AOT interface: y = x W^T (+ the LoRA term).
//
//   DecodeLinear      (x, W)             -> y       x (R,T,in)  W (out,in)  y (R,T,out)
//   DecodeLoraLinear  (x, W, A, B, idx)  -> y       + BGMV: y[i] += (x[i] A[idx[i]]^T) B[idx[i]]
//
// A decode step multiplies a handful of token rows by every weight matrix once, so it is
// bound by reading W. MindSpore's MatMul is built for large GEMMs; here each W row is
// streamed from memory exactly once for all token rows together (register tiles of
// token rows x weight rows), the output rows are split over the cores, and the LoRA term
// is added in the same op, so a projection costs one launch instead of several.
// float32 only (the CPU backend computes in float32); at most kMaxRows token rows.

#include <cstdint>
#include <cstring>
#include <vector>

#include "lora_kernels.h"

namespace {

using namespace cold;

// Token rows the kernel accepts; the engine sends prompts (more rows) to MatMul instead.
constexpr int64_t kMaxRows = 16;
// Output rows per work item handed to a core: large enough to amortise scheduling,
// small enough that 2 cores get balanced work on the narrowest (192-row) projections.
constexpr int64_t kRowsPerItem = 32;
// Below this many multiply-adds a second core costs more to wake than it saves.
constexpr int64_t kParallelMacs = 1 << 16;

// acc[t][w] += x_t . W_w over `in` for N token rows and NW weight rows (N * NW <= 16
// accumulators, which the 16 ymm registers of AVX2 (32 with AVX-512VL) hold beside the
// loaded operands).
template <int N, int NW>
inline void DotBlock(const float* x, int64_t in, const float* w, float* y, int64_t out) {
  Vec acc[N][NW] = {};
  int64_t k = 0;
  for (; k + kLanes <= in; k += kLanes) {
    Vec wv[NW];
#pragma GCC unroll 8
    for (int j = 0; j < NW; ++j) wv[j] = Load(w + j * in + k);
#pragma GCC unroll 16
    for (int t = 0; t < N; ++t) {
      const Vec xv = Load(x + t * in + k);
#pragma GCC unroll 8
      for (int j = 0; j < NW; ++j) acc[t][j] += xv * wv[j];
    }
  }
  for (int t = 0; t < N; ++t)
    for (int j = 0; j < NW; ++j) {
      float s = Sum(acc[t][j]);
      for (int64_t kk = k; kk < in; ++kk) s += x[t * in + kk] * w[j * in + kk];
      y[t * out + j] = s;
    }
}

// y[:, o0:o1] = x W[o0:o1]^T for N token rows. Rows go in groups of at most 8 (16
// accumulators with NW weight rows); every group of a tile reuses the tile's NW weight rows
// from L1, so each weight still comes from memory once, however many groups there are.
template <int N>
void DotRange(const float* x, const float* w, float* y, int64_t in, int64_t out, int64_t o0, int64_t o1) {
  constexpr int G = N < 8 ? N : 8;
  constexpr int NW = G >= 8 ? 2 : G >= 4 ? 4 : 8;
  int64_t o = o0;
  for (; o + NW <= o1; o += NW)
    for (int g = 0; g < N; g += G) DotBlock<G, NW>(x + g * in, in, w + o * in, y + g * out + o, out);
  for (; o < o1; ++o)
    for (int g = 0; g < N; g += G) DotBlock<G, 1>(x + g * in, in, w + o * in, y + g * out + o, out);
}

template <int N>
void Gemv(const float* x, const float* w, float* y, int64_t in, int64_t out) {
  const int64_t items = (out + kRowsPerItem - 1) / kRowsPerItem;
  ForEach(items, N * out * in >= kParallelMacs, [&](int64_t i) {
    const int64_t o0 = i * kRowsPerItem, o1 = o0 + kRowsPerItem < out ? o0 + kRowsPerItem : out;
    DotRange<N>(x, w, y, in, out, o0, o1);
  });
}

// Dispatch on the token-row count; odd counts run in the next tile size on zero-padded rows.
void Dense(const float* x, const float* w, float* y, int64_t n, int64_t in, int64_t out) {
  const int64_t padded = n <= 1 ? 1 : n <= 2 ? 2 : n <= 4 ? 4 : n <= 8 ? 8 : 16;
  std::vector<float> xp, yp;
  const float* xs = x;
  float* ys = y;
  if (padded != n) {
    xp.assign(padded * in, 0.f);
    std::memcpy(xp.data(), x, sizeof(float) * n * in);
    yp.resize(padded * out);
    xs = xp.data();
    ys = yp.data();
  }
  switch (padded) {
    case 1: Gemv<1>(xs, w, ys, in, out); break;
    case 2: Gemv<2>(xs, w, ys, in, out); break;
    case 4: Gemv<4>(xs, w, ys, in, out); break;
    case 8: Gemv<8>(xs, w, ys, in, out); break;
    default: Gemv<16>(xs, w, ys, in, out); break;
  }
  if (ys != y) std::memcpy(y, ys, sizeof(float) * n * out);
}

template <typename I>
int AddLora(const float* x, const float* a, const float* b, const I* idx, float* y, Dims d) {
  Groups g;
  if (GroupBySlot(idx, d, &g)) return 1;
  std::vector<float> v(d.rows * d.seq * d.rank);
  Shrink(x, a, v.data(), g, d);
  Expand(y, v.data(), b, y, g, d);  // in place: y += v B for the grouped tokens
  return 0;
}

int Run(bool lora, int nparam, void** p, int* ndims, int64_t** shapes, const char** dtypes) {
  g_error[0] = '\0';
  const int want = lora ? 6 : 3, out_i = want - 1;
  if (nparam != want) return Fail("decode linear: wrong number of operands");
  if (ndims[0] != 3 || ndims[1] != 2 || ndims[out_i] != 3) return Fail("decode linear: x and y must be 3-D, W 2-D");
  Dims d;
  d.rows = shapes[0][0];
  d.seq = shapes[0][1];
  d.in = shapes[0][2];
  d.out = shapes[1][0];
  if (shapes[1][1] != d.in) return Fail("decode linear: x and W disagree on the input size");
  if (d.rows * d.seq > kMaxRows) return Fail("decode linear: more than 16 token rows");
  for (int i = 0; i < want; ++i)
    if (i != 4 && std::strcmp(dtypes[i], "float32")) return Fail("decode linear: data must be float32");
  float* y = static_cast<float*>(p[out_i]);
  Dense(static_cast<const float*>(p[0]), static_cast<const float*>(p[1]), y, d.rows * d.seq, d.in, d.out);
  if (!lora) return 0;
  if (ndims[2] != 3 || ndims[3] != 3 || ndims[4] != 1) return Fail("decode linear: bad LoRA operand ranks");
  d.slots = shapes[2][0];
  d.rank = shapes[2][1];
  if (shapes[2][2] != d.in || shapes[3][0] != d.slots || shapes[3][1] != d.rank || shapes[3][2] != d.out ||
      shapes[4][0] != d.rows)
    return Fail("decode linear: LoRA stacks do not fit x and W");
  const float *x = static_cast<const float*>(p[0]), *a = static_cast<const float*>(p[2]);
  const float* b = static_cast<const float*>(p[3]);
  if (!std::strcmp(dtypes[4], "int32")) return AddLora(x, a, b, static_cast<const int32_t*>(p[4]), y, d);
  if (!std::strcmp(dtypes[4], "int64")) return AddLora(x, a, b, static_cast<const int64_t*>(p[4]), y, d);
  return Fail("indices must be int32 or int64");
}

}  // namespace

extern "C" int DecodeLinear(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes,
                            void* /*stream*/, void* /*extra*/) {
  return Run(false, nparam, params, ndims, shapes, dtypes);
}

extern "C" int DecodeLoraLinear(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes,
                                void* /*stream*/, void* /*extra*/) {
  return Run(true, nparam, params, ndims, shapes, dtypes);
}
