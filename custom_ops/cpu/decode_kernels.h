// Kernels of one decode step, shared by the per-op entries (linear.cc, decode_ops.cc,
// select.cc) and the whole-layer entry (layer.cc). Float32, as the CPU backend computes.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "lora_kernels.h"

namespace cold {

// Token rows of the largest GEMV register tile; longer inputs run in blocks of this many.
constexpr int64_t kMaxRows = 16;
// Output rows per work item handed to a core: large enough to amortise scheduling,
// small enough that 2 cores get balanced work on the narrowest (192-row) projections.
constexpr int64_t kRowsPerItem = 48;
// Below this many multiply-adds a second core costs more to wake than it saves.
constexpr int64_t kParallelMacs = 1 << 16;
// Below this many elements a norm, rotation or attention call stays on one core.
constexpr int64_t kParallelElems = 1 << 15;

// The decode GEMV's vector: 16 floats where AVX-512 exists (its 32 registers hold the
// accumulator tiles below, and it doubles the multiply-adds per instruction, which bound
// the GEMV at 16 token rows), else the 8-float Vec.
#if defined(__AVX512F__)
typedef float Wide __attribute__((vector_size(64)));
constexpr int kWideLanes = 16;
constexpr int kTileAcc = 24;  // of 32 registers: + NW weight rows + 1 token row
#else
typedef Vec Wide;
constexpr int kWideLanes = kLanes;
constexpr int kTileAcc = 12;  // of 16 registers
#endif

inline Wide LoadWide(const float* p) { Wide v; std::memcpy(&v, p, sizeof(v)); return v; }

// Sum of the lanes by halving (a lane-by-lane scalar loop costs more than the dot product
// it finishes when `in` is a few hundred).
inline float HSum(Wide v) {
#if defined(__AVX512F__)
  return _mm512_reduce_add_ps(v);
#else
  return Sum(v);
#endif
}

// x in every lane (one broadcast: `Wide{} + x` compiled to an add of zero before it).
inline Wide Splat(float x) {
#if defined(__AVX512F__)
  return (Wide)_mm512_set1_ps(x);
#else
  Wide v;
  for (int i = 0; i < kWideLanes; ++i) v[i] = x;
  return v;
#endif
}

// The first n < kWideLanes floats at p, zeros after them.
inline Wide LoadTail(const float* p, int64_t n) {
  float buf[kWideLanes] = {};
  std::memcpy(buf, p, sizeof(float) * n);
  return LoadWide(buf);
}

// y[t][j] = x_t . W_j over `in` for G token rows and NW weight rows (G * NW <= kTileAcc).
// Every loop is unrolled so the tile lives in registers from the first multiply to the
// final sums.
template <int G, int NW, int AHEAD>
__attribute__((always_inline)) inline void DotBlock(const float* x, int64_t in, const float* w, float* y,
                                                    int64_t out) {
  Wide acc[G][NW];
#pragma GCC unroll 16
  for (int t = 0; t < G; ++t)
#pragma GCC unroll 8
    for (int j = 0; j < NW; ++j) acc[t][j] = Wide{};
  const auto step = [&](int64_t k, auto load) {
    Wide wv[NW];
#pragma GCC unroll 8
    for (int j = 0; j < NW; ++j) {
      wv[j] = load(w + j * in + k);
      // The same line of a weight row AHEAD tiles on: the hardware prefetcher alone left the
      // 16-row GEMV waiting on memory (2.4x slower). Past the end of W it is a no-op.
      __builtin_prefetch(w + (AHEAD * NW + j) * in + k);
    }
#pragma GCC unroll 16
    for (int t = 0; t < G; ++t) {
      Wide xv = load(x + t * in + k);
#if defined(__x86_64__)
      // Keeps xv in a register: GCC otherwise folds the load into each of the NW
      // multiply-adds, and x (up to 96 KB at 16 rows) is read from L2 NW times (1.5x slower).
      asm("" : "+v"(xv));
#endif
#pragma GCC unroll 8
      for (int j = 0; j < NW; ++j) acc[t][j] += xv * wv[j];
    }
  };
  const int64_t full = in - in % kWideLanes;
  for (int64_t k = 0; k < full; k += kWideLanes) step(k, [](const float* p) { return LoadWide(p); });
  if (full < in) step(full, [&](const float* p) { return LoadTail(p, in - full); });
#pragma GCC unroll 16
  for (int t = 0; t < G; ++t)
#pragma GCC unroll 8
    for (int j = 0; j < NW; ++j) y[t * out + j] = HSum(acc[t][j]);
}

// y[:, o0:o1] = x W[o0:o1]^T for N token rows. Rows go in groups of at most 8; every group
// of a tile reuses the tile's NW weight rows from L1, so each weight still comes from
// memory once, however many groups there are. Tile shapes and prefetch distances were
// chosen by timing a whole SmolLM2-135M step's projections at 1 to 16 rows (AVX-512), all
// shapes alternating in one process: the widest tile the registers hold (at most 8 weight
// rows), prefetching one tile ahead. At 4 rows that measured 14.8 ms against 17.5 for the
// 4-row tile fetching 3 tiles ahead; at 2 rows 10.5 against 11.5, at 8 rows 13.1 against 13.9.
// 4 rows go as two groups of 2 over 8 weight rows (13.9 against 14.9 ms for one group of 4
// over 6); 8 and 16 rows as groups of 8 (groups of 2 or 4 took 30-40% longer).
template <int N>
void DotRange(const float* x, const float* w, float* y, int64_t in, int64_t out, int64_t o0, int64_t o1) {
  constexpr int G = N == 4 ? 2 : N < 8 ? N : 8;
  constexpr int NW = kTileAcc / G < 8 ? kTileAcc / G : 8;
  constexpr int AHEAD = 1;
  int64_t o = o0;
  for (; o + NW <= o1; o += NW)
    for (int g = 0; g < N; g += G) DotBlock<G, NW, AHEAD>(x + g * in, in, w + o * in, y + g * out + o, out);
  for (; o < o1; ++o)
    for (int g = 0; g < N; g += G) DotBlock<G, 1, AHEAD>(x + g * in, in, w + o * in, y + g * out + o, out);
}

// Gemv over `blocks` consecutive blocks of N token rows: a work item's weight rows come
// from memory once and stay in L2 while every block uses them.
template <int N>
void Gemv(const float* x, const float* w, float* y, int64_t in, int64_t out, int64_t blocks) {
  const int64_t items = (out + kRowsPerItem - 1) / kRowsPerItem;
  ForEach(items, blocks * N * out * in >= kParallelMacs, [&](int64_t i) {
    const int64_t o0 = i * kRowsPerItem, o1 = o0 + kRowsPerItem < out ? o0 + kRowsPerItem : out;
    for (int64_t b = 0; b < blocks; ++b) DotRange<N>(x + b * N * in, w, y + b * N * out, in, out, o0, o1);
  });
}

// y = x W^T for n token rows, W row-major: up to kMaxRows rows in the next GEMV tile size,
// then blocks of kMaxRows, on zero-padded rows where the count does not fit.
inline void Dense(const float* x, const float* w, float* y, int64_t n, int64_t in, int64_t out) {
  const int64_t padded = n <= 1 ? 1 : n <= 2 ? 2 : n <= 4 ? 4 : n <= 8 ? 8 : (n + kMaxRows - 1) / kMaxRows * kMaxRows;
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
    case 1: Gemv<1>(xs, w, ys, in, out, 1); break;
    case 2: Gemv<2>(xs, w, ys, in, out, 1); break;
    case 4: Gemv<4>(xs, w, ys, in, out, 1); break;
    case 8: Gemv<8>(xs, w, ys, in, out, 1); break;
    default: Gemv<kMaxRows>(xs, w, ys, in, out, padded / kMaxRows); break;
  }
  if (ys != y) std::memcpy(y, ys, sizeof(float) * n * out);
}

// Projection weights stored in panels (cold_ms/ops/panels.py): P[o / kPanelWidth][k][o % kPanelWidth].
// For each input index k a panel holds kPanelWidth consecutive outputs side by side, so a
// broadcast x value multiplies whole vectors of outputs: the sums land in output vectors
// (no lane sums, which bound the row-major GEMV at 8 and 16 token rows) and each panel is
// one sequential stream. Measured on all of SmolLM2-135M's projections (C++ harness, both
// layouts alternating in one process, best of 12): 1 token row 10.3 -> 9.4 ms, 2 rows 11.0 ->
// 9.4, 4 rows 11.5 -> 9.6, 8 rows 12.5 -> 9.9, 16 rows 15.1 -> 12.6.
constexpr int64_t kPanelWidth = 16;
constexpr int kPanelVecs = kPanelWidth / kWideLanes;  // vectors per panel row: 1 with AVX-512
constexpr int kTilePanels = kWideLanes == 16 ? 3 : 1;  // panels of a register tile (and of a work item)
constexpr int kTileRows = kTileAcc / (kTilePanels * kPanelVecs) >= 8 ? 8 : 4;  // token rows of a tile
// Prefetch distance in input indices (2 KB ahead in each panel): the streams are short
// (one panel is `in` x 64 bytes) and the hardware prefetcher starts each one late.
constexpr int64_t kPanelAhead = 32;
static_assert(kPanelWidth % kWideLanes == 0, "a panel row is whole vectors");

// Inputs summed in registers before the sum joins the tile's partial sums: one running float32
// sum over all of `in` had 6x the row-major GEMV's error on SmolLM2's down projection (in =
// 1536; 1.7e-5 against 2.8e-6 at 16 rows, float64 reference); blocks of 64 bring it to 2.9e-6
// at no measurable cost (the partial sums sit in an L1 buffer, not in y's rows).
constexpr int64_t kSumBlock = 64;

// part[t][0 .. P * kPanelVecs) (+)= x_t[k0 .. k1) P[k0 .. k1) for R token rows over P
// consecutive panels, in registers.
template <int R, int P>
__attribute__((always_inline)) inline void PanelBlock(const float* x, int64_t in, const float* p, Wide* part,
                                                      int64_t k0, int64_t k1) {
  constexpr int NV = P * kPanelVecs;
  Wide acc[R][NV];
#pragma GCC unroll 8
  for (int t = 0; t < R; ++t)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[t][v] = Wide{};
  for (int64_t k = k0; k < k1; ++k) {
    Wide wv[NV];
#pragma GCC unroll 8
    for (int j = 0; j < P; ++j) {
      const float* pk = p + (j * in + k) * kPanelWidth;
#pragma GCC unroll 4
      for (int c = 0; c < kPanelVecs; ++c) wv[j * kPanelVecs + c] = LoadWide(pk + c * kWideLanes);
      __builtin_prefetch(pk + kPanelAhead * kPanelWidth);  // past the panel's end: a no-op
    }
#pragma GCC unroll 8
    for (int t = 0; t < R; ++t) {
      const Wide xb = Splat(x[t * in + k]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[t][v] += xb * wv[v];
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < R; ++t)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) part[t * NV + v] = k0 ? part[t * NV + v] + acc[t][v] : acc[t][v];
}

// y[t][0 .. P * kPanelWidth) = x_t P for R token rows over P consecutive panels.
template <int R, int P>
inline void PanelRows(const float* x, int64_t in, const float* p, float* y, int64_t out) {
  Wide part[R * P * kPanelVecs];
  for (int64_t k0 = 0; k0 < in; k0 += kSumBlock)
    PanelBlock<R, P>(x, in, p, part, k0, k0 + kSumBlock < in ? k0 + kSumBlock : in);
  for (int t = 0; t < R; ++t) std::memcpy(y + t * out, part + t * P * kPanelVecs, sizeof(Wide) * P * kPanelVecs);
}

// All n token rows over P panels: tiles of kTileRows rows, then 4, 2, 1. The panels stay in
// L2 from the first tile on, so they come from memory once however many rows there are.
template <int P>
void PanelColumns(const float* x, const float* p, float* y, int64_t n, int64_t in, int64_t out) {
  int64_t t = 0;
  for (; t + kTileRows <= n; t += kTileRows) PanelRows<kTileRows, P>(x + t * in, in, p, y + t * out, out);
  if (kTileRows > 4 && n - t >= 4) PanelRows<4, P>(x + t * in, in, p, y + t * out, out), t += 4;
  if (n - t >= 2) PanelRows<2, P>(x + t * in, in, p, y + t * out, out), t += 2;
  if (n - t >= 1) PanelRows<1, P>(x + t * in, in, p, y + t * out, out);
}

// y = x W^T for n token rows, W in panels (out a multiple of kPanelWidth). A work item is
// kTilePanels panels (48 outputs with AVX-512: even work for 2 cores on 192-output projections).
inline void DensePanels(const float* x, const float* p, float* y, int64_t n, int64_t in, int64_t out) {
  const int64_t panels = out / kPanelWidth, items = (panels + kTilePanels - 1) / kTilePanels;
  ForEach(items, n * out * in >= kParallelMacs, [&](int64_t i) {
    int64_t j = i * kTilePanels;
    const int64_t end = j + kTilePanels < panels ? j + kTilePanels : panels;
    if (end - j == kTilePanels) {
      PanelColumns<kTilePanels>(x, p + j * in * kPanelWidth, y + j * kPanelWidth, n, in, out);
      return;
    }
    for (; j < end; ++j) PanelColumns<1>(x, p + j * in * kPanelWidth, y + j * kPanelWidth, n, in, out);
  });
}

// The output size of a weight given (out, in) or in panels (out / kPanelWidth, in,
// kPanelWidth); 0 for any other shape.
inline int64_t WeightOut(int ndim, const int64_t* shape) {
  if (ndim == 2) return shape[0];
  return ndim == 3 && shape[2] == kPanelWidth ? shape[0] * kPanelWidth : 0;
}

// y = x W^T for n token rows, W in either layout.
inline void DenseWeight(const float* x, const float* w, bool panels, float* y, int64_t n, int64_t in, int64_t out) {
  (panels ? DensePanels : Dense)(x, w, y, n, in, out);
}

// y += the LoRA term of each token row's slot, for one set of rows (idx, d.rows, d.seq)
// over any number of projections: the rows are grouped by slot once, at the first call (or
// when the slot count changes), and the rank-sized buffer is the caller's to keep. Grouping
// and allocating per projection cost a layer kernel 0.6 ms a step (C++ harness,
// SmolLM2-135M, 2 to 16 token rows).
template <typename I>
class LoraTerm {
 public:
  LoraTerm(const I* idx, std::vector<float>* v) : idx_(idx), v_(v) {}

  int Add(const float* x, const float* a, const float* b, float* y, const Dims& d) {
    if (d.slots != grouped_for_) {
      if (GroupBySlot(idx_, d, &groups_)) return 1;
      grouped_for_ = d.slots;
    }
    if (static_cast<int64_t>(v_->size()) < d.rows * d.seq * d.rank) v_->resize(d.rows * d.seq * d.rank);
    Shrink(x, a, v_->data(), groups_, d);
    Expand(y, v_->data(), b, y, groups_, d);  // in place: y += v B for the grouped tokens
    return 0;
  }

 private:
  const I* idx_;
  std::vector<float>* v_;
  Groups groups_;
  int64_t grouped_for_ = -1;  // the slot count groups_ was made for
};

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

// exp(x) lane by lane to ~2 ulp (Cephes' expf: x = n ln2 + r, |r| <= ln2 / 2, a degree-7
// polynomial for exp(r), 2^n put into the exponent bits). libm's exp is a scalar call, and
// softmax over the keys and SwiGLU made 1.3 M of them per 16-row step.
inline Wide ExpWide(Wide x) {
  typedef int32_t Ints __attribute__((vector_size(sizeof(Wide))));
  const Wide hi = Wide{} + 88.3762626647949f, lo = Wide{} - 87.3365447505531f;
  x = x > hi ? hi : x;
  x = x < lo ? lo : x;  // below it exp would be subnormal; e^-87 is as good as 0 here
  const Wide magic = Wide{} + 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const Wide n = (x * 1.44269504088896341f + magic) - magic;
  const Wide r = x - n * 0.693359375f + n * 2.12194440e-4f;
  Wide p = Wide{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const Ints bits = (__builtin_convertvector(n, Ints) + 127) << 23;
  Wide scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// f(v[i]) for n floats, kWideLanes at a time; the tail goes through a zero-padded vector.
template <typename Fn>
inline void MapWide(float* v, int64_t n, const Fn& f) {
  int64_t i = 0;
  for (; i + kWideLanes <= n; i += kWideLanes) {
    const Wide y = f(LoadWide(v + i));
    std::memcpy(v + i, &y, sizeof(y));
  }
  if (i < n) {
    const Wide y = f(LoadTail(v + i, n - i));
    std::memcpy(v + i, &y, sizeof(float) * (n - i));
  }
}

// Whether the first n operand dtypes are all float32.
inline bool AllFloat32(int n, const char** dtypes) {
  for (int i = 0; i < n; ++i)
    if (std::strcmp(dtypes[i], "float32")) return false;
  return true;
}

// Vector lanes throughout: one scalar chain of compares or adds over a hundred keys cost
// as much as the attention's dot products.
inline float RowMax(const float* s, int64_t n) {
  Wide top = Splat(-INFINITY);
  int64_t i = 0;
  for (; i + kWideLanes <= n; i += kWideLanes) {
    const Wide x = LoadWide(s + i);
    top = x > top ? x : top;
  }
  float m = -INFINITY;
  for (int j = 0; j < kWideLanes; ++j) m = top[j] > m ? top[j] : m;
  for (; i < n; ++i) m = s[i] > m ? s[i] : m;
  return m;
}

// s = softmax(s) over n floats: exp(s - max) / sum, as MindSpore's kernel computes it.
inline void SoftmaxRow(float* s, int64_t n) {
  const float top = RowMax(s, n);
  MapWide(s, n, [top](Wide x) { return ExpWide(x - top); });
  Wide acc = {};
  int64_t i = 0;
  for (; i + kWideLanes <= n; i += kWideLanes) acc += LoadWide(s + i);
  float total = HSum(acc);
  for (; i < n; ++i) total += s[i];
  MapWide(s, n, [total](Wide x) { return x / total; });
}

// gate[i] = silu(gate[i]) * up[i] for n values.
inline void SwiGlu(float* gate, const float* up, int64_t n) {
  MapWide(gate, n, [](Wide g) { return g / (1.0f + ExpWide(-g)); });
  for (int64_t i = 0; i < n; ++i) gate[i] *= up[i];
}

// Lane j of the result = the sum of the lanes of v[j]: kWideLanes lane sums at once. With
// AVX-512 a tree of unpacks, 128-bit shuffles and adds (45 instructions for 16 sums, where
// one _mm512_reduce_add_ps is 8 with a long dependency chain).
inline Wide SumEachLane(const Wide* v) {
#if defined(__AVX512F__)
  __m512 a[8], b[4], c[2];
  for (int i = 0; i < 8; ++i) {  // 128-bit lane q of a[i]: pairs of sums of v[2i], v[2i+1]
    const __m512 x = (__m512)v[2 * i], y = (__m512)v[2 * i + 1];
    a[i] = _mm512_add_ps(_mm512_unpacklo_ps(x, y), _mm512_unpackhi_ps(x, y));
  }
  for (int i = 0; i < 4; ++i) {  // lane q of b[i]: v[4i..4i+3] each summed over lane q
    const __m512d x = _mm512_castps_pd(a[2 * i]), y = _mm512_castps_pd(a[2 * i + 1]);
    b[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  for (int i = 0; i < 2; ++i)
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
  return (Wide)_mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88), _mm512_shuffle_f32x4(c[0], c[1], 0xDD));
#else
  Wide out;
  for (int j = 0; j < kWideLanes; ++j) out[j] = HSum(v[j]);
  return out;
#endif
}

// s[j] = scale * (q . keys[j]) for n <= kWideLanes key rows (row stride = dim); the products
// stay in vectors until one SumEachLane. DV > 0: dim is DV whole vectors, q held in
// registers and every loop unrolled (the head sizes of LLaMA models: 64 and 128).
template <int DV>
inline void ScoreKeys(const float* q, const float* keys, int64_t n, int64_t dim, float scale, float* s) {
  Wide acc[kWideLanes];
  if constexpr (DV > 0) {
    Wide qv[DV];
#pragma GCC unroll 8
    for (int c = 0; c < DV; ++c) qv[c] = LoadWide(q + c * kWideLanes);
#pragma GCC unroll 16
    for (int64_t j = 0; j < kWideLanes; ++j) {
      Wide a = {}, b = {};  // two chains: a multiply-add's latency is longer than its issue
      if (j < n) {  // never a row past the last key: it may lie past the end of the cache
#pragma GCC unroll 8
        for (int c = 0; c < DV; c += 2) {
          a += qv[c] * LoadWide(keys + j * dim + c * kWideLanes);
          b += qv[c + 1] * LoadWide(keys + j * dim + (c + 1) * kWideLanes);
        }
      }
      acc[j] = a + b;
    }
  } else {
    const int64_t full = dim - dim % kWideLanes;
    for (int64_t j = 0; j < kWideLanes; ++j) {
      Wide a = {};
      if (j < n) {
        const float* kj = keys + j * dim;
        for (int64_t d = 0; d < full; d += kWideLanes) a += LoadWide(q + d) * LoadWide(kj + d);
        if (full < dim) a += LoadTail(q + full, dim - full) * LoadTail(kj + full, dim - full);
      }
      acc[j] = a;
    }
  }
  const Wide sums = SumEachLane(acc) * scale;
  std::memcpy(s, &sums, sizeof(float) * n);
}

// y[0 .. NV vectors) = sum_j w[j] * v[j][0 .. NV vectors) over n rows of stride ld, summed in
// registers (an output row in memory is a load and a store per multiply-add).
template <int NV>
inline void WeightedRows(const float* w, const float* v, int64_t ld, int64_t n, float* y) {
  Wide acc[NV] = {};
  for (int64_t j = 0; j < n; ++j) {
    const Wide s = Splat(w[j]);
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) acc[c] += s * LoadWide(v + j * ld + c * kWideLanes);
  }
  std::memcpy(y, acc, sizeof(acc));
}

// out[i, h] = softmax(q[i, h] . k[cr, g, :keys] / sqrt(dim)) v[cr, g, :keys] for query token
// i = r * seq + t, keys = pos[i] + 1, cache row cr = crow[r], g = h / (heads / kvh); caches
// (cache rows, kvh, len, dim). A work item is one (token, kv head): its query heads share
// each key and value row while it is in L1, so a kv head's cache is read once per token.
inline void AttentionRows(const float* q, const float* k, const float* v, const int32_t* pos, const int32_t* crow,
                          float* out, int64_t rows, int64_t seq, int64_t heads, int64_t kvh, int64_t len,
                          int64_t dim) {
  const int64_t group = heads / kvh;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dim));
  ForEach(rows * seq * kvh, rows * seq * heads * len * dim >= kParallelElems, [&](int64_t item) {
    const int64_t i = item / kvh, g = item % kvh, cr = crow[i / seq];
    const int64_t keys = pos[i] + 1 < len ? pos[i] + 1 : len;  // key j is visible iff j <= pos
    const float* kg = k + (cr * kvh + g) * len * dim;
    const float* vg = v + (cr * kvh + g) * len * dim;
    const float* qg = q + (i * heads + g * group) * dim;
    float* og = out + (i * heads + g * group) * dim;
    thread_local std::vector<float> score;  // score[h * keys + j], per core
    score.resize(group * keys);
    for (int64_t j = 0; j < kWideLanes && j < keys; ++j)
      for (int64_t c = 0; c < dim; c += 16) __builtin_prefetch(kg + j * dim + c);
    for (int64_t j0 = 0; j0 < keys; j0 += kWideLanes) {
      const int64_t n = keys - j0 < kWideLanes ? keys - j0 : kWideLanes;
      // Cache rows are short streams the hardware prefetcher picks up late: fetch the next
      // block's key rows and this block's value rows (for the sums below) while the dots run.
      for (int64_t j = j0; j < j0 + n; ++j)
        for (int64_t c = 0; c < dim; c += 16) {
          __builtin_prefetch(kg + (j + kWideLanes) * dim + c);
          __builtin_prefetch(vg + j * dim + c);
        }
      for (int64_t h = 0; h < group; ++h) {
        float* sh = &score[h * keys + j0];
        if (dim == 4 * kWideLanes) ScoreKeys<4>(qg + h * dim, kg + j0 * dim, n, dim, scale, sh);
        else if (dim == 8 * kWideLanes) ScoreKeys<8>(qg + h * dim, kg + j0 * dim, n, dim, scale, sh);
        else ScoreKeys<0>(qg + h * dim, kg + j0 * dim, n, dim, scale, sh);
      }
    }
    for (int64_t h = 0; h < group; ++h) {
      float* w = score.data() + h * keys;
      SoftmaxRow(w, keys);
      float* oh = og + h * dim;
      int64_t d = 0;
      for (; d + 4 * kWideLanes <= dim; d += 4 * kWideLanes) WeightedRows<4>(w, vg + d, dim, keys, oh + d);
      for (; d + kWideLanes <= dim; d += kWideLanes) WeightedRows<1>(w, vg + d, dim, keys, oh + d);
      for (; d < dim; ++d) {
        float sum = 0;
        for (int64_t j = 0; j < keys; ++j) sum += w[j] * vg[j * dim + d];
        oh[d] = sum;
      }
    }
  });
}

}  // namespace cold
