"""llama.cpp's own server as the peer of `bench.py serve`, on the same GGUF file.

It runs as llama.cpp's documentation and ours (README, "Serving") say: `-t`/`-tb` the machine's
cores, `--parallel` the clients of the run, `-c` 1024 positions a slot, on loopback. With
`--peer-loras` (GGUF LoRA files of the --models adapters, from llama.cpp's
convert_lora_to_gguf.py) each adapter is loaded unapplied and a request names its own
(`"lora": [{"id": k, "scale": 1}]`), which is how llama-server serves several adapters; without
them every request runs the base model. Its requests are greedy (`temperature` 0: the server's
default samples) and send `ignore_eos`, as ours do.
"""
import os

from cold_ms.errors import ConfigError
from cold_ms.formats.model import resolve_model

PEERS = ("llama-server",)


def check(peer, model, loras, models):
    """The GGUF file the peer serves, or a ConfigError naming what does not fit."""
    name, binary = peer
    if name not in PEERS:
        raise ConfigError(f"--peer {name!r}: the peers are {', '.join(PEERS)}")
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise ConfigError(f"--peer llama-server {binary!r}: not an executable file (README, Serving, builds it)")
    path = resolve_model(model)
    if not (os.path.isfile(path) and path.endswith(".gguf")):
        raise ConfigError(f"--peer needs a GGUF --model (llama-server reads only GGUF), got {path!r}")
    if loras and len(loras) != len(models or []):
        raise ConfigError(f"--peer-loras gives {len(loras)} files for {len(models or [])} --models adapters: "
                          "one GGUF LoRA per adapter, in the same order")
    for f in loras or []:
        if not os.path.isfile(f):
            raise ConfigError(f"--peer-loras: {f!r} does not exist")
    return path


def command(binary, gguf, port, clients, loras):
    """The llama-server command line of a run with `clients` concurrent clients."""
    cores = str(len(os.sched_getaffinity(0)))
    cmd = [binary, "-m", gguf, "-t", cores, "-tb", cores, "--parallel", str(clients), "-c", str(clients * 1024),
           "--host", "127.0.0.1", "--port", str(port)]
    if loras:
        cmd += ["--lora-init-without-apply"] + [a for f in loras for a in ("--lora", f)]
    return cmd


def body_maker(models, loras, prompt_tokens, max_tokens):
    """i -> the streamed /v1/completions body of request i for llama-server."""
    from cold_ms.bench.serve_client import prompt_text

    def body(i):
        b = {"prompt": prompt_text(i, prompt_tokens), "max_tokens": max_tokens, "stream": True,
             "stream_options": {"include_usage": True}, "ignore_eos": True, "temperature": 0}
        if loras:
            b["lora"] = [{"id": i % len(models), "scale": 1.0}]
        return b
    return body
