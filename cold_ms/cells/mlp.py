"""SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""
from mindspore import nn, ops

from cold_ms.cells.lora_linear import target_linear


class MLP(nn.Cell):
    def __init__(self, cfg, spec):
        super().__init__()
        d, f = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = target_linear("gate_proj", d, f, spec)
        self.up_proj = target_linear("up_proj", d, f, spec)
        self.down_proj = target_linear("down_proj", f, d, spec)

    def construct(self, x, lora_idx):
        hidden = ops.silu(self.gate_proj(x, lora_idx)) * self.up_proj(x, lora_idx)
        return self.down_proj(hidden, lora_idx)
