"""Projection weights in panels: the layout the CPU decode kernels read fastest.

A row-major weight (out, in) becomes (out / 16, in, 16): panel j holds outputs 16j..16j+15,
and for each input index k their 16 weights side by side. The kernels then multiply a
broadcast input value into a whole vector of outputs, with no sums across vector lanes
at the end, and read every panel as one sequential stream (custom_ops/cpu/decode_kernels.h:
SmolLM2-135M's projections 9-21% faster at 1 to 16 token rows). A weight whose output
size is not a multiple of 16 stays row-major; the kernels take either.
"""
import numpy as np

from cold_ms.config import LORA_TARGETS

PANEL = 16
LAYOUTS = ("rows", "panels")
_SUFFIXES = tuple(f".{m}.weight" for m in LORA_TARGETS)


def packs(out_dim):
    """Whether a projection with this output size is stored in panels."""
    return out_dim % PANEL == 0


def shape(out_dim, in_dim, panels):
    """The stored shape of an (out_dim, in_dim) projection."""
    return (out_dim // PANEL, in_dim, PANEL) if panels and packs(out_dim) else (out_dim, in_dim)


def to_panels(w):
    out_dim, in_dim = w.shape
    return np.ascontiguousarray(w.reshape(out_dim // PANEL, PANEL, in_dim).transpose(0, 2, 1))


def to_rows(w):
    """(out, in) of a weight in either layout."""
    if w.ndim == 2:
        return w
    return np.ascontiguousarray(w.transpose(0, 2, 1).reshape(w.shape[0] * PANEL, w.shape[1]))


def convert(weights, layout):
    """Store the projections of {name: array} in `layout`, one at a time. Entries are replaced,
    never written into, so Parameters made from the old arrays keep their values."""
    for name, w in weights.items():
        if not name.endswith(_SUFFIXES):
            continue
        if layout == "panels" and w.ndim == 2 and packs(w.shape[0]):
            weights[name] = to_panels(w)
        elif layout == "rows" and w.ndim == 3:
            weights[name] = to_rows(w)
