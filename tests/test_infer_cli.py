"""scripts/infer.py end to end against the numpy reference: its main() in-process, and in fresh
processes where the process is what is tested (the compile cache, which a process meets once)."""
import json
import os
import subprocess
import sys

import pytest

import fixtures
import numpy_llama as ref
from helpers import run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFER = os.path.join(ROOT, "scripts", "infer.py")


def infer(*args, env=None):
    """infer.py --json's output; in a fresh process with `env`, else main() in-process."""
    if env is not None:
        out = subprocess.run([sys.executable, INFER, *args, "--json"], capture_output=True, text=True,
                             timeout=600, env=env)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    code, stdout, stderr = run_infer(*args, "--json")
    assert code == 0, stderr
    return json.loads(stdout)


def run_infer(*args):
    """(exit code, stdout, stderr) of infer.py's main(args), in-process (a fresh process adds ~3 s)."""
    return run_main("infer", args)


def _weights(tiny, name):
    return ref.effective_weights(tiny["weights"], tiny["adapters"].get(name))


@pytest.mark.parametrize("mode", ["graph", "pynative"])
def test_json_tokens_match_reference(tiny, mode):
    out = infer("--mode", mode, "--model", tiny["model_dir"], "--adapter", f"all={tiny['adapter_dir']['all']}",
                "--alpha", "0.2", "--beta", "1.0", "--max-new-tokens", "6", "--ignore-eos",
                "--prompt-ids", "1,5,7,9", "--prompt-ids", "1,20,30,31,32,33,34")
    want = [ref.generate(tiny["cfg"], _weights(tiny, "all"), _weights(tiny, None), p, 6, 0.2, 1.0)
            for p in ([1, 5, 7, 9], [1, 20, 30, 31, 32, 33, 34])]
    assert [o["token_ids"] for o in out["outputs"]] == want
    assert out["outputs"][0]["prompt_ids"] == [1, 5, 7, 9]
    assert set(out["timing"]) >= {"load_s", "compile_s", "decode_ms_median"}


def test_expert_and_amateur_adapters_with_text_prompt(tiny):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(tiny["model_dir"], "tokenizer.model"))
    prompt = [1] + sp.encode("What is the capital of France?")
    out = infer("--model", tiny["model_dir"], "--adapter", f"qv={tiny['adapter_dir']['qv']}",
                "--adapter", f"all={tiny['adapter_dir']['all']}", "--expert", "all", "--amateur", "qv",
                "--mask", "prob", "--max-new-tokens", "5", "--ignore-eos",
                "--prompt", "What is the capital of France?")
    o = out["outputs"][0]
    assert o["prompt_ids"] == prompt
    # no --alpha/--beta and no cold_config.json: the conservative 0.1, 0.1
    assert o["token_ids"] == ref.generate(tiny["cfg"], _weights(tiny, "all"), _weights(tiny, "qv"), prompt, 5, 0.1, 0.1)
    assert o["text"] == sp.decode([t for t in o["token_ids"] if t < sp.vocab_size()])  # padded vocab


def test_no_adapter_is_base_greedy(tiny):
    code, stdout, stderr = run_infer("--model", tiny["model_dir"], "--max-new-tokens", "5", "--ignore-eos",
                                     "--prompt-ids", "1,2,3", "--json")
    assert code == 0, stderr
    out = json.loads(stdout)
    assert out["outputs"][0]["token_ids"] == ref.generate(tiny["cfg"], _weights(tiny, None), None, [1, 2, 3], 5)
    assert "no expert adapter chosen, so this run decodes greedily with the base model" in stderr


def test_compile_cache_never_serves_a_stale_graph_nor_one_of_another_shape(tmp_path):
    """Fresh processes share one cache dir. One engine configuration with a prompt of another
    length (10 tokens, then 40: other graphs, engine.graphs_for) gets its own graphs; models that
    differ only in graph constants (rope_theta, then eps) run the same prompt, so the same graph
    list, and miss each other's graphs. Every run's tokens equal the numpy reference."""
    env = dict(os.environ, COLD_MS_CACHE=fixtures.cache_with_kernels(str(tmp_path / "cache")))
    short, long_ = [1] + list(range(5, 14)), [1] + list(range(5, 44))
    runs = [((10000.0, 1e-5), short), ((10000.0, 1e-5), long_), ((10.0, 1e-5), short), ((10.0, 0.5), short)]
    models = {}
    for theta, eps in dict.fromkeys(consts for consts, _ in runs):
        path = str(tmp_path / f"m{len(models)}")
        cfg = dict(fixtures.TINY, rope_theta=theta, rms_norm_eps=eps)
        models[theta, eps] = path, *fixtures.write_model(path, cfg=cfg)
    for consts, prompt in runs:
        path, cfg, w = models[consts]
        out = infer("--model", path, "--max-len", "128", "--max-new-tokens", "4", "--ignore-eos",
                    "--prompt-ids", ",".join(map(str, prompt)), env=env)
        want = ref.generate(cfg, ref.effective_weights(w), None, prompt, 4)
        assert out["outputs"][0]["token_ids"] == want, (consts, len(prompt))


def test_model_without_tokenizer_prints_the_ids(tmp_path):
    """Without --json and without a tokenizer the generated ids are the output."""
    cfg, w = fixtures.write_model(str(tmp_path / "m"))
    code, stdout, stderr = run_infer("--model", str(tmp_path / "m"), "--max-new-tokens", "5", "--ignore-eos",
                                     "--prompt-ids", "1,2,3")
    assert code == 0, stderr
    want = ref.generate(cfg, ref.effective_weights(w), None, [1, 2, 3], 5)
    assert stdout == ",".join(map(str, want)) + "\n"
