"""POST /v1/load_lora_adapter and /v1/unload_lora_adapter (vLLM's, SGLang's and MindIE's names),
served when the server runs with --allow-runtime-adapters; GET /v1/models lists what is loaded.

A path is read only from inside the adapter directory the server was started with (anything else,
symlinks resolved, is 403); an adapter is checked as at start-up (a bad one is 400 and the server
keeps serving). The slots, host cache and eviction are formats/adapter_slots.py's.
"""
import asyncio
import os

from fastapi.responses import PlainTextResponse

from cold_ms import adapter_defaults
from cold_ms.errors import ColdError
from cold_ms.serving.errors import ApiError
from cold_ms.serving.schemas import LoadLoraRequest, UnloadLoraRequest


class LiveNames:
    """The adapter names a request may give, read from the registry at every use."""

    def __init__(self, registry):
        self.registry = registry

    def __iter__(self):
        return iter(self.registry.names)

    def __contains__(self, name):
        return name in self.registry.names


class LiveDefaults:
    """Each adapter's own CoLD settings (cold_ms.adapter_defaults), read from the registry at every
    use, so an adapter loaded at runtime brings its cold_config.json along."""

    def __init__(self, registry):
        self.registry = registry

    def get(self, name):
        return adapter_defaults.of(self.registry, name) if name in self.registry.names else None


def confined(root, path):
    """`path` (absolute, or relative to `root`) with symlinks resolved, if it lies inside `root`;
    ApiError 403 otherwise."""
    base = os.path.realpath(root)
    full = os.path.realpath(os.path.join(base, path))
    if os.path.commonpath([base, full]) != base:
        raise ApiError(403, f"lora_path {path!r} is outside the server's adapter directory", "permission_denied",
                       "lora_path")
    return full


def add_adapter_routes(app, registry, root):
    """registry() -> the engine's AdapterSlots (ApiError 503 while the model loads)."""

    @app.post("/v1/load_lora_adapter")
    async def load(body: LoadLoraRequest):
        slots, path = registry(), confined(root, body.lora_path)
        try:
            await asyncio.to_thread(slots.load, body.lora_name, path)
        except ColdError as e:
            raise ApiError(400, str(e), "invalid_value", "lora_path") from None
        return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload(body: UnloadLoraRequest):
        try:
            registry().unload(body.lora_name)
        except ColdError as e:
            raise ApiError(404, str(e), "model_not_found", "lora_name") from None
        return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' removed successfully.")
