// Building blocks shared by the CPU kernels of cold_ms (BGMV LoRA terms, decode linear):
// float32/float16/bfloat16 loads and stores on 8-float vectors, slot grouping, the
// register-tiled shrink (v = A x) and expand (y += v B) loops, and the thread helper.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>
#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace cold {

// 8 floats = one 256-bit register (AVX2 ymm; NEON pairs on aarch64). Tiles of
// kTokens x kRanks (shrink) and kTokens x kCols (expand) accumulators need 12 of the
// 16 ymm registers AVX2 has, leaving room for the loaded operands.
typedef float Vec __attribute__((vector_size(32)));
constexpr int kLanes = 8;
constexpr int kTokens = 4;
constexpr int kRanks = 3;
constexpr int kCols = 3;
// Rank rows of B consumed per pass over y: few enough concurrent streams for the
// hardware prefetchers, many enough that y (re-read once per pass) stays cheap.
constexpr int64_t kDepth = 16;
// Rank rows per shrink work item (a multiple of kRanks).
constexpr int64_t kRankBlock = 24;
// Output columns per expand work item: 768 floats, a multiple of kCols * kLanes.
constexpr int64_t kBand = 768;
// Below this many multiply-adds a call is too small to repay waking a second core.
constexpr int64_t kParallelWork = 1 << 18;

inline char g_error[256] = "";  // one message for every kernel of the library

inline int Fail(const char* msg) {
  std::snprintf(g_error, sizeof(g_error), "bgmv: %s", msg);
  return 1;
}

struct BF16 { uint16_t bits; };
typedef _Float16 F16;

inline float ToF32(float v) { return v; }
inline float ToF32(F16 v) { return static_cast<float>(v); }
inline float ToF32(BF16 v) {
  uint32_t u = static_cast<uint32_t>(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline void Store(float* p, float v) { *p = v; }
inline void Store(F16* p, float v) { *p = static_cast<F16>(v); }  // round to nearest even
inline void Store(BF16* p, float v) {                             // round to nearest even
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) { p->bits = 0x7FC0; return; }
  u += 0x7FFFu + ((u >> 16) & 1u);
  p->bits = static_cast<uint16_t>(u >> 16);
}

inline Vec Load(const float* p) { Vec v; std::memcpy(&v, p, sizeof(v)); return v; }
inline Vec Load(const F16* p) {
#if defined(__F16C__)  // one instruction; GCC converts a _Float16 vector lane by lane
  return (Vec)_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#else
  typedef F16 H8 __attribute__((vector_size(16)));
  H8 h;
  std::memcpy(&h, p, sizeof(h));
  return __builtin_convertvector(h, Vec);
#endif
}
inline Vec Load(const BF16* p) {
  typedef uint16_t U16 __attribute__((vector_size(16)));
  typedef uint32_t U32 __attribute__((vector_size(32)));
  U16 h;
  std::memcpy(&h, p, sizeof(h));
  U32 w = __builtin_convertvector(h, U32) << 16;
  Vec v;
  std::memcpy(&v, &w, sizeof(v));
  return v;
}

inline void StoreVec(float* p, Vec v) { std::memcpy(p, &v, sizeof(v)); }
inline void StoreVec(F16* p, Vec v) {
#if defined(__F16C__)
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph((__m256)v, _MM_FROUND_TO_NEAREST_INT));
#else
  typedef F16 H8 __attribute__((vector_size(16)));
  H8 h = __builtin_convertvector(v, H8);  // round to nearest even
  std::memcpy(p, &h, sizeof(h));
#endif
}
inline void StoreVec(BF16* p, Vec v) {  // round to nearest even, NaN stays NaN
  typedef uint32_t U32 __attribute__((vector_size(32)));
  typedef uint16_t U16 __attribute__((vector_size(16)));
  U32 u;
  std::memcpy(&u, &v, sizeof(u));
  U32 nan = (U32)((u & 0x7FFFFFFFu) > 0x7F800000u);
  u = (u + 0x7FFFu + ((u >> 16) & 1u)) & ~nan;
  u |= nan & 0x7FC00000u;
  U16 h = __builtin_convertvector(u >> 16, U16);
  std::memcpy(p, &h, sizeof(h));
}

inline float Sum(Vec v) {
  float s = 0;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// Threads for large calls: $COLD_MS_KERNEL_THREADS, else every online CPU. OpenMP's own
// default follows the calling thread's affinity, which MindSpore narrows to one core.
inline int Threads() {
  static const int n = [] {
    const char* env = std::getenv("COLD_MS_KERNEL_THREADS");
    const int hw = static_cast<int>(std::thread::hardware_concurrency());
    return env && std::atoi(env) > 0 ? std::atoi(env) : (hw > 0 ? hw : 1);
  }();
  return n;
}

// Runs body(0..n-1), across the cores only when asked: an OpenMP region costs about a
// microsecond even with a false if-clause, which small decode calls cannot afford.
template <typename Body>
void ForEach(int64_t n, bool parallel, const Body& body) {
  if (!parallel || n < 2 || Threads() < 2) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
#pragma omp parallel for schedule(dynamic) num_threads(Threads())
  for (int64_t i = 0; i < n; ++i) body(i);
}

struct Dims {
  int64_t rows = 0, seq = 0, in = 0, rank = 0, out = 0, slots = 0;
};

// Tokens of each slot: tokens[offsets[s] .. offsets[s+1]) are the flat token ids of slot s.
struct Groups {
  std::vector<int64_t> offsets, tokens;
};

template <typename I>
int GroupBySlot(const I* idx, const Dims& d, Groups* g) {
  std::vector<int64_t> next(d.slots + 1, 0);
  for (int64_t r = 0; r < d.rows; ++r) {
    if (idx[r] >= d.slots) return Fail("an adapter index is >= the number of slots");
    if (idx[r] >= 0) next[idx[r] + 1] += d.seq;
  }
  for (int64_t s = 0; s < d.slots; ++s) next[s + 1] += next[s];
  g->offsets = next;
  g->tokens.assign(next[d.slots], 0);
  for (int64_t r = 0; r < d.rows; ++r) {
    if (idx[r] < 0) continue;
    for (int64_t t = 0; t < d.seq; ++t) g->tokens[next[idx[r]]++] = r * d.seq + t;
  }
  return 0;
}

// out[t][j] = dot(x_t, a_j) over n values for NT tokens and NJ rank rows at once. The
// tokens (TX) and the stack (TA) may differ in type: float32 activations against a float16
// or bfloat16 stack where a decode kernel keeps the adapter as it is stored.
template <int NT, int NJ, typename TX, typename TA>
void DotTile(const TX* const* x, const TA* const* a, int64_t n, float* const* out, int64_t j0) {
  Vec acc[NT][NJ] = {};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes) {
    Vec xv[NT], av[NJ];
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) xv[t] = Load(x[t] + k);
#pragma GCC unroll 4
    for (int j = 0; j < NJ; ++j) av[j] = Load(a[j] + k);
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t)
#pragma GCC unroll 4
      for (int j = 0; j < NJ; ++j) acc[t][j] += xv[t] * av[j];
  }
  for (int t = 0; t < NT; ++t)
    for (int j = 0; j < NJ; ++j) {
      float s = Sum(acc[t][j]);
      for (int64_t kk = k; kk < n; ++kk) s += ToF32(x[t][kk]) * ToF32(a[j][kk]);
      out[t][j0 + j] = s;
    }
}

template <int NT, typename TX, typename TA>
void DotRows(const TX* const* x, const TA* a, const Dims& d, float* const* out, int64_t j, int64_t j1) {
  for (; j + kRanks <= j1; j += kRanks) {
    const TA* rows[kRanks] = {a + j * d.in, a + (j + 1) * d.in, a + (j + 2) * d.in};
    DotTile<NT, kRanks>(x, rows, d.in, out, j);
  }
  for (; j < j1; ++j) {
    const TA* row = a + j * d.in;
    DotTile<NT, 1>(x, &row, d.in, out, j);
  }
}

// v[tok] = A[s] x[tok] for every grouped token; tokens of no slot get zeros.
// Work items are (slot, tile of kTokens tokens, block of kRankBlock rank rows), spread
// over the cores once the call is big enough to repay waking them.
template <typename TX, typename TA>
void Shrink(const TX* x, const TA* a, float* v, const Groups& g, const Dims& d) {
  std::memset(v, 0, sizeof(float) * d.rows * d.seq * d.rank);
  struct Item { int64_t slot, first, rank0; };
  std::vector<Item> items;
  for (int64_t s = 0; s < d.slots; ++s)
    for (int64_t i = g.offsets[s]; i < g.offsets[s + 1]; i += kTokens)
      for (int64_t j = 0; j < d.rank; j += kRankBlock) items.push_back({s, i, j});
  const int64_t work = static_cast<int64_t>(g.tokens.size()) * d.rank * d.in;
  ForEach(static_cast<int64_t>(items.size()), work >= kParallelWork, [&](int64_t w) {
    const Item it = items[w];
    const int64_t end = g.offsets[it.slot + 1];
    const int nt = static_cast<int>(end - it.first < kTokens ? end - it.first : kTokens);
    const TX* xs[kTokens];
    float* vs[kTokens];
    for (int t = 0; t < nt; ++t) {
      xs[t] = x + g.tokens[it.first + t] * d.in;
      vs[t] = v + g.tokens[it.first + t] * d.rank;
    }
    const TA* as = a + it.slot * d.rank * d.in;
    const int64_t j1 = it.rank0 + kRankBlock < d.rank ? it.rank0 + kRankBlock : d.rank;
    switch (nt) {
      case 4: DotRows<4>(xs, as, d, vs, it.rank0, j1); break;
      case 3: DotRows<3>(xs, as, d, vs, it.rank0, j1); break;
      case 2: DotRows<2>(xs, as, d, vs, it.rank0, j1); break;
      default: DotRows<1>(xs, as, d, vs, it.rank0, j1); break;
    }
  });
}

// y[t][c0 .. c0 + 8*NC) += sum_{j in [j0, j1)} v_t[j] * b_j[...] for NT tokens, in registers.
template <int NT, int NC, typename TY, typename TB>
void AxpyTile(const float* const* v, const TB* b, const Dims& d, TY* const* y, int64_t c0,
              int64_t j0, int64_t j1) {
  Vec acc[NT][NC];
  for (int t = 0; t < NT; ++t)
    for (int c = 0; c < NC; ++c) acc[t][c] = Load(y[t] + c0 + c * kLanes);
  for (int64_t j = j0; j < j1; ++j) {
    Vec bv[NC];
    const TB* row = b + j * d.out + c0;
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) bv[c] = Load(row + c * kLanes);
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) {
      const float vj = v[t][j];
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) acc[t][c] += vj * bv[c];
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int c = 0; c < NC; ++c) StoreVec(y[t] + c0 + c * kLanes, acc[t][c]);
}

// Rank rows are taken kDepth at a time across the whole width, so only kDepth rows of B
// stream at once (prefetch-friendly) while y is revisited rank/kDepth times from cache.
template <int NT, typename TY, typename TB>
void AxpyRows(const float* const* v, const TB* b, const Dims& d, TY* const* y, int64_t c, int64_t c1) {
  for (int64_t j0 = 0; j0 < d.rank; j0 += kDepth) {
    const int64_t j1 = j0 + kDepth < d.rank ? j0 + kDepth : d.rank;
    int64_t cc = c;
    for (; cc + kCols * kLanes <= c1; cc += kCols * kLanes) AxpyTile<NT, kCols>(v, b, d, y, cc, j0, j1);
    for (; cc + kLanes <= c1; cc += kLanes) AxpyTile<NT, 1>(v, b, d, y, cc, j0, j1);
    for (; cc < c1; ++cc)  // the last out % 8 columns
      for (int t = 0; t < NT; ++t) {
        float s = ToF32(y[t][cc]);
        for (int64_t j = j0; j < j1; ++j) s += v[t][j] * ToF32(b[j * d.out + cc]);
        Store(y[t] + cc, s);
      }
  }
}

// y_out = y_in, then y_out[tok] += v[tok] @ B[s] for every grouped token. Each thread
// owns a band of output columns, so B is still read once in all. B (TB) may be narrower than y.
template <typename TY, typename TB>
void Expand(const TY* y_in, const float* v, const TB* b, TY* y_out, const Groups& g, const Dims& d) {
  if (y_out != y_in) std::memcpy(y_out, y_in, sizeof(TY) * d.rows * d.seq * d.out);
  const int64_t work = static_cast<int64_t>(g.tokens.size()) * d.rank * d.out;
  const int64_t bands = (d.out + kBand - 1) / kBand;
  ForEach(bands, work >= kParallelWork, [&](int64_t band) {
    const int64_t c0 = band * kBand, c1 = c0 + kBand < d.out ? c0 + kBand : d.out;
    for (int64_t s = 0; s < d.slots; ++s) {
      const TB* bs = b + s * d.rank * d.out;
      for (int64_t i = g.offsets[s]; i < g.offsets[s + 1]; i += kTokens) {
        const int nt = static_cast<int>(g.offsets[s + 1] - i < kTokens ? g.offsets[s + 1] - i : kTokens);
        const float* vs[kTokens];
        TY* ys[kTokens];
        for (int t = 0; t < nt; ++t) {
          vs[t] = v + g.tokens[i + t] * d.rank;
          ys[t] = y_out + g.tokens[i + t] * d.out;
        }
        switch (nt) {
          case 4: AxpyRows<4>(vs, bs, d, ys, c0, c1); break;
          case 3: AxpyRows<3>(vs, bs, d, ys, c0, c1); break;
          case 2: AxpyRows<2>(vs, bs, d, ys, c0, c1); break;
          default: AxpyRows<1>(vs, bs, d, ys, c0, c1); break;
        }
      }
    }
  });
}

}  // namespace cold
