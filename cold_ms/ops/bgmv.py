"""The LoRA term of a multi-adapter batch (BGMV: batched gather matrix-vector).

    shrink:  v[i]  = x[i] @ A[idx[i]]            (rank r, float32 accumulation)
    expand:  y[i] += v[i] @ B[idx[i]]            (lora_alpha / r already folded into B)
    idx[i] < 0 leaves y[i] unchanged: that row runs the base model.

Shapes: x (R, T, in), A (S, in, r), B (S, r, out), idx (R,) int32, y (R, T, out).
Cells call `add_lora`; which backend computes it is a construction-time choice.
"""
from cold_ms.errors import ConfigError
from cold_ms.ops import reference

BACKENDS = ("gather",)


def check_backend(backend):
    if backend not in BACKENDS:
        raise ConfigError(f"unknown LoRA backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def add_lora(y, x, lora_a, lora_b, idx, backend="gather"):
    """y + BGMV(x, A, B, idx): see the module docstring."""
    v = reference.shrink_gather(x, lora_a, idx)
    return reference.expand_gather(y, v, lora_b, idx)
