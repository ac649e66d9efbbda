// Weight types the CPU kernels read: their codes and table are generated from
// cold_ms/wtypes.py (cold_generated.h); this file holds each type's routine. A type stores a
// matrix row by row in blocks (GGUF's for the quantised types; see wtypes.py for each
// layout); to_float turns whole blocks into float32 with the same arithmetic, operation for
// operation, as the numpy twin in wtypes.py (this library is built without FMA contraction,
// so the values are bit-for-bit those numpy computes).
#pragma once

#include <cstdint>
#include <cstring>

#include "cold_generated.h"
#include "simd.h"

namespace cold {

struct WType {
  const char* name;
  int64_t block, bytes;                                    // values and bytes per block
  int64_t panel_bytes;  // bytes of a 16-output panel's block in qpanels.h's layout; 0: no such layout
  void (*to_float)(const uint8_t* src, float* dst, int64_t blocks);
};

typedef uint8_t WideBytes __attribute__((vector_size(kWideLanes)));
typedef int8_t WideSBytes __attribute__((vector_size(kWideLanes)));
typedef uint16_t WideHalfBits __attribute__((vector_size(2 * kWideLanes)));
typedef _Float16 WideHalves __attribute__((vector_size(2 * kWideLanes)));

inline float HalfAt(const uint8_t* p) {
  _Float16 h;
  std::memcpy(&h, p, 2);
  return static_cast<float>(h);
}

// kWideLanes bytes (halves) at p, each widened to a 32-bit lane. Intrinsics: GCC 12 turns
// __builtin_convertvector from bytes to ints into a scalar loop.
inline WideInts U8Lanes(const uint8_t* p) {
#if defined(__AVX512F__)
  return (WideInts)_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#elif defined(__AVX2__)
  return (WideInts)_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
#else
  WideBytes b;
  std::memcpy(&b, p, sizeof(b));
  return __builtin_convertvector(b, WideInts);
#endif
}

inline WideInts S8Lanes(const uint8_t* p) {
#if defined(__AVX512F__)
  return (WideInts)_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#elif defined(__AVX2__)
  return (WideInts)_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
#else
  WideSBytes b;
  std::memcpy(&b, p, sizeof(b));
  return __builtin_convertvector(b, WideInts);
#endif
}

inline WideInts U16Lanes(const uint8_t* p) {
#if defined(__AVX512F__)
  return (WideInts)_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
#elif defined(__AVX2__)
  return (WideInts)_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#else
  WideHalfBits h;
  std::memcpy(&h, p, sizeof(h));
  return __builtin_convertvector(h, WideInts);
#endif
}

inline Wide HalfLanes(const uint8_t* p) {
#if defined(__AVX512F__)
  return (Wide)_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
#elif defined(__F16C__)
  return (Wide)_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#else
  WideHalves h;
  std::memcpy(&h, p, sizeof(h));
  return __builtin_convertvector(h, Wide);
#endif
}

inline Wide Floats(WideInts v) { return __builtin_convertvector(v, Wide); }

inline void F32ToFloat(const uint8_t* src, float* dst, int64_t n) { std::memcpy(dst, src, sizeof(float) * n); }

inline void BF16ToFloat(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + kWideLanes <= n; i += kWideLanes) {
    const WideInts u = U16Lanes(src + 2 * i) << 16;  // bf16 is the top half of f32
    std::memcpy(dst + i, &u, sizeof(u));
  }
  for (; i < n; ++i) {
    const uint32_t u = static_cast<uint32_t>(src[2 * i] | src[2 * i + 1] << 8) << 16;
    std::memcpy(dst + i, &u, 4);
  }
}

inline void F16ToFloat(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + kWideLanes <= n; i += kWideLanes) StoreWide(dst + i, HalfLanes(src + 2 * i));
  for (; i < n; ++i) dst[i] = HalfAt(src + 2 * i);
}

inline void Q8_0ToFloat(const uint8_t* src, float* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += 34, dst += 32) {
    const Wide d = Splat(HalfAt(src));
    for (int i = 0; i < 32; i += kWideLanes) StoreWide(dst + i, d * Floats(S8Lanes(src + 2 + i)));
  }
}

// Blocks of 32 as 16 bytes of nibbles (value i low, value i + 16 high): q4_0 and q4_1.
template <bool kMin>
inline void Q4ToFloat(const uint8_t* src, float* dst, int64_t blocks) {
  constexpr int64_t kBytes = kMin ? 20 : 18;
  for (int64_t b = 0; b < blocks; ++b, src += kBytes, dst += 32) {
    const Wide d = Splat(HalfAt(src));
    const uint8_t* qs = src + (kMin ? 4 : 2);
    for (int i = 0; i < 16; i += kWideLanes) {
      const WideInts q = U8Lanes(qs + i);
      if (kMin) {
        const Wide m = Splat(HalfAt(src + 2));
        StoreWide(dst + i, d * Floats(q & 15) + m);
        StoreWide(dst + 16 + i, d * Floats(q >> 4) + m);
      } else {
        StoreWide(dst + i, d * (Floats(q & 15) - 8.0f));
        StoreWide(dst + 16 + i, d * (Floats(q >> 4) - 8.0f));
      }
    }
  }
}

// q5_0: q4_0's nibbles plus a fifth bit per value from the little-endian uint32 qh (bit j: value j),
// kWideLanes values at a time (per-lane shifts pick each value's bit).
inline void Q5_0ToFloat(const uint8_t* src, float* dst, int64_t blocks) {
  WideInts lane;
  for (int j = 0; j < kWideLanes; ++j) lane[j] = j;
  for (int64_t b = 0; b < blocks; ++b, src += 22, dst += 32) {
    const Wide d = Splat(HalfAt(src));
    uint32_t bits;
    std::memcpy(&bits, src + 2, sizeof(bits));
    const WideInts qh = WideInts{} + static_cast<int32_t>(bits);
    for (int i = 0; i < 16; i += kWideLanes) {
      const WideInts q = U8Lanes(src + 6 + i);
      const WideInts low = (q & 15) | (((qh >> (lane + i)) & 1) << 4);
      const WideInts high = (q >> 4) | (((qh >> (lane + i + 16)) & 1) << 4);
      StoreWide(dst + i, d * (Floats(low) - 16.0f));
      StoreWide(dst + 16 + i, d * (Floats(high) - 16.0f));
    }
  }
}

// q4_k's 6-bit scale and min of sub-block j from its 12 packed bytes.
inline void K4ScaleMin(const uint8_t* s, int j, float* scale, float* min) {
  if (j < 4) {
    *scale = s[j] & 63;
    *min = s[j + 4] & 63;
  } else {
    *scale = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

inline void Q4_KToFloat(const uint8_t* src, float* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += 144, dst += 256) {
    const float d = HalfAt(src), dmin = HalfAt(src + 2);
    for (int c = 0; c < 4; ++c) {  // 32 bytes: sub-block 2c in the low nibbles, 2c + 1 in the high
      float sc[2], mn[2];
      K4ScaleMin(src + 4, 2 * c, &sc[0], &mn[0]);
      K4ScaleMin(src + 4, 2 * c + 1, &sc[1], &mn[1]);
      const Wide d1 = Splat(d * sc[0]), m1 = Splat(dmin * mn[0]), d2 = Splat(d * sc[1]), m2 = Splat(dmin * mn[1]);
      for (int l = 0; l < 32; l += kWideLanes) {
        const WideInts q = U8Lanes(src + 16 + 32 * c + l);
        StoreWide(dst + 64 * c + l, d1 * Floats(q & 15) - m1);
        StoreWide(dst + 64 * c + 32 + l, d2 * Floats(q >> 4) - m2);
      }
    }
  }
}

inline void Q6_KToFloat(const uint8_t* src, float* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += 210, dst += 256) {
    const Wide d = Splat(HalfAt(src + 208));
    for (int h = 0; h < 2; ++h) {  // each half: 64 bytes of low nibbles, 32 of 2-bit highs, 8 scales
      const uint8_t *ql = src + 64 * h, *qh = src + 128 + 32 * h;
      const int8_t* sc = reinterpret_cast<const int8_t*>(src + 192 + 8 * h);
      float* y = dst + 128 * h;
      for (int l = 0; l < 32; l += kWideLanes) {
        const WideInts a = U8Lanes(ql + l), c = U8Lanes(ql + 32 + l), hi = U8Lanes(qh + l);
        const WideInts q[4] = {(a & 15) | ((hi & 3) << 4), (c & 15) | (((hi >> 2) & 3) << 4),
                               (a >> 4) | (((hi >> 4) & 3) << 4), (c >> 4) | (((hi >> 6) & 3) << 4)};
        for (int k = 0; k < 4; ++k)  // quarter k, values l.. of it: sub-block 2k + l / 16
          StoreWide(y + 32 * k + l, (Floats(q[k]) - 32.0f) * Splat(sc[2 * k + l / 16]) * d);
      }
    }
  }
}

inline void Q4_0ToFloat(const uint8_t* src, float* dst, int64_t blocks) { Q4ToFloat<false>(src, dst, blocks); }
inline void Q4_1ToFloat(const uint8_t* src, float* dst, int64_t blocks) { Q4ToFloat<true>(src, dst, blocks); }

inline constexpr WType kWTypes[kNumWTypes] = {COLD_WTYPE_TABLE};

// A weight matrix as a kernel receives it: type, layout and sizes, read from its operand.
struct WeightRef {
  const void* data = nullptr;
  const WType* type = nullptr;
  bool panels = false;  // float32 panels (out / 16, in, 16), integer panels of blocks (qpanels.h), else rows
  int act_bits = 0;     // integer panels: activations quantised to 8 or 16 bits
  int64_t in = 0, out = 0, row_bytes = 0;
};

}  // namespace cold
