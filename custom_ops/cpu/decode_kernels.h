// Kernels of one decode step, shared by the per-op entries (linear.cc, decode_ops.cc)
// and the fused layer entries (layer.cc). Float32, as the CPU backend computes.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "lora_kernels.h"

namespace cold {

// Token rows the kernel accepts; the engine sends prompts (more rows) to MatMul instead.
constexpr int64_t kMaxRows = 16;
// Output rows per work item handed to a core: large enough to amortise scheduling,
// small enough that 2 cores get balanced work on the narrowest (192-row) projections.
constexpr int64_t kRowsPerItem = 32;
// Below this many multiply-adds a second core costs more to wake than it saves.
constexpr int64_t kParallelMacs = 1 << 16;
// Below this many elements a norm, rotation or attention call stays on one core.
constexpr int64_t kParallelElems = 1 << 15;

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
inline void Dense(const float* x, const float* w, float* y, int64_t n, int64_t in, int64_t out) {
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

// y = w * x / sqrt(mean(x^2) + eps) for n rows of d values.
inline void RmsNormRows(const float* x, const float* w, float eps, float* y, int64_t n, int64_t d) {
  ForEach(n, n * d >= kParallelElems, [&](int64_t i) {
    const float* xi = x + i * d;
    double ss = 0;  // the mean of squares in double: as accurate as MindSpore's float32 reduce or better
    for (int64_t k = 0; k < d; ++k) ss += static_cast<double>(xi[k]) * xi[k];
    const float inv = 1.0f / std::sqrt(static_cast<float>(ss / d) + eps);
    for (int64_t k = 0; k < d; ++k) y[i * d + k] = w[k] * (xi[k] * inv);
  });
}

// Rotate every head of `tokens` rows of width values (heads of dim) by their cos/sin rows.
inline void RopeRows(const float* x, const float* cos, const float* sin, float* y, int64_t tokens, int64_t width,
                     int64_t dim) {
  const int64_t half = dim / 2;
  ForEach(tokens, tokens * width >= kParallelElems, [&](int64_t t) {
    const float *c = cos + t * dim, *s = sin + t * dim;
    for (int64_t h = 0; h < width; h += dim) {
      const float* xh = x + t * width + h;
      float* yh = y + t * width + h;
      for (int64_t k = 0; k < half; ++k) {  // rotate_half(x) = (-x2, x1)
        yh[k] = xh[k] * c[k] - xh[k + half] * s[k];
        yh[k + half] = xh[k + half] * c[k + half] + xh[k] * s[k + half];
      }
    }
  });
}

// out[r, h] = softmax(q[r, h] . k[r, g, :keys] / sqrt(dim)) v[r, g, :keys], keys = pos[r] + 1,
// g = h / (heads / kvh): one query row per cache row, caches (rows, kvh, len, dim).
inline void AttentionRows(const float* q, const float* k, const float* v, const int32_t* pos, float* out,
                          int64_t rows, int64_t heads, int64_t kvh, int64_t len, int64_t dim) {
  const int64_t group = heads / kvh;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dim));
  ForEach(rows * heads, rows * heads * len * dim >= kParallelElems, [&](int64_t item) {
    const int64_t r = item / heads, h = item % heads, g = h / group;
    const int64_t keys = pos[r] + 1 < len ? pos[r] + 1 : len;  // key j is visible iff j <= pos
    const float* qh = q + (r * heads + h) * dim;
    const float* kg = k + (r * kvh + g) * len * dim;
    const float* vg = v + (r * kvh + g) * len * dim;
    std::vector<float> score(keys);
    float top = -INFINITY;
    for (int64_t j = 0; j < keys; ++j) {
      float s = 0;
      for (int64_t d = 0; d < dim; ++d) s += qh[d] * kg[j * dim + d];
      score[j] = s * scale;
      top = score[j] > top ? score[j] : top;
    }
    float total = 0;
    for (int64_t j = 0; j < keys; ++j) total += (score[j] = std::exp(score[j] - top));
    float* oh = out + (r * heads + h) * dim;
    for (int64_t d = 0; d < dim; ++d) oh[d] = 0;
    for (int64_t j = 0; j < keys; ++j) {
      const float w = score[j] / total;
      for (int64_t d = 0; d < dim; ++d) oh[d] += w * vg[j * dim + d];
    }
  });
}

}  // namespace cold
