"""Gated feed-forward: down(act(gate(x)) * up(x)), act silu (SwiGLU) or tanh-approximated gelu (GeGLU)."""
from mindspore import nn, ops

from cold_ms.cells.lora_linear import target_linear


class MLP(nn.Cell):
    def __init__(self, cfg, spec):
        super().__init__()
        d, f = cfg.hidden_size, cfg.intermediate_size
        self.gelu = cfg.arch.activation == "gelu_tanh"
        self.gate_proj = target_linear("gate_proj", d, f, spec)
        self.up_proj = target_linear("up_proj", d, f, spec)
        self.down_proj = target_linear("down_proj", f, d, spec)

    def construct(self, x, lora_idx):
        gate = self.gate_proj(x, lora_idx)
        gate = ops.gelu(gate, approximate="tanh") if self.gelu else ops.silu(gate)
        return self.down_proj(gate * self.up_proj(x, lora_idx), lora_idx)
