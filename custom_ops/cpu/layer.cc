// A whole decoder layer of an inference call as one op (MindSpore CPU AOT interface), for
// decode steps (T = 1) and prompt chunks (T tokens per row) alike:
//
//   x = rmsnorm(h); q, k, v = x Wq^T, x Wk^T, x Wv^T (+ LoRA); rotate q, k
//   write k, v into the layer's caches; a = attention(q, caches, pos)
//   h1 = h + a Wo^T (+ LoRA); h_out = h1 + (silu(x1 Wg^T) * x1 Wu^T) Wd^T (+ LoRA), x1 = rmsnorm(h1)
//
// Written with MindSpore ops a layer is some eighty kernels. At decode sizes their launches
// cost more than the arithmetic; in a prompt chunk's graph MindSpore's CPU runtime keeps
// about 150 KB per kernel for the life of the process (measured: 13 MB per layer, 400 MB per
// compiled chunk size of SmolLM2-135M), so as one op a chunk size costs what its buffers do.
// Float32. A module without LoRA slots gets a (1, 1, 1) placeholder stack, recognised by its shape.

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <vector>

#include "decode_kernels.h"

namespace {

using namespace cold;

struct Tensor {
  void* data;
  int ndim;
  const int64_t* shape;
};

// Output size of a weight in either layout, 0 if it is in neither.
int64_t OutSize(const Tensor& w) { return WeightOut(w.ndim, w.shape); }

// The layer's projections: y (rows * seq, out) = x (rows * seq, in) W^T, plus the LoRA term of
// each row's slot when the stacks fit the projection (one LoraTerm for all seven).
class Projector {
 public:
  Projector(const int32_t* idx, int64_t rows, int64_t seq, std::vector<float>* v)
      : rows_(rows), seq_(seq), lora_(idx, v) {}

  int operator()(const float* x, const Tensor& w, const Tensor& a, const Tensor& b, float* y) {
    const int64_t out = OutSize(w), in = w.shape[1];
    DenseWeight(x, static_cast<const float*>(w.data), w.ndim == 3, y, rows_ * seq_, in, out);
    if (a.ndim != 3 || a.shape[2] != in) return 0;  // a placeholder: this module has no LoRA
    Dims d;
    d.rows = rows_;
    d.seq = seq_;
    d.in = in;
    d.out = out;
    d.slots = a.shape[0];
    d.rank = a.shape[1];
    if (b.ndim != 3 || b.shape[0] != d.slots || b.shape[1] != d.rank || b.shape[2] != out)
      return Fail("layer step: lora_a and lora_b do not fit");
    return lora_.Add(x, static_cast<const float*>(a.data), static_cast<const float*>(b.data), y, d);
  }

 private:
  int64_t rows_, seq_;
  LoraTerm<int32_t> lora_;
};

std::vector<Tensor> Tensors(int nparam, void** p, int* ndims, int64_t** shapes) {
  std::vector<Tensor> t(nparam);
  for (int i = 0; i < nparam; ++i) t[i] = {p[i], ndims[i], shapes[i]};
  return t;
}

bool Types(int nparam, const char** dtypes, std::initializer_list<int> int_inputs) {
  for (int i = 0; i < nparam; ++i) {
    bool integer = false;
    for (int j : int_inputs) integer = integer || i == j;
    const char* want = integer ? "int32" : "float32";
    if (std::strcmp(dtypes[i], want)) return false;
  }
  return true;
}

const float* F(const Tensor& t) { return static_cast<const float*>(t.data); }

// The layer's intermediate buffers, kept per calling thread from call to call: allocated
// afresh, a 1024-token-row chunk's 26 MB a layer were new pages every call (page faults and
// zeroing took more time than its RMSNorms and rotations together).
struct Scratch {
  std::vector<float> x, proj, q, kv, attn, h1, gate, up, lora;
};

float* Take(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
  return v.data();
}

}  // namespace

// Operands: h, ln1, eps1, Wq, Wk, Wv, Aq, Bq, Ak, Bk, Av, Bv, cos, sin, k_cache, v_cache, pos, crow,
// len, Wo, Ao, Bo, ln2, eps2, Wg, Ag, Bg, Wu, Au, Bu, Wd, Ad, Bd, idx -> h_out
// h (R, T, d); cos, sin (R, T, D); pos (R, T) each token's position; crow (R,) each row's cache
// row; len (1,) positions per cache row. The caches are the flat (C * KVH * len, D) Parameters
// of the layer, written in place at (crow[r] * KVH + g) * len + pos (through MindSpore,
// ScatterUpdate and the reshape after it copied both whole caches every layer: 10 ms of a
// 16-row step).
extern "C" int LayerStep(int nparam, void** p, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  g_error[0] = '\0';
  enum { H, LN1, EPS1, WQ, WK, WV, AQ, BQ, AK, BK, AV, BV, COS, SIN, KC, VC, POS, CROW, LEN, WO, AO, BO, LN2, EPS2,
         WG, AG, BG, WU, AU, BU, WD, AD, BD, IDX, OUT, COUNT };
  if (nparam != COUNT || !Types(nparam, dtypes, {POS, CROW, LEN, IDX})) return Fail("layer step: bad operands");
  const auto t = Tensors(nparam, p, ndims, shapes);
  if (t[H].ndim != 3 || t[KC].ndim != 2 || t[KC].shape[1] < 1 || t[LEN].ndim != 1 || t[LEN].shape[0] != 1)
    return Fail("layer step: h must be (R, T, d), the caches (rows, D) and len (1,)");
  const int64_t rows = t[H].shape[0], seq = t[H].shape[1], dim = t[H].shape[2], n = rows * seq, hd = t[KC].shape[1];
  for (int w : {WQ, WK, WV, WO, WG, WU, WD})
    if (!OutSize(t[w]))
      return Fail("layer step: weights must be (out, in) or panels (out / 16, in, 16)");
  const int64_t heads = OutSize(t[WQ]) / hd, kvh = OutSize(t[WK]) / hd, ffn = OutSize(t[WG]);
  const int64_t len = *static_cast<const int32_t*>(t[LEN].data);
  const int64_t crows = len > 0 && kvh > 0 ? t[KC].shape[0] / (kvh * len) : 0;
  if (t[WQ].shape[1] != dim || t[COS].ndim != 3 || t[COS].shape[0] != rows || t[COS].shape[1] != seq ||
      t[COS].shape[2] != hd || t[POS].ndim != 2 || t[POS].shape[0] != rows || t[POS].shape[1] != seq ||
      t[CROW].ndim != 1 || t[CROW].shape[0] != rows)
    return Fail("layer step: h (R, T, d) needs weights (out, d), cos (R, T, D), pos (R, T) and crow (R,)");
  if (crows < 1 || t[KC].shape[0] != crows * kvh * len || t[VC].shape[0] != t[KC].shape[0] ||
      t[VC].shape[1] != hd || heads % kvh || OutSize(t[WO]) != dim)
    return Fail("layer step: the caches and the weights do not fit");
  const int32_t *idx = static_cast<const int32_t*>(t[IDX].data), *pos = static_cast<const int32_t*>(t[POS].data);
  const int32_t* crow = static_cast<const int32_t*>(t[CROW].data);
  for (int64_t r = 0; r < rows; ++r)
    if (crow[r] < 0 || crow[r] >= crows) return Fail("layer step: a cache row is outside the cache");
  for (int64_t i = 0; i < n; ++i)
    if (pos[i] < 0 || pos[i] >= len) return Fail("layer step: a position is outside the cache");

  thread_local Scratch s;  // every element below is written before it is read
  float *x = Take(s.x, n * dim), *proj = Take(s.proj, n * heads * hd), *q = Take(s.q, n * heads * hd);
  float* kv = Take(s.kv, n * kvh * hd);
  Projector project(idx, rows, seq, &s.lora);
  RmsNormRows(F(t[H]), F(t[LN1]), *F(t[EPS1]), x, n, dim);
  if (project(x, t[WQ], t[AQ], t[BQ], proj)) return 1;
  RopeRows(proj, F(t[COS]), F(t[SIN]), q, n, heads * hd, hd);
  for (int m = 0; m < 2; ++m) {  // k then v, each written to its cache at the tokens' positions
    if (project(x, t[m ? WV : WK], t[m ? AV : AK], t[m ? BV : BK], proj)) return 1;
    if (!m) RopeRows(proj, F(t[COS]), F(t[SIN]), kv, n, kvh * hd, hd);
    const float* src = m ? proj : kv;
    float* cache = static_cast<float*>(t[m ? VC : KC].data);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t g = 0; g < kvh; ++g)
        std::memcpy(cache + ((crow[i / seq] * kvh + g) * len + pos[i]) * hd, src + (i * kvh + g) * hd,
                    sizeof(float) * hd);
  }

  float *attn = Take(s.attn, n * heads * hd), *h1 = Take(s.h1, n * dim);
  float *gate = Take(s.gate, n * ffn), *up = Take(s.up, n * ffn);
  AttentionRows(q, F(t[KC]), F(t[VC]), pos, crow, attn, rows, seq, heads, kvh, len, hd);
  if (project(attn, t[WO], t[AO], t[BO], h1)) return 1;
  for (int64_t i = 0; i < n * dim; ++i) h1[i] += F(t[H])[i];
  RmsNormRows(h1, F(t[LN2]), *F(t[EPS2]), x, n, dim);
  if (project(x, t[WG], t[AG], t[BG], gate)) return 1;
  if (project(x, t[WU], t[AU], t[BU], up)) return 1;
  SwiGlu(gate, up, n * ffn);
  float* out = static_cast<float*>(t[OUT].data);
  if (project(gate, t[WD], t[AD], t[BD], out)) return 1;
  for (int64_t i = 0; i < n * dim; ++i) out[i] += h1[i];
  return 0;
}
