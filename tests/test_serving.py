"""The HTTP server, started for real on loopback with the tiny model and two adapters."""
import json
import threading

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


def post(url, path, body, headers=KEY, **kw):
    """POST `body` as JSON, escaped to ASCII as any client may send it (lone surrogates included)."""
    return httpx.post(url + path, content=json.dumps(body), headers={**headers, "Content-Type": "application/json"},
                      timeout=120, **kw)


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
    *chunks, last = chunks  # include_usage: a final chunk with the usage and no choices, as OpenAI's
    assert last["choices"] == [] and last["usage"] == whole["usage"]
    assert all(c["usage"] is None for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]


def test_models_health_and_metrics(server):
    models = httpx.get(server + "/v1/models", headers=KEY).json()["data"]
    assert [m["id"] for m in models] == ["model", "all", "qv"]
    # each adapter's CoLD defaults (these have no cold_config.json: the conservative ones)
    assert "cold_defaults" not in models[0]
    assert all(m["cold_defaults"] == {"alpha": 0.1, "beta": 0.1, "mask": "logit", "beta_schedule": "fixed",
                                      "source": "conservative default (no cold_config.json)"} for m in models[1:])
    assert httpx.get(server + "/health").json() == {"health": "true"}
    metrics = httpx.get(server + "/metrics", headers=KEY).text
    for name in ("cold_requests_total", "cold_generated_tokens_total", "cold_queue_length", "cold_slots_busy",
                 "cold_decode_step_seconds_bucket"):
        assert name in metrics


def test_runtime_adapter_routes_exist_only_when_allowed(server):
    r = post(server, "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "qv"})
    assert r.status_code == 404


def openai_error(r, status):
    """The OpenAI error body of `r`, checked for its status and shape; returns the message."""
    assert r.status_code == status, (r.status_code, r.text)
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    for internal in ("request 0", "max_new_tokens", "Traceback", "pydantic", "list[int]"):
        assert internal not in error["message"], error
    return error["message"]


def test_the_key_is_checked_first_on_every_route_but_health(server):
    assert httpx.get(server + "/health").status_code == 200
    for method, path in (("GET", "/metrics"), ("GET", "/v1/models"), ("POST", "/v1/completions"),
                         ("POST", "/v1/chat/completions"), ("GET", "/nowhere"), ("GET", "/docs")):
        assert "API key" in openai_error(httpx.request(method, server + path), 401)
    wrong = {"Authorization": "Bearer nope"}
    openai_error(httpx.post(server + "/v1/completions", json={"model": "qv", "prompt": "hi"}, headers=wrong), 401)
    # before the body is looked at: malformed, or over the size limit
    r = httpx.post(server + "/v1/completions", content=b'{"model": ', headers={"Content-Type": "application/json"})
    openai_error(r, 401)
    openai_error(httpx.post(server + "/v1/completions", json={"prompt": "x" * 30000}), 401)


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
    ({"model": "qv", "prompt": [3, 96]}, 400, "token ids must be in [0, 96)"),
    ({"model": "qv", "prompt": "hi", "max_tokens": 41}, 400, "limit of 40"),
    ({"model": "qv", "prompt": "hi", "max_tokens": 0}, 400, "max_tokens must be at least 1"),
    ({"model": "qv", "prompt": "   "}, 400, "empty prompt"),
    ({"model": "qv", "prompt": ["a", "b"]}, 400, "one prompt per request"),
    ({"model": "qv", "prompt": "hi", "temperature": -0.5}, 400, "temperature must be >= 0"),
    ({"model": "qv", "prompt": "hi", "top_p": 0}, 400, "top_p must be in (0, 1]"),
    ({"model": "qv", "prompt": "hi", "beta_schedule": "cosine"}, 400, "beta schedule must be one of"),
    ({"model": "qv", "prompt": "hi", "n": 2}, 400, "n must be 1"),
    ({"model": "qv", "prompt": "hi", "logit_bias": {"5": 3}}, 400, "logit_bias is not supported"),
    ({"model": "qv", "prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}, 400, "at most 4"),
    ({"model": "qv", "prompt": "hi", "betta": 2}, 422, "unrecognized request argument 'betta'"),
    ({"model": "qv", "prompt": {"text": "hi"}}, 422, "prompt must be text"),
    ({"model": "qv", "prompt": "hi", "max_tokens": "many"}, 422, "max_tokens"),
    ({"model": "qv"}, 422, "missing required argument 'prompt'"),
])
def test_bad_requests_get_4xx_and_the_server_keeps_serving(server, body, status, message):
    assert message in openai_error(post(server, "/v1/completions", body), status)
    assert post(server, "/v1/completions", {"model": "qv", "prompt": "hi", "max_tokens": 2}).status_code == 200


@pytest.mark.parametrize("raw", [b'"beta": 1e999', b'"beta": NaN', b'"alpha": Infinity'])
def test_non_finite_alpha_and_beta_are_refused(server, raw):
    body = b'{"model": "qv", "prompt": "hi", ' + raw + b"}"
    r = httpx.post(server + "/v1/completions", content=body, headers={**KEY, "Content-Type": "application/json"})
    assert "must be" in openai_error(r, 400)
    assert r.json()["error"]["param"] == raw.split(b'"')[1].decode()


def test_temperature_draws_repeat_with_the_seed(server):
    """OpenAI clients' default temperature and top_p: a CoLD draw, the same tokens for the same
    seed; omitted temperature stays greedy CoLD."""
    body = {"model": "qv", "prompt": [5, 9, 14, 3], "max_tokens": 8, "temperature": 1.3, "top_p": 0.95,
            "alpha": 0.01}
    ids = lambda **kw: post(server, "/v1/completions", dict(body, **kw)).json()["choices"][0]["text"]  # noqa: E731
    assert ids(seed=3) == ids(seed=3)
    assert len({ids(seed=s) for s in range(6)}) > 1
    greedy = dict(body, temperature=0)
    assert post(server, "/v1/completions", greedy).json()["choices"][0]["text"] == \
        post(server, "/v1/completions", {k: v for k, v in greedy.items() if k != "temperature"}).json()["choices"][0]["text"]


def _chat(server, messages, **extra):
    r = post(server, "/v1/chat/completions", {"model": "qv", "messages": messages, "max_tokens": 6, **extra})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def test_openai_chat_shapes_are_read_as_openai_reads_them(server):
    user = {"role": "user", "content": "fox"}
    parts = [{"type": "text", "text": "The"}, {"type": "text", "text": "fox"}]
    assert _chat(server, [{"role": "user", "content": parts}]) == _chat(server, [{"role": "user", "content": "The\nfox"}])
    assert _chat(server, [{"role": "assistant", "content": None}, user]) == _chat(
        server, [{"role": "assistant", "content": ""}, user])
    assert _chat(server, [{"role": "developer", "content": "Be"}, user]) == _chat(
        server, [{"role": "system", "content": "Be"}, user])
    # fields that cannot change a greedy answer are accepted and ignored
    assert _chat(server, [user]) == _chat(
        server, [dict(user, name="ann")], n=1, user="u-1", seed=7, top_p=0.9, temperature=0, presence_penalty=0,
        response_format={"type": "text"}, stream_options=None)


@pytest.mark.parametrize("message,status,text", [
    ({"role": "wizard", "content": "hi"}, 400, "unknown role 'wizard'"),
    ({"role": "tool", "content": "42", "tool_call_id": "x"}, 400, "not supported"),
    ({"role": "user", "content": None}, 400, "required for role 'user'"),
    ({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}, 400, "only text parts"),
    ({"role": "user", "content": [{"type": "text"}]}, 422, "a text part is"),
    ({"role": "user", "content": 5}, 422, "must be text or a list"),
    ({"role": "user", "content": "\ud800"}, 400, "lone surrogate"),
    ({"content": "hi"}, 422, "missing required argument 'messages[0].role'"),
])
def test_bad_chat_messages(server, message, status, text):
    r = post(server, "/v1/chat/completions", {"model": "qv", "messages": [message]})
    assert text in openai_error(r, status)


def test_frameworks_own_errors_have_the_openai_shape(server):
    as_json = {**KEY, "Content-Type": "application/json"}
    r = httpx.post(server + "/v1/completions", content=b'{"model": "qv", "prompt": ', headers=as_json)
    assert "malformed JSON" in openai_error(r, 422)
    r = httpx.post(server + "/v1/completions", content=b"[1, 2]", headers=as_json)
    assert "must be a JSON object" in openai_error(r, 422)
    form = {**KEY, "Content-Type": "application/x-www-form-urlencoded"}
    openai_error(httpx.post(server + "/v1/completions", content=b"x=1", headers=form), 422)
    openai_error(httpx.get(server + "/nowhere", headers=KEY), 404)
    openai_error(httpx.get(server + "/v1/completions", headers=KEY), 405)
    deep = httpx.post(server + "/v1/completions", content=b"[" * 9000 + b"]" * 9000, headers=as_json)
    assert deep.status_code in (400, 422) and openai_error(deep, deep.status_code)


def test_oversize_bodies_get_413_however_they_arrive(server):
    r = post(server, "/v1/completions", {"model": "qv", "prompt": "x" * 30000})
    assert "over 20000 bytes" in openai_error(r, 413)

    def chunked():  # no Content-Length: the size is only known by counting
        for _ in range(32):
            yield b"x" * (64 << 10)
    r = httpx.post(server + "/v1/completions", content=chunked(), headers={**KEY, "Content-Type": "application/json"},
                   timeout=60)
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert "over 20000 bytes" in openai_error(r, 413)
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
    assert refused.headers["retry-after"] == "2" and "retry" in openai_error(refused, 429)


def _busy(server, headers=KEY):
    line = next(x for x in httpx.get(server + "/metrics", headers=headers).text.splitlines()
                if x.startswith("cold_slots_busy"))
    return float(line.split()[-1])


def test_bounded_load_every_answer_right_no_slot_leaked(tiny, tmp_path):
    for name in ("qv", "all"):
        (tmp_path / name).symlink_to(tiny["adapter_dir"][name])
    proc, url = start_server(4, tiny["model_dir"], str(tmp_path), ["--max-len", "128", "--chat-template", "chatml"])
    try:
        figures, wrong = load_test(url, clients=16, total=200, max_tokens=8)
        print(figures)
        assert not wrong and figures["requests"] == 200
        assert _busy(url, None) == 0 and httpx.get(url + "/health").status_code == 200
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
