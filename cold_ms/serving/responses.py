"""OpenAI response bodies: whole completions, server-sent chunks, usage, and the request log line."""
import json
import logging
import time
import uuid

log = logging.getLogger("cold_ms.serve")


def meta(model, chat):
    """The fields every body and chunk of one response shares."""
    return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}", "created": int(time.time()),
            "model": model}


def usage(job):
    prompt = len(job.request.prompt_ids)
    return {"prompt_tokens": prompt, "completion_tokens": len(job.tokens), "total_tokens": prompt + len(job.tokens)}


def final(head, job, chat):
    choice = {"index": 0, "finish_reason": job.finish_reason}
    if chat:
        choice["message"] = {"role": "assistant", "content": job.text}
    else:
        choice.update(text=job.text, logprobs=None)
    return {**head, "object": "chat.completion" if chat else "text_completion", "choices": [choice],
            "usage": usage(job)}


def chunk(head, chat, delta=None, finish_reason=None):
    """One server-sent event: a text delta, the opening role (chat), or the closing finish reason."""
    if chat:
        choice = {"delta": {} if delta is None else delta, "finish_reason": finish_reason}
    else:
        choice = {"text": (delta or {}).get("content", ""), "finish_reason": finish_reason}
    body = {**head, "object": "chat.completion.chunk" if chat else "text_completion",
            "choices": [{"index": 0, **choice}]}
    return f"data: {json.dumps(body)}\n\n"


def usage_chunk(head, chat, job):
    """stream_options.include_usage: the usage of the whole request, after the finish chunk, with
    no choices (as OpenAI sends it)."""
    body = {**head, "object": "chat.completion.chunk" if chat else "text_completion", "choices": [],
            "usage": usage(job)}
    return f"data: {json.dumps(body)}\n\n"


def log_request(job, model, start):
    req = job.request
    choice = "greedy" if req.amateur is None else f"amateur={req.amateur} alpha={req.alpha} beta={req.beta}"
    log.info("model=%s %s prompt_tokens=%d completion_tokens=%d finish=%s %.2fs", model, choice,
             len(req.prompt_ids), len(job.tokens), job.finish_reason, time.perf_counter() - start)
