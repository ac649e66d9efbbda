"""Adapters loaded and unloaded at runtime (formats/adapter_slots.py) through the engine: LRU
eviction of device slots and of the host cache, requests in flight keep their adapter, and the
compiled graphs never change; every token against the numpy reference."""
import pytest

import numpy_llama as ref
from cold_ms.errors import AdapterError
from cold_ms.formats.adapter_slots import AdapterSlots
from cold_ms.formats.model import load_model
from cold_ms.pipeline.batching import Request
from cold_ms.pipeline.engine import Engine
from cold_ms.pipeline.scheduler import Scheduler

PROMPT = [1, 5, 7, 9]


def _req(adapter, amateur="base", n=6):
    return Request(PROMPT, adapter=adapter, amateur=amateur, alpha=0.1, beta=0.5, max_new_tokens=n, ignore_eos=True)


def _ref(tiny, req):
    w = lambda name: ref.effective_weights(tiny["weights"], tiny["adapters"].get(name))  # noqa: E731
    am = None if req.amateur is None else w(req.amateur)
    return ref.generate(tiny["cfg"], w(req.adapter), am, req.prompt_ids, req.max_new_tokens, req.alpha, req.beta)


def _engine(tiny, max_loras, max_cpu, names=("qv", "all", "mlp"), slots=2):
    model = load_model(tiny["model_dir"])
    registry = AdapterSlots(model.config, max_loras, max_cpu, 8)
    for n in names:
        registry.load(n, tiny["adapter_dir"][n])
    return Engine(model, registry, slots=slots, max_len=64), registry


def test_the_least_recently_used_idle_adapter_leaves_the_device(tiny):
    eng, reg = _engine(tiny, 2, 3)
    order = ["qv", "all", "mlp", "qv", "all"]
    for name in order:
        assert eng.generate([_req(name)])[0].token_ids == _ref(tiny, _req(name))
    # qv, all fill the slots; mlp evicts qv (least recent); qv evicts all; all evicts mlp
    assert list(reg.device) == ["qv", "all"] and sorted(reg.device.values()) == [0, 1]
    keys = set(eng.stats["compile_s"])
    eng.generate([_req("mlp", amateur="qv")])  # two adapters of one request: all is evicted
    assert set(eng.stats["compile_s"]) == keys  # adapters came and went, no graph was compiled
    assert list(reg.device) == ["mlp", "qv"]  # the expert acquired first, then its amateur


def test_the_host_cache_drops_its_least_recently_used_idle_adapter_and_reloads_it(tiny):
    eng, reg = _engine(tiny, 1, 2)
    assert list(reg.host) == ["all", "mlp"] and reg.names == ["qv", "all", "mlp"]  # qv dropped, still known
    assert eng.generate([_req("qv", amateur=None)])[0].token_ids == _ref(tiny, _req("qv", amateur=None))
    assert list(reg.host) == ["mlp", "qv"]  # read again from its directory; all was the oldest idle


def test_requests_in_flight_keep_their_adapter_and_others_wait_for_a_slot(tiny):
    eng, reg = _engine(tiny, 1, 3, names=("qv",))
    scheduler = Scheduler(eng)
    running, waiting = _req("qv", n=10), _req("all", amateur=None)
    scheduler.submit(running, 0)
    got = {0: [], 1: []}
    for ev in scheduler.step() + scheduler.step():
        got[ev.index].append(ev.token_id)
    reg.load("all", tiny["adapter_dir"]["all"])
    reg.unload("qv")
    assert reg.names == ["all"]
    with pytest.raises(AdapterError, match="unknown adapter 'qv'"):
        scheduler.submit(_req("qv"), 2)
    with pytest.raises(AdapterError, match="being unloaded: 1 request"):
        reg.load("qv", tiny["adapter_dir"]["qv"])
    scheduler.submit(waiting, 1)
    while scheduler.has_work():
        if got[0] and len(got[0]) < 10:  # one device slot, held by the running request: `all` waits
            assert scheduler.running() == [0] and scheduler.queue_length() == 1
        for ev in scheduler.step():
            got[ev.index].append(ev.token_id)
    assert got == {0: _ref(tiny, running), 1: _ref(tiny, waiting)}
    assert "qv" not in reg.known and list(reg.device) == ["all"]


def test_bad_sizes_and_ranks_are_refused(tiny):
    model = load_model(tiny["model_dir"])
    with pytest.raises(AdapterError, match="max_cpu_loras >= max_loras"):
        AdapterSlots(model.config, 2, 1, 8)
    small = AdapterSlots(model.config, 1, 1, 4)
    with pytest.raises(AdapterError, match="adapter 'all' has rank 8, above --max-lora-rank 4"):
        small.load("all", tiny["adapter_dir"]["all"])
    with pytest.raises(AdapterError, match="reserved"):
        small.load("base", tiny["adapter_dir"]["qv"])


def test_a_refused_batch_leaves_no_adapter_pinned(tiny):
    eng, reg = _engine(tiny, 1, 3, names=("qv", "all"))
    with pytest.raises(AdapterError, match="unknown adapter 'nope'"):
        eng.generate([_req("qv"), _req("all", amateur=None), _req("nope")])
    with pytest.raises(Exception, match=r"need 2 adapter slots; this engine has 1"):
        eng.generate([_req("qv", amateur="all")])
    assert not +reg.pins  # nothing holds them: both may be unloaded at once
    reg.unload("qv")
    assert "qv" not in reg.known
