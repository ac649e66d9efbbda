// Next-token choice inside the decode graph (MindSpore CPU AOT interface), ids out:
//
//   FirstArgmax(s (N, V))                                   -> (N,) int32
//   ColdSelectLogit / ColdSelectProb(logits (2S, V), alpha (S,), beta (S,)) -> (S,) int32
//
// ColdSelect: rows 0..S-1 of logits are the experts (s_e), rows S..2S-1 the amateurs (s_a):
//   valid = s_e >= log(alpha) + max s_e          (Logit)
//         = p_e >= alpha * max p_e, p = softmax  (Prob)
//   next  = argmax over valid of (1 + beta) * s_e - beta * s_a, the lowest index on ties.
// The same arithmetic as cold_ms/ops/contrastive.py, operation for operation in float32
// (this file is built with -std=c++17, so GCC contracts nothing into FMAs). Written with
// MindSpore ops the choice is some fifteen launches over (2S, V) tensors: 3 ms at S = 8.

#include <cmath>
#include <cstdint>
#include <cstring>

#include "decode_kernels.h"

namespace {

using namespace cold;

// The lowest index of the largest score(i) over valid(i); 0 when nothing is valid (NaN rows).
template <typename Valid, typename Score>
int32_t FirstBest(int64_t v, const Valid& valid, const Score& score) {
  int32_t best = 0;
  float top = -INFINITY;
  bool found = false;
  for (int64_t i = 0; i < v; ++i) {
    if (!valid(i)) continue;
    const float s = score(i);
    if (!found || s > top) best = static_cast<int32_t>(i), top = s, found = true;
  }
  return best;
}

int Select(bool prob, int nparam, void** p, int* ndims, int64_t** shapes, const char** dtypes) {
  g_error[0] = '\0';
  if (nparam != 4 || !AllFloat32(3, dtypes) || std::strcmp(dtypes[3], "int32"))
    return Fail("cold select: logits, alpha, beta float32 in, int32 ids out");
  const int64_t slots = ndims[1] == 1 ? shapes[1][0] : -1, v = shapes[0][1];
  if (ndims[0] != 2 || shapes[0][0] != 2 * slots || ndims[2] != 1 || shapes[2][0] != slots)
    return Fail("cold select: logits must be (2S, V) with alpha and beta (S,)");
  const float *logits = static_cast<const float*>(p[0]), *alpha = static_cast<const float*>(p[1]);
  const float* beta = static_cast<const float*>(p[2]);
  int32_t* ids = static_cast<int32_t*>(p[3]);
  ForEach(slots, slots * v >= kParallelElems, [&](int64_t s) {
    const float *e = logits + s * v, *a = logits + (slots + s) * v;
    const float b = beta[s], keep = 1.0f + b;
    const auto score = [&](int64_t i) { return keep * e[i] - b * a[i]; };
    if (!prob) {
      const float floor = std::log(alpha[s]) + RowMax(e, v);
      ids[s] = FirstBest(v, [&](int64_t i) { return e[i] >= floor; }, score);
      return;
    }
    std::vector<float> probs(e, e + v);
    SoftmaxRow(probs.data(), v);
    const float floor = alpha[s] * RowMax(probs.data(), v);
    ids[s] = FirstBest(v, [&](int64_t i) { return probs[i] >= floor; }, score);
  });
  return 0;
}

}  // namespace

extern "C" int FirstArgmax(int nparam, void** p, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  g_error[0] = '\0';
  if (nparam != 2 || ndims[0] != 2 || !AllFloat32(1, dtypes) || std::strcmp(dtypes[1], "int32"))
    return Fail("first argmax: scores (N, V) float32 in, int32 ids out");
  const int64_t n = shapes[0][0], v = shapes[0][1];
  const float* s = static_cast<const float*>(p[0]);
  int32_t* ids = static_cast<int32_t*>(p[1]);
  ForEach(n, n * v >= kParallelElems, [&](int64_t r) {
    const float* row = s + r * v;
    ids[r] = FirstBest(v, [](int64_t) { return true; }, [row](int64_t i) { return row[i]; });
  });
  return 0;
}

extern "C" int ColdSelectLogit(int nparam, void** p, int* ndims, int64_t** shapes, const char** dtypes, void*,
                               void*) {
  return Select(false, nparam, p, ndims, shapes, dtypes);
}

extern "C" int ColdSelectProb(int nparam, void** p, int* ndims, int64_t** shapes, const char** dtypes, void*,
                              void*) {
  return Select(true, nparam, p, ndims, shapes, dtypes);
}
