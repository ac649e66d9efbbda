// The GEMVs of a decode step or prompt chunk: y = x W^T for a handful of token rows, each
// weight read from memory once for all rows. W comes as a WeightRef: float32 rows or
// panels (cold_ms/ops/panels.py), or rows of blocks of any type in wtypes.h, read as stored.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "qpanels.h"
#include "wtypes.h"

namespace cold {

// Token rows of the largest GEMV register tile; longer inputs run in blocks of this many.
constexpr int64_t kMaxRows = 16;
// Output rows per work item handed to a core: large enough to amortise scheduling,
// small enough that 2 cores get balanced work on the narrowest (192-row) projections.
constexpr int64_t kRowsPerItem = 48;
// Below this many multiply-adds a second core costs more to wake than it saves.
constexpr int64_t kParallelMacs = 1 << 16;

// Accumulators of a GEMV register tile: the registers left beside NW weight rows and a token row.
constexpr int kTileAcc = kVectorRegisters == 32 ? 24 : 12;

// acc[t][j] += x_t[0 .. kn) . w_j[0 .. kn) for G token rows (stride xs) and NW weight rows (stride
// ws), G * NW <= kTileAcc. Every loop is unrolled so the tile lives in registers throughout.
// AHEAD > 0: prefetch the same line of the weight rows AHEAD tiles on.
template <int G, int NW, int AHEAD>
__attribute__((always_inline)) inline void DotAcc(const float* x, int64_t xs, const float* w, int64_t ws, int64_t kn,
                                                  Wide (&acc)[G][NW]) {
  const auto step = [&](int64_t k, auto load) {
    Wide wv[NW];
#pragma GCC unroll 8
    for (int j = 0; j < NW; ++j) {
      wv[j] = load(w + j * ws + k);
      // the hardware prefetcher alone left the 16-row GEMV waiting on memory (2.4x slower);
      // past the end of W a prefetch is a no-op
      if constexpr (AHEAD > 0) __builtin_prefetch(w + (AHEAD * NW + j) * ws + k);
    }
#pragma GCC unroll 16
    for (int t = 0; t < G; ++t) {
      Wide xv = load(x + t * xs + k);
#if defined(__x86_64__)
      // Keeps xv in a register: GCC otherwise folds the load into each of the NW
      // multiply-adds, and x (up to 96 KB at 16 rows) is read from L2 NW times (1.5x slower).
      asm("" : "+v"(xv));
#endif
#pragma GCC unroll 8
      for (int j = 0; j < NW; ++j) acc[t][j] = Fma(xv, wv[j], acc[t][j]);
    }
  };
  const int64_t full = kn - kn % kWideLanes;
  for (int64_t k = 0; k < full; k += kWideLanes) step(k, [](const float* p) { return LoadWide(p); });
  if (full < kn) step(full, [&](const float* p) { return LoadTail(p, kn - full); });
}

// y[t][j] = x_t . W_j over `in` for G token rows and NW weight rows, W row-major float32.
template <int G, int NW, int AHEAD>
__attribute__((always_inline)) inline void DotBlock(const float* x, int64_t in, const float* w, float* y,
                                                    int64_t out) {
  Wide acc[G][NW];
#pragma GCC unroll 16
  for (int t = 0; t < G; ++t)
#pragma GCC unroll 8
    for (int j = 0; j < NW; ++j) acc[t][j] = Wide{};
  DotAcc<G, NW, AHEAD>(x, in, w, in, in, acc);
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
      for (int v = 0; v < NV; ++v) acc[t][v] = Fma(xb, wv[v], acc[t][v]);
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

// ---- weights of any type, rows of blocks as stored -----------------------------------------
// A tile's NW weight rows are turned into float32 kChunk values at a time, into a buffer
// that stays in L1 (8 rows x 256 floats = 8 KB), and multiplied there by every group of
// token rows; partial sums wait in L1 between chunks. Decoding costs a few instructions
// per value, once per tile whatever the number of token rows; what comes from memory is
// the stored bytes (0.56 bytes a value for q4_1 against 4 for float32).
constexpr int64_t kChunk = 256;  // a multiple of every block size in wtypes.h

// part[t][j] (+)= x_t[0 .. kn) . buf_j[0 .. kn) for G token rows (stride in) and NW buffer rows.
template <int G, int NW>
__attribute__((always_inline)) inline void ChunkDots(const float* x, int64_t in, const float* buf, int64_t kn,
                                                     bool first, Wide* part) {
  Wide acc[G][NW];
#pragma GCC unroll 8
  for (int t = 0; t < G; ++t)
#pragma GCC unroll 8
    for (int j = 0; j < NW; ++j) acc[t][j] = first ? Wide{} : part[t * NW + j];
  DotAcc<G, NW, 0>(x, in, buf, kChunk, kn, acc);
#pragma GCC unroll 8
  for (int t = 0; t < G; ++t)
#pragma GCC unroll 8
    for (int j = 0; j < NW; ++j) part[t * NW + j] = acc[t][j];
}

// y[t][o .. o + NW) = x_t W[o .. o + NW)^T for N token rows (groups of G) over a typed W.
template <auto ToFloat, int N, int G, int NW>
void TypedTile(const float* x, const WeightRef& w, float* y, int64_t o) {
  alignas(64) float buf[NW * kChunk];
  Wide part[N * NW];
  const uint8_t* rows = static_cast<const uint8_t*>(w.data) + o * w.row_bytes;
  const int64_t block = w.type->block, bytes = w.type->bytes;
  for (int64_t k0 = 0; k0 < w.in; k0 += kChunk) {
    const int64_t kn = w.in - k0 < kChunk ? w.in - k0 : kChunk, at = k0 / block * bytes;
    for (int j = 0; j < NW; ++j) {
      const uint8_t* src = rows + j * w.row_bytes + at;
      // the next tile's bytes of this chunk: NW rows are NW short streams the hardware
      // prefetcher meets late
      for (int64_t c = 0; c < kn / block * bytes; c += 64) __builtin_prefetch(src + NW * w.row_bytes + c);
      ToFloat(src, buf + j * kChunk, kn / block);
    }
    for (int g = 0; g < N; g += G) ChunkDots<G, NW>(x + g * w.in + k0, w.in, buf, kn, k0 == 0, part + g * NW);
  }
  for (int t = 0; t < N; ++t)
    for (int j = 0; j < NW; ++j) y[t * w.out + o + j] = HSum(part[t * NW + j]);
}

template <auto ToFloat, int N>
void TypedRange(const float* x, const WeightRef& w, float* y, int64_t o0, int64_t o1) {
  constexpr int G = N == 4 ? 2 : N < 8 ? N : 8;
  constexpr int NW = kTileAcc / G < 8 ? kTileAcc / G : 8;
  int64_t o = o0;
  for (; o + NW <= o1; o += NW) TypedTile<ToFloat, N, G, NW>(x, w, y, o);
  for (; o < o1; ++o) TypedTile<ToFloat, N, G, 1>(x, w, y, o);
}

// Work items of kRowsPerItem output rows over `blocks` consecutive blocks of N token rows.
template <int N, typename Range>
void GemvItems(int64_t in, int64_t out, int64_t blocks, const Range& range) {
  const int64_t items = (out + kRowsPerItem - 1) / kRowsPerItem;
  ForEach(items, blocks * N * out * in >= kParallelMacs, [&](int64_t i) {
    const int64_t o0 = i * kRowsPerItem, o1 = o0 + kRowsPerItem < out ? o0 + kRowsPerItem : out;
    for (int64_t b = 0; b < blocks; ++b) range(b, o0, o1);
  });
}

// `blocks` blocks of N token rows over row-major W of any type.
template <int N, int C = 0>
void RowsGemv(const float* x, const WeightRef& w, float* y, int64_t blocks) {
  if constexpr (C < kNumWTypes) {
    if (w.type != &kWTypes[C]) return RowsGemv<N, C + 1>(x, w, y, blocks);
    GemvItems<N>(w.in, w.out, blocks, [&](int64_t b, int64_t o0, int64_t o1) {
      const float* xb = x + b * N * w.in;
      float* yb = y + b * N * w.out;
      if constexpr (C == kF32) DotRange<N>(xb, static_cast<const float*>(w.data), yb, w.in, w.out, o0, o1);
      else TypedRange<kWTypes[C].to_float, N>(xb, w, yb, o0, o1);
    });
  }
}

// y = x W^T for n token rows, W row-major of any type: up to kMaxRows rows in the next GEMV
// tile size, then blocks of kMaxRows, on zero-padded rows where the count does not fit.
inline void DenseRows(const float* x, const WeightRef& w, float* y, int64_t n) {
  const int64_t padded = n <= 1 ? 1 : n <= 2 ? 2 : n <= 4 ? 4 : n <= 8 ? 8 : (n + kMaxRows - 1) / kMaxRows * kMaxRows;
  std::vector<float> xp, yp;
  const float* xs = x;
  float* ys = y;
  if (padded != n) {
    xp.assign(padded * w.in, 0.f);
    std::memcpy(xp.data(), x, sizeof(float) * n * w.in);
    yp.resize(padded * w.out);
    xs = xp.data();
    ys = yp.data();
  }
  switch (padded) {
    case 1: RowsGemv<1>(xs, w, ys, 1); break;
    case 2: RowsGemv<2>(xs, w, ys, 1); break;
    case 4: RowsGemv<4>(xs, w, ys, 1); break;
    case 8: RowsGemv<8>(xs, w, ys, 1); break;
    default: RowsGemv<kMaxRows>(xs, w, ys, padded / kMaxRows); break;
  }
  if (ys != y) std::memcpy(y, ys, sizeof(float) * n * w.out);
}

// y = x W^T for n token rows, W in any layout and type.
inline void DenseWeight(const float* x, const WeightRef& w, float* y, int64_t n) {
  if (w.panels && w.type == &kWTypes[kF32]) return DensePanels(x, static_cast<const float*>(w.data), y, n, w.in, w.out);
  if (w.panels)
    return DenseQuantPanels(x, static_cast<const uint8_t*>(w.data), static_cast<int32_t>(w.type - kWTypes),
                            w.type->panel_bytes, w.act_bits, y, n, w.in, w.out, n * w.out * w.in >= 4 * kParallelMacs);
  DenseRows(x, w, y, n);
}

// The WeightRef of a kernel operand and its (type code, activation bits) pair: float32 (out, in)
// or panels (out / kPanelWidth, in, kPanelWidth) with type code kF32; uint8 rows of blocks
// (out, in / block, block bytes) of any type; integer panels (out / 16, in / 32, panel_bytes)
// of a type that has them (qpanels.h), read with 8- or 16-bit activations. 0 and *w filled,
// or 1 with the reason in g_error.
inline int ReadWeight(const void* data, int ndim, const int64_t* shape, const char* dtype, const int32_t* kind,
                      WeightRef* w) {
  const int32_t code = kind[0];
  if (code < 0 || code >= kNumWTypes) return Fail("unknown weight type code");
  w->act_bits = kind[1];
  w->data = data;
  w->type = &kWTypes[code];
  w->panels = ndim == 3;
  if (!std::strcmp(dtype, "float32")) {
    if (code != kF32 || !(ndim == 2 || (ndim == 3 && shape[2] == kPanelWidth)))
      return Fail("float32 weights must be (out, in) or panels (out / 16, in, 16) with type f32");
    w->in = shape[1];
    w->out = ndim == 3 ? shape[0] * kPanelWidth : shape[0];
    w->row_bytes = w->in * 4;
    return 0;
  }
  if (std::strcmp(dtype, "uint8") || ndim != 3) return Fail("typed weights must be 3-D uint8");
  if (shape[2] == w->type->panel_bytes) {
    if (!kIntegerPanels || (w->act_bits != 8 && w->act_bits != 16))
      return Fail("integer panels are not built for this CPU, or their activation bits are not 8 or 16");
    w->out = shape[0] * 16;
    w->in = shape[1] * 32;
    return 0;
  }
  if (shape[2] != w->type->bytes) return Fail("typed weights: the last axis is neither a block nor a panel block");
  w->panels = false;
  w->out = shape[0];
  w->in = shape[1] * w->type->block;
  w->row_bytes = shape[1] * w->type->bytes;
  return 0;
}

}  // namespace cold
