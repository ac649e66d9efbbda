// Kernels of one decode step, shared by the per-op entries (linear.cc, decode_ops.cc,
// select.cc) and the whole-layer entry (layer.cc). Float32, as the CPU backend computes.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gemv.h"

namespace cold {

// Below this many elements a norm, rotation or attention call stays on one core.
constexpr int64_t kParallelElems = 1 << 15;

// y += the LoRA term of each token row's slot, for one set of rows (idx, d.rows, d.seq)
// over any number of projections: the rows are grouped by slot once, at the first call (or
// when the slot count changes), and the rank-sized buffer is the caller's to keep. Grouping
// and allocating per projection cost a layer kernel 0.6 ms a step (C++ harness,
// SmolLM2-135M, 2 to 16 token rows).
template <typename I>
class LoraTerm {
 public:
  LoraTerm(const I* idx, std::vector<float>* v) : idx_(idx), v_(v) {}

  // a, b: float32, or the float16/bfloat16 a stack is kept in (F16, BF16)
  template <typename TW>
  int Add(const float* x, const TW* a, const TW* b, float* y, const Dims& d) {
    if (d.slots != grouped_for_) {
      if (GroupBySlot(idx_, d, &groups_)) return 1;
      grouped_for_ = d.slots;
    }
    if (static_cast<int64_t>(v_->size()) < d.rows * d.seq * d.rank) v_->resize(d.rows * d.seq * d.rank);
    Shrink(x, a, v_->data(), groups_, d);
    Expand(y, v_->data(), b, y, groups_, d);  // in place: y += v B for the grouped tokens
    return 0;
  }

  // The same with stacks of MindSpore dtype `dt` (A and B share it).
  int Add(const char* dt, const float* x, const void* a, const void* b, float* y, const Dims& d) {
    if (!std::strcmp(dt, "float32")) return Add(x, static_cast<const float*>(a), static_cast<const float*>(b), y, d);
    if (!std::strcmp(dt, "float16")) return Add(x, static_cast<const F16*>(a), static_cast<const F16*>(b), y, d);
    if (!std::strcmp(dt, "bfloat16")) return Add(x, static_cast<const BF16*>(a), static_cast<const BF16*>(b), y, d);
    return Fail("LoRA stacks must be float32, float16 or bfloat16");
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

// gate[i] = act(gate[i]) * up[i] for n values: silu(g) = g / (1 + e^-g) (SwiGLU), or gelu with
// tanh, 0.5 g (1 + tanh(u)) = g / (1 + e^-2u), u = sqrt(2 / pi) (g + 0.044715 g^3) (GeGLU).
inline void GatedActivation(float* gate, const float* up, int64_t n, int32_t act) {
  if (act == kActGeluTanh)  // codes: cold_ms.architectures.ACTIVATIONS, generated
    MapWide(gate, n, [](Wide g) {
      const Wide u = 0.7978845608028654f * (g + 0.044715f * g * g * g);
      return g / (1.0f + ExpWide(-2.0f * u));
    });
  else
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

// A KV cache holds float32, or float16 / bfloat16 (half the bytes a step reads: at long contexts
// the cache, not the weights, is most of them). Rows are written rounded to nearest even and read
// back as float32; every sum below is float32.
inline Wide CacheLanes(const float* p) { return LoadWide(p); }
inline Wide CacheLanes(const F16* p) { return HalfLanes(reinterpret_cast<const uint8_t*>(p)); }
inline Wide CacheLanes(const BF16* p) {
  const WideInts u = U16Lanes(reinterpret_cast<const uint8_t*>(p)) << 16;  // bf16 is the top half of f32
  Wide v;
  std::memcpy(&v, &u, sizeof(v));
  return v;
}

// The first n < kWideLanes values at p as float32, zeros after them.
template <typename T>
inline Wide CacheTail(const T* p, int64_t n) {
  float buf[kWideLanes] = {};
  for (int64_t i = 0; i < n; ++i) buf[i] = ToF32(p[i]);
  return LoadWide(buf);
}

// dst[0 .. n) = src rounded to the cache's type (nearest even: numpy's astype(float16), and bf16's
// rounding of the top half).
inline void StoreCacheRow(float* dst, const float* src, int64_t n) { std::memcpy(dst, src, sizeof(float) * n); }
template <typename T>
inline void StoreCacheRow(T* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) StoreVec(dst + i, Load(src + i));
  for (; i < n; ++i) Store(dst + i, src[i]);
}

// s[j] = scale * (q . keys[j]) for n <= kWideLanes key rows (row stride = dim); the products
// stay in vectors until one SumEachLane. DV > 0: dim is DV whole vectors, q held in
// registers and every loop unrolled (the head sizes of LLaMA models: 64 and 128).
template <int DV, typename T>
inline void ScoreKeys(const float* q, const T* keys, int64_t n, int64_t dim, float scale, float* s) {
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
          a = Fma(qv[c], CacheLanes(keys + j * dim + c * kWideLanes), a);
          b = Fma(qv[c + 1], CacheLanes(keys + j * dim + (c + 1) * kWideLanes), b);
        }
      }
      acc[j] = a + b;
    }
  } else {
    const int64_t full = dim - dim % kWideLanes;
    for (int64_t j = 0; j < kWideLanes; ++j) {
      Wide a = {};
      if (j < n) {
        const T* kj = keys + j * dim;
        for (int64_t d = 0; d < full; d += kWideLanes) a += LoadWide(q + d) * CacheLanes(kj + d);
        if (full < dim) a += LoadTail(q + full, dim - full) * CacheTail(kj + full, dim - full);
      }
      acc[j] = a;
    }
  }
  const Wide sums = SumEachLane(acc) * scale;
  std::memcpy(s, &sums, sizeof(float) * n);
}

// y[0 .. NV vectors) = sum_j w[j] * v[j][0 .. NV vectors) over n rows of stride ld, summed in
// registers (an output row in memory is a load and a store per multiply-add).
template <int NV, typename T>
inline void WeightedRows(const float* w, const T* v, int64_t ld, int64_t n, float* y) {
  Wide acc[NV] = {};
  for (int64_t j = 0; j < n; ++j) {
    const Wide s = Splat(w[j]);
#pragma GCC unroll 8
    for (int c = 0; c < NV; ++c) acc[c] = Fma(s, CacheLanes(v + j * ld + c * kWideLanes), acc[c]);
  }
  std::memcpy(y, acc, sizeof(acc));
}

// out[i, h] = softmax(scale * q[i, h] . k[cr, g, first:end]) v[cr, g, first:end] for query token
// i = r * seq + t, end = pos[i] + 1, cache row cr = crow[r], g = h / (heads / kvh); first = 0,
// or end - window for a sliding-window layer (a query at p sees keys p - window < j <= p: only
// the window is read); caches (cache rows, kvh, len, dim) of float32, F16 or BF16. A work item is
// one (token, kv head): its query heads share each key and value row while it is in L1, so a kv
// head's cache is read once per token.
template <typename T>
inline void AttentionRows(const float* q, const T* k, const T* v, const int32_t* pos, const int32_t* crow,
                          float* out, int64_t rows, int64_t seq, int64_t heads, int64_t kvh, int64_t len,
                          int64_t dim, int64_t window, float scale) {
  constexpr int64_t kLine = 64 / sizeof(T);  // cache values per 64-byte line, one prefetch each
  const int64_t group = heads / kvh;
  const int64_t span = window > 0 && window < len ? window : len;  // keys a query may see, at most
  ForEach(rows * seq * kvh, rows * seq * heads * span * dim >= kParallelElems, [&](int64_t item) {
    const int64_t i = item / kvh, g = item % kvh, cr = crow[i / seq];
    const int64_t end = pos[i] + 1 < len ? pos[i] + 1 : len;  // key j is visible iff j <= pos
    const int64_t first = window > 0 && end > window ? end - window : 0;
    const int64_t keys = end - first;
    const T* kg = k + ((cr * kvh + g) * len + first) * dim;
    const T* vg = v + ((cr * kvh + g) * len + first) * dim;
    const float* qg = q + (i * heads + g * group) * dim;
    float* og = out + (i * heads + g * group) * dim;
    thread_local std::vector<float> score;  // score[h * keys + j], per core
    score.resize(group * keys);
    for (int64_t j = 0; j < kWideLanes && j < keys; ++j)
      for (int64_t c = 0; c < dim; c += kLine) __builtin_prefetch(kg + j * dim + c);
    for (int64_t j0 = 0; j0 < keys; j0 += kWideLanes) {
      const int64_t n = keys - j0 < kWideLanes ? keys - j0 : kWideLanes;
      // Cache rows are short streams the hardware prefetcher picks up late: fetch the next
      // block's key rows and this block's value rows (for the sums below) while the dots run.
      for (int64_t j = j0; j < j0 + n; ++j)
        for (int64_t c = 0; c < dim; c += kLine) {
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
        for (int64_t j = 0; j < keys; ++j) sum += w[j] * ToF32(vg[j * dim + d]);
        oh[d] = sum;
      }
    }
  });
}

}  // namespace cold
