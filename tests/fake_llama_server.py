#!/usr/bin/env python
"""A stand-in for llama.cpp's llama-server in `bench.py serve --peer` tests: it takes llama-server's
command line, answers /health and streams /v1/completions as llama-server does (one chunk per
token, usage in a final chunk), and appends its argv and every request body, as JSON lines, to
the file named by $FAKE_LLAMA_SERVER_LOG, so a test can check what the peer was asked to do."""
import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

p = argparse.ArgumentParser()
for flag in ("-m", "-t", "-tb", "--parallel", "-c", "--host", "--port"):
    p.add_argument(flag, required=True)
p.add_argument("--lora", action="append", default=[])
p.add_argument("--lora-init-without-apply", action="store_true")
args = p.parse_args()
LOG = os.environ["FAKE_LLAMA_SERVER_LOG"]


def record(entry):
    with open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        record({"body": body})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        n = body["max_tokens"]
        for i in range(n):
            self.wfile.write(f'data: {json.dumps({"choices": [{"text": f" t{i}", "index": 0}]})}\n\n'.encode())
        usage = {"prompt_tokens": len(body["prompt"].split()), "completion_tokens": n}
        self.wfile.write(f'data: {json.dumps({"choices": [], "usage": usage})}\n\ndata: [DONE]\n\n'.encode())


record({"argv": vars(args)})
ThreadingHTTPServer((args.host, int(args.port)), Handler).serve_forever()
