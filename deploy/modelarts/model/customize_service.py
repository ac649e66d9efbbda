"""ModelArts inference code of the cold_ms model package: CoLD generation, one request per call.

The platform's model server creates the class below with (model_name, model_path) and runs each
request through _preprocess -> _inference -> _postprocess. The model is found in model_path as
run.sh finds it: a .gguf file, a MindFormers .yaml, or a model directory (HF or
scripts/convert.py) in model_path or model_path/base; with none, the embedded SmolLM2. Adapters
come from model_path/adapters (with the embedded model and no adapters/: the shipped ones).

Request:  {"prompt": "text"} or {"messages": [{"role": "user", "content": "text"}, ...]}, and
          optionally "adapter" (the expert; omitted or "base" = the base model), "amateur"
          ("base" or an adapter), "alpha", "beta" (default: the adapter's cold_config.json, else
          0.1 and 0.1), "max_tokens" (64).
Response: {"text", "finish_reason", "adapter", "amateur",
           "usage": {"prompt_tokens", "completion_tokens", "total_tokens"}}
          or {"error": {"message": "..."}}.
Environment: CHAT_TEMPLATE (chatml|llama2, for checkpoints without a chat template) and
MAX_LEN (prompt + completion tokens, default 1024), as for run.sh.
"""
import glob
import logging
import os
import threading
from types import SimpleNamespace

from cold_ms.errors import ColdError, InputError
from cold_ms.pipeline.batching import Request
from cold_ms.formats.chat import chat_prompt_ids
from cold_ms.serving.runtime import build_engine

try:
    from model_service.model_service import SingleNodeService  # ModelArts' base class for MindSpore models
except ImportError:
    class SingleNodeService:
        """Stands in for the ModelArts platform class outside ModelArts (local tests only): the real
        one ships with the platform's model server and is not installable here."""

        def __init__(self, model_name, model_path):
            self.model_name, self.model_path = model_name, model_path

        def inference(self, data):
            """What the platform does with each request body."""
            return self._postprocess(self._inference(self._preprocess(data)))

log = logging.getLogger(__name__)
DEFAULTS = {"alpha": None, "beta": None, "max_tokens": 64}  # None: the adapter's own (the engine fills it)


def find_model(root):
    """The model in `root` or root/base, picked as run.sh picks it; None = the embedded default.

    The package's own config.json (the ModelArts one, with "model_algorithm") is not a model config.
    """
    for folder in (root, os.path.join(root, "base")):
        config = os.path.join(folder, "config.json")
        if os.path.isfile(config):
            with open(config, encoding="utf-8", errors="replace") as f:
                if '"model_algorithm"' not in f.read():
                    return folder
        for pattern in ("*.gguf", "*.yaml", "*.yml"):
            found = sorted(glob.glob(os.path.join(folder, pattern)))
            if found:
                return found[0]
    return None


def _number(data, key):
    value = data.get(key, DEFAULTS[key])
    if value is None and key not in data:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"'{key}' must be a number, got {value!r}")
    return value


class ColdService(SingleNodeService):
    def __init__(self, model_name, model_path):
        super().__init__(model_name, model_path)
        # Some ModelArts engines pass the model file rather than the package directory.
        root = model_path if os.path.isdir(model_path) else os.path.dirname(model_path)
        adapters = os.path.join(root, "adapters")
        # One slot: the platform hands over one request per call, and the lock below keeps
        # concurrent calls off the engine's single KV cache.
        args = SimpleNamespace(model=find_model(root), adapters_dir=adapters if os.path.isdir(adapters) else None,
                               slots=1, max_len=int(os.environ.get("MAX_LEN") or 1024), mode="graph",
                               lora_backend="custom")
        self.model, self.engine = build_engine(args)  # loads, stacks the adapters, compiles the graphs
        self.chat_template = os.environ.get("CHAT_TEMPLATE") or None
        self.lock = threading.Lock()

    def _preprocess(self, data):
        try:
            return {"request": self._request(data)}
        except ColdError as e:
            return {"error": str(e)}

    def _request(self, data):
        """A validated engine Request from the request body (InputError/AdapterError if not valid)."""
        if not isinstance(data, dict):
            raise InputError("the request body must be a JSON object")
        if ("prompt" in data) == ("messages" in data):
            raise InputError("give exactly one of 'prompt' (text) or 'messages' (chat)")
        tokenizer = self.model.tokenizer
        if "messages" in data:
            messages = data["messages"]
            if not isinstance(messages, list) or not messages or not all(
                    isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in messages):
                raise InputError("'messages' must be a non-empty list of {\"role\": text, \"content\": text}")
            ids = chat_prompt_ids(tokenizer, [{"role": m["role"], "content": m["content"]} for m in messages],
                                  self.chat_template)
        else:
            if not isinstance(data["prompt"], str) or not data["prompt"].strip():
                raise InputError("'prompt' must be a non-empty string")
            ids = tokenizer.encode(data["prompt"])
        adapter = data.get("adapter")
        expert = None if adapter in (None, "base", self.model.config.name) else adapter
        amateur = data.get("amateur", "base" if expert is not None else None)
        alpha, beta = _number(data, "alpha"), _number(data, "beta")
        max_tokens = data.get("max_tokens", DEFAULTS["max_tokens"])
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InputError(f"'max_tokens' must be a positive integer, got {max_tokens!r}")
        if beta == 0 or amateur == (expert or "base"):
            amateur = None  # nothing to contrast with: plain greedy, as the HTTP server does
        request = Request(ids, adapter=expert, amateur=amateur, alpha=alpha, beta=beta, max_new_tokens=max_tokens)
        self.engine.new_state(0, request)  # the engine's checks: adapters, alpha, beta, context length
        return request

    def _inference(self, data):
        if "error" in data:
            return data
        try:
            with self.lock:
                result = self.engine.generate([data["request"]])[0]
        except Exception as e:  # noqa: BLE001 - the caller gets a message, the log the traceback
            log.exception("generation failed")
            return {"error": f"generation failed: {e}"}
        return {"request": data["request"], "result": result}

    def _postprocess(self, data):
        if "error" in data:
            return {"error": {"message": data["error"]}}
        request, result = data["request"], data["result"]
        prompt, completion = len(request.prompt_ids), len(result.token_ids)
        return {"text": self.model.tokenizer.decode(result.token_ids), "finish_reason": result.finish_reason,
                "adapter": request.adapter or "base", "amateur": request.amateur,
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion}}
