// RMSNorm as one op (MindSpore CPU AOT interface), for prompt chunks and the final norm:
//
//   RmsNorm(x (..., d), w (d,), eps (1,)) -> w * x / sqrt(mean(x^2) + eps)
//
// Written with MindSpore ops it is five kernel launches. Float32, as the CPU backend computes.

#include <cstdint>

#include "decode_kernels.h"

namespace {

using namespace cold;

int64_t Numel(int nd, const int64_t* shape) {
  int64_t n = 1;
  for (int i = 0; i < nd; ++i) n *= shape[i];
  return n;
}

}  // namespace

extern "C" int RmsNorm(int nparam, void** p, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  g_error[0] = '\0';
  if (nparam != 4 || !AllFloat32(4, dtypes)) return Fail("rms norm: x, w, eps and y must be float32");
  const int64_t d = shapes[0][ndims[0] - 1], n = Numel(ndims[0], shapes[0]) / d;
  if (Numel(ndims[1], shapes[1]) != d) return Fail("rms norm: weight size differs from the last axis");
  RmsNormRows(static_cast<const float*>(p[0]), static_cast<const float*>(p[1]), *static_cast<const float*>(p[2]),
              static_cast<float*>(p[3]), n, d);
  return 0;
}

// The vector paths this build of the library takes (chosen by the compiler flags at build
// time, from this CPU's): for the benchmarks' report and for cold_ms/ops/prepare.py, which
// lays weights out as integer panels only where they are built.
extern "C" const char* ColdKernelPaths() {
  return
#if defined(__AVX512F__)
      "avx512"
#elif defined(__AVX2__)
      "avx2"
#else
      "generic"
#endif
#if defined(__AVX512VNNI__)
      " vnni"
#endif
#if defined(__AVX512BF16__)
      " bf16"
#endif
#if defined(__AVX512FP16__)
      " fp16"
#endif
#if defined(__AMX_TILE__)
      " amx"
#endif
      ;
}

extern "C" int ColdIntegerPanels() { return kIntegerPanels; }
