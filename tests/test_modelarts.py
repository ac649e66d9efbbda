"""deploy/modelarts: run.sh started for real on loopback, customize_service.py with its local
stand-in base class, and the package's config.json. The image build and ModelArts itself are
not reachable from the tests (no Docker engine, no Huawei Cloud)."""
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from cold_ms.bench.serve import free_port
from cold_ms.pipeline.batching import Request
from cold_ms.formats.chat import chat_prompt_ids
from cold_ms.serving.schemas import ChatRequest, CompletionRequest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy", "modelarts")
RUN_SH = os.path.join(DEPLOY, "run.sh")
PACKAGE_CONFIG = os.path.join(DEPLOY, "model", "config.json")
MESSAGES = [{"role": "user", "content": "The quick brown fox"}]
OVERRIDES = ("MODEL_DIR", "PORT", "SLOTS", "MAX_LEN", "MAX_TOKENS_LIMIT", "MAX_QUEUE", "CHAT_TEMPLATE",
             "DEFAULT_ALPHA", "DEFAULT_BETA", "PYTHON")


def _env(**kw):
    """This environment without run.sh's overrides, plus `kw`."""
    return {**{k: v for k, v in os.environ.items() if k not in OVERRIDES}, **kw}


def _load_customize_service():
    spec = importlib.util.spec_from_file_location("customize_service",
                                                  os.path.join(DEPLOY, "model", "customize_service.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cs = _load_customize_service()


def _link_model(tiny, folder):
    """The tiny model's files, symlinked into `folder`."""
    folder.mkdir(parents=True)
    for name in os.listdir(tiny["model_dir"]):
        (folder / name).symlink_to(os.path.join(tiny["model_dir"], name))


def _package(tiny, root):
    """A ModelArts model package as OBS delivers it: config.json, customize_service.py, the
    model in base/ (its config.json would clash with the package's) and adapters/qv."""
    root.mkdir()
    for name in ("config.json", "customize_service.py"):
        (root / name).symlink_to(os.path.join(DEPLOY, "model", name))
    _link_model(tiny, root / "base")
    (root / "adapters").mkdir()
    (root / "adapters" / "qv").symlink_to(tiny["adapter_dir"]["qv"])
    return root


def _run_sh_command(model_dir):
    """The serve.py arguments run.sh would exec, with PYTHON=echo standing in for the server."""
    env = _env(MODEL_DIR=str(model_dir), PYTHON="echo", SLOTS="3")
    out = subprocess.run(["sh", RUN_SH], env=env, capture_output=True, text=True, check=True).stdout.split()
    return out[1:]  # drop serve.py's path


# ---- run.sh -------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["absent", "empty", "model", "package", "gguf"])
def test_run_sh_and_customize_service_pick_the_same_model(tiny, tmp_path, layout):
    model_dir = tmp_path / "model"
    if layout == "empty":
        model_dir.mkdir()
    elif layout == "model":
        _link_model(tiny, model_dir)
    elif layout == "package":
        _package(tiny, model_dir)
    elif layout == "gguf":
        model_dir.mkdir()
        (model_dir / "a.gguf").write_bytes(b"")
    args = _run_sh_command(model_dir)  # started with `sh`, as ModelArts' examples do
    assert args[:4] == ["--host", "0.0.0.0", "--port", "8080"] and "--slots" in args
    picked = args[args.index("--model") + 1] if "--model" in args else None
    want = {"absent": None, "empty": None, "model": str(model_dir), "package": str(model_dir / "base"),
            "gguf": str(model_dir / "a.gguf")}[layout]
    assert picked == want == cs.find_model(str(model_dir))
    assert ("--adapters-dir" in args) == (layout == "package")


@pytest.fixture(scope="module")
def service(tiny, tmp_path_factory):
    """customize_service's class on a model package, as the platform would create it."""
    path = _package(tiny, tmp_path_factory.mktemp("obs") / "model")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHAT_TEMPLATE", "chatml")  # the tiny tokenizer has no chat template
        mp.setenv("MAX_LEN", "128")
        yield cs.ColdService("cold_ms", str(path))


def test_run_sh_serves_the_model_in_model_dir(tiny, tmp_path, service):
    model_dir = tmp_path / "model"
    _link_model(tiny, model_dir)
    (model_dir / "adapters").mkdir()
    (model_dir / "adapters" / "qv").symlink_to(tiny["adapter_dir"]["qv"])
    port = free_port()
    env = _env(MODEL_DIR=str(model_dir), PORT=str(port), PYTHON=sys.executable, CHAT_TEMPLATE="chatml",
               MAX_LEN="128", SLOTS="1")
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "stderr", "w+") as err:
        proc = subprocess.Popen(["bash", RUN_SH], env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.time() + 300
            while True:
                assert proc.poll() is None, f"run.sh exited: {open(err.name).read()[-2000:]}"
                assert time.time() < deadline, "no healthy server in time"
                try:
                    health = httpx.get(url + "/health", timeout=2)
                    if health.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            assert health.json() == {"health": "true"}
            ids = [m["id"] for m in httpx.get(url + "/v1/models").json()["data"]]
            assert ids == ["model", "qv"]
            r = httpx.post(url + "/v1/chat/completions", timeout=120,
                           json={"model": "qv", "messages": MESSAGES, "max_tokens": 8})
            assert r.status_code == 200, r.text
            body = r.json()
            schema = _api("/v1/chat/completions")["response"]["data"]
            assert set(schema["required"]) <= set(body)
            # the same request through the model-package code gives the same answer
            same = service.inference({"messages": MESSAGES, "adapter": "qv", "max_tokens": 8})
            assert body["choices"][0]["message"]["content"] == same["text"]
            assert body["usage"] == same["usage"]
        finally:
            proc.send_signal(signal.SIGTERM)  # what ModelArts sends on stop
            code = proc.wait(timeout=60)
        # uvicorn shuts down gracefully, then re-raises the signal: killed by SIGTERM, after cleanup
        assert code in (0, -signal.SIGTERM), open(err.name).read()[-2000:]
        assert f"cold_ms: serving {model_dir}" in open(err.name).read()
    with pytest.raises(httpx.ConnectError):  # run.sh exec'd, so no server outlives it
        httpx.get(url + "/health", timeout=2)


# ---- customize_service.py -------------------------------------------------------------

def test_the_local_stand_in_base_class_is_in_use(service):
    assert cs.SingleNodeService.__module__ == cs.__name__  # no ModelArts model server here
    assert service.model_name == "cold_ms" and service.engine.adapters.names == ["qv"]
    assert service.model.source.endswith("base")


@pytest.mark.parametrize("body,request_args", [
    ({"messages": MESSAGES, "adapter": "qv", "alpha": 0.2, "beta": 1.0, "max_tokens": 6},
     dict(adapter="qv", amateur="base", alpha=0.2, beta=1.0, max_new_tokens=6)),
    ({"prompt": "Two plus three", "max_tokens": 5},
     dict(adapter=None, amateur=None, alpha=0.1, beta=0.5, max_new_tokens=5)),
])
def test_a_request_gives_what_the_engine_gives(service, body, request_args):
    tok = service.model.tokenizer
    ids = chat_prompt_ids(tok, MESSAGES, "chatml") if "messages" in body else tok.encode(body["prompt"])
    want = service.engine.generate([Request(ids, **request_args)])[0]
    out = service._postprocess(service._inference(service._preprocess(body)))
    assert out == {"text": tok.decode(want.token_ids), "finish_reason": want.finish_reason,
                   "adapter": request_args["adapter"] or "base", "amateur": request_args["amateur"],
                   "usage": {"prompt_tokens": len(ids), "completion_tokens": len(want.token_ids),
                             "total_tokens": len(ids) + len(want.token_ids)}}


@pytest.mark.parametrize("body,message", [
    ({"prompt": "hi", "adapter": "nope"}, "unknown adapter 'nope'"),
    ({"prompt": "hi", "adapter": "qv", "alpha": 0}, "alpha must be in (0, 1]"),
    ({"prompt": "hi", "adapter": "qv", "beta": -1}, "beta must be >= 0"),
    ({"prompt": "hi", "adapter": "qv", "amateur": "nope"}, "unknown adapter 'nope'"),
    ({"prompt": "hi", "alpha": "high"}, "'alpha' must be a number"),
    ({"prompt": "hi", "max_tokens": 0}, "'max_tokens' must be a positive integer"),
    ({"prompt": "hi", "max_tokens": 200}, "exceeds the context of 128 tokens"),
    ({"prompt": "  "}, "'prompt' must be a non-empty string"),
    ({"messages": [{"role": "user"}]}, "'messages' must be a non-empty list"),
    ({"prompt": "hi", "messages": MESSAGES}, "exactly one of 'prompt'"),
    ({}, "exactly one of 'prompt'"),
    (["hi"], "must be a JSON object"),
])
def test_bad_input_gives_a_json_error_message(service, body, message):
    out = service.inference(body)
    assert list(out) == ["error"] and message in out["error"]["message"], out
    assert "Traceback" not in json.dumps(out)
    assert "text" in service.inference({"prompt": "hi", "max_tokens": 2})  # still serving


# ---- config.json ----------------------------------------------------------------------------

def _config():
    with open(PACKAGE_CONFIG, encoding="utf-8") as f:
        return json.load(f)


def _api(url):
    return next(a for a in _config()["apis"] if a["url"] == url)


def test_config_json_declares_the_apis_and_the_health_check():
    cfg = _config()
    assert cfg["model_type"] == "Image" and re.fullmatch(r"[A-Za-z][\w-]{0,35}", cfg["model_algorithm"])
    assert cfg["health"]["url"] == "/health" and cfg["health"]["protocol"] == "http"
    assert {a["url"] for a in cfg["apis"]} == {"/v1/chat/completions", "/v1/completions"}
    for url, schema in (("/v1/chat/completions", ChatRequest), ("/v1/completions", CompletionRequest)):
        api = _api(url)
        assert api["method"] == "post" and api["protocol"] == "http"
        request = api["request"]["data"]
        assert api["request"]["Content-type"] == api["response"]["Content-type"] == "application/json"
        # the documented request fields are the ones the server reads, required where it requires them
        assert set(request["properties"]) <= set(schema.model_fields)
        assert set(request["required"]) == {n for n, f in schema.model_fields.items() if f.is_required()}


def test_dockerfile_copies_existing_paths_and_boots_run_sh():
    with open(os.path.join(DEPLOY, "Dockerfile"), encoding="utf-8") as f:
        text = f.read()
    sources = [s for line in re.findall(r"^COPY\s+(.+)$", text, re.M) for s in line.split()[:-1]]
    assert sources and all(os.path.exists(os.path.join(ROOT, s)) for s in sources), sources
    assert re.search(r"^USER ma-user$", text, re.M) and re.search(r"^EXPOSE 8080$", text, re.M)
    assert re.search(r'^CMD \["bash", "/home/run.sh"\]$', text, re.M)
    # the build's check imports what exists (it named a module that had moved)
    for module, names in re.findall(r"from (cold_ms[\w.]*) import ([\w, ]+)", text):
        imported = importlib.import_module(module)
        assert all(hasattr(imported, n.strip()) for n in names.split(",")), (module, names)
