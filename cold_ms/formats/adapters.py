"""PEFT LoRA adapters -> stacked slots, and the registry mapping adapter names to slots.

PEFT stores lora_A.weight (r, in) and lora_B.weight (out, r) per targeted module; the
effective update is x @ A^T @ B^T * scaling, scaling = lora_alpha / r (or / sqrt(r) with
rsLoRA). A slot holds A (r_max, in) and scaling * B^T (r_max, out), zero-padded: both
rank-major, the layout the BGMV kernels stream (see cold_ms.ops.bgmv).
"""
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

from cold_ms import adapter_defaults
from cold_ms.config import LORA_TARGETS, LoraLayout
from cold_ms.errors import AdapterError, CheckpointError
from cold_ms.fields import Fields
from cold_ms.formats.names import module_dims, module_path
from cold_ms.formats.mapped import release_mapped
from cold_ms.formats.safetensors_io import load_safetensors

BASE = "base"
_KEY = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])(?:\.[\w-]+)?\.weight$")


@dataclass
class Adapter:
    name: str
    rank: int
    scaling: float
    # (layer, module) -> (A (r, in), B (out, r)) as stored by PEFT
    tensors: Dict[Tuple[int, str], Tuple[np.ndarray, np.ndarray]] = field(repr=False)
    # its CoLD defaults (cold_ms.adapter_defaults: its cold_config.json, else the conservative ones)
    defaults: Optional[dict] = None

    @property
    def targets(self):
        return tuple(sorted({m for _, m in self.tensors}, key=LORA_TARGETS.index))

    def slot_pair(self, key):
        """What a slot holds for (layer, module): A (r, in) and scaling * B^T (r, out), or None."""
        pair = self.tensors.get(key)
        return None if pair is None else (pair[0], pair[1].T * self.scaling)


def adapter_config(path):
    """(rank, scaling) of a PEFT LoRA adapter directory: every field of its adapter_config.json
    that loading depends on is checked here, and what cold_ms cannot serve is refused."""
    if not os.path.isdir(path):
        what = "is a file, not" if os.path.exists(path) else "does not exist: expected"
        raise AdapterError(f"{path} {what} a PEFT LoRA adapter directory "
                           f"(adapter_config.json + adapter_model.safetensors)")
    cfg_path = os.path.join(path, "adapter_config.json")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            cfg = Fields(json.load(f), cfg_path)
    except FileNotFoundError:
        raise AdapterError(f"{path}: no adapter_config.json (expected a PEFT LoRA adapter directory)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AdapterError(f"{cfg_path}: not valid JSON ({e})") from None
    if cfg.text("peft_type", "LORA") != "LORA":
        cfg.refuse(f"peft_type {cfg.doc['peft_type']} is not LoRA")
    for flag, why in (("use_dora", "DoRA"), ("fan_in_fan_out", "fan_in_fan_out (Conv1D) weights")):
        if cfg.flag(flag):
            cfg.refuse(f"{why} adapters are not supported")
    if cfg.text("bias", "none") != "none" or not cfg.empty("modules_to_save"):
        cfg.refuse("adapters with trained biases or modules_to_save are not supported")
    if not (cfg.empty("rank_pattern") and cfg.empty("alpha_pattern")):
        cfg.refuse("per-module rank_pattern/alpha_pattern is not supported")
    rank = cfg.int("r")
    alpha = cfg.number("lora_alpha", float(rank))
    return rank, alpha / math.sqrt(rank) if cfg.flag("use_rslora") else alpha / rank


def adapter_from_halves(raw, name, rank, model_cfg):
    """{(layer, module): (A, B)} from PEFT-style lora_A/lora_B tensors, checked against the base model."""
    halves = {}
    for key, array in raw.items():
        m = _KEY.search(key)
        if not m or m.group(2) not in LORA_TARGETS:
            raise AdapterError(f"adapter '{name}': tensor {key} is not a LoRA weight of a "
                               f"decoder projection ({', '.join(LORA_TARGETS)})")
        halves.setdefault((int(m.group(1)), m.group(2)), {})[m.group(3)] = array
    if not halves:
        raise AdapterError(f"adapter '{name}' holds no LoRA weights")
    tensors = {}
    for (layer, module), pair in sorted(halves.items()):
        where = f"adapter '{name}' {module_path(layer, module)}"
        if set(pair) != {"A", "B"}:
            raise AdapterError(f"{where}: lora_A or lora_B is missing")
        if layer >= model_cfg.num_layers:
            raise AdapterError(f"{where}: layer {layer} does not exist in a "
                               f"{model_cfg.num_layers}-layer base model")
        n_in, n_out = module_dims(model_cfg, module)
        a, b = pair["A"], pair["B"]
        if a.shape != (rank, n_in) or b.shape != (n_out, rank):
            raise AdapterError(f"{where}: lora_A {a.shape} / lora_B {b.shape} do not fit the base "
                               f"model (expected {(rank, n_in)} / {(n_out, rank)}): "
                               f"the adapter was trained for a different base model or rank")
        tensors[(layer, module)] = (a, b)
    return tensors


def load_peft_adapter(path, name, model_cfg):
    """Read a PEFT adapter directory and check it against the base model's shapes."""
    rank, scaling = adapter_config(path)
    try:
        raw = load_safetensors(os.path.join(path, "adapter_model.safetensors"), mapped=True)
    except CheckpointError as e:
        raise AdapterError(f"adapter '{name}': {e}") from None
    return Adapter(name=name, rank=rank, scaling=scaling,
                   tensors=adapter_from_halves(raw, name, rank, model_cfg), defaults=adapter_defaults.read(path))


def exact_dtype(arrays):
    """The narrowest of float16, bfloat16 and float32 that holds every value of `arrays` as the
    float32 stacks hold them (PEFT adapters are mostly saved in float16 or bfloat16, and scaling
    by a power of two keeps that): stacks kept in it are the same numbers in half the bytes,
    which a decode step reads for every token (about a sixth of its time on SmolLM2-135M)."""
    fits = {"float16": True, "bfloat16": True}
    for array in arrays:
        x = np.ascontiguousarray(array, np.float32)
        with np.errstate(over="ignore"):  # a value past float16's range is an answer, not a fault
            fits["float16"] = fits["float16"] and np.array_equal(x.astype(np.float16).astype(np.float32), x)
        fits["bfloat16"] = fits["bfloat16"] and not (x.view(np.uint32) & 0xFFFF).any()
        if not any(fits.values()):
            return "float32"
    return next(name for name, ok in fits.items() if ok)


class AdapterRegistry:
    """Adapters by name, each in one slot for the engine's life; 'base' (or None) is slot -1, the
    bare base model. (Adapters that come and go: formats/adapter_slots.py, the same interface.)"""

    def __init__(self, adapters=()):
        self.adapters = list(adapters)
        self.write = None  # the engine's stack writer: unused, the stacks never change
        self._slots, self._cache = {}, {}
        for i, a in enumerate(self.adapters):
            if a.name == BASE or a.name in self._slots:
                raise AdapterError(f"adapter name '{a.name}' is reserved or used twice")
            self._slots[a.name] = i

    @property
    def names(self):
        return [a.name for a in self.adapters]

    def slot(self, name):
        if name is None or name == BASE:
            return -1
        if name not in self._slots:
            known = ", ".join(self.names) or "none loaded"
            raise AdapterError(f"unknown adapter '{name}' (loaded: {known}; 'base' = no adapter)")
        return self._slots[name]

    def defaults(self, name):
        """Adapter `name`'s own CoLD settings (cold_ms.adapter_defaults), or None."""
        return self.adapters[self.slot(name)].defaults

    # a request's adapters: checked at submission, their fixed slots at admission, nothing to free
    def pin(self, name):
        self.slot(name)

    def acquire(self, name):
        return self.slot(name)

    def deactivate(self, name):
        pass

    def unpin(self, name):
        pass

    def layout(self):
        if not self.adapters:
            return LoraLayout(0, 0, ())
        targets = {m for a in self.adapters for m in a.targets}
        if "dtype" not in self._cache:
            self._cache["dtype"] = exact_dtype(half for a in self.adapters for key in a.tensors
                                               for half in a.slot_pair(key))
        return LoraLayout(len(self.adapters), max(a.rank for a in self.adapters),
                          tuple(m for m in LORA_TARGETS if m in targets), self._cache["dtype"])

    def release_pages(self):
        """Drop the adapters' pages mapped from their files (engines hold stacked copies)."""
        release_mapped(m for a in self.adapters for pair in a.tensors.values() for m in pair)

    def stacked(self, model_cfg):
        """{parameter name: array} of lora_a (S, r, in) and lora_b (S, r, out) per targeted module."""
        lay = self.layout()
        out = {}
        for layer in range(model_cfg.num_layers):
            for module in lay.targets:
                n_in, n_out = module_dims(model_cfg, module)
                a_stack = np.zeros((lay.num_slots, lay.rank, n_in), np.float32)
                b_stack = np.zeros((lay.num_slots, lay.rank, n_out), np.float32)
                for slot, adapter in enumerate(self.adapters):
                    pair = adapter.slot_pair((layer, module))
                    if pair is not None:
                        a_stack[slot, :adapter.rank, :], b_stack[slot, :adapter.rank, :] = pair
                path = module_path(layer, module)
                out[path + ".lora_a"], out[path + ".lora_b"] = a_stack, b_stack
        return out
