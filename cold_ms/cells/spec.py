"""What the Cells of a CausalLM are built from, passed whole down the tree."""
from dataclasses import dataclass, field, replace

import mindspore as ms

from cold_ms.config import FLOAT_DTYPES, LoraLayout
from cold_ms.errors import ConfigError

COMPUTE_DTYPES = {name: getattr(ms, name) for name in FLOAT_DTYPES}


@dataclass(frozen=True)
class Spec:
    """lora: how adapters are stacked; backend: the LoRA backend; compute_dtype: of the MindSpore Cells'
    weights, residual stream, KV cache and LoRA stacks (norm statistics, softmax and logits in float32);
    kv_dtype: what the KV caches hold (the compute dtype on the Cells' path; float32, float16 or
    bfloat16 on the CPU layer kernels, which read it back as float32);
    weights: {parameter name: Prepared} (ops/prepare.py), names relative to the Cell being built."""
    lora: LoraLayout
    backend: str
    compute_dtype: object = ms.float32
    kv_dtype: object = ms.float32
    weights: dict = field(default_factory=dict, repr=False)

    def under(self, prefix):
        """The spec of a sub-Cell: weights below `prefix` ("model.layers.3."), renamed relative to it."""
        return replace(self, weights={n[len(prefix):]: p for n, p in self.weights.items() if n.startswith(prefix)})

    def weight(self, module):
        """The Prepared weight of projection `module` of this layer, if any."""
        for parent in ("self_attn", "mlp"):
            found = self.weights.get(f"{parent}.{module}.weight")
            if found is not None:
                return found
        return None


def compute_dtype(name, what="compute dtype"):
    if name not in COMPUTE_DTYPES:
        raise ConfigError(f"{what} must be one of {', '.join(COMPUTE_DTYPES)}, got {name!r}")
    return COMPUTE_DTYPES[name]
