// Projections for MindSpore's CPU AOT interface: y = x W^T (+ the LoRA term).
//
//   DecodeLinear      (x, W)             -> y       x (R,T,in)  W (out,in)  y (R,T,out)
//   DecodeLoraLinear  (x, W, A, B, idx)  -> y       + BGMV: y[i] += (x[i] A[idx[i]]^T) B[idx[i]]
//
// W may also come in panels, (out / 16, in, 16) (cold_ms/ops/panels.py).
//
// A decode step multiplies a handful of token rows by every weight matrix once, so it is
// bound by reading W. MindSpore's MatMul is built for large GEMMs; here each W row is
// streamed from memory exactly once for all token rows together (register tiles of
// token rows x weight rows), the output rows are split over the cores, and the LoRA term
// is added in the same op, so a projection costs one launch instead of several. Longer
// inputs run in blocks of kMaxRows token rows; weights in panels need no lane sums at any
// row count (decode_kernels.h). Float32 only, as the CPU backend computes.

#include <cstdint>
#include <cstring>

#include "decode_kernels.h"

namespace {

using namespace cold;

int Run(bool lora, int nparam, void** p, int* ndims, int64_t** shapes, const char** dtypes) {
  g_error[0] = '\0';
  const int want = lora ? 6 : 3, out_i = want - 1;
  if (nparam != want) return Fail("decode linear: wrong number of operands");
  Dims d;
  d.out = WeightOut(ndims[1], shapes[1]);
  if (ndims[0] != 3 || ndims[out_i] != 3 || !d.out)
    return Fail("decode linear: x and y must be 3-D, W (out, in) or panels (out / 16, in, 16)");
  d.rows = shapes[0][0];
  d.seq = shapes[0][1];
  d.in = shapes[0][2];
  if (shapes[1][1] != d.in) return Fail("decode linear: x and W disagree on the input size");
  for (int i = 0; i < want; ++i)
    if (i != 4 && std::strcmp(dtypes[i], "float32")) return Fail("decode linear: data must be float32");
  float* y = static_cast<float*>(p[out_i]);
  DenseWeight(static_cast<const float*>(p[0]), static_cast<const float*>(p[1]), ndims[1] == 3, y, d.rows * d.seq,
              d.in, d.out);
  if (!lora) return 0;
  if (ndims[2] != 3 || ndims[3] != 3 || ndims[4] != 1) return Fail("decode linear: bad LoRA operand ranks");
  d.slots = shapes[2][0];
  d.rank = shapes[2][1];
  if (shapes[2][2] != d.in || shapes[3][0] != d.slots || shapes[3][1] != d.rank || shapes[3][2] != d.out ||
      shapes[4][0] != d.rows)
    return Fail("decode linear: LoRA stacks do not fit x and W");
  const float *x = static_cast<const float*>(p[0]), *a = static_cast<const float*>(p[2]);
  const float* b = static_cast<const float*>(p[3]);
  std::vector<float> v;
  if (!std::strcmp(dtypes[4], "int32"))
    return LoraTerm<int32_t>(static_cast<const int32_t*>(p[4]), &v).Add(x, a, b, y, d);
  if (!std::strcmp(dtypes[4], "int64"))
    return LoraTerm<int64_t>(static_cast<const int64_t*>(p[4]), &v).Add(x, a, b, y, d);
  return Fail("indices must be int32 or int64");
}

}  // namespace

extern "C" int DecodeLinear(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes,
                            void* /*stream*/, void* /*extra*/) {
  return Run(false, nparam, params, ndims, shapes, dtypes);
}

extern "C" int DecodeLoraLinear(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes,
                                void* /*stream*/, void* /*extra*/) {
  return Run(true, nparam, params, ndims, shapes, dtypes);
}
