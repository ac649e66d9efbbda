"""Read safetensors files into float32 numpy arrays, bf16 included.

The `safetensors` package cannot hand bf16 tensors to numpy, so the (documented) file
layout is read directly: an 8-byte little-endian header length, a JSON header, then the
raw little-endian tensor bytes. Every offset is checked against the file so a truncated
or corrupt file fails with a CheckpointError instead of garbage weights.
"""
import json
import os

import numpy as np

from cold_ms import wtypes
from cold_ms.errors import CheckpointError

_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": np.uint16,
           "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
           "BOOL": np.bool_}


def bf16_to_f32(raw):
    """bfloat16 bit patterns (uint16) -> float32, exactly (bf16 is the top half of f32)."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_header(path):
    """(header dict without __metadata__, metadata dict, data start offset)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        n = int.from_bytes(head, "little")
        if n <= 0 or 8 + n > size:
            raise CheckpointError(f"{path}: corrupt safetensors header (length {n}, file {size} bytes)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
    meta = header.pop("__metadata__", None) or {}
    return header, meta, 8 + n


def load_safetensors(path, names=None, keep_stored=False, mapped=False):
    """{name: float32 ndarray} for every tensor (or those in `names`); ints stay ints.
    keep_stored: bf16/f16 matrices stay as stored (cold_ms.wtypes.Packed); vectors are float32.
    mapped: float32 tensors are read-only views of a memory map of the file (for data copied
    once into other arrays, whose pages the caller then releases: formats/model.release_mapped).

    Each tensor is read straight into its own array: a memory map would add the file's
    pages to the process's resident set beside the converted copy (measured: a 3.4 GB
    float32 checkpoint peaked at 6.9 GB RSS while loading), so the peak is now the
    weights plus the largest tensor in its stored dtype.
    """
    header, _, start = read_header(path)
    size = os.path.getsize(path)
    out = {}
    whole = np.memmap(path, np.uint8, mode="r") if mapped else None
    with open(path, "rb") as f:
        for name, info in header.items():
            if names is not None and name not in names:
                continue
            dtype = _DTYPES.get(info.get("dtype"))
            if dtype is None:
                raise CheckpointError(f"{path}: tensor {name} has unsupported dtype {info.get('dtype')}")
            begin, end = info["data_offsets"]
            raw = np.empty(tuple(info["shape"]), dtype)
            if start + end > size or end - begin != raw.nbytes:
                raise CheckpointError(f"{path}: tensor {name} lies outside the file or has the wrong "
                                      f"size (truncated or corrupt checkpoint)")
            if mapped and dtype == np.float32:
                out[name] = whole[start + begin:start + end].view(np.float32).reshape(raw.shape)
                continue
            f.seek(start + begin)
            if f.readinto(memoryview(raw.reshape(-1)).cast("B")) != raw.nbytes:
                raise CheckpointError(f"{path}: tensor {name} is cut short (truncated checkpoint)")
            half = wtypes.TYPES.get({"BF16": "bf16", "F16": "f16"}.get(info["dtype"], ""))
            if keep_stored and half is not None and raw.ndim == 2:
                out[name] = wtypes.Packed(half, raw.shape, raw.view(np.uint8))
            elif info["dtype"] == "BF16":
                out[name] = bf16_to_f32(raw)
            elif np.issubdtype(dtype, np.floating):
                out[name] = raw.astype(np.float32, copy=False)
            else:
                out[name] = raw
    return out
