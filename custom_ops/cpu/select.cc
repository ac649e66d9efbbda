// Next-token choice inside the decode graph (MindSpore CPU AOT interface), ids out:
//
//   FirstArgmax(s (N, V))                                   -> (N,) int32
//   ColdSelectLogit / ColdSelectProb(logits (2S, V), alpha (S,), beta (S,) [, extra (S, 4)]) -> (S,) int32
//
// ColdSelect: rows 0..S-1 of logits are the experts (s_e), rows S..2S-1 the amateurs (s_a);
// logits of S rows have no amateur (s_a = s_e: the expert alone).
//   valid = s_e >= log(alpha) + max s_e          (Logit)
//         = p_e >= alpha * max p_e, p = softmax  (Prob)
//   b     = beta, or with extra's schedule 1 (entropy, after ACD, Kim et al. 2024):
//           beta * H(p_a) / (H(p_e) + H(p_a)), H the entropy of the softmax in nats
//   score = (1 + b) * s_e - b * s_a on valid
//   next  = argmax score, the lowest index on ties; with extra's temperature T > 0, a draw
//           from softmax(score / T) over valid, cut to the top-p nucleus (the highest
//           scores, the lowest index first among equal ones, until their mass reaches
//           top_p), at the host's uniform number u in [0, 1).
// The greedy arithmetic is cold_ms/ops/contrastive.py's, operation for operation in float32
// (this file is built with -std=c++17, so GCC contracts nothing into FMAs); entropies and the
// draw are in double, as the numpy twin in tests/numpy_llama.py. Written with MindSpore ops
// the choice is some fifteen launches over (2S, V) tensors: 3 ms at S = 8.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

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

// Entropy in nats of softmax(z) over v values, in double.
double Entropy(const float* z, int64_t v) {
  const double top = RowMax(z, v);
  double total = 0, weighted = 0;
  for (int64_t i = 0; i < v; ++i) {
    const double d = z[i] - top, e = std::exp(d);
    total += e;
    weighted += e * d;
  }
  return std::log(total) - weighted / total;
}

// A draw from softmax(score / t) over the valid tokens, cut to the top-p nucleus, at u.
template <typename Valid, typename Score>
int32_t Draw(int64_t v, const Valid& valid, const Score& score, double t, double top_p, double u) {
  std::vector<int32_t> order;
  for (int64_t i = 0; i < v; ++i)
    if (valid(i)) order.push_back(static_cast<int32_t>(i));
  if (order.empty()) return 0;
  std::stable_sort(order.begin(), order.end(), [&](int32_t i, int32_t j) { return score(i) > score(j); });
  const double top = score(order[0]);
  std::vector<double> q(order.size());
  for (size_t k = 0; k < order.size(); ++k) q[k] = std::exp((score(order[k]) - top) / t);
  const double mass = std::accumulate(q.begin(), q.end(), 0.0);
  size_t keep = 0;
  double kept = 0;
  while (keep < q.size() && (keep == 0 || kept < top_p * mass)) kept += q[keep++];
  double acc = 0;
  for (size_t k = 0; k < keep; ++k) {
    acc += q[k];
    if (acc > u * kept) return order[k];
  }
  return order[keep - 1];
}

int Select(bool prob, int nparam, void** p, int* ndims, int64_t** shapes, const char** dtypes) {
  g_error[0] = '\0';
  const bool extra = nparam == 5;
  if ((nparam != 4 && nparam != 5) || !AllFloat32(nparam - 1, dtypes) || std::strcmp(dtypes[nparam - 1], "int32"))
    return Fail("cold select: logits, alpha, beta (, extra) float32 in, int32 ids out");
  const int64_t slots = ndims[1] == 1 ? shapes[1][0] : -1, v = shapes[0][1];
  if (ndims[0] != 2 || (shapes[0][0] != 2 * slots && shapes[0][0] != slots) || ndims[2] != 1 ||
      shapes[2][0] != slots || (extra && (ndims[3] != 2 || shapes[3][0] != slots || shapes[3][1] != kExtra)))
    return Fail("cold select: logits must be (2S, V) or (S, V) with alpha and beta (S,) and extra (S, 4)");
  const float *logits = static_cast<const float*>(p[0]), *alpha = static_cast<const float*>(p[1]);
  const float* beta = static_cast<const float*>(p[2]);
  const float* knobs = extra ? static_cast<const float*>(p[3]) : nullptr;
  const bool amateurs = shapes[0][0] == 2 * slots;
  int32_t* ids = static_cast<int32_t*>(p[nparam - 1]);
  ForEach(slots, slots * v >= kParallelElems, [&](int64_t s) {
    const float *e = logits + s * v, *a = amateurs ? logits + (slots + s) * v : e;
    const float* k = knobs ? knobs + s * kExtra : nullptr;
    float b = beta[s];
    if (k && k[kExSchedule] == 1.0f) {
      const double he = Entropy(e, v), ha = Entropy(a, v);
      b = static_cast<float>(b * (he + ha > 0 ? ha / (he + ha) : 0.5));
    }
    const float keep = 1.0f + b;
    const auto score = [&](int64_t i) { return keep * e[i] - b * a[i]; };
    std::vector<float> probs;
    float floor;
    if (prob) {
      probs.assign(e, e + v);
      SoftmaxRow(probs.data(), v);
      floor = alpha[s] * RowMax(probs.data(), v);
    } else {
      floor = std::log(alpha[s]) + RowMax(e, v);
    }
    const float* tested = prob ? probs.data() : e;
    const auto valid = [&](int64_t i) { return tested[i] >= floor; };
    ids[s] = k && k[kExTemperature] > 0
                 ? Draw(v, valid, score, k[kExTemperature], k[kExTopP], k[kExUniform])
                 : FirstBest(v, valid, score);
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
