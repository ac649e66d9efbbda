"""Random requests for tools/fuzz_server.py: (path, content, headers), reproducible from a seed.

Kinds: plausible OpenAI bodies (as clients send them, streaming or not), the same with a few
fields replaced by random JSON or removed or misspelt, random JSON documents, broken bytes
(truncated, invalid UTF-8, deep nesting, NaN literals), bodies over the size limit (declared
or chunked), and missing or wrong keys and content types.
"""
import collections
import json
import random

PATHS = ("/v1/completions", "/v1/chat/completions")
FIELDS = ("model", "prompt", "messages", "max_tokens", "max_completion_tokens", "stop", "stream", "stream_options",
          "alpha", "beta", "amateur", "temperature", "top_p", "n", "seed", "user", "logprobs", "logit_bias",
          "presence_penalty", "response_format", "tools", "echo", "best_of", "role", "content")
SAMPLES = ["", " ", "hi", "What is 12 + 30?", "The quick brown fox", "\u0000", "\u2028\u2029", "e\u0301",
           "\U0001F469\u200D\U0001F469\u200D\U0001F467", "日本語のテキスト", "مرحبا بالعالم", "\ud800", "x\udfffy",
           "\\", "\"", "<|im_start|>system", "<|im_end|>", "</s>", "<s>", "{{ raise_exception('x') }}", "{% if %}",
           "\x7f\x1b[31m", "\ufeff", "\U0010FFFF", "a" * 300, "\t\n\r"]
LIMIT = 65536  # the --max-body-bytes fuzz_server.py starts the server with


class Bodies:
    def __init__(self, seed, models, key):
        self.rng, self.models, self.kinds = random.Random(seed), models, collections.Counter()
        self.auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def next(self):
        kind = self.rng.choices(["plausible", "mutated", "random json", "bytes", "oversize", "headers"],
                                [45, 25, 10, 10, 5, 5])[0]
        self.kinds[kind] += 1
        path = self.rng.choice(PATHS)
        if kind in ("plausible", "mutated", "headers"):
            body = self.plausible(path)
            if kind == "mutated":
                self.mutate(body)
            content = json.dumps(body).encode()  # ASCII: lone surrogates travel as \ud800
            return path, content, self.headers() if kind == "headers" else self.auth
        if kind == "random json":
            return path, json.dumps(self.value(0)).encode(), self.auth
        return path, (self.broken_bytes() if kind == "bytes" else self.oversize()), self.auth

    # ---- plausible bodies ---------------------------------------------------------------
    def plausible(self, path):
        r = self.rng
        body = {"model": r.choice(self.models + ["base"]) if r.random() < 0.95 else "nope",
                "max_tokens": r.randint(1, 12)}
        if path.endswith("chat/completions"):
            body["messages"] = [self.message() for _ in range(r.randint(1, 3))]
        else:
            body["prompt"] = r.choice([self.text(), [r.randint(0, 90) for _ in range(r.randint(0, 12))],
                                       [self.text()], [r.randint(-5, 200)]])
        rare = lambda good, bad: good() if r.random() < 0.9 else bad  # noqa: E731 - mostly valid values
        optional = {"alpha": lambda: rare(lambda: r.uniform(0.01, 1), r.choice([0, 1.5])),
                    "beta": lambda: rare(lambda: r.choice([0, 0.25, 0.5, 1, 2]), -1),
                    "amateur": lambda: r.choice(["base"] + self.models),
                    "stop": lambda: r.choice([self.text(4), [self.text(3) for _ in range(r.randint(0, 5))]]),
                    "stream": lambda: r.random() < 0.5, "stream_options": lambda: {"include_usage": r.random() < 0.5},
                    "temperature": lambda: rare(lambda: 0, r.choice([0.7, 1])), "top_p": lambda: r.uniform(0, 1),
                    "n": lambda: rare(lambda: 1, 2), "seed": lambda: r.randint(0, 1 << 40), "user": self.text,
                    "max_completion_tokens": lambda: r.randint(1, 30)}
        for name, make in optional.items():
            if r.random() < 0.25 and not (name == "max_completion_tokens" and "prompt" in body):
                body[name] = make()
        return body

    def message(self):
        r = self.rng
        role = r.choices(["user", "system", "assistant", "developer", "wizard", "tool"], [60, 15, 15, 6, 2, 2])[0]
        content = r.choices([self.text(), None, [{"type": "text", "text": self.text()} for _ in range(r.randint(0, 3))],
                             [{"type": "image_url", "image_url": {"url": "http://x"}}]], [80, 4, 14, 2])[0]
        return {"role": role, "content": content}

    def mutate(self, body):
        r = self.rng
        for _ in range(r.randint(1, 3)):
            action = r.choice(["replace", "remove", "add"])
            if action == "replace" or not body:
                body[r.choice(FIELDS)] = self.value(1)
            elif action == "remove":
                body.pop(r.choice(list(body)))
            else:
                body[self.text(8) or "x"] = self.value(1)

    # ---- values ---------------------------------------------------------------------------
    def text(self, longest=40):
        r = self.rng
        if r.random() < 0.4:
            return r.choice(SAMPLES)[:max(longest, 1) * 8]
        ranges = [(0x20, 0x7E), (0x00, 0x1F), (0xA0, 0x2FF), (0x400, 0x4FF), (0x4E00, 0x4FFF), (0xD800, 0xDFFF),
                  (0x1F300, 0x1F6FF), (0x10000, 0x10FFFF)]
        lo, hi = r.choice(ranges)
        return "".join(chr(r.randint(lo, hi)) for _ in range(r.randint(0, longest)))

    def value(self, depth):
        r = self.rng
        kinds = ["null", "bool", "int", "big", "float", "special", "text"] + (["list", "dict"] if depth < 4 else [])
        kind = r.choice(kinds)
        if kind == "list":
            return [self.value(depth + 1) for _ in range(r.randint(0, 4))]
        if kind == "dict":
            keys = [r.choice(FIELDS + ("type", "text", "include_usage")) if r.random() < 0.7 else self.text(6)
                    for _ in range(r.randint(0, 4))]
            return {k: self.value(depth + 1) for k in keys}
        return {"null": None, "bool": r.random() < 0.5, "int": r.randint(-3, 100), "big": r.choice([1, -1]) * 10 ** 30,
                "float": r.uniform(-2, 2), "special": r.choice([float("nan"), float("inf"), -float("inf"), 1e308,
                                                                 -0.0, 5e-324]),
                "text": self.text()}[kind]

    # ---- not JSON, too big, wrong headers --------------------------------------------------
    def broken_bytes(self):
        r = self.rng
        valid = json.dumps({"model": r.choice(self.models), "prompt": "hi", "max_tokens": 3}).encode()
        return r.choice([valid[:r.randint(0, len(valid) - 1)], b"\xff\xfe" + valid, valid.replace(b"hi", b"\xc3\x28"),
                         b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000, b"", b"null", b"\x00" * 64,
                         b'{"model": "x", "prompt": "hi", "beta": NaN, "alpha": Infinity}', b'{"prompt": 1e999999}',
                         bytes(r.randrange(256) for _ in range(r.randint(1, 200)))])

    def oversize(self):
        r = self.rng
        if r.random() < 0.5:
            return json.dumps({"model": "base", "prompt": "x" * (LIMIT + r.randint(1, 3 * LIMIT))}).encode()

        chunks = r.randint(2, 40)

        async def chunked():  # no Content-Length: only counting finds the size
            for _ in range(chunks):
                yield b"y" * 16384
        return chunked

    def headers(self):
        r = self.rng
        return r.choice([{"Content-Type": "application/json"}, {**self.auth, "Authorization": "Bearer wrong"},
                         {**self.auth, "Authorization": "bearer " + self.auth["Authorization"][7:]},
                         {"Authorization": self.auth["Authorization"], "Content-Type": "text/plain"},
                         {"Authorization": self.auth["Authorization"]}])
