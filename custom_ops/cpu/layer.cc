// A whole decoder layer of a decode step as one op (MindSpore CPU AOT interface):
//
//   x = rmsnorm(h); q, k, v = x Wq^T, x Wk^T, x Wv^T (+ LoRA); rotate q, k
//   write k, v into the layer's caches; a = attention(q, caches, pos)
//   h1 = h + a Wo^T (+ LoRA); h_out = h1 + (silu(x1 Wg^T) * x1 Wu^T) Wd^T (+ LoRA), x1 = rmsnorm(h1)
//
// Written with MindSpore ops a decode layer is some twenty kernel launches plus two cache
// updates that copied the whole caches; as one op the step spends its time streaming the
// weights, which is what bounds a decode step.
// Float32; one token per row (T = 1); every cache row takes part (rows R of the caches).
// A module without LoRA slots gets a (1, 1, 1) placeholder stack, recognised by its shape.

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

// Operands: h, ln1, eps1, Wq, Wk, Wv, Aq, Bq, Ak, Bk, Av, Bv, cos, sin, k_cache, v_cache, pos,
// Wo, Ao, Bo, ln2, eps2, Wg, Ag, Bg, Wu, Au, Bu, Wd, Ad, Bd, idx -> h_out
// h (R, 1, d); cos, sin (R, 1, D); caches are the flat (R * KVH * L, D) Parameters of the
// layer, written in place at (r * KVH + g) * L + pos[r] (through MindSpore, ScatterUpdate and
// the reshape after it copied both whole caches every layer: 10 ms of a 16-row step).
extern "C" int DecodeLayer(int nparam, void** p, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  g_error[0] = '\0';
  enum { H, LN1, EPS1, WQ, WK, WV, AQ, BQ, AK, BK, AV, BV, COS, SIN, KC, VC, POS, WO, AO, BO, LN2, EPS2,
         WG, AG, BG, WU, AU, BU, WD, AD, BD, IDX, OUT, COUNT };
  if (nparam != COUNT || !Types(nparam, dtypes, IDX, POS)) return Fail("decode layer: bad operands");
  const auto t = Tensors(nparam, p, ndims, shapes);
  const int64_t rows = t[H].shape[0], dim = t[H].shape[2], hd = t[KC].shape[1];
  const int64_t heads = t[WQ].shape[0] / hd, kvh = t[WK].shape[0] / hd, ffn = t[WG].shape[0];
  const int64_t len = rows * kvh ? t[KC].shape[0] / (rows * kvh) : 0;
  if (t[H].ndim != 3 || t[H].shape[1] != 1 || rows > kMaxRows || t[WQ].shape[1] != dim || t[COS].shape[0] != rows ||
      t[COS].shape[2] != hd)
    return Fail("decode layer: h must be (R <= 16, 1, d) with weights (out, d) and cos (R, 1, D)");
  if (t[KC].ndim != 2 || len < 1 || t[KC].shape[0] != rows * kvh * len || t[VC].shape[0] != t[KC].shape[0] ||
      t[VC].shape[1] != hd || heads % kvh || t[WO].shape[0] != dim)
    return Fail("decode layer: the caches and the weights do not fit");
  const int32_t *idx = static_cast<const int32_t*>(t[IDX].data), *pos = static_cast<const int32_t*>(t[POS].data);
  for (int64_t r = 0; r < rows; ++r)
    if (pos[r] < 0 || pos[r] >= len) return Fail("decode layer: a position is outside the cache");

  std::vector<float> x(rows * dim), proj(rows * heads * hd), q(rows * heads * hd), kv(rows * kvh * hd);
  RmsNormRows(F(t[H]), F(t[LN1]), *F(t[EPS1]), x.data(), rows, dim);
  if (Project(x.data(), t[WQ], t[AQ], t[BQ], idx, proj.data(), rows)) return 1;
  RopeRows(proj.data(), F(t[COS]), F(t[SIN]), q.data(), rows, heads * hd, hd);
  for (int m = 0; m < 2; ++m) {  // k then v, each written to its cache at the rows' positions
    if (Project(x.data(), t[m ? WV : WK], t[m ? AV : AK], t[m ? BV : BK], idx, proj.data(), rows)) return 1;
    if (!m) RopeRows(proj.data(), F(t[COS]), F(t[SIN]), kv.data(), rows, kvh * hd, hd);
    const float* src = m ? proj.data() : kv.data();
    float* cache = static_cast<float*>(t[m ? VC : KC].data);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < kvh; ++g)
        std::memcpy(cache + ((r * kvh + g) * len + pos[r]) * hd, src + (r * kvh + g) * hd, sizeof(float) * hd);
  }

  std::vector<float> attn(rows * heads * hd), h1(rows * dim), gate(rows * ffn), up(rows * ffn);
  AttentionRows(q.data(), F(t[KC]), F(t[VC]), pos, attn.data(), rows, heads, kvh, len, hd);
  if (Project(attn.data(), t[WO], t[AO], t[BO], idx, h1.data(), rows)) return 1;
  for (int64_t i = 0; i < rows * dim; ++i) h1[i] += F(t[H])[i];
  RmsNormRows(h1.data(), F(t[LN2]), *F(t[EPS2]), x.data(), rows, dim);
  if (Project(x.data(), t[WG], t[AG], t[BG], idx, gate.data(), rows)) return 1;
  if (Project(x.data(), t[WU], t[AU], t[BU], idx, up.data(), rows)) return 1;
  SwiGlu(gate.data(), up.data(), rows * ffn);
  float* out = static_cast<float*>(t[OUT].data);
  if (Project(gate.data(), t[WD], t[AD], t[BD], idx, out, rows)) return 1;
  for (int64_t i = 0; i < rows * dim; ++i) out[i] += h1[i];
  return 0;
}
