// A whole decoder layer of an inference call as one op (MindSpore CPU AOT interface), for
// decode steps (T = 1) and prompt chunks (T tokens per row) alike:
//
//   x = rmsnorm(h); q, k, v = x Wq^T, x Wk^T, x Wv^T (+ LoRA) (+ bias); q, k = rmsnorm per head;
//   rotate q, k; write k, v into the layer's caches; a = attention(q, caches, pos, window, scale)
//   h1 = h + norm_a(a Wo^T (+ LoRA)); h_out = h1 + norm_m((act(x1 Wg^T) * x1 Wu^T) Wd^T (+ LoRA)),
//   x1 = rmsnorm(h1)
//
// The LLaMA block, with each family's differences (cold_ms/architectures.py) as operands: q/k/v
// biases, per-head q/k norms, norm_a / norm_m on the attention and MLP outputs (Gemma's sandwich
// norms), act silu or gelu-tanh, a sliding window and the attention scale. An "opt" operand the
// family does not have is a (1,) placeholder, and that step is skipped.
//
// Written with MindSpore ops a layer is some eighty kernels. At decode sizes their launches
// cost more than the arithmetic; in a prompt chunk's graph MindSpore's CPU runtime keeps
// about 150 KB per kernel for the life of the process (measured: 13 MB per layer, 400 MB per
// compiled chunk size of SmolLM2-135M), so as one op a chunk size costs what its buffers do.
// Activations float32; each projection weight of any type and layout in wtypes.h (its type
// code and activation bits in the `wtypes` operand). A module without LoRA slots gets a (1, 1, 1) placeholder stack,
// recognised by its shape. The operands are declared once, in cold_ms/ops/operands.py.

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

// The layer's projections: y (rows * seq, out) = x (rows * seq, in) W^T, plus the LoRA term of
// each row's slot when the stacks fit the projection (one LoraTerm for all seven).
class Projector {
 public:
  Projector(const int32_t* idx, int64_t rows, int64_t seq, std::vector<float>* v)
      : rows_(rows), seq_(seq), lora_(idx, v) {}

  // a, b: the LoRA stacks, both of MindSpore dtype `dt`
  int operator()(const float* x, const WeightRef& w, const Tensor& a, const Tensor& b, const char* dt, float* y) {
    DenseWeight(x, w, y, rows_ * seq_);
    if (a.ndim != 3 || a.shape[2] != w.in) return 0;  // a placeholder: this module has no LoRA
    Dims d;
    d.rows = rows_;
    d.seq = seq_;
    d.in = w.in;
    d.out = w.out;
    d.slots = a.shape[0];
    d.rank = a.shape[1];
    if (b.ndim != 3 || b.shape[0] != d.slots || b.shape[1] != d.rank || b.shape[2] != w.out)
      return Fail("layer step: lora_a and lora_b do not fit");
    return lora_.Add(dt, x, a.data, b.data, y, d);
  }

 private:
  int64_t rows_, seq_;
  LoraTerm<int32_t> lora_;
};

bool Float(const char* dt) {
  return !std::strcmp(dt, "float32") || !std::strcmp(dt, "float16") || !std::strcmp(dt, "bfloat16");
}

// Operand dtypes against their declared kinds (a weight is float32 or uint8; a LoRA stack float32,
// float16 or bfloat16, and a KV cache too, the two caches alike).
bool Types(const char** dtypes) {
  for (int i = 0; i < kLayerOperands; ++i) {
    const char *kind = kLayerKinds[i], *dt = dtypes[i];
    const bool ok = !std::strcmp(kind, "int") ? !std::strcmp(dt, "int32")
                    : !std::strcmp(kind, "weight") ? !std::strcmp(dt, "float32") || !std::strcmp(dt, "uint8")
                    : !std::strcmp(kind, "lora") || !std::strcmp(kind, "cache") ? Float(dt)
                                                                                 : !std::strcmp(dt, "float32");  // f32, opt
    if (!ok) return false;
  }
  return !std::strcmp(dtypes[kOpKCache], dtypes[kOpVCache]);
}

const float* F(const Tensor& t) { return static_cast<const float*>(t.data); }

// An "opt" operand of `size` values: its data, nullptr for the (1,) placeholder of a family without
// it; `bad` set when it is neither.
const float* Opt(const Tensor& t, int64_t size, bool* bad) {
  if (t.ndim == 1 && t.shape[0] == size && size > 1) return F(t);
  if (t.ndim != 1 || t.shape[0] != 1) *bad = true;
  return nullptr;
}

// y[i, :] += b for n rows of `width` values (b nullptr: nothing).
void AddBias(float* y, const float* b, int64_t n, int64_t width) {
  if (!b) return;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < width; ++j) y[i * width + j] += b[j];
}

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

// fn(k, v) with the caches' data as the element type of MindSpore dtype `dt` (Types checked it).
template <typename Fn>
void WithCaches(const char* dt, void* k, void* v, const Fn& fn) {
  if (!std::strcmp(dt, "float16")) fn(static_cast<F16*>(k), static_cast<F16*>(v));
  else if (!std::strcmp(dt, "bfloat16")) fn(static_cast<BF16*>(k), static_cast<BF16*>(v));
  else fn(static_cast<float*>(k), static_cast<float*>(v));
}

}  // namespace

// h (R, T, d); cos, sin (R, T, D); pos (R, T) each token's position; crow (R,) each row's cache
// row; len (1,) positions per cache row. The caches are the flat (C * KVH * len, D) Parameters
// of the layer, written in place at (crow[r] * KVH + g) * len + pos (through MindSpore,
// ScatterUpdate and the reshape after it copied both whole caches every layer: 10 ms of a
// 16-row step); float32, float16 or bfloat16 (the Parameters' dtype: k, v rounded to nearest even).
extern "C" int LayerStep(int nparam, void** p, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  g_error[0] = '\0';
  if (nparam != kLayerOperands || !Types(dtypes)) return Fail("layer step: bad operands");
  std::vector<Tensor> t(nparam);
  for (int i = 0; i < nparam; ++i) t[i] = {p[i], ndims[i], shapes[i]};
  constexpr int kProjections = sizeof(kLayerWeights) / sizeof(kLayerWeights[0]);
  if (t[kOpWtypes].ndim != 2 || t[kOpWtypes].shape[0] != kProjections || t[kOpWtypes].shape[1] != 2)
    return Fail("layer step: wtypes must hold a (type code, activation bits) pair per projection");
  WeightRef w[kProjections];
  enum { Q, K, V, O, G, U, D };  // kLayerWeights order
  for (int i = 0; i < kProjections; ++i) {
    const Tensor& op = t[kLayerWeights[i]];
    if (ReadWeight(op.data, op.ndim, op.shape, dtypes[kLayerWeights[i]],
                   static_cast<const int32_t*>(t[kOpWtypes].data) + 2 * i, &w[i]))
      return 1;
  }
  if (t[kOpH].ndim != 3 || t[kOpKCache].ndim != 2 || t[kOpKCache].shape[1] < 1 || t[kOpLen].ndim != 1 ||
      t[kOpLen].shape[0] != 1)
    return Fail("layer step: h must be (R, T, d), the caches (rows, D) and len (1,)");
  const int64_t rows = t[kOpH].shape[0], seq = t[kOpH].shape[1], dim = t[kOpH].shape[2], n = rows * seq;
  const int64_t hd = t[kOpKCache].shape[1], heads = w[Q].out / hd, kvh = w[K].out / hd, ffn = w[G].out;
  const int64_t len = *static_cast<const int32_t*>(t[kOpLen].data);
  const int64_t crows = len > 0 && kvh > 0 ? t[kOpKCache].shape[0] / (kvh * len) : 0;
  const Tensor &cos = t[kOpCos], &pos_t = t[kOpPos], &crow_t = t[kOpCrow];
  if (w[Q].in != dim || cos.ndim != 3 || cos.shape[0] != rows || cos.shape[1] != seq || cos.shape[2] != hd ||
      pos_t.ndim != 2 || pos_t.shape[0] != rows || pos_t.shape[1] != seq || crow_t.ndim != 1 || crow_t.shape[0] != rows)
    return Fail("layer step: h (R, T, d) needs weights (out, d), cos (R, T, D), pos (R, T) and crow (R,)");
  if (crows < 1 || t[kOpKCache].shape[0] != crows * kvh * len || t[kOpVCache].shape[0] != t[kOpKCache].shape[0] ||
      t[kOpVCache].shape[1] != hd || heads % kvh || w[O].out != dim || w[K].in != dim || w[V].in != dim ||
      w[V].out != w[K].out || w[O].in != heads * hd || w[G].in != dim || w[U].in != dim || w[U].out != ffn ||
      w[D].in != ffn || w[D].out != dim)
    return Fail("layer step: the caches and the weights do not fit");
  bool bad = false;
  const float *q_bias = Opt(t[kOpQBias], heads * hd, &bad), *k_bias = Opt(t[kOpKBias], kvh * hd, &bad);
  const float *v_bias = Opt(t[kOpVBias], kvh * hd, &bad), *q_norm = Opt(t[kOpQNorm], hd, &bad);
  const float *k_norm = Opt(t[kOpKNorm], hd, &bad), *attn_out_norm = Opt(t[kOpAttnOutNorm], dim, &bad);
  const float* mlp_out_norm = Opt(t[kOpMlpOutNorm], dim, &bad);
  if (bad || t[kOpAttn].ndim != 1 || t[kOpAttn].shape[0] != 2 || t[kOpScale].ndim != 1 || t[kOpScale].shape[0] != 1)
    return Fail("layer step: a bias or norm does not fit its projection, or attn is not (2,) / scale not (1,)");
  const int32_t* attn_cfg = static_cast<const int32_t*>(t[kOpAttn].data);  // window, activation
  const float eps1 = *F(t[kOpEps1]);
  const int32_t *idx = static_cast<const int32_t*>(t[kOpIdx].data), *pos = static_cast<const int32_t*>(pos_t.data);
  const int32_t* crow = static_cast<const int32_t*>(crow_t.data);
  for (int64_t r = 0; r < rows; ++r)
    if (crow[r] < 0 || crow[r] >= crows) return Fail("layer step: a cache row is outside the cache");
  for (int64_t i = 0; i < n; ++i)
    if (pos[i] < 0 || pos[i] >= len) return Fail("layer step: a position is outside the cache");

  thread_local Scratch s;  // every element below is written before it is read
  float *x = Take(s.x, n * dim), *proj = Take(s.proj, n * heads * hd), *q = Take(s.q, n * heads * hd);
  float* kv = Take(s.kv, n * kvh * hd);
  Projector project(idx, rows, seq, &s.lora);
  // projection wi of `in`, with the LoRA pair whose A is operand a (its B follows it)
  const auto run = [&](const float* in, int wi, int a, float* out) {
    if (std::strcmp(dtypes[a], dtypes[a + 1])) return Fail("layer step: a LoRA pair's A and B differ in dtype");
    return project(in, w[wi], t[a], t[a + 1], dtypes[a], out);
  };
  RmsNormRows(F(t[kOpH]), F(t[kOpLn1]), eps1, x, n, dim);
  if (run(x, Q, kOpAq, proj)) return 1;
  AddBias(proj, q_bias, n, heads * hd);
  if (q_norm) RmsNormRows(proj, q_norm, eps1, proj, n * heads, hd);  // in place: each head's row
  RopeRows(proj, F(cos), F(t[kOpSin]), q, n, heads * hd, hd);
  for (int m = 0; m < 2; ++m) {  // k (rotated, into kv), then v (left in proj)
    if (run(x, m ? V : K, m ? kOpAv : kOpAk, proj)) return 1;
    AddBias(proj, m ? v_bias : k_bias, n, kvh * hd);
    if (!m && k_norm) RmsNormRows(proj, k_norm, eps1, proj, n * kvh, hd);
    if (!m) RopeRows(proj, F(cos), F(t[kOpSin]), kv, n, kvh * hd, hd);
  }

  float *attn = Take(s.attn, n * heads * hd), *h1 = Take(s.h1, n * dim);
  float *gate = Take(s.gate, n * ffn), *up = Take(s.up, n * ffn);
  WithCaches(dtypes[kOpKCache], t[kOpKCache].data, t[kOpVCache].data, [&](auto* kc, auto* vc) {
    for (int64_t i = 0; i < n; ++i)  // each token's k, v at its position, then attention over them
      for (int64_t g = 0; g < kvh; ++g) {
        const int64_t at = ((crow[i / seq] * kvh + g) * len + pos[i]) * hd;
        StoreCacheRow(kc + at, kv + (i * kvh + g) * hd, hd);
        StoreCacheRow(vc + at, proj + (i * kvh + g) * hd, hd);
      }
    AttentionRows(q, kc, vc, pos, crow, attn, rows, seq, heads, kvh, len, hd, attn_cfg[0], *F(t[kOpScale]));
  });
  if (run(attn, O, kOpAo, h1)) return 1;
  if (attn_out_norm) RmsNormRows(h1, attn_out_norm, eps1, h1, n, dim);
  for (int64_t i = 0; i < n * dim; ++i) h1[i] += F(t[kOpH])[i];
  const float eps2 = *F(t[kOpEps2]);
  RmsNormRows(h1, F(t[kOpLn2]), eps2, x, n, dim);
  if (run(x, G, kOpAg, gate)) return 1;
  if (run(x, U, kOpAu, up)) return 1;
  GatedActivation(gate, up, n * ffn, attn_cfg[1]);
  float* out = static_cast<float*>(t[kOpOut].data);
  if (run(gate, D, kOpAd, out)) return 1;
  if (mlp_out_norm) RmsNormRows(out, mlp_out_norm, eps2, out, n, dim);
  for (int64_t i = 0; i < n * dim; ++i) out[i] += h1[i];
  return 0;
}
