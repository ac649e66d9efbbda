"""The server's life around a request: clients that leave, the model's id, start-up that fails.

A long-context tiny model (4096 positions, 12 layers, EOS never chosen) keeps a request decoding
for seconds (a step runs the request's rows only), so a slot freed within a second can only have
been freed by the disconnect.
"""
import json
import os
import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

import httpx
import pytest

import fixtures
from cold_ms.bench.serve import ROOT, free_port, stop_server
from cold_ms.serving.requests import model_slug
from helpers import run_script

KEY = {"Authorization": "Bearer test-key"}
NAME, SLUG = "Tiny Model v1.0", "tiny-model-v1.0"
LONG = 4000  # tokens a request would decode if nobody cancelled it


def _long_context_model(root):
    # deep enough that a step takes over a millisecond: the request must outlast the 3 s the check needs
    cfg = dict(fixtures.TINY, max_position_embeddings=4096, num_hidden_layers=24, hidden_size=128,
               intermediate_size=256)
    weights = fixtures.random_weights(cfg)
    weights["lm_head.weight"][cfg["eos_token_id"]] = 0.0  # logit 0: never the maximum, so no early EOS
    path = str(root / NAME)
    fixtures.write_model(path, cfg, weights=weights)
    fixtures.write_sentencepiece(os.path.join(path, "tokenizer.model"))
    return path


@pytest.fixture(scope="module")
def long_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("long")
    port, log_path = free_port(), root / "server.log"
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "serve.py"), "--port", str(port), "--slots", "2",
           "--model", _long_context_model(root), "--max-len", "4096", "--max-tokens-limit", str(LONG),
           "--chat-template", "chatml", "--api-key", "test-key",
           "--max-step-tokens", "4"]  # a decode step's 4 rows: 3 step graphs to compile, not 7 (~1.5 s each)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: proc.poll() is not None or _healthy(url), 300)
        assert proc.poll() is None, log_path.read_text()[-2000:]
        yield url, log_path
    finally:
        stop_server(proc)


def _healthy(url):
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(condition, seconds):
    deadline = time.perf_counter() + seconds
    while not condition():
        assert time.perf_counter() < deadline, "timed out"
        time.sleep(0.02)


def _metric(url, name):
    line = next(x for x in httpx.get(url + "/metrics", headers=KEY).text.splitlines() if x.startswith(name + " ")
                or x.startswith(name + "{"))
    return float(line.split()[-1])


def _frees_its_slot_in_time(url, leave):
    """Start a long request, let it decode, call leave() (the client goes), and check the slot
    is free within one decode step + 1 s."""
    _wait(lambda: _metric(url, "cold_slots_busy") == 1, 30)
    time.sleep(0.3)  # decoding now
    leave()
    gone = time.perf_counter()
    _wait(lambda: _metric(url, "cold_slots_busy") == 0, 15)
    freed = time.perf_counter() - gone
    step = _metric(url, "cold_decode_step_seconds_sum") / _metric(url, "cold_decode_step_seconds_count")
    assert LONG * step > 3 * (1 + step), "the request would end by itself too soon to tell"
    print(f"slot freed {freed:.3f} s after the client left (decode step {step * 1e3:.1f} ms)")
    assert freed <= step + 1.0, (freed, step)


def test_a_non_streaming_client_that_disconnects_frees_its_slot(long_server):
    url, log_path = long_server
    body = json.dumps({"model": SLUG, "prompt": [1, 5, 7], "max_tokens": LONG, "beta": 0}).encode()
    where = urlparse(url)
    sock = socket.create_connection((where.hostname, where.port))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-key\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    _frees_its_slot_in_time(url, sock.close)
    _wait(lambda: "finish=cancelled" in log_path.read_text(), 5)


def test_a_streaming_client_that_disconnects_frees_its_slot_and_is_logged_cancelled(long_server):
    url, log_path = long_server
    before = log_path.read_text().count("finish=cancelled")
    body = {"model": SLUG, "messages": [{"role": "user", "content": "hi"}], "max_tokens": LONG, "beta": 0,
            "stream": True}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers=KEY, timeout=60) as r:
        lines = r.iter_lines()
        next(lines)
        _frees_its_slot_in_time(url, r.close)
    _wait(lambda: log_path.read_text().count("finish=cancelled") == before + 1, 5)
    assert "finish=None" not in log_path.read_text()


def test_the_base_model_has_a_stable_slug(long_server):
    url, _ = long_server
    assert [m["id"] for m in httpx.get(url + "/v1/models", headers=KEY).json()["data"]] == [SLUG]
    texts = set()
    for model in (SLUG, NAME, "base"):
        r = httpx.post(url + "/v1/completions", json={"model": model, "prompt": [1, 5], "max_tokens": 3}, headers=KEY)
        assert r.status_code == 200, r.text
        texts.add(r.json()["choices"][0]["text"])
    assert len(texts) == 1
    assert model_slug("Smollm2 135M 8k Lc100K Mix1 Ep2") == "smollm2-135m-8k-lc100k-mix1-ep2"


def _run(script, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), *args], capture_output=True,
                          text=True, timeout=300)


# refused by serve.py's check() before anything loads: main() in-process (no server starts)
@pytest.mark.parametrize("args,message", [
    (["--default-beta", "inf"], "beta must be >= 0 and finite"),
    (["--slots", "0"], "--slots must be >= 1"),
    (["--max-step-tokens", "0"], "--max-step-tokens must be >= 1"),
    (["--max-loras", "2"], "--max-loras sizes the runtime adapter slots: it needs --allow-runtime-adapters"),
    (["--allow-runtime-adapters"], "--allow-runtime-adapters needs --adapters-dir"),
    (["--allow-runtime-adapters", "--adapters-dir", "/nonexistent", "--max-loras", "3", "--max-cpu-loras", "2"],
     "--max-cpu-loras 2 is below --max-loras 3"),
])
def test_serve_with_a_bad_setting_exits_with_one_error_line(tiny, args, message, capsys):
    code, _, err = run_script("serve", ["--port", str(free_port()), "--max-len", "96", "--model", tiny["model_dir"],
                                        *args], capsys)
    _one_error_line(code, err, message)


# found while the server starts (the model loads behind the listening port): a real process
@pytest.mark.parametrize("args,message", [
    (["--model", "/nonexistent/model"], "not found"),
    (["--adapters-dir", "/nonexistent/adapters"], "adapter directory not found"),
    (["--slots", "4", "--max-step-tokens", "7"], "max_step_tokens 7 cannot hold a decode step of 4 slots (8 rows)"),
])
def test_serve_failing_to_load_exits_with_one_error_line(tiny, args, message):
    model = [] if "--model" in args else ["--model", tiny["model_dir"]]
    done = _run("serve.py", "--port", str(free_port()), "--max-len", "96", *model, *args)
    _one_error_line(done.returncode, done.stderr, message)


def _one_error_line(code, stderr, message):
    assert code != 0
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], stderr
    assert "Traceback" not in stderr


def test_infer_refuses_a_non_finite_beta(tiny, capsys):
    """In-process (the fresh process's exit code 2 path: test_errors.py)."""
    code, _, err = run_script("infer", ["--model", tiny["model_dir"], "--prompt-ids", "1,5", "--beta", "inf"], capsys)
    assert code == 2 and err.strip() == "error: beta must be >= 0 and finite, got inf"
