"""Prepared weights: a checkpoint's matrices in the type and layout one backend's kernels read.

An engine prepares its own when it is built; the loaded model is never changed, so engines
of different formats run side by side on one loaded model.

    weights (Engine(weights=...), --weights):
      auto     each matrix as stored where a kernel reads its type; a GGUF type without a
               kernel becomes q8_0 (float32 where its rows are not whole blocks of 32); a type
               that widens exactly into one with integer panels (q5_0 into q8_0: the same values)
               is read so where those panels run (measured on Gemma-3-270m's q5_0 matrices:
               dequantising them in L1 cost more than reading the wider panels)
      native   each matrix exactly as stored; a type without a kernel is an error
      float32 | bfloat16 | float16 | q8_0    every projection, the embedding and the head
               converted (requantising to q8_0 is never implicit)
    activations (the CPU kernels' q8_0 / q4_0 / q4_1 / q4_k / q6_k GEMVs):
      int16    integer panels (ops/panels.py), activations quantised per block of 32 to int16
               for VNNI dot products (custom_ops/cpu/qpanels.h), where the CPU has AVX-512 VNNI
      int8     the same panels, activations to int8 as llama.cpp does: faster where many token
               rows make the step compute-bound, less accurate
      float32  the rows as stored, dequantised in L1 and multiplied in float32 (gemv.h)
    Measured on the embedded SmolLM2-135M (numpy, float64, the chat prompt of the README): int8
    activations moved the first logits by up to 1.6 and flipped the greedy choice where its margin
    was 0.08 (llama.cpp on the same file makes the same choice); int16 moved them by 0.004.

Memory: a matrix the kernels read in its stored layout is shared with the loaded model, not
copied; integer panels and conversions are the engine's own arrays (as large as the stored type).
Float32 projections go into float32 panels only when the engine converts them anyway. The
MindSpore Cells (the gather backend, training, the Ascend path) read float matrices (out, in).
"""
from collections import Counter
from dataclasses import dataclass

import numpy as np

from cold_ms import wtypes
from cold_ms.config import LORA_TARGETS
from cold_ms.errors import ConfigError
from cold_ms.ops import panels

ACTIVATIONS = {"int16": 16, "int8": 8, "float32": 0}
_PROJECTIONS = tuple(f".{m}.weight" for m in LORA_TARGETS)
EMBED, HEAD = "model.embed_tokens.weight", "lm_head.weight"


@dataclass(frozen=True)
class Prepared:
    """One matrix as a kernel reads it: `data` float32 (out, in) or float32 panels
    (out / 16, in, 16); uint8 rows of blocks (out, in / block, block_bytes) or integer panels
    (out / 16, in / 32, panel_bytes) of `wtype`, read with act_bits-bit activations."""
    data: np.ndarray
    wtype: wtypes.WeightType
    panels: bool = False
    act_bits: int = 0

    @property
    def kind(self):
        """What the kernels' `kind` operand says of it: (type code, activation bits)."""
        return (self.wtype.code, self.act_bits)


def is_matrix(name):
    return name.endswith(_PROJECTIONS) or name in (EMBED, HEAD)


def _target(name, stored, choice):
    """The weight type `name` is read in under `choice`."""
    have = wtypes.type_of(stored)
    if choice == "native":
        if have.code < 0:
            raise ConfigError(f"{name} is stored as {have.name}, which no cold_ms kernel reads; "
                              f"use --weights auto (it becomes q8_0) or q8_0 or float32")
        return have
    if choice == "auto":
        if have.code >= 0:
            return have
        want = wtypes.TYPES["q8_0"]
    else:
        want = wtypes.TYPES[wtypes.CHOICES[choice]]
    return want if wtypes.fits(want, stored.shape) else wtypes.F32


def _for_kernels(name, stored, choice, act_bits, head):
    """Prepared for the custom CPU kernels; `head` names the LM head (the embedding when tied);
    act_bits: of integer panels where they fit, 0 for none."""
    target = _target(name, stored, choice)
    value = wtypes.convert(stored, target)
    gemv = name.endswith(_PROJECTIONS) or name == head  # read by GEMVs (an untied embedding only by rows)
    wider = target.widens_to and wtypes.TYPES[target.widens_to[0]]
    if choice == "auto" and wider and act_bits and gemv and panels.qpanel_fits(wider, value.shape):
        target, value = wider, wtypes.widen(value)  # the same values in integer panels
    if target.panel_bytes and act_bits and gemv and panels.qpanel_fits(target, value.shape):
        return Prepared(panels.to_qpanels(value), target, True, act_bits)
    if target is wtypes.F32:
        fresh = value is not stored  # converted here: laying it out in panels costs no extra copy
        if fresh and name.endswith(_PROJECTIONS) and panels.packs(value.shape[0]):
            return Prepared(panels.to_panels(value), target, True)
        return Prepared(value, target)
    rows = value.shape[0]
    return Prepared(value.data.reshape(rows, -1, target.block_bytes), target)  # a view: no copy


def prepare(weights, cpu_kernels, choice="auto", activations="int16", panels_available=False):
    """{name: Prepared (matrices) or float32 array (norms)} for a backend, and a summary.

    cpu_kernels: whether the custom CPU kernels read them (else MindSpore's Cells: float32
    (out, in)); panels_available: whether the kernel library has integer panels here.
    """
    if choice not in wtypes.CHOICES:
        raise ConfigError(f"weights must be one of {', '.join(wtypes.CHOICES)}, got {choice!r}")
    if activations not in ACTIVATIONS:
        raise ConfigError(f"activations must be one of {', '.join(ACTIVATIONS)}, got {activations!r}")
    out = {}
    head = HEAD if HEAD in weights else EMBED
    for name, stored in weights.items():
        if not is_matrix(name):
            out[name] = stored
        elif cpu_kernels:
            out[name] = _for_kernels(name, stored, choice, ACTIVATIONS[activations] if panels_available else 0,
                                     head)
        else:  # the values of the chosen type, as float32 (out, in)
            value = wtypes.to_float(wtypes.convert(stored, _target(name, stored, choice)))
            out[name] = Prepared(np.ascontiguousarray(value), wtypes.F32)
    return out, summary(out, choice)


def summary(prepared, choice):
    """e.g. 'native: q4_1 x210, q8_0 x1 (int16 activations)'."""
    counts = Counter(p.wtype.name for p in prepared.values() if isinstance(p, Prepared))
    kinds = ", ".join(f"{name} x{n}" for name, n in counts.most_common())
    bits = {p.act_bits for p in prepared.values() if isinstance(p, Prepared) and p.act_bits}
    return f"{choice}: {kinds}" + "".join(f" (int{b} activations)" for b in sorted(bits))


def layout_key(prepared):
    """What of the prepared weights shapes a compiled graph: each Parameter's shape, dtype and type."""
    return tuple(sorted((name, p.data.shape, p.data.dtype.str, p.kind) if isinstance(p, Prepared)
                        else (name, p.shape, p.dtype.str, 0) for name, p in prepared.items()))


def nbytes(prepared):
    """Bytes the prepared matrices and norms hold."""
    return sum((p.data if isinstance(p, Prepared) else p).nbytes for p in prepared.values())
