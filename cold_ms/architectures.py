"""The model families cold_ms runs, each declared once as its differences from the LLaMA block.

The LLaMA block: x += o(attn(rope(q(n1(x))), rope(k(n1(x))), v(n1(x)))); x += down(silu(gate(n2(x))) * up(n2(x)))
with RMSNorm n1, n2 scaled by their weights and no biases. A family says what it changes; the
config (which HF / GGUF fields it reads), the loaders (tensor names, norm offset, the GGUF Q/K
row order), the Cells, the layer kernel's operands and the tests' numpy references read it here,
so no code branches on a family's name.

What varies within a family (sliding-window layers, rope bases and scaling, the attention
scale, logit soft-capping) is per checkpoint and lives in ModelConfig.
"""
from dataclasses import dataclass
from typing import Tuple

ACTIVATIONS = ("silu", "gelu_tanh")  # the gated MLP's: SwiGLU, or GeGLU with tanh-approximated gelu


@dataclass(frozen=True)
class Family:
    name: str
    hf_model_types: Tuple[str, ...]   # config.json "model_type" values of this family
    gguf_arch: str                    # GGUF "general.architecture"
    qkv_bias: bool = False            # q, k and v projections carry biases (o and the MLP none)
    qk_norm: bool = False             # RMSNorm over each head of q and of k, before rope
    sandwich_norms: bool = False      # RMSNorms on the attention and MLP outputs too, before the residual adds
    activation: str = "silu"
    norm_offset: float = 0.0          # HF stores norm weights w and scales by (offset + w)
    embed_scale: bool = False         # embeddings multiplied by sqrt(hidden_size)
    gguf_permuted_qk: bool = False    # llama.cpp stores Q/K rows permuted for its interleaved rope
    stop_tokens: Tuple[str, ...] = ()  # end-of-turn tokens that end generation beside EOS

    @property
    def norms(self):
        """HF names of a layer's norms by role: (attention in, attention out, MLP in, MLP out);
        None where the family has no such norm."""
        if self.sandwich_norms:
            return ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                    "post_feedforward_layernorm")
        return ("input_layernorm", None, "post_attention_layernorm", None)


FAMILIES = {f.name: f for f in (
    Family("llama", ("llama", "mistral"), "llama", gguf_permuted_qk=True),
    Family("qwen2", ("qwen2",), "qwen2", qkv_bias=True, stop_tokens=("<|im_end|>", "<|endoftext|>")),
    Family("qwen3", ("qwen3",), "qwen3", qk_norm=True, stop_tokens=("<|im_end|>", "<|endoftext|>")),
    Family("gemma3", ("gemma3_text",), "gemma3", qk_norm=True, sandwich_norms=True, activation="gelu_tanh",
           norm_offset=1.0, embed_scale=True, stop_tokens=("<end_of_turn>",)),
)}
BY_MODEL_TYPE = {t: f for f in FAMILIES.values() for t in f.hf_model_types}
BY_GGUF_ARCH = {f.gguf_arch: f for f in FAMILIES.values()}
