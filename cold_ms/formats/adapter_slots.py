"""Adapters that come and go at runtime: a fixed number of device slots, a host cache, LRU eviction.

The engine's LoRA stacks are sized once (`max_loras` slots of rank `max_rank` on every LoRA
target, float32), so loading an adapter writes one slot's rows and assigns the stacks to the
same Parameters: the compiled graphs never change. Three levels, as vLLM keeps them:
  known   name -> path: what a request may name (GET /v1/models); loaded from disk when needed
  host    up to `max_cpu_loras` Adapters in memory, the least recently used idle one dropped
  device  up to `max_loras` adapters in the stacks, the least recently used one without a
          running request replaced when an admitted request needs a slot
A request pins its adapters from submission to its end (unloading an adapter a request still
names takes effect when the last such request ends), and holds their device slots while it runs.
Thread use: load/unload from any thread; acquire/release on the stepping thread (the stacks are
written there, between steps); a lock guards the tables.
"""
import threading
from collections import Counter, OrderedDict

import numpy as np

from cold_ms import adapter_defaults

from cold_ms.config import LORA_TARGETS, LoraLayout
from cold_ms.errors import AdapterError
from cold_ms.formats.adapters import BASE, load_peft_adapter
from cold_ms.formats.names import module_dims, module_path


class AdapterSlots:
    def __init__(self, model_cfg, max_loras, max_cpu_loras, max_rank):
        if max_loras < 1 or max_cpu_loras < max_loras or max_rank < 1:
            raise AdapterError(f"adapter slots need max_loras >= 1, max_cpu_loras >= max_loras and "
                               f"max_lora_rank >= 1 (got {max_loras}, {max_cpu_loras}, {max_rank})")
        self.cfg, self.max_cpu = model_cfg, max_cpu_loras
        self.lay = LoraLayout(max_loras, max_rank, LORA_TARGETS, "float32")
        self.known, self.host, self.device = {}, OrderedDict(), OrderedDict()  # device: name -> slot, LRU first
        self.pins, self.active, self.unloading = Counter(), Counter(), set()
        self.lock = threading.Lock()
        self.write = None  # set by the engine: assigns {parameter name: stack} to its model
        self._stacks = None

    # ---- the registry interface the engine reads ---------------------------------------
    @property
    def names(self):
        with self.lock:
            return self._names()

    def layout(self):
        return self.lay

    def stacked(self, model_cfg):
        """The stacks (zeros where no adapter is resident); kept, and written slot by slot."""
        if self._stacks is None:
            self._stacks = {}
            for layer in range(model_cfg.num_layers):
                for module in self.lay.targets:
                    n_in, n_out = module_dims(model_cfg, module)
                    path = module_path(layer, module)
                    self._stacks[path + ".lora_a"] = np.zeros((self.lay.num_slots, self.lay.rank, n_in), np.float32)
                    self._stacks[path + ".lora_b"] = np.zeros((self.lay.num_slots, self.lay.rank, n_out), np.float32)
        return self._stacks

    def release_pages(self):
        """Nothing mapped is kept: adapters are read into memory."""

    def defaults(self, name):
        """Adapter `name`'s own CoLD settings (its cold_config.json: cold_ms.adapter_defaults), or None."""
        with self.lock:
            adapter = self.host.get(name)
            path = self.known.get(name)
        if adapter is not None:
            return adapter.defaults
        return adapter_defaults.read(path) if path else None

    # ---- any thread ---------------------------------------------------------------------
    def load(self, name, path):
        """Read and check the PEFT adapter at `path` (AdapterError) and make it known as `name`."""
        if not name or name == BASE:
            raise AdapterError(f"adapter name {name!r} is empty or reserved")
        with self.lock:
            self._check_new(name)  # before reading the files; again when it is added
        self.add(load_peft_adapter(path, name, self.cfg), path)

    def add(self, adapter, path):
        """Make a read adapter known (path None: it has no directory and stays in host memory)."""
        if adapter.rank > self.lay.rank:
            raise AdapterError(f"adapter '{adapter.name}' has rank {adapter.rank}, above --max-lora-rank "
                               f"{self.lay.rank}")
        # copies: the arrays mapped from its file are released by the engine
        adapter.tensors = {k: (np.array(a, np.float32), np.array(b, np.float32)) for k, (a, b) in adapter.tensors.items()}
        with self.lock:
            self._check_new(adapter.name)
            self.known[adapter.name] = path
            self._cache(adapter)

    def unload(self, name):
        """Forget `name` (AdapterError if unknown); requests that already named it finish with it."""
        with self.lock:
            if name not in self.known or name in self.unloading:
                raise AdapterError(f"adapter '{name}' is not loaded")
            self.unloading.add(name)
            self._forget_if_unused(name)

    def pin(self, name):
        """A submitted request names `name` (None/base: nothing to pin); AdapterError if unknown."""
        if name in (None, BASE):
            return
        with self.lock:
            if name not in self.known or name in self.unloading:
                raise AdapterError(f"unknown adapter '{name}' (loaded: {', '.join(self._names()) or 'none'}; "
                                   f"'base' = no adapter)")
            self.pins[name] += 1

    # ---- the stepping thread ------------------------------------------------------------
    def acquire(self, name):
        """The device slot of `name` for an admitted request (-1 for the base), loading it into a
        free or evicted slot; None when every slot serves running requests (the request waits)."""
        if name in (None, BASE):
            return -1
        with self.lock:
            if name in self.device:
                self.device.move_to_end(name)
            else:
                slot = self._free_slot()
                if slot is None:
                    return None
                self._write_slot(slot, self._host_adapter(name))
                self.device[name] = slot
            self.active[name] += 1
            return self.device[name]

    def deactivate(self, name):
        """A request that held `name`'s device slot left it (ended, or could not be admitted)."""
        if name not in (None, BASE):
            with self.lock:
                self.active[name] -= 1

    def unpin(self, name):
        """A request naming `name` ended."""
        if name not in (None, BASE):
            with self.lock:
                self.pins[name] -= 1
                if name in self.unloading:
                    self._forget_if_unused(name)

    # ---- under the lock -----------------------------------------------------------------
    def _check_new(self, name):
        if name in self.unloading:  # its slot still holds the old weights for running requests
            raise AdapterError(f"adapter '{name}' is being unloaded: {self.pins[name]} request(s) still use it; "
                               f"load it again once they end")
        if name in self.known:
            raise AdapterError(f"adapter '{name}' is already loaded")

    def _names(self):
        return [n for n in self.known if n not in self.unloading]

    def _cache(self, adapter):
        self.host[adapter.name] = adapter
        self.host.move_to_end(adapter.name)
        idle = [n for n in self.host if not self.pins[n] and n != adapter.name and self.known.get(n)]
        while len(self.host) > self.max_cpu and idle:
            del self.host[idle.pop(0)]  # least recently used first; reloaded from its path if named again

    def _host_adapter(self, name):
        if name not in self.host:
            self._cache(load_peft_adapter(self.known[name], name, self.cfg))
        self.host.move_to_end(name)
        return self.host[name]

    def _free_slot(self):
        used = set(self.device.values())
        free = [s for s in range(self.lay.num_slots) if s not in used]
        if free:
            return free[0]
        victim = next((n for n in self.device if not self.active[n]), None)  # least recently used first
        return None if victim is None else self.device.pop(victim)

    def _write_slot(self, slot, adapter):
        stacks = self.stacked(self.cfg)
        for layer in range(self.cfg.num_layers):
            for module in self.lay.targets:
                path = module_path(layer, module)
                a, b = stacks[path + ".lora_a"][slot], stacks[path + ".lora_b"][slot]
                a[:], b[:] = 0, 0
                pair = adapter.slot_pair((layer, module))
                if pair is not None:
                    a[:adapter.rank], b[:adapter.rank] = pair
        if self.write is not None:
            self.write(stacks)

    def _forget_if_unused(self, name):
        if self.pins[name] <= 0:
            self.unloading.discard(name)
            for table in (self.known, self.host, self.device, self.pins, self.active):
                table.pop(name, None)
