"""The HTTP server, started for real on loopback with the tiny model and two adapters."""
import json
import threading
import time

import httpx
import pytest

import numpy_llama as ref
from cold_ms.bench.serve import load_test, start_server, stop_server

KEY = {"Authorization": "Bearer test-key"}


@pytest.fixture(scope="module")
def server(tiny, tmp_path_factory):
    adapters = tmp_path_factory.mktemp("served")
    for name in ("qv", "all"):
        (adapters / name).symlink_to(tiny["adapter_dir"][name])
    proc, url = start_server(2, tiny["model_dir"], str(adapters),
                             ["--max-len", "96", "--max-queue", "3", "--chat-template", "chatml",
                              "--api-key", "test-key", "--max-tokens-limit", "40", "--max-body-bytes", "20000"])
    yield url
    stop_server(proc)


def post(url, path, body, **kw):
    return httpx.post(url + path, json=body, headers=KEY, timeout=120, **kw)


def _text(tiny, ids):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=tiny["model_dir"] + "/tokenizer.model")
    return sp.decode([i for i in ids if 2 < i < sp.vocab_size()])


def test_completion_matches_the_reference(server, tiny):
    prompt = [1, 5, 7, 9, 30]
    r = post(server, "/v1/completions", {"model": "all", "prompt": prompt, "max_tokens": 6, "alpha": 0.2, "beta": 1.0,
                                         "amateur": "qv"})
    assert r.status_code == 200, r.text
    w = lambda n: ref.effective_weights(tiny["weights"], tiny["adapters"].get(n))  # noqa: E731
    want = ref.generate(tiny["cfg"], w("all"), w("qv"), prompt, 6, 0.2, 1.0, eos=2)
    body = r.json()
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == _text(tiny, want)
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": len(want), "total_tokens": 5 + len(want)}


def test_chat_stream_equals_non_stream(server):
    body = {"model": "qv", "messages": [{"role": "user", "content": "The quick brown fox"}], "max_tokens": 8}
    whole = post(server, "/v1/chat/completions", body).json()
    assert whole["object"] == "chat.completion" and whole["choices"][0]["message"]["role"] == "assistant"
    with httpx.stream("POST", server + "/v1/chat/completions", json=dict(body, stream=True,
                      stream_options={"include_usage": True}), headers=KEY, timeout=60) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert chunks[-1]["usage"] == whole["usage"]


def test_models_health_metrics_and_auth(server):
    ids = [m["id"] for m in httpx.get(server + "/v1/models", headers=KEY).json()["data"]]
    assert ids == ["model", "all", "qv"]
    assert httpx.get(server + "/health").json() == {"health": "true"}
    assert httpx.get(server + "/v1/models").status_code == 401
    metrics = httpx.get(server + "/metrics").text
    for name in ("cold_requests_total", "cold_generated_tokens_total", "cold_queue_length", "cold_slots_busy",
                 "cold_decode_step_seconds_bucket"):
        assert name in metrics


def test_same_request_alone_and_in_a_busy_mixed_batch(server):
    kinds = [{"model": m, "prompt": [1, 40 + i, 50], "max_tokens": 10, "beta": b}
             for i, (m, b) in enumerate([("qv", 0.5), ("all", 1.0), ("model", 0.0), ("all", 0.0)])]
    alone = [post(server, "/v1/completions", k).json()["choices"][0]["text"] for k in kinds]
    got = [None] * 8

    def call(i):
        got[i] = post(server, "/v1/completions", kinds[i % 4]).json()["choices"][0]["text"]
    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]  # 2 slots + a full queue
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got[:4] == alone


@pytest.mark.parametrize("body,status,message", [
    ({"model": "nope", "prompt": "hi"}, 404, "unknown model 'nope'"),
    ({"model": "qv", "prompt": "hi", "alpha": 0}, 400, "alpha must be in (0, 1]"),
    ({"model": "qv", "prompt": "hi", "beta": -1}, 400, "beta must be >= 0"),
    ({"model": "qv", "prompt": "hi", "amateur": "nope"}, 404, "unknown amateur"),
    ({"model": "qv", "prompt": [3] * 200, "max_tokens": 5}, 400, "at most 95"),
    ({"model": "qv", "prompt": [3] * 90, "max_tokens": 10}, 400, "exceeds the context of 96"),
    ({"model": "qv", "prompt": "hi", "max_tokens": 41}, 400, "limit of 40"),
    ({"model": "qv", "prompt": "   "}, 400, "empty prompt"),
    ({"model": "qv", "prompt": "hi", "temperature": 0.7}, 400, "temperature must be 0"),
    ({"model": "qv"}, 422, "prompt"),
])
def test_bad_requests_get_4xx_and_the_server_keeps_serving(server, body, status, message):
    r = post(server, "/v1/completions", body)
    assert r.status_code == status and message in r.json()["error"]["message"], r.text
    assert post(server, "/v1/completions", {"model": "qv", "prompt": "hi", "max_tokens": 2}).status_code == 200


def test_malformed_json_and_oversize_body(server):
    r = httpx.post(server + "/v1/completions", content=b'{"model": "qv", "prompt": ',
                   headers={**KEY, "Content-Type": "application/json"})
    assert r.status_code == 422 and "malformed JSON" in r.json()["error"]["message"]
    r = httpx.post(server + "/v1/completions", content=b'model=qv', headers=KEY)
    assert r.status_code == 422 and "must be a JSON object" in r.json()["error"]["message"]
    r = post(server, "/v1/completions", {"model": "qv", "prompt": "x" * 30000})
    assert r.status_code == 413
    assert httpx.get(server + "/health").status_code == 200


def test_full_queue_gets_429_with_retry_after(server):
    body = {"model": "all", "prompt": [1, 2, 3], "max_tokens": 40}
    results = []

    def call():
        results.append(post(server, "/v1/completions", body))
    threads = [threading.Thread(target=call) for _ in range(12)]  # 2 slots + 3 queued < 12
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert 200 in codes and 429 in codes, codes
    refused = next(r for r in results if r.status_code == 429)
    assert refused.headers["retry-after"] == "2" and "retry" in refused.json()["error"]["message"]


def _busy(server):
    line = next(x for x in httpx.get(server + "/metrics").text.splitlines() if x.startswith("cold_slots_busy"))
    return float(line.split()[-1])


def test_a_client_that_disconnects_frees_its_slot(server):
    body = {"model": "qv", "prompt": [1, 2, 3], "max_tokens": 40, "stream": True}
    for _ in range(2):  # both slots; each client reads one chunk and leaves
        with httpx.stream("POST", server + "/v1/completions", json=body, headers=KEY, timeout=60) as r:
            next(r.iter_lines())
    deadline = time.time() + 20
    while _busy(server) > 0 and time.time() < deadline:
        time.sleep(0.2)
    assert _busy(server) == 0
    assert post(server, "/v1/completions", {"model": "qv", "prompt": "hi", "max_tokens": 3}).status_code == 200


def test_bounded_load_every_answer_right_no_slot_leaked(tiny, tmp_path):
    for name in ("qv", "all"):
        (tmp_path / name).symlink_to(tiny["adapter_dir"][name])
    proc, url = start_server(4, tiny["model_dir"], str(tmp_path), ["--max-len", "128", "--chat-template", "chatml"])
    try:
        figures, wrong = load_test(url, clients=16, total=200, max_tokens=8)
        print(figures)
        assert not wrong and figures["requests"] == 200
        assert _busy(url) == 0 and httpx.get(url + "/health").status_code == 200
    finally:
        stop_server(proc)


def test_the_openai_python_client_works(server):
    from openai import OpenAI
    client = OpenAI(base_url=server + "/v1", api_key="test-key")
    assert [m.id for m in client.models.list().data] == ["model", "all", "qv"]
    chat = client.chat.completions.create(model="qv", messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                                          extra_body={"alpha": 0.2, "beta": 1.0})
    assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens >= 1
    same = post(server, "/v1/chat/completions", {"model": "qv", "messages": [{"role": "user", "content": "hi"}],
                                                 "max_tokens": 4, "alpha": 0.2, "beta": 1.0}).json()
    assert chat.choices[0].message.content == same["choices"][0]["message"]["content"]
    pieces = client.completions.create(model="all", prompt="The quick", max_tokens=5, stream=True)
    text = "".join(p.choices[0].text for p in pieces)
    assert text == post(server, "/v1/completions", {"model": "all", "prompt": "The quick", "max_tokens": 5}).json()["choices"][0]["text"]
