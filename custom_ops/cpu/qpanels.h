// Integer-activation GEMVs over 4-, 6- and 8-bit weights in panels (AVX-512 VNNI), and the
// activation quantiser they read.
//
// A panel holds 16 outputs; for each block of 32 inputs it stores the 16 rows' quantised
// values as 8 groups of 4 inputs x 16 outputs x 4 bytes (cold_ms/ops/panels.py writes it,
// the numpy twin is there too), then the 16 scales (and mins, or weight sums). One VPDPBUSD
// multiplies a group by 4 activation bytes broadcast to every lane, each lane an output: no
// sums across lanes, 64 multiply-adds an instruction. Activations are quantised per block of
// 32, once per call for all panels: to int8 as llama.cpp's q8_0 does (scale = max |x| / 127),
// or to int16 (max |x| / 32767), whose weights are widened to 16 bits for VPDPWSSD (32
// multiply-adds an instruction, pairs of inputs per lane). On SmolLM2-135M's hidden states
// int8 moved the logits by up to 1.6 (greedy choices with margins below that flip), int16 by
// 0.005 (cold_ms/ops/prepare.py has the measurements).
//
//   q8_0: w = d q (q int8)       int8: dot = d dx (sum (qx + 128) q - 128 sum q)  (VPDPBUSD is u8 x s8)
//   q4_0: w = d (q - 8)          dot = d dx (sum q qx - 8 sum qx)
//   q4_1: w = d q + m            dot = d dx sum q qx + m dx sum qx
//   q4_k: q4_1's, d and m float32 per sub-block of 32 (d sc and -dmin m, multiplied at load)
//   q6_k: w = d_h (q - 32)        dot = sum over halves h of 16: d_h dx (sum_h q qx - 32 sum_h qx)
#pragma once

#include <cstdint>
#include <vector>

#include "wtypes.h"

namespace cold {

// Quantised activations of n rows: q8 (n, in) int8 (uint8 q + 128 when `offset`) or q16 (n, in)
// int16, and per row and block of 32: d (the scale), sum(q), its first 16 values' sum16 and
// s = d * sum(q).
struct QuantRows {
  std::vector<int8_t> q8;
  std::vector<int16_t> q16;
  std::vector<float> d, s;
  std::vector<int32_t> sum, sum16;
};

// Bytes of a 32-input panel block of type C: its scales (and mins) start at kScalesAt.
template <int C>
constexpr int kScalesAt = C == kQ8_0 || C == kQ6_K ? 512 : 256;

// Row `lane` of a panel as float32 over `in` values (an embedding row of a tied head): the
// same values to_float gives for the row as stored.
inline void PanelRowToFloat(const uint8_t* panel, int32_t code, int64_t panel_block, int64_t lane, int64_t in,
                            float* dst) {
  const auto f32 = [](const uint8_t* p) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  };
  for (int64_t b = 0; b < in / 32; ++b, dst += 32) {
    const uint8_t* pb = panel + b * panel_block;
    for (int k = 0; k < 32; ++k) {
      const uint8_t byte = code == kQ8_0 || code == kQ6_K ? pb[(k / 4) * 64 + lane * 4 + k % 4]
                                                          : pb[(k % 16 / 4) * 64 + lane * 4 + k % 4];
      const float q = static_cast<float>(k < 16 ? byte & 15 : byte >> 4);
      if (code == kQ8_0) dst[k] = HalfAt(pb + 512 + 2 * lane) * static_cast<float>(static_cast<int8_t>(byte));
      else if (code == kQ4_0) dst[k] = HalfAt(pb + 256 + 2 * lane) * (q - 8.0f);
      else if (code == kQ4_1) dst[k] = HalfAt(pb + 256 + 2 * lane) * q + HalfAt(pb + 288 + 2 * lane);
      else if (code == kQ4_K) dst[k] = f32(pb + 256 + 4 * lane) * q + f32(pb + 320 + 4 * lane);
      else dst[k] = f32(pb + 512 + 64 * (k / 16) + 4 * lane) * (static_cast<float>(byte) - 32.0f);
    }
  }
}

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
constexpr bool kIntegerPanels = true;

// Activations to `bits` (8 or 16) per block of 32: d = max |x| / (2^(bits-1) - 1), q = x / d
// rounded to nearest (even on ties), as the numpy twin in ops/panels.py.
inline void QuantiseRows(const float* x, int64_t n, int64_t in, int bits, bool offset, QuantRows* out) {
  const int64_t blocks = in / 32;
  (bits == 8 ? out->q8.resize(n * in) : out->q16.resize(n * in));
  out->d.resize(n * blocks);
  out->s.resize(n * blocks);
  out->sum.resize(n * blocks);
  out->sum16.resize(n * blocks);
  const float top = bits == 8 ? 127.0f : 32767.0f;
  for (int64_t i = 0; i < n * blocks; ++i) {
    const float* xb = x + i * 32;
    const __m512 a = _mm512_loadu_ps(xb), b = _mm512_loadu_ps(xb + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
    const float d = amax / top, inv = d ? 1 / d : 0;
    const __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, _mm512_set1_ps(inv)));
    const __m512i qb = _mm512_cvtps_epi32(_mm512_mul_ps(b, _mm512_set1_ps(inv)));
    const int32_t sum16 = _mm512_reduce_add_epi32(qa), sum = sum16 + _mm512_reduce_add_epi32(qb);
    if (bits == 8) {
      const __m128i off = _mm_set1_epi8(offset ? static_cast<char>(0x80) : 0);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(&out->q8[i * 32]), _mm_xor_si128(_mm512_cvtsepi32_epi8(qa), off));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(&out->q8[i * 32 + 16]), _mm_xor_si128(_mm512_cvtsepi32_epi8(qb), off));
    } else {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(&out->q16[i * 32]), _mm512_cvtsepi32_epi16(qa));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(&out->q16[i * 32 + 16]), _mm512_cvtsepi32_epi16(qb));
    }
    out->d[i] = d;
    out->sum[i] = sum;
    out->sum16[i] = sum16;
    out->s[i] = d * static_cast<float>(sum);
  }
}

// Prefetch distance of the weight stream: 2, 8 and 16 KB measured no better (tools/kernel_bench.cc).
constexpr int64_t kAheadBytes = 4096;

inline __m512i Bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

inline __m512i Bcast8(const int16_t* p) {
  int64_t v;
  std::memcpy(&v, p, 8);
  return _mm512_set1_epi64(v);
}

// One panel block of type C unpacked: w[g] the 16 outputs x 4 inputs 4g .. 4g + 3 as bytes
// (unsigned nibbles or q6_k's 0..63, or q8_0's signed values), the scales dw (and mins mw of
// q4_1 and q4_k; q6_k: dw of inputs 0..15, mw the scales of inputs 16..31), and for int8
// activations of q8_0 the offset -128 sum q.
template <int C>
struct BlockWeights {
  __m512i w[8];
  __m512 dw, mw;
  __m512i base;

  explicit BlockWeights(const uint8_t* pb) {
    const __m512i low = _mm512_set1_epi8(0x0F);
    if constexpr (C == kQ8_0 || C == kQ6_K) {
      for (int g = 0; g < 8; ++g) w[g] = _mm512_loadu_si512(pb + 64 * g);
    } else {
      for (int i = 0; i < 4; ++i) {
        const __m512i v = _mm512_loadu_si512(pb + 64 * i);
        w[i] = _mm512_and_si512(v, low);
        w[i + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
      }
    }
    if constexpr (C == kQ4_K || C == kQ6_K) {
      dw = _mm512_loadu_ps(pb + kScalesAt<C>);
      mw = _mm512_loadu_ps(pb + kScalesAt<C> + 64);
    } else {
      dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pb + kScalesAt<C>)));
      mw = C == kQ4_1 ? _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pb + 288)))
                      : _mm512_setzero_ps();
    }
    base = C == kQ8_0 ? _mm512_slli_epi32(_mm512_sub_epi32(_mm512_setzero_si512(), _mm512_cvtepi16_epi32(
                                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pb + 544)))), 7)
                      : _mm512_setzero_si512();
  }
};

// Bytes 32 h .. 32 h + 31 of a group widened to 16 bits: lane pair (2i, 2i + 1) of the result
// holds output 8 h + i/2's inputs 2 (i % 2), + 1 of the group.
template <int C>
inline __m512i Words(__m512i bytes, int h) {
  const __m256i half = h ? _mm512_extracti64x4_epi64(bytes, 1) : _mm512_castsi512_si256(bytes);
  return C == kQ8_0 ? _mm512_cvtepi8_epi16(half) : _mm512_cvtepu8_epi16(half);
}

// The integer dots of one token row over groups G0 .. G1 - 1 of a block, one int32 lane per output.
template <int C, int G0 = 0, int G1 = 8>
inline __m512i Dot8(const BlockWeights<C>& bw, const int8_t* xb) {
  __m512i dot = bw.base;
#pragma GCC unroll 8
  for (int g = G0; g < G1; ++g)
    dot = C == kQ8_0 ? _mm512_dpbusd_epi32(dot, Bcast4(xb + 4 * g), bw.w[g]) : _mm512_dpbusd_epi32(dot, bw.w[g], Bcast4(xb + 4 * g));
  return dot;
}

template <int C, int G0 = 0, int G1 = 8>
inline __m512i Dot16(const __m512i (&words)[16], const int16_t* xb) {
  __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
#pragma GCC unroll 8
  for (int g = G0; g < G1; ++g) {
    const __m512i x = Bcast8(xb + 4 * g);  // inputs 4g .. 4g + 3: a pair for the even lanes, one for the odd
    lo = _mm512_dpwssd_epi32(lo, words[2 * g], x);
    hi = _mm512_dpwssd_epi32(hi, words[2 * g + 1], x);
  }
  // an output's two lanes summed into the even one, then the even lanes of lo (outputs 0..7) and hi (8..15)
  lo = _mm512_add_epi32(lo, _mm512_srli_epi64(lo, 32));
  hi = _mm512_add_epi32(hi, _mm512_srli_epi64(hi, 32));
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  return _mm512_permutex2var_epi32(lo, even, hi);
}

// *acc += q6_k's block dots of one token row (activations from x_at, block `at`): each half of
// 16 inputs has its own scale, so the halves are summed apart.
template <int Bits>
__attribute__((always_inline)) inline void Q6Dots(const BlockWeights<kQ6_K>& bw, const __m512i (&words)[16],
                                                  const QuantRows& xq, int64_t x_at, int64_t at, __m512* acc) {
  __m512i lo, hi;
  if constexpr (Bits == 8) {
    lo = Dot8<kQ6_K, 0, 4>(bw, xq.q8.data() + x_at), hi = Dot8<kQ6_K, 4, 8>(bw, xq.q8.data() + x_at);
  } else {
    lo = Dot16<kQ6_K, 0, 4>(words, xq.q16.data() + x_at), hi = Dot16<kQ6_K, 4, 8>(words, xq.q16.data() + x_at);
  }
  lo = _mm512_sub_epi32(lo, _mm512_set1_epi32(32 * xq.sum16[at]));
  hi = _mm512_sub_epi32(hi, _mm512_set1_epi32(32 * (xq.sum[at] - xq.sum16[at])));
  const __m512 dx = _mm512_set1_ps(xq.d[at]);
  *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo), _mm512_mul_ps(bw.dw, dx), *acc);
  *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), _mm512_mul_ps(bw.mw, dx), *acc);
}

// acc[t] += the dots of R token rows with one panel's block b, for type C, `bits`-bit activations.
template <int C, int R, int Bits>
__attribute__((always_inline)) inline void PanelBlockDots(const uint8_t* pb, const QuantRows& xq, int64_t row0,
                                                          int64_t in, int64_t b, __m512* acc) {
  const BlockWeights<C> bw(pb);
  __m512i words[16];
  if constexpr (Bits == 16)
    for (int g = 0; g < 8; ++g) words[2 * g] = Words<C>(bw.w[g], 0), words[2 * g + 1] = Words<C>(bw.w[g], 1);
#pragma GCC unroll 16
  for (int t = 0; t < R; ++t) {
    const int64_t row = row0 + t, at = row * (in / 32) + b;
    if constexpr (C == kQ6_K) {
      Q6Dots<Bits>(bw, words, xq, row * in + b * 32, at, &acc[t]);
      continue;
    }
    __m512i dot;
    if constexpr (Bits == 8) dot = Dot8<C>(bw, xq.q8.data() + row * in + b * 32);
    else dot = Dot16<C>(words, xq.q16.data() + row * in + b * 32);
    if constexpr (C == kQ4_0) dot = _mm512_sub_epi32(dot, _mm512_set1_epi32(8 * xq.sum[at]));
    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(bw.dw, _mm512_set1_ps(xq.d[at])), acc[t]);
    if constexpr (C == kQ4_1 || C == kQ4_K) acc[t] = _mm512_fmadd_ps(bw.mw, _mm512_set1_ps(xq.s[at]), acc[t]);
  }
}

// y[row0 + t][16 p .. 16 p + 16) for R token rows over panel p.
template <int C, int R, int Bits>
void PanelDots(const uint8_t* panel, int64_t panel_block, const QuantRows& xq, int64_t row0, int64_t in, float* y,
               int64_t out, int64_t p) {
  __m512 acc[R];
  for (int t = 0; t < R; ++t) acc[t] = _mm512_setzero_ps();
  const int64_t blocks = in / 32;
  for (int64_t b = 0; b < blocks; ++b) {
    // A core's panels are one stream (DenseQuantPanels): fetch kAheadBytes on, into the next
    // panel near the end of this one. Past the end of W a prefetch is a no-op.
    for (int64_t c = 0; c < panel_block; c += 64) __builtin_prefetch(panel + b * panel_block + kAheadBytes + c);
    PanelBlockDots<C, R, Bits>(panel + b * panel_block, xq, row0, in, b, acc);
  }
  for (int t = 0; t < R; ++t) _mm512_storeu_ps(y + (row0 + t) * out + 16 * p, acc[t]);
}

// Every token row over panel p: tiles of 8 rows (int8: the 8 weight groups, 8 accumulators and
// the scales fit the 32 registers; int16: its 16 widened groups spill a little, measured no
// slower than tiles of 4), then 4, 2, 1.
template <int C, int Bits>
void PanelAllRows(const uint8_t* panel, int64_t panel_block, const QuantRows& xq, int64_t n, int64_t in, float* y,
                  int64_t out, int64_t p) {
  int64_t t = 0;
  for (; t + 8 <= n; t += 8) PanelDots<C, 8, Bits>(panel, panel_block, xq, t, in, y, out, p);
  if (n - t >= 4) PanelDots<C, 4, Bits>(panel, panel_block, xq, t, in, y, out, p), t += 4;
  if (n - t >= 2) PanelDots<C, 2, Bits>(panel, panel_block, xq, t, in, y, out, p), t += 2;
  if (n - t >= 1) PanelDots<C, 1, Bits>(panel, panel_block, xq, t, in, y, out, p);
}

template <int Bits>
void PanelRun(int32_t code, const uint8_t* panel, int64_t panel_block, const QuantRows& xq, int64_t n, int64_t in,
              float* y, int64_t out, int64_t p) {
  if (code == kQ8_0) PanelAllRows<kQ8_0, Bits>(panel, panel_block, xq, n, in, y, out, p);
  else if (code == kQ4_0) PanelAllRows<kQ4_0, Bits>(panel, panel_block, xq, n, in, y, out, p);
  else if (code == kQ4_1) PanelAllRows<kQ4_1, Bits>(panel, panel_block, xq, n, in, y, out, p);
  else if (code == kQ4_K) PanelAllRows<kQ4_K, Bits>(panel, panel_block, xq, n, in, y, out, p);
  else PanelAllRows<kQ6_K, Bits>(panel, panel_block, xq, n, in, y, out, p);
}

// y = x W^T for n token rows, W of type code in integer panels (out / 16, in / 32, panel_block
// bytes), activations quantised to `bits` (8 or 16); the panels spread over the cores when
// `parallel`.
inline void DenseQuantPanels(const float* x, const uint8_t* w, int32_t code, int64_t panel_block, int bits, float* y,
                             int64_t n, int64_t in, int64_t out, bool parallel) {
  thread_local QuantRows mine;
  QuantRows& xq = mine;  // a reference the workers share (a thread_local name is each thread's own)
  QuantiseRows(x, n, in, bits, code == kQ8_0 && bits == 8, &xq);
  // Each core takes one run of consecutive panels: one long stream from memory, which the
  // prefetches keep ahead of (panels handed out one by one were short streams, each met late).
  const int64_t panels = out / 16, bytes = in / 32 * panel_block, cores = parallel ? Threads() : 1;
  ForEach(cores, parallel, [&](int64_t core) {
    for (int64_t p = panels * core / cores; p < panels * (core + 1) / cores; ++p) {
      if (bits == 8) PanelRun<8>(code, w + p * bytes, panel_block, xq, n, in, y, out, p);
      else PanelRun<16>(code, w + p * bytes, panel_block, xq, n, in, y, out, p);
    }
  });
}
#else
constexpr bool kIntegerPanels = false;

inline void DenseQuantPanels(const float*, const uint8_t*, int32_t, int64_t, int, float*, int64_t, int64_t,
                             int64_t, bool) {}
#endif

}  // namespace cold
