"""The HTTP API (FastAPI): OpenAI-style completions and chat with CoLD, models, health, metrics.

The model loads and the graphs compile in a background thread at start-up; until then
GET /health answers 503 and the API 503, after that /health answers {"health": "true"}
(the ModelArts health-check convention).
"""
import asyncio
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Optional

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from cold_ms.config import ColdParams
from cold_ms.errors import AdapterError, ColdError, InputError
from cold_ms.pipeline.batching import Request as GenRequest
from cold_ms.formats.chat import chat_prompt_ids
from cold_ms.serving.batcher import Batcher, QueueFull
from cold_ms.serving.limits import BodyLimit
from cold_ms.serving.metrics import Metrics
from cold_ms.serving.schemas import ChatRequest, CompletionRequest

log = logging.getLogger("cold_ms.serve")


@dataclass
class ServerConfig:
    max_body_bytes: int = 1 << 20
    max_prompt_tokens: int = 1024
    max_tokens_limit: int = 512
    default_max_tokens: int = 64
    default_alpha: float = 0.1
    default_beta: float = 0.5
    max_queue: int = 64
    retry_after_s: int = 2
    api_key: Optional[str] = None
    chat_template: Optional[str] = None


class ApiError(Exception):
    def __init__(self, status, message, kind="invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


class Runtime:
    """What the build thread produces: model, engine, batcher (None until ready)."""
    def __init__(self):
        self.model = self.batcher = self.error = None
        self.ready = threading.Event()


def _error(status, message, kind="invalid_request_error", headers=None):
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status, headers=headers)


def create_app(build, cfg: ServerConfig):
    """build() -> (LoadedModel, Engine), called once in a background thread."""
    rt, metrics = Runtime(), Metrics()
    app = FastAPI(title="cold_ms", version="0.1.0")
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)
    app.state.runtime = rt

    def start():
        try:
            model, engine = build()
            rt.model, rt.batcher = model, Batcher(engine, model.tokenizer, cfg.max_queue, metrics)
        except Exception as e:  # noqa: BLE001 - reported by /health and every request
            rt.error = e
            log.exception("start-up failed")
        rt.ready.set()

    @app.on_event("startup")
    async def _startup():
        threading.Thread(target=start, name="cold-build", daemon=True).start()

    @app.on_event("shutdown")
    async def _shutdown():
        if rt.batcher:
            rt.batcher.close()

    @app.exception_handler(ApiError)
    async def _api_error(_, e: ApiError):
        headers = {"Retry-After": str(cfg.retry_after_s)} if e.status == 429 else None
        return _error(e.status, e.message, e.kind, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_, e: RequestValidationError):
        parts = []
        for err in e.errors():
            where = ".".join(str(x) for x in err["loc"] if x != "body") or "body"
            if err["type"] == "json_invalid":
                parts.append(f"malformed JSON body ({err.get('ctx', {}).get('error', err['msg'])})")
            elif where == "body":
                parts.append("the request body must be a JSON object (Content-Type: application/json)")
            else:
                parts.append(f"{where}: {err['msg']}")
        return _error(422, "; ".join(parts))

    def ready():
        if rt.error is not None:
            raise ApiError(503, f"the model failed to load: {rt.error}", "server_error")
        if rt.batcher is None:
            raise ApiError(503, "the model is still loading and compiling", "server_error")
        return rt

    def authorized(request: Request):
        if cfg.api_key and request.headers.get("authorization") != f"Bearer {cfg.api_key}":
            raise ApiError(401, "missing or wrong API key (Authorization: Bearer ...)", "authentication_error")

    @app.get("/health")
    async def health():
        if rt.batcher is None:
            return JSONResponse({"health": "false"}, 503)
        return {"health": "true"}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(rt.batcher), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models", dependencies=[Depends(authorized)])
    async def models():
        r = ready()
        names = [r.model.config.name] + r.batcher.engine.adapters.names
        return {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "cold_ms",
                                            "root": r.model.config.name} for n in names]}

    @app.post("/v1/completions", dependencies=[Depends(authorized)])
    async def completions(body: CompletionRequest, request: Request):
        r = ready()
        if isinstance(body.prompt, str):
            if not body.prompt.strip():
                raise ApiError(400, "empty prompt")
            ids = r.model.tokenizer.encode(body.prompt)
        else:
            ids = list(body.prompt)
        return await _serve(r, body, ids, request, chat=False)

    @app.post("/v1/chat/completions", dependencies=[Depends(authorized)])
    async def chat(body: ChatRequest, request: Request):
        r = ready()
        messages = [m.model_dump() for m in body.messages]
        try:
            ids = chat_prompt_ids(r.model.tokenizer, messages, cfg.chat_template)
        except ColdError as e:
            raise ApiError(400, str(e)) from None
        return await _serve(r, body, ids, request, chat=True)

    async def _serve(r, body, ids, request, chat):
        gen = _gen_request(r, body, ids, cfg)
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()
        push = lambda job, delta, reason: loop.call_soon_threadsafe(queue.put_nowait, (delta, reason))  # noqa: E731
        try:
            job = r.batcher.submit(gen, body.stops(), push)
        except QueueFull as e:
            metrics.rejected.labels(reason="queue_full").inc()
            raise ApiError(429, f"server busy ({e}); retry after {cfg.retry_after_s}s", "rate_limit_error") from None
        except AdapterError as e:
            raise ApiError(404, str(e), "model_not_found") from None
        except ColdError as e:
            raise ApiError(400, str(e)) from None
        meta = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}", "created": int(time.time()),
                "model": body.model}
        start = time.perf_counter()
        if body.stream:
            return StreamingResponse(_sse(r, job, queue, meta, chat, body, ids, start),
                                     media_type="text/event-stream")
        while True:
            try:
                _, reason = await asyncio.wait_for(queue.get(), timeout=0.5)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    r.batcher.cancel(job)
                    return Response(status_code=499)
                continue
            if reason:
                break
        _log_request(body, ids, job, start)
        if job.finish_reason == "error":
            raise ApiError(500, "generation failed", "server_error")
        return _final(meta, job, ids, chat)

    async def _sse(r, job, queue, meta, chat, body, ids, start):
        kind = "chat.completion.chunk" if chat else "text_completion"
        try:
            if chat:
                yield _chunk(meta, kind, {"delta": {"role": "assistant", "content": ""}, "finish_reason": None})
            while True:
                delta, reason = await queue.get()
                if delta:
                    yield _chunk(meta, kind, {"delta": {"content": delta}, "finish_reason": None} if chat
                                 else {"text": delta, "finish_reason": None})
                if reason:
                    last = {"delta": {}, "finish_reason": job.finish_reason} if chat else \
                        {"text": "", "finish_reason": job.finish_reason}
                    usage = _usage(ids, job) if (body.stream_options or {}).get("include_usage") else None
                    yield _chunk(meta, kind, last, usage)
                    yield "data: [DONE]\n\n"
                    break
        finally:
            if not job.done.is_set():
                r.batcher.cancel(job)  # the client went away: free the slot
            _log_request(body, ids, job, start)

    return app


def _gen_request(r, body, ids, cfg):
    """Validated engine Request from an API body (ApiError 400/404 on bad values)."""
    if body.temperature not in (None, 0, 0.0):
        raise ApiError(400, "cold_ms decodes deterministically (greedy or CoLD): temperature must be 0 or omitted")
    if body.n not in (None, 1):
        raise ApiError(400, "n must be 1")
    names = r.batcher.engine.adapters.names
    expert = None if body.model in (r.model.config.name, "base") else body.model
    if expert is not None and expert not in names:
        raise ApiError(404, f"unknown model '{body.model}' (available: {', '.join([r.model.config.name] + names)})",
                       "model_not_found")
    alpha = cfg.default_alpha if body.alpha is None else body.alpha
    beta = cfg.default_beta if body.beta is None else body.beta
    try:
        ColdParams(alpha, beta)
    except ColdError as e:
        raise ApiError(400, str(e)) from None
    amateur = body.amateur or ("base" if expert is not None else None)
    if amateur is not None and amateur != "base" and amateur not in names:
        raise ApiError(404, f"unknown amateur '{amateur}' (base or one of: {', '.join(names)})", "model_not_found")
    if beta == 0 or amateur == (expert or "base"):
        amateur = None  # plain greedy
    max_tokens = body.max_tokens or min(cfg.default_max_tokens, cfg.max_tokens_limit)
    if max_tokens > cfg.max_tokens_limit:
        raise ApiError(400, f"max_tokens {max_tokens} is above this server's limit of {cfg.max_tokens_limit}")
    if not ids:
        raise ApiError(400, "empty prompt")
    if len(ids) > cfg.max_prompt_tokens:
        raise ApiError(400, f"the prompt has {len(ids)} tokens; this server accepts at most {cfg.max_prompt_tokens}")
    return GenRequest(ids, adapter=expert, amateur=amateur, alpha=alpha, beta=beta, max_new_tokens=max_tokens)


def _usage(ids, job):
    return {"prompt_tokens": len(ids), "completion_tokens": len(job.tokens),
            "total_tokens": len(ids) + len(job.tokens)}


def _chunk(meta, kind, choice, usage=None):
    body = {**meta, "object": kind, "choices": [{"index": 0, **choice}]}
    if usage:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n"


def _final(meta, job, ids, chat):
    choice = {"index": 0, "finish_reason": job.finish_reason}
    if chat:
        choice["message"] = {"role": "assistant", "content": job.text}
    else:
        choice.update(text=job.text, logprobs=None)
    return {**meta, "object": "chat.completion" if chat else "text_completion", "choices": [choice],
            "usage": _usage(ids, job)}


def _log_request(body, ids, job, start):
    req = job.request
    log.info("model=%s amateur=%s alpha=%s beta=%s prompt_tokens=%d completion_tokens=%d finish=%s %.2fs",
             body.model, req.amateur, req.alpha, req.beta, len(ids), len(job.tokens), job.finish_reason,
             time.perf_counter() - start)
