"""`bench.py serve --adapter-cycle NAME=PATH`: an adapter loaded, used and unloaded at runtime while
the load runs, again and again (bounded), and every failure of it counted.

Each cycle: unload NAME (a 404 is fine: it may not be loaded), load it from PATH
(inside the server's --adapters-dir), stream one request that names it, unload it. A cycle fails
when any of the three answers is not a success. The server needs --allow-runtime-adapters
(`bench.py serve` adds it when it starts the server).
"""
import asyncio

from cold_ms.bench.serve_client import one_request
from cold_ms.errors import ConfigError

MAX_CYCLES = 200  # a bound on the side load, whatever the main load's length


def parse(spec):
    """'NAME=PATH' -> (name, path); PATH is relative to the server's --adapters-dir."""
    name, sep, path = (spec or "").partition("=")
    if not spec or not sep or not name or not path:
        raise ConfigError(f"--adapter-cycle {spec!r}: give NAME=PATH (PATH inside --adapters-dir)")
    return name, path


async def cycle(url, name, path, body, stop, headers=None):
    """Cycles until `stop` is set, each sending `body` (a streamed request) to the adapter; returns
    {"cycles", "cycle_failed", "cycle_errors"}."""
    import httpx
    done, errors = 0, []
    body = {**body, "model": name}
    async with httpx.AsyncClient(timeout=600, headers=headers) as http:
        while not stop.is_set() and done < MAX_CYCLES:
            await http.post(url + "/v1/unload_lora_adapter", json={"lora_name": name})  # 200 or 404: either is fine
            loaded = await http.post(url + "/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path})
            used = await one_request(http, url, body, None) if loaded.status_code == 200 else None
            unloaded = await http.post(url + "/v1/unload_lora_adapter", json={"lora_name": name})
            problems = [f"load {loaded.status_code}: {loaded.text[:120]}"] if loaded.status_code != 200 else []
            problems += [f"request: {used.error}"] if used is not None and not used.ok else []
            problems += [f"unload {unloaded.status_code}"] if unloaded.status_code != 200 else []
            errors += [f"cycle {done}: {'; '.join(problems)}"] if problems else []
            done += 1
    return {"cycles": done, "cycle_failed": len(errors), "cycle_errors": errors[:3]}


async def with_cycle(load, url, spec, body, headers=None):
    """Run the coroutine `load` with a cycle of adapter `spec` (sending `body`) beside it;
    (load's result, the cycle's figures)."""
    if spec is None:
        return await load, {}
    stop = asyncio.Event()
    side = asyncio.ensure_future(cycle(url, *spec, body, stop, headers))
    try:
        result = await load
    finally:
        stop.set()
    return result, await side
