// The small steps of a decode step as single ops (MindSpore CPU AOT interface).
//
//   RmsNorm(x (..., d), w (d,), eps (1,))                     -> w * x / sqrt(mean(x^2) + eps)
//   Rope(x (R, T, heads*D), cos (R, T, D), sin (R, T, D))     -> x*cos + rotate_half(x)*sin per head
//   DecodeAttention(q (R, 1, H*D), k (R, KVH, L, D), v (R, KVH, L, D), pos (R, 1))
//                                                             -> softmax(q k^T / sqrt(D)) v over keys <= pos
//
// Written with MindSpore ops, each of these is five to fifteen kernel launches of a few
// microseconds apiece, several times per layer: at decode sizes the launches, not the
// arithmetic, dominate. Float32 throughout, as the CPU backend computes.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "lora_kernels.h"

namespace {

using namespace cold;

int64_t Numel(int nd, const int64_t* shape) {
  int64_t n = 1;
  for (int i = 0; i < nd; ++i) n *= shape[i];
  return n;
}

bool AllFloat32(int n, const char** dtypes) {
  for (int i = 0; i < n; ++i)
    if (std::strcmp(dtypes[i], "float32")) return false;
  return true;
}

// Below this many elements a call stays on one core.
constexpr int64_t kParallelElems = 1 << 15;

}  // namespace

extern "C" int RmsNorm(int nparam, void** p, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  g_error[0] = '\0';
  if (nparam != 4 || !AllFloat32(4, dtypes)) return Fail("rms norm: x, w, eps and y must be float32");
  const int64_t d = shapes[0][ndims[0] - 1], n = Numel(ndims[0], shapes[0]) / d;
  if (Numel(ndims[1], shapes[1]) != d) return Fail("rms norm: weight size differs from the last axis");
  const float *x = static_cast<const float*>(p[0]), *w = static_cast<const float*>(p[1]);
  const float eps = *static_cast<const float*>(p[2]);
  float* y = static_cast<float*>(p[3]);
  ForEach(n, n * d >= kParallelElems, [&](int64_t i) {
    const float* xi = x + i * d;
    double ss = 0;  // the mean of squares in double: as accurate as MindSpore's float32 reduce or better
    for (int64_t k = 0; k < d; ++k) ss += static_cast<double>(xi[k]) * xi[k];
    const float inv = 1.0f / std::sqrt(static_cast<float>(ss / d) + eps);
    for (int64_t k = 0; k < d; ++k) y[i * d + k] = w[k] * (xi[k] * inv);
  });
  return 0;
}

extern "C" int Rope(int nparam, void** p, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  g_error[0] = '\0';
  if (nparam != 4 || !AllFloat32(4, dtypes)) return Fail("rope: x, cos, sin and y must be float32");
  if (ndims[0] != 3 || ndims[1] != 3) return Fail("rope: x (R, T, heads*D) and cos (R, T, D) expected");
  const int64_t tokens = shapes[0][0] * shapes[0][1], width = shapes[0][2], dim = shapes[1][2];
  if (shapes[1][0] * shapes[1][1] != tokens || dim % 2 || width % dim) return Fail("rope: shapes do not fit");
  const float *x = static_cast<const float*>(p[0]), *cos = static_cast<const float*>(p[1]);
  const float* sin = static_cast<const float*>(p[2]);
  float* y = static_cast<float*>(p[3]);
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
  return 0;
}

extern "C" int DecodeAttention(int nparam, void** p, int* ndims, int64_t** shapes, const char** dtypes,
                               void*, void*) {
  g_error[0] = '\0';
  if (nparam != 5 || !AllFloat32(3, dtypes) || std::strcmp(dtypes[3], "int32") || std::strcmp(dtypes[4], "float32"))
    return Fail("decode attention: float32 q, k, v and int32 positions expected");
  if (ndims[0] != 3 || shapes[0][1] != 1 || ndims[1] != 4 || ndims[2] != 4)
    return Fail("decode attention: q (R, 1, H*D) and caches (R, KVH, L, D) expected");
  const int64_t rows = shapes[0][0], kvh = shapes[1][1], len = shapes[1][2], dim = shapes[1][3];
  const int64_t heads = shapes[0][2] / dim, group = heads / kvh;
  if (shapes[1][0] != rows || heads * dim != shapes[0][2] || heads % kvh || Numel(ndims[3], shapes[3]) != rows)
    return Fail("decode attention: q, caches and positions do not fit");
  const float *q = static_cast<const float*>(p[0]), *k = static_cast<const float*>(p[1]);
  const float* v = static_cast<const float*>(p[2]);
  const int32_t* pos = static_cast<const int32_t*>(p[3]);
  float* out = static_cast<float*>(p[4]);
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
  return 0;
}
