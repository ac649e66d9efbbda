"""LLaMA-family decoder over a static KV cache. Parameter names match HF checkpoints."""
import mindspore as ms
from mindspore import nn, ops, Parameter, Tensor
from mindspore.common.initializer import initializer

from cold_ms.cells.attention import Attention
from cold_ms.cells.mlp import MLP
from cold_ms.cells.norm import RMSNorm
from cold_ms.cells.rope import rope_tables
from cold_ms.ops import decode
from cold_ms.ops.bgmv import select_backend
from cold_ms.ops.linear import project

MASKED = -1e30  # additive attention bias for positions a query must not see


class Embedding(nn.Cell):
    def __init__(self, vocab, dim):
        super().__init__()
        self.weight = Parameter(initializer("zeros", (vocab, dim), ms.float32), name="weight",
                                requires_grad=False)

    def construct(self, tokens):
        return ops.gather(self.weight, tokens, 0)


class DecoderLayer(nn.Cell):
    def __init__(self, cfg, layout, rows, length, backend):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, backend)
        self.self_attn = Attention(cfg, layout, rows, length, backend)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, backend)
        self.mlp = MLP(cfg, layout, backend)
        self.kernels = decode.fused_layers(backend)

    def construct(self, h, cos, sin, flat_idx, bias, cache_rows, lora_idx, positions):
        if self.kernels and cache_rows is not None:  # inference: one kernel, cache writes included
            shape = (h.shape[0], h.shape[1], self.self_attn.head_dim)
            return decode.layer(h, cos.reshape(shape), sin.reshape(shape), positions, cache_rows, lora_idx,
                                self.input_layernorm, self.self_attn, self.post_attention_layernorm, self.mlp)
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, flat_idx, bias, cache_rows, lora_idx)
        return h + self.mlp(self.post_attention_layernorm(h), lora_idx)


class LlamaModel(nn.Cell):
    def __init__(self, cfg, layout, rows, length, backend):
        super().__init__()
        self.embed_tokens = Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.CellList([DecoderLayer(cfg, layout, rows, length, backend)
                                   for _ in range(cfg.num_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, backend)


class CausalLM(nn.Cell):
    """Next-token logits of the chosen token of every row.

    The KV cache holds `rows` rows of `max_len + 1` positions: position max_len is a
    scratch slot where padding tokens write, never visible to a real token.
    """

    def __init__(self, cfg, layout, rows, max_len, backend="custom"):
        super().__init__()
        self.cfg, self.layout, self.rows, self.max_len = cfg, layout, rows, max_len
        self.backend = backend = select_backend(backend)
        self.layer_kernels = decode.fused_layers(backend)
        self.weight_layout = "panels" if self.layer_kernels else "rows"  # of the projections
        self.length = max_len + 1
        self.model = LlamaModel(cfg, layout, rows, self.length, backend)
        self.tied = cfg.tie_word_embeddings
        if not self.tied:
            self.lm_head = Embedding(cfg.vocab_size, cfg.hidden_size)
        cos, sin = rope_tables(cfg.head_dim, self.length, cfg.rope_theta)
        self.cos, self.sin = Tensor(cos), Tensor(sin)
        self.matmul = ops.MatMul(transpose_b=True)

    def rotary(self, positions):
        """cos, sin (R, 1, T, D) for positions (R, T)."""
        cos = ops.expand_dims(ops.gather(self.cos, positions, 0), 1)
        sin = ops.expand_dims(ops.gather(self.sin, positions, 0), 1)
        return cos, sin

    def hidden(self, tokens, positions, flat_idx, bias, cache_rows, lora_idx):
        """Final-layer hidden states (R, T, d), before the last norm."""
        cos, sin = self.rotary(positions)
        h = self.model.embed_tokens(tokens)
        for layer in self.model.layers:
            h = layer(h, cos, sin, flat_idx, bias, cache_rows, lora_idx, positions)
        return h

    def logits(self, h):
        """Next-token logits (N, V) of hidden states (N, d)."""
        head = self.model.embed_tokens.weight if self.tied else self.lm_head.weight
        rows = h.shape[0]
        out = project(self.model.norm(h).reshape(rows, 1, -1), head, self.matmul, None, None, None, self.backend)
        return out.reshape(rows, -1)

    def construct(self, tokens, positions, cache_rows, last, lora_idx):
        """tokens, positions (R, T) int32; cache_rows (R,) or None (= all rows in order);
        last (R,) index in T of the token to score; lora_idx (R,) slot or -1. -> (R, V)."""
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
            visible = keys <= positions.reshape(rows, seq, 1)  # (R, T, L)
            bias = additive_mask(visible).reshape(rows, 1, 1, seq, self.length)
            h = self.hidden(tokens, positions, flat_idx, bias, cache_rows, lora_idx)  # (R, T, d)
        pick = ops.arange(0, rows, dtype=ms.int32) * seq + last
        return self.logits(ops.gather(h.reshape(rows * seq, -1), pick, 0))  # (R, V)


def additive_mask(visible):
    """0 where a query may see a key, MASKED elsewhere."""
    return ops.select(visible, ops.zeros_like(visible, dtype=ms.float32),
                      ops.full_like(visible, MASKED, dtype=ms.float32))
