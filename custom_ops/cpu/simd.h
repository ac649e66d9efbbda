// The vector type of the decode kernels and its few operations, for AVX-512 and for the
// AVX2 (-march=haswell) build alike.
#pragma once

#include <cstdint>
#include <cstring>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "lora_kernels.h"

namespace cold {

// 16 floats where AVX-512 exists (its 32 registers hold the GEMV's accumulator tiles, and
// it doubles the multiply-adds per instruction, which bound the GEMV at 16 token rows),
// else the 8-float Vec.
#if defined(__AVX512F__)
typedef float Wide __attribute__((vector_size(64)));
constexpr int kWideLanes = 16;
constexpr int kVectorRegisters = 32;
#else
typedef Vec Wide;
constexpr int kWideLanes = kLanes;
constexpr int kVectorRegisters = 16;
#endif
typedef int32_t WideInts __attribute__((vector_size(sizeof(Wide))));

inline Wide LoadWide(const float* p) { Wide v; std::memcpy(&v, p, sizeof(v)); return v; }
inline void StoreWide(float* p, Wide v) { std::memcpy(p, &v, sizeof(v)); }

// acc + a * b in one rounding. The library is built with -std=c++17, where GCC contracts
// nothing into FMAs (select.cc relies on that to match its MindSpore twin), so the GEMVs
// ask for them: on CPUs whose FMA units also do the adds, a multiply and an add are two
// instructions where the fused one is one.
inline Wide Fma(Wide a, Wide b, Wide acc) {
#if defined(__AVX512F__)
  return (Wide)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)acc);
#elif defined(__FMA__)
  return (Wide)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)acc);
#else
  return acc + a * b;
#endif
}

// Sum of the lanes by halving (a lane-by-lane scalar loop costs more than the dot product
// it finishes when `in` is a few hundred).
inline float HSum(Wide v) {
#if defined(__AVX512F__)
  return _mm512_reduce_add_ps((__m512)v);
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

}  // namespace cold
