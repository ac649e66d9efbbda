"""cold_text_generation through mindformers.pipeline (real mindformers 1.9.0)."""
import json
import os
import subprocess
import sys

import pytest

import numpy_llama as ref
from cold_ms.errors import AdapterError, ColdError, InputError
from helpers import run_script
from test_mindformers_ckpt import write_mindformers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = "The quick brown fox"


@pytest.fixture(scope="module")
def mf():
    import mindformers
    return mindformers


def _cold_model(tiny):
    from cold_ms.pipeline.mindformers import ColdModel
    return ColdModel.from_pretrained(tiny["model_dir"], adapters=[f"qv={tiny['adapter_dir']['qv']}",
                                                                  f"all={tiny['adapter_dir']['all']}"])


def test_pipeline_matches_infer_py(mf, tiny, capsys):
    pipe = mf.pipeline(task="cold_text_generation", model=_cold_model(tiny), adapter="all", amateur="qv",
                       alpha=0.2, beta=1.0)
    got = pipe(TEXT, max_new_tokens=6)
    code, stdout, _ = run_script("infer", ["--model", tiny["model_dir"], "--adapter", f"qv={tiny['adapter_dir']['qv']}",
                                          "--adapter", f"all={tiny['adapter_dir']['all']}", "--expert", "all",
                                          "--amateur", "qv", "--alpha", "0.2", "--beta", "1.0",
                                          "--max-new-tokens", "6", "--prompt", TEXT, "--json"], capsys)
    assert code == 0
    out = json.loads(stdout)["outputs"][0]
    assert got == [{"text_generation_text": [pipe.tokenizer.decode(out["prompt_ids"] + out["token_ids"])]}]
    assert pipe.generate_ids([out["prompt_ids"]], max_new_tokens=6) == [out["token_ids"]]


def test_batched_inputs_equal_single_calls(mf, tiny):
    pipe = mf.pipeline(task="cold_text_generation", model=_cold_model(tiny), adapter="qv", alpha=0.1, beta=0.5)
    texts = ["The quick", "Paris is the capital", "Two plus three"]
    batch = pipe(texts, max_new_tokens=5)[0]["text_generation_text"]
    assert batch == [pipe(t, max_new_tokens=5)[0]["text_generation_text"][0] for t in texts]
    assert pipe(texts[0], max_length=12, do_sample=False, top_k=1)[0]["text_generation_text"][0] \
        == pipe(texts[0], max_new_tokens=12 - len(pipe.tokenizer.encode(texts[0])))[0]["text_generation_text"][0]


def test_mindformers_yaml_model_with_pet_lora(mf, tiny, tmp_path):
    """A MindFormers model directory: YAML model_config + pet_config, checkpoint with mindpet LoRA."""
    lora = tiny["adapters"]["qv"]
    weights = dict(tiny["weights"])
    for key, value in lora["tensors"].items():  # mindpet names: ...attention.wq.mindpet_delta_lora_a
        module = key.split("base_model.model.")[1].split(".lora_")[0] + ".weight"
        weights[module.replace(".weight", f".mindpet_delta_lora_{key.split('.lora_')[1][0].lower()}")] = value
    extra = {"pet_config": {"pet_type": "lora", "lora_rank": 4, "lora_alpha": 8,
                            "target_modules": ".*wq|.*wv"}}
    write_mindformers(str(tmp_path / "mf"), tiny["cfg"], weights, extra)
    pipe = mf.pipeline(task="cold_text_generation", model=str(tmp_path / "mf" / "predict_llama_tiny.yaml"),
                       tokenizer=_mf_tokenizer(tiny), adapter="pet", beta=0.0)
    prompt = pipe.tokenizer.encode(TEXT)
    want = ref.generate(tiny["cfg"], ref.effective_weights(tiny["weights"], lora), None, prompt, 5)
    assert pipe.generate_ids([prompt], max_new_tokens=5) == [want]


def _mf_tokenizer(tiny):
    from mindformers import LlamaTokenizer
    return LlamaTokenizer(vocab_file=os.path.join(tiny["model_dir"], "tokenizer.model"))


def test_mindformers_tokenizer_and_directory_model(mf, tiny):
    ours = mf.pipeline(task="cold_text_generation", model=tiny["model_dir"], beta=0.0)
    theirs = mf.pipeline(task="cold_text_generation", model=tiny["model_dir"], tokenizer=_mf_tokenizer(tiny),
                         beta=0.0)
    assert ours.tokenizer.encode(TEXT) == theirs.tokenizer.encode(TEXT)
    assert ours(TEXT, max_new_tokens=4) == theirs(TEXT, max_new_tokens=4)


def test_mindformers_config_object(mf):
    from mindformers import LlamaConfig
    from cold_ms.formats.mindformers_ckpt import mindformers_config
    obj = LlamaConfig(hidden_size=64, num_layers=2, num_heads=4, n_kv_heads=2, vocab_size=128,
                      intermediate_size=96, rms_norm_eps=1e-6, theta=500000.0)
    cfg = mindformers_config(obj)
    assert (cfg.hidden_size, cfg.num_kv_heads, cfg.intermediate_size, cfg.rope_theta) == (64, 2, 96, 500000.0)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"adapter": "nope"}, AdapterError, "unknown adapter 'nope'"),
    ({"adapter": "qv", "alpha": 0.0}, ColdError, r"alpha must be in \(0, 1\]"),
    ({"adapter": "qv", "do_sample": True}, InputError, "do_sample must be False"),
    ({"adapter": "qv", "temprature": 0.5}, InputError, r"unknown arguments \['temprature'\]"),
])
def test_bad_task_arguments(mf, tiny, kwargs, error, match):
    with pytest.raises(error, match=match):
        mf.pipeline(task="cold_text_generation", model=_cold_model(tiny), **kwargs)
    pipe = mf.pipeline(task="cold_text_generation", model=_cold_model(tiny), adapter="qv")
    with pytest.raises(InputError, match="inputs must be a string"):
        pipe(123)


def test_import_cold_ms_stays_light_registers_and_keeps_mindformers_logs_off_stdout(tiny):
    """`import cold_ms` imports no mindformers, and `import mindformers` then registers the task (one
    fresh process for both). MindFormers' warnings (~10 for one pipeline) went to stdout; now its
    terminal log is stderr, errors only."""
    code = ("import importlib, json, sys, cold_ms\nassert 'mindformers' not in sys.modules\nimport mindformers\n"
            "print('registered', 'cold_text_generation' in "
            "importlib.import_module('mindformers.pipeline.pipeline').SUPPORT_PIPELINES, flush=True)\n"
            f"pipe = mindformers.pipeline(task='cold_text_generation', model={tiny['model_dir']!r}, beta=0.0)\n"
            f"print(json.dumps(pipe({TEXT!r}, max_new_tokens=2)))\n"
            "from mindformers.tools.logger import logger\nlogger.error('an error stays visible')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env=dict(os.environ, GLOG_v="3"))
    assert out.returncode == 0, out.stderr
    assert "registered True\n" in out.stdout, out.stdout
    after_import = out.stdout.split("registered True\n", 1)[1].splitlines()
    assert len(after_import) == 1 and json.loads(after_import[0])[0]["text_generation_text"], out.stdout
    assert "an error stays visible" in out.stderr
    # nothing else on stderr: not the import-time "No module named 'hyper_parallel'" warnings, nor a
    # deprecation warning (issue 27, item 12)
    noise = [line for line in out.stderr.splitlines() if line.strip() and "an error stays visible" not in line]
    assert not noise, noise


def test_adapters_named_with_a_model_directory(mf, tiny):
    """model="DIR" with adapter/amateur as NAME=DIR or loaded through adapters=[...] gives what a
    ColdModel holding the same adapters gives."""
    specs = [f"qv={tiny['adapter_dir']['qv']}", f"all={tiny['adapter_dir']['all']}"]
    want = mf.pipeline(task="cold_text_generation", model=_cold_model(tiny), adapter="all", amateur="qv",
                       alpha=0.2, beta=1.0)(TEXT, max_new_tokens=4)
    by_dir = mf.pipeline(task="cold_text_generation", model=tiny["model_dir"], adapter=specs[1], amateur=specs[0],
                         alpha=0.2, beta=1.0)
    assert by_dir(TEXT, max_new_tokens=4) == want
    listed = mf.pipeline(task="cold_text_generation", model=tiny["model_dir"], adapters=specs, adapter="all",
                         amateur="qv", alpha=0.2, beta=1.0)
    assert listed(TEXT, max_new_tokens=4) == want
    assert listed(TEXT, max_new_tokens=4, adapter="qv", amateur="base") == \
        by_dir(TEXT, max_new_tokens=4, adapter="qv", amateur="base")


@pytest.mark.parametrize("kwargs,error,match", [
    ({"adapter": "nope"}, AdapterError, r"unknown adapter 'nope' \(loaded: none; shipped: arith, csqa, math; or give "
                                        r"NAME=DIR\)"),
    ({"adapter": "math"}, AdapterError, "trained for a different base model"),  # a shipped one, for SmolLM2
    ({"adapters": "qv"}, InputError, "adapters must be a list of NAME or NAME=DIR strings"),
    ({"adapter": 3}, InputError, r"an adapter is named by a string \(NAME or NAME=DIR\), got 3"),
])
def test_adapter_arguments_refused_clearly(mf, tiny, kwargs, error, match):
    with pytest.raises(error, match=match):
        mf.pipeline(task="cold_text_generation", model=tiny["model_dir"], **kwargs)
