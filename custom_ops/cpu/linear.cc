// Projections and embedding rows for MindSpore's CPU AOT interface:
//
//   DecodeLinear      (x, W, kind)             -> y    x (R,T,in)  y (R,T,out)
//   DecodeLoraLinear  (x, W, kind, A, B, idx)  -> y    + BGMV: y[i] += (x[i] A[idx[i]]^T) B[idx[i]]
//   EmbedRows         (E, kind, tokens)        -> e    e (R,T,d) = rows of E (V, d) as float32
//
// W and E prepared in any weight type and layout (gemv.h: ReadWeight; kind (2,) int32: the
// type code and the activation bits of integer panels). A decode step multiplies a handful of
// token rows by every weight once, so it is bound by reading W: each W row is streamed from
// memory once for all token rows together (gemv.h), the output rows are split over the
// cores, and the LoRA term is added in the same op, so a projection costs one launch.

#include <cstdint>
#include <cstring>

#include "decode_kernels.h"

namespace {

using namespace cold;

int Run(bool lora, int nparam, void** p, int* ndims, int64_t** shapes, const char** dtypes) {
  g_error[0] = '\0';
  const int want = lora ? 7 : 4, out_i = want - 1;
  if (nparam != want) return Fail("decode linear: wrong number of operands");
  if (ndims[0] != 3 || ndims[out_i] != 3 || std::strcmp(dtypes[0], "float32") || std::strcmp(dtypes[2], "int32") ||
      ndims[2] != 1 || shapes[2][0] != 2)
    return Fail("decode linear: x and y must be 3-D float32, kind a (2,) int32 (type code, activation bits)");
  WeightRef w;
  if (ReadWeight(p[1], ndims[1], shapes[1], dtypes[1], static_cast<const int32_t*>(p[2]), &w)) return 1;
  Dims d;
  d.rows = shapes[0][0];
  d.seq = shapes[0][1];
  d.in = shapes[0][2];
  d.out = w.out;
  if (w.in != d.in) return Fail("decode linear: x and W disagree on the input size");
  float* y = static_cast<float*>(p[out_i]);
  const float* x = static_cast<const float*>(p[0]);
  DenseWeight(x, w, y, d.rows * d.seq);
  if (!lora) return 0;
  if (ndims[3] != 3 || ndims[4] != 3 || ndims[5] != 1 || std::strcmp(dtypes[3], dtypes[4]))
    return Fail("decode linear: LoRA stacks must be 3-D, of one dtype, with 1-D indices");
  d.slots = shapes[3][0];
  d.rank = shapes[3][1];
  if (shapes[3][2] != d.in || shapes[4][0] != d.slots || shapes[4][1] != d.rank || shapes[4][2] != d.out ||
      shapes[5][0] != d.rows)
    return Fail("decode linear: LoRA stacks do not fit x and W");
  std::vector<float> v;
  if (!std::strcmp(dtypes[5], "int32"))
    return LoraTerm<int32_t>(static_cast<const int32_t*>(p[5]), &v).Add(dtypes[3], x, p[3], p[4], y, d);
  if (!std::strcmp(dtypes[5], "int64"))
    return LoraTerm<int64_t>(static_cast<const int64_t*>(p[5]), &v).Add(dtypes[3], x, p[3], p[4], y, d);
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

extern "C" int EmbedRows(int nparam, void** p, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  g_error[0] = '\0';
  if (nparam != 4 || std::strcmp(dtypes[1], "int32") || std::strcmp(dtypes[2], "int32") ||
      std::strcmp(dtypes[3], "float32") || ndims[1] != 1 || shapes[1][0] != 2)
    return Fail("embed rows: table, kind (2,) int32, int32 tokens in, float32 rows out");
  WeightRef e;
  if (ReadWeight(p[0], ndims[0], shapes[0], dtypes[0], static_cast<const int32_t*>(p[1]), &e)) return 1;
  if (e.panels && e.type == &kWTypes[kF32]) return Fail("embed rows: float32 tables must be row-major");
  int64_t n = 1;
  for (int i = 0; i < ndims[2]; ++i) n *= shapes[2][i];
  const int32_t* tokens = static_cast<const int32_t*>(p[2]);
  float* out = static_cast<float*>(p[3]);
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= e.out) return Fail("embed rows: a token id is outside the vocabulary");
  const uint8_t* table = static_cast<const uint8_t*>(e.data);
  const int64_t panel = e.in / 32 * e.type->panel_bytes, code = e.type - kWTypes;
  for (int64_t i = 0; i < n; ++i) {
    if (e.panels)
      PanelRowToFloat(table + tokens[i] / 16 * panel, code, e.type->panel_bytes, tokens[i] % 16, e.in, out + i * e.in);
    else
      e.type->to_float(table + tokens[i] * e.row_bytes, out + i * e.in, e.in / e.type->block);
  }
  return 0;
}
