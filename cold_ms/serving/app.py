"""The HTTP API (FastAPI): OpenAI-style completions and chat with CoLD, models, health, metrics.

The model loads and the graphs compile in a background thread at start-up; until then
GET /health answers 503 and the API 503, after that /health answers {"health": "true"}
(the ModelArts health-check convention). A failed start-up is handed to `on_failure`
(scripts/serve.py stops the server and exits non-zero).
"""
import asyncio
import logging
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from cold_ms.errors import ColdError
from cold_ms import adapter_defaults
from cold_ms.serving import errors, responses
from cold_ms.serving.auth import ApiKey
from cold_ms.serving.batcher import Batcher, QueueFull
from cold_ms.serving.errors import ApiError
from cold_ms.serving.limits import BodyLimit
from cold_ms.serving.metrics import Metrics
from cold_ms.serving.adapter_routes import LiveDefaults, LiveNames, add_adapter_routes
from cold_ms.serving.requests import Served, engine_request
from cold_ms.serving.schemas import ChatRequest, CompletionRequest

log = logging.getLogger("cold_ms.serve")


@dataclass
class ServerConfig:
    max_body_bytes: int = 1 << 20
    max_tokens_limit: int = 512
    default_max_tokens: int = 64
    default_alpha: Optional[float] = None  # None: each adapter's own (cold_ms.adapter_defaults)
    default_beta: Optional[float] = None
    max_queue: int = 64
    retry_after_s: int = 2
    api_key: Optional[str] = None
    chat_template: Optional[str] = None
    runtime_adapters_dir: Optional[str] = None  # set: the load/unload routes serve adapters from inside it


class Runtime:
    """The server behind the routes: what the build thread produces (what requests are judged
    against, the batcher), and the generation of one response."""

    def __init__(self, build, cfg, on_failure):
        self.build, self.cfg, self.on_failure = build, cfg, on_failure
        self.served = self.batcher = self.error = None
        self.metrics = Metrics()

    def start(self):
        """Load and compile (in a background thread); a failure goes to on_failure, else the log."""
        try:
            model, engine = self.build()
            self.served = Served(model.tokenizer, model.config.name, LiveNames(engine.adapters),
                                 model.config.vocab_size, engine.max_len, self.cfg.chat_template,
                                 LiveDefaults(engine.adapters))
            self.batcher = Batcher(engine, model.tokenizer, self.cfg.max_queue, self.metrics)
        except Exception as e:  # noqa: BLE001 - reported once, by on_failure or the log
            self.error = e
            (self.on_failure or (lambda err: log.error("start-up failed: %s", err)))(e)

    def ready(self):
        if self.error is not None:
            raise ApiError(503, f"the model failed to load: {self.error}", "model_failed")
        if self.batcher is None:
            raise ApiError(503, "the model is still loading and compiling", "model_loading")
        return self

    async def serve(self, body, request, chat):
        """One completion: queued, generated, streamed or returned whole; cancelled if the client leaves."""
        served, cfg = self.ready().served, self.cfg
        # tokenizing a long prompt takes a while: off the event loop
        gen, stops = await asyncio.to_thread(engine_request, served, body, cfg, chat)
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()

        def push(job, delta, reason):  # called from the batcher's thread
            if not loop.is_closed():
                loop.call_soon_threadsafe(queue.put_nowait, (delta, reason))
        try:
            job = self.batcher.submit(gen, stops, push)
        except QueueFull as e:
            self.metrics.rejected.labels(reason="queue_full").inc()
            raise ApiError(429, f"server busy ({e}); retry after {cfg.retry_after_s}s", "rate_limit_exceeded",
                           headers={"Retry-After": str(cfg.retry_after_s)}) from None
        except ColdError as e:  # engine_request checks everything first; this is the engine's backstop
            raise ApiError(400, str(e), "invalid_value") from None
        head, start = responses.meta(body.model, chat), time.perf_counter()
        if body.stream:
            return StreamingResponse(self._sse(job, queue, head, chat, body, start), media_type="text/event-stream")
        if not await _finished_before_disconnect(queue, request):
            self.batcher.cancel(job)
            responses.log_request(job, body.model, start)
            return Response(status_code=499)  # nobody reads it: the client is gone
        responses.log_request(job, body.model, start)
        if job.finish_reason == "error":
            raise ApiError(500, "generation failed", "generation_failed")
        return responses.final(head, job, chat)

    async def _sse(self, job, queue, head, chat, body, start):
        include = body.stream_options is not None and body.stream_options.include_usage
        head = {**head, "usage": None} if include else head  # as OpenAI: null on every chunk but the last
        try:
            if chat:
                yield responses.chunk(head, chat, {"role": "assistant", "content": ""})
            while True:
                delta, reason = await queue.get()
                if not reason:  # a token: its chunk, with or without text (Batcher._deliver)
                    yield responses.chunk(head, chat, {"content": delta})
                else:
                    yield responses.chunk(head, chat, None, job.finish_reason)
                    if include:
                        yield responses.usage_chunk(head, chat, job)
                    yield "data: [DONE]\n\n"
                    break
        finally:
            self.batcher.cancel(job)  # a no-op for a finished job; else the client went away
            responses.log_request(job, body.model, start)


def create_app(build, cfg: ServerConfig, on_failure=None):
    """build() -> (LoadedModel, Engine), called once in a background thread; on_failure(error)
    is called there if it raises (default: the error is logged and every request gets 503)."""
    rt = Runtime(build, cfg, on_failure)

    @asynccontextmanager
    async def lifespan(_):
        threading.Thread(target=rt.start, name="cold-build", daemon=True).start()
        yield
        if rt.batcher:
            rt.batcher.close()

    app = FastAPI(title="cold_ms", version="0.1.0", lifespan=lifespan)
    errors.install(app)
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)
    if cfg.api_key:
        app.add_middleware(ApiKey, key=cfg.api_key)  # added last: runs first, before the body is read

    @app.get("/health")
    async def health():
        if rt.batcher is None:
            return JSONResponse({"health": "false"}, 503)
        return {"health": "true"}

    @app.get("/metrics")
    async def prometheus():
        text = rt.metrics.render(rt.batcher and rt.batcher.scheduler)
        return Response(text, media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        served = rt.ready().served
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "cold_ms",
                                            "root": served.base_id, **_defaults(served, n)}
                                           for n in served.model_ids()]}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        return await rt.serve(body, request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        return await rt.serve(body, request, chat=True)

    if cfg.runtime_adapters_dir:
        add_adapter_routes(app, lambda: rt.ready().batcher.scheduler.engine.adapters, cfg.runtime_adapters_dir)

    return app


def _defaults(served, name):
    """An adapter's entry in /v1/models carries the CoLD settings a request to it gets unless it says."""
    if name not in served.adapters:
        return {}
    own = served.defaults(name)
    return {"cold_defaults": {k: own[k] for k in adapter_defaults.KEYS} | {"source": own.get("source", "")}}


async def _finished_before_disconnect(queue, request):
    """True once the job ends, False as soon as the client disconnects (a non-streaming
    client's only sign of leaving is its closed connection, so it is watched the whole time)."""
    async def finished():
        while not (await queue.get())[1]:
            pass

    async def disconnected():
        while (await request.receive())["type"] != "http.disconnect":
            pass
    waits = [asyncio.ensure_future(finished()), asyncio.ensure_future(disconnected())]
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return waits[0] in done
