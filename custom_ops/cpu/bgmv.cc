// BGMV (batched gather matrix-vector) CPU kernels for MindSpore's AOT custom-op interface.
//
//   shrink:    v[i]  = x[i] @ A[idx[i]]^T    x (R,T,in)  A (S,r,in)   v (R,T,r) float32
//   expand:    y'[i] = y[i] + v[i] @ B[idx[i]]            B (S,r,out)  y, y' (R,T,out)
//   add_lora:  both, with v in a scratch buffer
//
// idx[i] < 0 leaves row i unchanged (the base model). x, A, B, y share one dtype
// (float32, float16 or bfloat16); idx is int32 or int64; every sum accumulates in float32.
// Both weight stacks are rank-major, so every inner loop streams a contiguous row of
// `in` or `out` values and vectorises whatever the rank. Tokens that use the same slot
// are grouped and tiled, so each adapter's A and B are read from memory once per call
// however many rows use it (SGMV-style), instead of once per row.
//
// Entry points follow MindSpore's CPU AOT signature: params are the inputs then the
// outputs; a non-zero return makes MindSpore raise, and BgmvLastError() says why.

#include <cstdint>
#include <cstring>
#include <vector>

#include "lora_kernels.h"

namespace {

using namespace cold;

enum class Op { kShrink, kExpand, kAddLora };

// Reads and checks the operand shapes (the Python binding checks them too; this guards
// direct callers and keeps a bad call from reading out of bounds).
int ReadDims(Op op, int nparam, int* ndims, int64_t** shapes, Dims* d) {
  const int want = op == Op::kShrink ? 4 : op == Op::kExpand ? 5 : 6;
  if (nparam != want) return Fail("wrong number of operands");
  // operands: x A idx | y v B idx | y x A B idx, then the output
  const int data = op == Op::kShrink ? 0 : 1, weight = op == Op::kShrink ? 1 : 2;
  const int index = want - 2;
  if (ndims[data] != 3 || ndims[weight] != 3 || ndims[index] != 1)
    return Fail("operands must be 3-D with 1-D indices");
  d->rows = shapes[data][0];
  d->seq = shapes[data][1];
  d->slots = shapes[weight][0];
  d->rank = shapes[weight][1];
  if (shapes[index][0] != d->rows) return Fail("one index per row is required");
  if (op == Op::kExpand) {
    d->out = shapes[weight][2];
    if (shapes[data][2] != d->rank) return Fail("v and B disagree on the rank");
  } else {
    d->in = shapes[data][2];
    if (shapes[weight][2] != d->in) return Fail("x and A disagree on the input size");
  }
  if (op == Op::kAddLora) {
    if (ndims[3] != 3 || shapes[3][0] != d->slots || shapes[3][1] != d->rank) return Fail("A and B disagree");
    d->out = shapes[3][2];
  }
  if (op != Op::kShrink &&
      (ndims[0] != 3 || shapes[0][0] != d->rows || shapes[0][1] != d->seq || shapes[0][2] != d->out))
    return Fail("y must be (rows, seq, out)");
  return 0;
}

template <typename T, typename I>
int Run(Op op, void** p, const Dims& d) {
  Groups g;
  const int index = op == Op::kShrink ? 2 : op == Op::kExpand ? 3 : 4;
  if (GroupBySlot(static_cast<const I*>(p[index]), d, &g)) return 1;
  if (op == Op::kShrink) {
    Shrink(static_cast<const T*>(p[0]), static_cast<const T*>(p[1]), static_cast<float*>(p[3]), g, d);
  } else if (op == Op::kExpand) {
    Expand(static_cast<const T*>(p[0]), static_cast<const float*>(p[1]), static_cast<const T*>(p[2]),
           static_cast<T*>(p[4]), g, d);
  } else {
    std::vector<float> v(d.rows * d.seq * d.rank);
    Shrink(static_cast<const T*>(p[1]), static_cast<const T*>(p[2]), v.data(), g, d);
    Expand(static_cast<const T*>(p[0]), v.data(), static_cast<const T*>(p[3]), static_cast<T*>(p[5]), g, d);
  }
  return 0;
}

template <typename T>
int ByIndex(Op op, void** params, const char* idx_dtype, const Dims& d) {
  if (!std::strcmp(idx_dtype, "int32")) return Run<T, int32_t>(op, params, d);
  if (!std::strcmp(idx_dtype, "int64")) return Run<T, int64_t>(op, params, d);
  return Fail("indices must be int32 or int64");
}

int Dispatch(Op op, int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes) {
  g_error[0] = '\0';
  Dims d;
  if (ReadDims(op, nparam, ndims, shapes, &d)) return 1;
  const char* dt = dtypes[op == Op::kShrink ? 0 : op == Op::kExpand ? 2 : 1];  // x, A, B, y share it
  const char* idx = dtypes[op == Op::kShrink ? 2 : op == Op::kExpand ? 3 : 4];
  if (op == Op::kExpand && std::strcmp(dtypes[1], "float32")) return Fail("v must be float32");
  if (!std::strcmp(dt, "float32")) return ByIndex<float>(op, params, idx, d);
  if (!std::strcmp(dt, "float16")) return ByIndex<F16>(op, params, idx, d);
  if (!std::strcmp(dt, "bfloat16")) return ByIndex<BF16>(op, params, idx, d);
  return Fail("data must be float32, float16 or bfloat16");
}

}  // namespace

#define BGMV_ENTRY(NAME, OP)                                                              \
  extern "C" int NAME(int nparam, void** params, int* ndims, int64_t** shapes,            \
                      const char** dtypes, void* /*stream*/, void* /*extra*/) {           \
    return Dispatch(OP, nparam, params, ndims, shapes, dtypes);                           \
  }

BGMV_ENTRY(BgmvShrink, Op::kShrink)
BGMV_ENTRY(BgmvExpand, Op::kExpand)
BGMV_ENTRY(BgmvAddLora, Op::kAddLora)

extern "C" const char* BgmvLastError() { return g_error; }
