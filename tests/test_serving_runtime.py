"""The server with --allow-runtime-adapters (load/unload routes, confinement, bad adapters) and
vLLM's ignore_eos/min_tokens, started for real on loopback with the tiny model; tokens against
the numpy reference."""
import json
import os
import shutil
import threading

import httpx
import pytest

import fixtures
import numpy_llama as ref
from cold_ms.bench.serve import start_server, stop_server

KEY = {"Authorization": "Bearer test-key"}
PROMPT = [1, 5, 7, 9, 30]


def _weights(tiny, name):
    return ref.effective_weights(tiny["weights"], tiny["adapters"].get(name))


@pytest.fixture(scope="module")
def eos(tiny):
    """EOS of the served copy of the tiny model: the base model's 2nd greedy token after PROMPT."""
    return ref.generate(tiny["cfg"], _weights(tiny, None), None, PROMPT, 8, 0.1, 0.0)[1]


@pytest.fixture(scope="module")
def server(tiny, eos, tmp_path_factory):
    root = tmp_path_factory.mktemp("runtime")
    model = str(root / "model")
    fixtures.write_model(model, dict(fixtures.TINY, eos_token_id=int(eos)), weights=tiny["weights"])
    shutil.copy(os.path.join(tiny["model_dir"], "tokenizer.model"), model)
    served = root / "adapters"
    shutil.copytree(tiny["adapter_dir"]["qv"], served / "qv")  # loaded at start
    for name in ("all", "mlp"):
        shutil.copytree(tiny["adapter_dir"][name], served / "extra" / name)
    (served / "extra" / "bad").mkdir()
    (served / "extra" / "bad" / "adapter_config.json").write_text(json.dumps({"peft_type": "PREFIX_TUNING"}))
    proc, url = start_server(2, model, str(served),
                             ["--max-len", "96", "--api-key", "test-key", "--chat-template", "chatml",
                              "--allow-runtime-adapters", "--max-loras", "1", "--max-cpu-loras", "2",
                              "--max-lora-rank", "8", "--max-step-tokens", "8"])
    yield url, served
    stop_server(proc)


def post(url, path, body, headers=KEY):
    return httpx.post(url + path, json=body, headers=headers, timeout=120)


def _models(url):
    return [m["id"] for m in httpx.get(url + "/v1/models", headers=KEY).json()["data"]]


def _completion(url, model, n, **extra):
    """A completion at alpha 0.1, beta 0.5 unless `extra` says otherwise (not the adapters' defaults)."""
    r = post(url, "/v1/completions", {"model": model, "prompt": PROMPT, "max_tokens": n, "alpha": 0.1, "beta": 0.5,
                                      **extra})
    assert r.status_code == 200, r.text
    return r.json()


def test_ignore_eos_and_min_tokens_on_completions(server, tiny, eos):
    url, _ = server
    base = _models(url)[0]
    want = ref.generate(tiny["cfg"], _weights(tiny, None), None, PROMPT, 8, 0.1, 0.0)
    plain = _completion(url, base, 8)
    assert plain["choices"][0]["finish_reason"] == "stop" and plain["usage"]["completion_tokens"] == 2
    ignored = _completion(url, base, 8, ignore_eos=True)
    assert ignored["choices"][0]["finish_reason"] == "length" and ignored["usage"]["completion_tokens"] == 8
    for m in (1, 3):
        stop = next((i + 1 for i, t in enumerate(want) if t == eos and i + 1 > m), None)
        got = _completion(url, base, 8, min_tokens=m)
        assert got["usage"]["completion_tokens"] == (stop or 8), (m, want)


def test_ignore_eos_and_min_tokens_on_chat(server):
    url, _ = server
    body = {"model": "qv", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 5}
    r = post(url, "/v1/chat/completions", dict(body, ignore_eos=True, min_tokens=5))
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 5, r.text
    r = post(url, "/v1/chat/completions", dict(body, min_tokens=6))
    assert r.status_code == 400 and r.json()["error"]["param"] == "min_tokens", r.text


def _stream(url, model, n, out):
    with httpx.stream("POST", url + "/v1/completions", headers=KEY, timeout=120,
                      json={"model": model, "prompt": PROMPT, "max_tokens": n, "ignore_eos": True, "stream": True,
                            "alpha": 0.1, "beta": 0.5, "stream_options": {"include_usage": True}}) as r:
        out["status"] = r.status_code
        out["events"] = [json.loads(line[6:]) for line in r.iter_lines()
                         if line.startswith("data: ") and line != "data: [DONE]"]


def test_load_serve_and_unload_while_another_adapter_streams(server, tiny):
    url, _ = server
    assert _models(url)[1:] == ["qv"]
    streamed = {}
    streaming = threading.Thread(target=_stream, args=(url, "qv", 40, streamed))
    streaming.start()
    r = post(url, "/v1/load_lora_adapter", {"lora_name": "all", "lora_path": "extra/all"})
    assert r.status_code == 200 and "all" in r.text
    assert _models(url)[1:] == ["qv", "all"]
    # one device slot: `all` waits for qv's stream to end, then evicts it
    got = _completion(url, "all", 6, ignore_eos=True, amateur="base")
    streaming.join(120)
    want = ref.generate(tiny["cfg"], _weights(tiny, "all"), _weights(tiny, None), PROMPT, 6, 0.1, 0.5)
    assert got["choices"][0]["text"] == _text(tiny, want)
    streamed_want = ref.generate(tiny["cfg"], _weights(tiny, "qv"), _weights(tiny, None), PROMPT, 40, 0.1, 0.5)
    events = streamed["events"]
    # the usage comes last in a chunk of its own, with no choices (as OpenAI sends it)
    assert streamed["status"] == 200 and events[-1]["usage"]["completion_tokens"] == 40 and not events[-1]["choices"]
    assert events[-2]["choices"][0]["finish_reason"] == "length"
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == _text(tiny, streamed_want)
    assert post(url, "/v1/unload_lora_adapter", {"lora_name": "all"}).status_code == 200
    assert _models(url)[1:] == ["qv"]
    assert post(url, "/v1/completions", {"model": "all", "prompt": PROMPT}).status_code == 404
    assert post(url, "/v1/unload_lora_adapter", {"lora_name": "all"}).status_code == 404
    assert _completion(url, "qv", 3)["usage"]["completion_tokens"] >= 1


def test_an_adapter_loaded_at_runtime_gives_the_reference_tokens(server, tiny):
    url, _ = server
    assert post(url, "/v1/load_lora_adapter", {"lora_name": "mlp", "lora_path": "extra/mlp"}).status_code == 200
    try:
        base = _models(url)[0]
        for model, expert, amateur in (("mlp", "mlp", None), ("mlp", "mlp", base)):
            got = _completion(url, model, 6, ignore_eos=True, amateur=amateur or model, beta=0.5)
            am = None if amateur is None else _weights(tiny, None if amateur == base else amateur)
            want = ref.generate(tiny["cfg"], _weights(tiny, expert), am, PROMPT, 6, 0.1, 0.5 if am else 0.0)
            assert got["choices"][0]["text"] == _text(tiny, want), (model, amateur)
        # two adapters in one request, one device slot: it could never run
        r = post(url, "/v1/completions", {"model": "qv", "amateur": "mlp", "prompt": PROMPT})
        assert r.status_code == 400 and "need 2 adapter slots; this engine has 1" in r.json()["error"]["message"]
    finally:
        post(url, "/v1/unload_lora_adapter", {"lora_name": "mlp"})


def _text(tiny, ids):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=tiny["model_dir"] + "/tokenizer.model")
    return sp.decode([i for i in ids if 2 < i < sp.vocab_size()])


@pytest.mark.parametrize("path", ["/etc", "../", "extra/../../", "{outside}"])
def test_a_path_outside_the_adapter_directory_is_403(server, tiny, path):
    url, _ = server
    r = post(url, "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": path.format(outside=tiny["adapter_dir"]["all"])})
    assert r.status_code == 403 and r.json()["error"]["param"] == "lora_path", r.text
    assert "x" not in _models(url)


@pytest.mark.parametrize("body, message", [
    ({"lora_name": "bad", "lora_path": "extra/bad"}, "peft_type PREFIX_TUNING is not LoRA"),
    ({"lora_name": "none", "lora_path": "extra/missing"}, "does not exist"),
    ({"lora_name": "qv", "lora_path": "qv"}, "adapter 'qv' is already loaded"),
    ({"lora_name": "base", "lora_path": "qv"}, "reserved"),
])
def test_a_bad_adapter_is_400_and_the_server_keeps_serving(server, body, message):
    url, _ = server
    r = post(url, "/v1/load_lora_adapter", body)
    assert r.status_code == 400 and message in r.json()["error"]["message"], r.text
    assert _completion(url, "qv", 2)["usage"]["completion_tokens"] >= 1


def test_the_adapter_routes_need_the_key(server):
    url, _ = server
    r = post(url, "/v1/load_lora_adapter", {"lora_name": "all", "lora_path": "extra/all"}, headers={})
    assert r.status_code == 401 and "all" not in _models(url)


def _metrics(url):
    """{'name{labels}': value} of GET /metrics."""
    lines = httpx.get(url + "/metrics", headers=KEY).text.splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if line and line[0] != "#"}


def test_metrics_count_tokens_latencies_and_adapters(server):
    url, _ = server
    before = _metrics(url)
    _completion(url, "qv", 4, ignore_eos=True, amateur="base")
    after = _metrics(url)
    delta = lambda name: after.get(name, 0) - before.get(name, 0)  # noqa: E731
    assert delta("cold_prompt_tokens_total") == len(PROMPT) and delta("cold_generated_tokens_total") == 4
    assert delta("cold_time_to_first_token_seconds_count") == 1
    assert delta("cold_inter_token_seconds_count") == 3  # between 4 tokens
    assert delta('cold_adapter_requests_total{adapter="qv",role="expert"}') == 1
    assert delta('cold_adapter_requests_total{adapter="base",role="amateur"}') == 1
    assert after["cold_requests_running"] == 0 and after["cold_requests_waiting"] == 0
    assert after['cold_inter_token_seconds_bucket{le="+Inf"}'] == after["cold_inter_token_seconds_count"]


def test_the_engine_built_for_serving_leaves_the_collectors_generations(tiny):
    """A full collection in the serving process scans only what requests create, not the model,
    adapters and graphs of the warm-up (gc.freeze after build_engine)."""
    import argparse
    import gc
    from cold_ms.serving.runtime import build_engine
    args = argparse.Namespace(model=tiny["model_dir"], adapters_dir=None, slots=1, max_len=16, max_step_tokens=2)
    try:
        model, engine = build_engine(args)
        tracked = gc.get_objects()
        assert gc.get_freeze_count() > 0
        assert not any(o is engine or o is engine.stats or o is model for o in tracked)
    finally:
        gc.unfreeze()
    assert any(o is engine.stats for o in gc.get_objects())  # back in a generation once unfrozen
