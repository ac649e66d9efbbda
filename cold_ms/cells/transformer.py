"""The decoder of every family in cold_ms.architectures over a static KV cache: the LLaMA
block plus the family's declared differences. Parameter names match HF checkpoints."""
import numpy as np
import mindspore as ms
from mindspore import nn, ops, Tensor

from cold_ms.cells.attention import MASKED, Attention
from cold_ms.cells.lora_linear import weight_parameter
from cold_ms.cells.mlp import MLP
from cold_ms.cells.norm import RMSNorm
from cold_ms.cells.rope import inv_freq, rope_tables
from cold_ms.cells.spec import Spec, compute_dtype
from cold_ms.errors import ConfigError
from cold_ms.ops import decode
from cold_ms.ops._library import integer_panels
from cold_ms.ops.linear import embed_op, project
from cold_ms.ops.prepare import layout_key, prepare
from cold_ms.ops.registry import cpu_kernels, select_backend
from cold_ms.runtime import device



class Embedding(nn.Cell):
    """Rows of a (vocab, dim) table: ops.gather on a float table, or the EmbedRows kernel on a
    prepared one of any type (tokens (R, T) -> (R, T, dim): the table's dtype, float32 from the kernel)."""

    def __init__(self, vocab, dim, prepared, kernels, dtype):
        super().__init__()
        self.weight, kind = weight_parameter(prepared, (vocab, dim), dtype)
        self.wtype = Tensor(np.array(kind, np.int32))
        self.rows = embed_op(dim) if kernels else None

    def construct(self, tokens):
        if self.rows is not None:
            return self.rows(self.weight, self.wtype, tokens.astype(ms.int32))
        return ops.gather(self.weight, tokens, 0)


class DecoderLayer(nn.Cell):
    """One block. Norms by the family's roles (architectures.Family.norms): LLaMA's
    input_layernorm before attention and post_attention_layernorm before the MLP; Gemma's
    sandwich adds norms on both outputs (its post_attention_layernorm is the attention output's,
    pre_feedforward_layernorm the MLP input's). window: this layer's sliding window (0: global);
    local_rope: whether it rotates with the local rope base."""

    def __init__(self, cfg, spec, rows, length, index):
        super().__init__()
        d, eps, dtype = cfg.hidden_size, cfg.rms_norm_eps, spec.compute_dtype
        self.sandwich = cfg.arch.sandwich_norms
        self.window, self.local_rope = cfg.layer_windows[index], bool(cfg.layer_rope(index))
        self.input_layernorm = RMSNorm(d, eps, spec.backend, dtype)
        self.self_attn = Attention(cfg, spec, rows, length)
        self.post_attention_layernorm = RMSNorm(d, eps, spec.backend, dtype)
        if self.sandwich:
            self.pre_feedforward_layernorm = RMSNorm(d, eps, spec.backend, dtype)
            self.post_feedforward_layernorm = RMSNorm(d, eps, spec.backend, dtype)
        self.mlp = MLP(cfg, spec)
        self.kernels = cpu_kernels(spec.backend)
        self.state = decode.layer_state(self, cfg) if self.kernels else ()

    def construct(self, h, cos, sin, flat_idx, bias, cache_rows, lora_idx, positions, live=None):
        """live: () int32, keys at or past it are visible to no query (Attention); None: all."""
        if self.kernels and cache_rows is not None:  # inference: one kernel, cache writes included
            shape = (h.shape[0], h.shape[1], self.self_attn.head_dim)
            return decode.layer(h, cos.reshape(shape), sin.reshape(shape), positions, cache_rows, lora_idx,
                                self.state)
        attn = self.self_attn(self.input_layernorm(h), cos, sin, flat_idx, bias, cache_rows, lora_idx, live)
        if self.sandwich:
            h = h + self.post_attention_layernorm(attn)
            return h + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(h), lora_idx))
        h = h + attn
        return h + self.mlp(self.post_attention_layernorm(h), lora_idx)


class DecoderModel(nn.Cell):
    def __init__(self, cfg, spec, rows, length):
        super().__init__()
        self.embed_tokens = Embedding(cfg.vocab_size, cfg.hidden_size, spec.weights.get("embed_tokens.weight"),
                                      cpu_kernels(spec.backend), spec.compute_dtype)
        self.layers = nn.CellList([DecoderLayer(cfg, spec.under(f"layers.{i}."), rows, length, i)
                                   for i in range(cfg.num_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, spec.backend, spec.compute_dtype)


class CausalLM(nn.Cell):
    """Next-token logits of the chosen token of every row.

    The KV cache holds `rows` rows of `max_len + 1` positions: position max_len is a
    scratch slot where padding tokens write, never visible to a real token.
    """

    def __init__(self, cfg, layout, rows, max_len, backend="custom", weights=None, dtype="float32",
                 kv_dtype="float32"):
        """layout: the LoRA slots (LoraLayout); weights: {name: Prepared} (ops/prepare.py) the
        Parameters take their types and shapes from (assigned by the caller), or None for
        float (out, in) matrices; dtype: the compute dtype of the MindSpore Cells (weights, the residual
        stream, KV cache, LoRA stacks; norm statistics, softmax and the logits in float32); kv_dtype:
        what the CPU layer kernels' KV caches hold (float32, float16 or bfloat16)."""
        super().__init__()
        self.cfg, self.layout, self.rows, self.max_len = cfg, layout, rows, max_len
        self.backend = backend = select_backend(backend)
        self.layer_kernels = cpu_kernels(backend)
        if dtype != "float32" and self.layer_kernels:
            raise ConfigError(f"compute dtype {dtype} is for the MindSpore Cells (--lora-backend gather, "
                              f"training, Ascend); the CPU kernels accumulate in float32 over any weight type")
        if dtype == "bfloat16" and device() == "CPU":
            raise ConfigError("compute dtype bfloat16 needs an Ascend NPU: MindSpore 2.9's CPU MatMul has no "
                              "bfloat16 kernel (float16 runs on the CPU, 6-10x slower than float32)")
        kv_dtype = compute_dtype(kv_dtype, "KV cache dtype")
        if kv_dtype != ms.float32 and not self.layer_kernels:
            raise ConfigError("--kv-dtype is for the CPU layer kernels (--lora-backend custom on the CPU); on the "
                              "MindSpore Cells path (gather backend, training, Ascend) the cache holds --dtype")
        cells_dtype = compute_dtype(dtype)
        spec = Spec(layout, backend, cells_dtype, kv_dtype if self.layer_kernels else cells_dtype, weights or {})
        self.length = max_len + 1
        self.model = DecoderModel(cfg, spec.under("model."), rows, self.length)
        self.tied = cfg.tie_word_embeddings
        if not self.tied:
            self.lm_head = Embedding(cfg.vocab_size, cfg.hidden_size, spec.weights.get("lm_head.weight"), False,
                                     spec.compute_dtype)
        # rope tables (L, D): the global rope's, then the local one's where some layer uses it
        tables = [rope_tables(inv_freq(cfg), self.length)]
        if any(cfg.layer_rope(i) for i in range(cfg.num_layers)):
            tables.append(rope_tables(inv_freq(cfg, local=True), self.length))
        self.cos = [Tensor(c).astype(spec.compute_dtype) for c, _ in tables]  # rounded once, as HF does
        self.sin = [Tensor(s).astype(spec.compute_dtype) for _, s in tables]
        self.windows = tuple(sorted(set(cfg.layer_windows)))  # one attention mask each (Cells path)
        for i, layer in enumerate(self.model.layers):
            layer.mask_index = self.windows.index(cfg.layer_windows[i])
        self.embed_scale = float(np.float32(cfg.hidden_size ** 0.5)) if cfg.arch.embed_scale else 0.0
        self.softcap = cfg.final_logit_softcapping
        self.matmul = ops.MatMul(transpose_b=True)

    def rotary(self, positions, table=0):
        """cos, sin (R, 1, T, D) for positions (R, T), of rope table `table` (0 global, 1 local)."""
        cos = ops.expand_dims(ops.gather(self.cos[table], positions, 0), 1)
        sin = ops.expand_dims(ops.gather(self.sin[table], positions, 0), 1)
        return cos, sin

    def hidden(self, tokens, positions, flat_idx, masks, cache_rows, lora_idx, live=None):
        """Final-layer hidden states (R, T, d), before the last norm; masks: the additive attention
        bias of each of self.windows (None on the layer kernels, which mask by position); live:
        the number of cache positions the step's queries can see (None: every one)."""
        ropes = [self.rotary(positions, t) for t in range(len(self.cos))]
        h = self.model.embed_tokens(tokens)
        if self.embed_scale:
            h = h * self.embed_scale
        for layer in self.model.layers:
            cos, sin = ropes[1] if layer.local_rope else ropes[0]
            bias = None if masks is None else masks[layer.mask_index]
            h = layer(h, cos, sin, flat_idx, bias, cache_rows, lora_idx, positions, live)
        return h

    def logits(self, h):
        """Next-token logits (N, V) float32 of hidden states (N, d): the CoLD scores (ops/contrastive.py)
        are computed in float32 whatever the compute dtype."""
        head = self.model.embed_tokens if self.tied else self.lm_head
        rows = h.shape[0]
        out = project(self.model.norm(h).reshape(rows, 1, -1), head.weight, head.wtype, self.matmul, None, None,
                      None, self.backend, self.layer_kernels).reshape(rows, -1).astype(ms.float32)
        if self.softcap:  # cap * tanh(x / cap); MindSpore's CPU tanh is off by up to 1e-4, exp by 1e-6
            out = self.softcap - 2 * self.softcap / (ops.exp(out * (2 / self.softcap)) + 1)
        return out

    def attention_masks(self, query, keys):
        """The additive mask (R, 1, 1, T, L) of each window in self.windows, for query positions
        (R, T, 1) and key positions (1, 1, L): a key is visible at j <= p, and on a sliding-window
        layer only at p - w < j <= p."""
        visible = keys <= query  # (R, T, L)
        shape = (query.shape[0], 1, 1, query.shape[1], keys.shape[2])
        return [additive_mask(visible if not w else visible & (keys > query - w)).reshape(shape)
                for w in self.windows]

    def construct(self, tokens, positions, cache_rows, last, lora_idx):
        """tokens, positions (R, T) int32; cache_rows (R,) or None (= all rows in order);
        last (R,) index in T of the token to score; lora_idx (R,) slot or -1. -> (R, V)."""
        rows, seq = tokens.shape[0], tokens.shape[1]
        pick = ops.arange(0, rows, dtype=ms.int32) * seq + last
        return self.score(tokens, positions, cache_rows, pick, lora_idx)

    def score(self, tokens, positions, cache_rows, pick, lora_idx):
        """construct's forward, scoring the tokens at `pick` (N,) int32, indices into the R*T tokens
        in row-major order (a token may be picked twice) -> (N, V)."""
        rows, seq = tokens.shape[0], tokens.shape[1]
        row_ids = ops.arange(0, rows, dtype=ms.int32) if cache_rows is None else cache_rows
        if self.layer_kernels:  # the layer kernel writes the cache rows and masks by position itself
            h = self.hidden(tokens, positions, None, None, row_ids, lora_idx)  # (R, T, d)
        else:
            kvh = self.cfg.num_kv_heads
            heads = ops.arange(0, kvh, dtype=ms.int32).reshape(1, kvh, 1)
            flat_idx = ((row_ids.reshape(rows, 1, 1) * kvh + heads) * self.length
                        + positions.reshape(rows, 1, seq)).reshape(-1)  # (R*KVH*T,)
            keys = ops.arange(0, self.length, dtype=ms.int32).reshape(1, 1, self.length)
            masks = self.attention_masks(positions.reshape(rows, seq, 1), keys)
            # Keys past the furthest real position are seen by no query: attention stops there.
            # Padding writes at the scratch position max_len and sees every real key, so it is
            # left out of the furthest position (its output is never used).
            live = ops.select(positions < self.max_len, positions, ops.zeros_like(positions)).max() + 1
            h = self.hidden(tokens, positions, flat_idx, masks, cache_rows, lora_idx, live)  # (R, T, d)
        return self.logits(ops.gather(h.reshape(rows * seq, -1), pick, 0))  # (N, V)


def additive_mask(visible):
    """0 where a query may see a key, MASKED elsewhere."""
    return ops.select(visible, ops.zeros_like(visible, dtype=ms.float32),
                      ops.full_like(visible, MASKED, dtype=ms.float32))


def assign(cell, arrays):
    """Put {parameter name: ndarray} into the cell's Parameters, sharing the arrays' memory where
    the dtypes agree (a float32 array for a float16/bfloat16 Parameter is converted). Shapes
    against the config are the loaders' check; a Parameter would take any shape, so the
    prepared layout is checked here."""
    params = dict(cell.parameters_and_names())
    for name, array in arrays.items():
        param = params[name]
        if tuple(param.shape) != array.shape:
            raise ConfigError(f"{name}: array {array.shape} does not fit Parameter {tuple(param.shape)}")
        if param.dtype == ms.uint8:
            param.set_data(Tensor.from_numpy(np.ascontiguousarray(array, np.uint8)))
        elif param.dtype == ms.float32:
            param.set_data(Tensor.from_numpy(np.ascontiguousarray(array, np.float32)))
        else:
            param.set_data(Tensor(np.ascontiguousarray(array, np.float32)).astype(param.dtype))


def build_lm(weights, cfg, layout, rows, max_len, backend="custom", choice="auto", activations="int16",
             dtype="float32", kv_dtype="float32"):
    """A CausalLM holding its own prepared weights (ops/prepare.py) of the loaded `weights`
    ({name: weight as stored}, never changed): (lm, prepared). lm.weights_summary says what
    it reads, lm.weights_key what of that shapes its compiled graphs."""
    backend = select_backend(backend)
    kernels = cpu_kernels(backend)
    prepared, summary = prepare(weights, kernels, choice, activations, kernels and integer_panels())
    lm = CausalLM(cfg, layout, rows, max_len, backend, prepared, dtype, kv_dtype)
    assign(lm, {name: getattr(p, "data", p) for name, p in prepared.items()})
    lm.weights_summary, lm.weights_key = summary, layout_key(prepared)
    return lm, prepared
