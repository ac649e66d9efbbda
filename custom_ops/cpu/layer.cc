// A whole decoder layer of a decode step as two ops (MindSpore CPU AOT interface):
//
//   DecodeLayerPre:  x = rmsnorm(h); q, k, v = x Wq^T, x Wk^T, x Wv^T (+ LoRA); rotate q, k
//   (the caller writes k, v into the KV cache with MindSpore's ScatterUpdate)
//   DecodeLayerPost: a = attention(q, caches, pos); h1 = h + a Wo^T (+ LoRA)
//                    h_out = h1 + (silu(x1 Wg^T) * x1 Wu^T) Wd^T (+ LoRA), x1 = rmsnorm(h1)
//
// Written with MindSpore ops a decode layer is some twenty kernel launches; as two ops the
// step spends its time streaming the weights, which is what bounds a decode step.
// Float32; one token per row (T = 1); every cache row takes part (rows R of the caches).
// A module without LoRA slots gets a (1, 1, 1) placeholder stack, recognised by its shape.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "decode_kernels.h"

namespace {

using namespace cold;

struct Tensor {
  void* data;
  int ndim;
  const int64_t* shape;
};

// y (rows, out) = x (rows, in) W^T, plus the LoRA term when the stacks fit the projection.
int Project(const float* x, const Tensor& w, const Tensor& a, const Tensor& b, const int32_t* idx, float* y,
            int64_t rows) {
  const int64_t out = w.shape[0], in = w.shape[1];
  Dense(x, static_cast<const float*>(w.data), y, rows, in, out);
  if (a.ndim != 3 || a.shape[2] != in) return 0;  // a placeholder: this module has no LoRA
  Dims d;
  d.rows = rows;
  d.seq = 1;
  d.in = in;
  d.out = out;
  d.slots = a.shape[0];
  d.rank = a.shape[1];
  if (b.ndim != 3 || b.shape[0] != d.slots || b.shape[1] != d.rank || b.shape[2] != out)
    return Fail("decode layer: lora_a and lora_b do not fit");
  return AddLora(x, static_cast<const float*>(a.data), static_cast<const float*>(b.data), idx, y, d);
}

std::vector<Tensor> Tensors(int nparam, void** p, int* ndims, int64_t** shapes) {
  std::vector<Tensor> t(nparam);
  for (int i = 0; i < nparam; ++i) t[i] = {p[i], ndims[i], shapes[i]};
  return t;
}

bool Types(int nparam, const char** dtypes, int index_input, int pos_input) {
  for (int i = 0; i < nparam; ++i) {
    const char* want = (i == index_input || i == pos_input) ? "int32" : "float32";
    if (std::strcmp(dtypes[i], want)) return false;
  }
  return true;
}

const float* F(const Tensor& t) { return static_cast<const float*>(t.data); }

}  // namespace

// h, ln_w, eps, Wq, Wk, Wv, Aq, Bq, Ak, Bk, Av, Bv, idx, cos, sin -> q, k, v
extern "C" int DecodeLayerPre(int nparam, void** p, int* ndims, int64_t** shapes, const char** dtypes, void*,
                              void*) {
  g_error[0] = '\0';
  if (nparam != 18 || !Types(nparam, dtypes, 12, -1)) return Fail("decode layer (pre): bad operands");
  const auto t = Tensors(nparam, p, ndims, shapes);
  const int64_t rows = t[0].shape[0], dim = t[0].shape[2], hd = t[13].shape[2];
  if (t[0].shape[1] != 1 || rows > 16 || t[3].shape[1] != dim || t[13].shape[0] != rows)
    return Fail("decode layer (pre): h must be (R <= 16, 1, d) with weights (out, d) and cos (R, 1, D)");
  const int32_t* idx = static_cast<const int32_t*>(t[12].data);
  std::vector<float> x(rows * dim), proj;
  RmsNormRows(F(t[0]), F(t[1]), *F(t[2]), x.data(), rows, dim);
  for (int m = 0; m < 3; ++m) {  // q, k, v
    const Tensor &w = t[3 + m], &out = t[15 + m];
    proj.resize(rows * w.shape[0]);
    if (Project(x.data(), w, t[6 + 2 * m], t[7 + 2 * m], idx, proj.data(), rows)) return 1;
    if (m < 2)
      RopeRows(proj.data(), F(t[13]), F(t[14]), static_cast<float*>(out.data), rows, w.shape[0], hd);
    else
      std::memcpy(out.data, proj.data(), sizeof(float) * proj.size());
  }
  return 0;
}

// h, q, k_all, v_all, pos, Wo, Ao, Bo, ln_w, eps, Wg, Ag, Bg, Wu, Au, Bu, Wd, Ad, Bd, idx -> h_out
extern "C" int DecodeLayerPost(int nparam, void** p, int* ndims, int64_t** shapes, const char** dtypes, void*,
                               void*) {
  g_error[0] = '\0';
  if (nparam != 21 || !Types(nparam, dtypes, 19, 4)) return Fail("decode layer (post): bad operands");
  const auto t = Tensors(nparam, p, ndims, shapes);
  const int64_t rows = t[0].shape[0], dim = t[0].shape[2];
  const int64_t kvh = t[2].shape[1], len = t[2].shape[2], hd = t[2].shape[3], heads = t[1].shape[2] / hd;
  if (t[2].ndim != 4 || t[2].shape[0] != rows || heads % kvh || t[5].shape[0] != dim)
    return Fail("decode layer (post): q, caches and weights do not fit");
  const int32_t* idx = static_cast<const int32_t*>(t[19].data);
  const int64_t ffn = t[10].shape[0];
  std::vector<float> attn(rows * heads * hd), h1(rows * dim), x(rows * dim), gate(rows * ffn), up(rows * ffn);
  AttentionRows(F(t[1]), F(t[2]), F(t[3]), static_cast<const int32_t*>(t[4].data), attn.data(), rows, heads, kvh,
                len, hd);
  if (Project(attn.data(), t[5], t[6], t[7], idx, h1.data(), rows)) return 1;
  for (int64_t i = 0; i < rows * dim; ++i) h1[i] += F(t[0])[i];
  RmsNormRows(h1.data(), F(t[8]), *F(t[9]), x.data(), rows, dim);
  if (Project(x.data(), t[10], t[11], t[12], idx, gate.data(), rows)) return 1;
  if (Project(x.data(), t[13], t[14], t[15], idx, up.data(), rows)) return 1;
  for (int64_t i = 0; i < rows * ffn; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];  // SwiGLU
  float* out = static_cast<float*>(t[20].data);
  if (Project(gate.data(), t[16], t[17], t[18], idx, out, rows)) return 1;
  for (int64_t i = 0; i < rows * dim; ++i) out[i] += h1[i];
  return 0;
}
