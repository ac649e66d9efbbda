"""16-bit KV caches (Engine(kv_dtype=...), --kv-dtype): the layer kernel writes k, v rounded to
nearest even and attends over them in float32. Checked against numpy: the written rows bit for bit
against numpy's own rounding, logits and tokens against the numpy twin whose keys and values are
rounded as the cache holds them (tests/numpy_llama.py)."""
import functools

import numpy as np
import pytest
from mindspore import Tensor

import numpy_llama as ref
from cold_ms.errors import ConfigError
from cold_ms.pipeline.batching import Request
from guarded_layer import layer_operands, layer_step
from helpers import all_logits, engine_for, run_script

HALVES = ("float16", "bfloat16")
PROMPTS = [[1, 5, 7, 9], [1, 33, 60, 61, 62, 63, 64, 65, 70, 71, 2, 90]]
# Logits of the tiny model against the rounded twin: the float32 kernels' own error (test_model_parity:
# 5e-5); measured 4e-6, while against the exact twin the rounding moves them 1e-2 (fp16) to 4e-2 (bf16).
TOL = 1e-4


def as_cache(array, dtype):
    """A float32 array in the cache's storage: float16, or bfloat16 bits as uint16."""
    if dtype == "float16":
        return array.astype(np.float16)
    return (ref.round_to(array, "bfloat16").astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def cache_values(array):
    return array.astype(np.float64) if array.dtype != np.uint16 else \
        (array.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def chunk_operands(hd=64):
    """Two rows of three tokens each into a two-row cache (one kv head of hd, 41 positions): row 0
    writes cache row 1 at 10..12, row 1 cache row 0 at 38..40."""
    ops = layer_operands(hd, 40)
    rng = np.random.default_rng(5)
    f = lambda *shape: (rng.standard_normal(shape) * 0.5).astype(np.float32)  # noqa: E731
    dim = ops["h"].shape[2]
    ops.update(h=f(2, 3, dim), cos=f(2, 3, hd), sin=f(2, 3, hd), k_cache=f(82, hd), v_cache=f(82, hd),
               pos=np.array([[10, 11, 12], [38, 39, 40]], np.int32), crow=np.array([1, 0], np.int32),
               idx=np.array([-1, -1], np.int32), out=np.zeros((2, 3, dim), np.float32))
    return ops


@pytest.mark.parametrize("march", ["native", "haswell"])
@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("hd", [64, 72, 256])  # LLaMA's unrolled path, a partial vector, Gemma's 256
def test_the_kernel_writes_rows_rounded_to_nearest_even(dtype, march, hd):
    """The same prompt chunk over a float32 cache and a 16-bit one holding the same old values: the new
    rows are numpy's rounding of the float32 run's rows (bit for bit), the old ones are untouched, and
    the outputs differ by no more than the rounding of k and v moves them (AVX-512 and AVX2 builds)."""
    ops = chunk_operands(hd)
    old = {name: ref.round_to(ops[name], dtype).astype(np.float32) for name in ("k_cache", "v_cache")}
    exact = dict(ops, **{name: a.copy() for name, a in old.items()})
    want = layer_step(exact, march)
    half = dict(ops, **{name: as_cache(a, dtype) for name, a in old.items()})
    got = layer_step(half, march)
    written = np.zeros(82, bool)
    written[[51, 52, 53, 38, 39, 40]] = True  # cache row 1 at 10..12, cache row 0 at 38..40
    for name in ("k_cache", "v_cache"):
        assert np.array_equal(half[name][written], as_cache(exact[name][written], dtype))
        assert np.array_equal(cache_values(half[name][~written]), old[name][~written])
        assert not np.array_equal(cache_values(half[name][written]), exact[name][written])  # it did round
    assert np.abs(got - want).max() < (2e-3 if dtype == "float16" else 2e-2) * np.abs(want).max()


def test_avx2_and_avx512_builds_read_a_half_cache_alike():
    ops = chunk_operands()
    runs = [layer_step(dict(ops, k_cache=as_cache(ops["k_cache"], "float16"),
                            v_cache=as_cache(ops["v_cache"], "float16")), march) for march in ("native", "haswell")]
    assert np.abs(runs[0] - runs[1]).max() < 1e-5


def test_caches_of_two_dtypes_are_refused():
    ops = chunk_operands()
    with pytest.raises(RuntimeError, match="LayerStep failed"):
        layer_step(dict(ops, k_cache=as_cache(ops["k_cache"], "float16")))


@pytest.mark.parametrize("dtype", HALVES)
def test_logits_match_the_numpy_twin_over_a_rounded_cache(tiny, dtype):
    eng = engine_for(tiny, kv_dtype=dtype)
    assert str(eng.lm.model.layers[0].self_attn.cache.k_cache.dtype).lower() == dtype
    tokens = PROMPTS[1]
    got = all_logits(eng, tokens, -1)
    rounded = np.abs(got - ref.forward(tiny["weights"], tiny["cfg"], tokens, kv_dtype=dtype)).max()
    unrounded = np.abs(got - ref.forward(tiny["weights"], tiny["cfg"], tokens)).max()
    assert rounded < TOL and unrounded > 100 * rounded, (rounded, unrounded)


@pytest.mark.parametrize("dtype", HALVES)
def test_decode_tokens_equal_the_numpy_twin(tiny, dtype):
    """Greedy and CoLD decode (prompt chunks, then one token a step) over a 16-bit cache."""
    eng = engine_for(tiny, ("all",), slots=2, kv_dtype=dtype)
    w = lambda name: ref.effective_weights(tiny["weights"], tiny["adapters"].get(name))  # noqa: E731
    twin = functools.partial(ref.forward, kv_dtype=dtype)
    for amateur in ("base", None):
        reqs = [Request(p, adapter="all", amateur=amateur, alpha=0.1, beta=0.5, max_new_tokens=8, ignore_eos=True)
                for p in PROMPTS]
        want = [ref.generate(tiny["cfg"], w("all"), None if amateur is None else w(None), p, 8, forward=twin)
                for p in PROMPTS]
        assert [r.token_ids for r in eng.generate(reqs)] == want


def test_the_cells_path_and_unknown_dtypes_are_refused(tiny):
    with pytest.raises(ConfigError, match="CPU layer kernels"):
        engine_for(tiny, lora_backend="gather", kv_dtype="float16")
    with pytest.raises(ConfigError, match="KV cache dtype must be one of float32, float16, bfloat16, got 'int8'"):
        engine_for(tiny, kv_dtype="int8")


def test_infer_cli_kv_dtype(tiny, capsys):
    """--kv-dtype on infer.py gives the twin's tokens; a bad value is a one-line usage error
    (main() in-process: the fresh process's exit code 2 path is test_errors.py's)."""
    import json
    code, out, err = run_script("infer", ["--model", tiny["model_dir"], "--kv-dtype", "bfloat16", "--max-new-tokens",
                                          "5", "--ignore-eos", "--prompt-ids", "1,2,3", "--json"], capsys)
    assert code == 0, err
    twin = functools.partial(ref.forward, kv_dtype="bfloat16")
    want = ref.generate(tiny["cfg"], ref.effective_weights(tiny["weights"]), None, [1, 2, 3], 5, forward=twin)
    assert json.loads(out)["outputs"][0]["token_ids"] == want
    assert "bfloat16 KV cache" in err
    code, _, err = run_script("infer", ["--model", tiny["model_dir"], "--kv-dtype", "float8", "--prompt-ids", "1"],
                              capsys)
    assert code == 2 and "Traceback" not in err
    assert "argument --kv-dtype: invalid choice: 'float8'" in err.strip().splitlines()[-1]


@pytest.mark.parametrize("script", ["serve", "eval"])
def test_every_engine_entry_takes_kv_dtype(script, capsys):
    """serve.py and eval.py share the engine options (pipeline/options.py) with infer.py."""
    code, out, _ = run_script(script, ["--help"], capsys)
    assert code == 0 and "--kv-dtype {float32,float16,bfloat16}" in out


def test_bench_e2e_long_prompt_and_kv_dtypes(tmp_path):
    """`bench.py e2e --prompt-tokens N --kv-dtypes ...`: every variant with every cache dtype, the
    prompt exactly N tokens (what the README's long-context numbers were measured with)."""
    import json
    from helpers import script
    out = tmp_path / "e2e.json"
    script("bench").main(["e2e", "--model", "random:tiny", "--batches", "1", "--steps", "2", "--rounds", "1",
                          "--variants", "greedy,cold", "--kv-dtypes", "float32", "bfloat16", "--prompt-tokens", "150",
                          "--json", str(out)])
    rows = json.loads(out.read_text())["e2e"]
    assert sorted((r["variant"], r["kv_dtype"]) for r in rows) == [
        ("cold", "bfloat16"), ("cold", "float32"), ("greedy", "bfloat16"), ("greedy", "float32")]
    assert "| cold / greedy (auto, bfloat16 KV) |" in out.with_suffix(".md").read_text()


def test_bench_prompt_of_a_given_length(embedded_model):
    from cold_ms.bench.e2e import bench_prompt
    from cold_ms.formats.model import resolve_model
    model = embedded_model  # the session's; the package name "smollm2" names the same file
    assert resolve_model("smollm2") == model.source
    prompt = bench_prompt(model, 850)
    assert len(prompt) == 850 and prompt == bench_prompt(model, 850)
    assert "river" in model.tokenizer.decode(prompt)


def test_embedded_model_greedy_tokens_equal_the_float32_caches(embedded_model):
    """SmolLM2-135M Q4_1: greedy tokens over a 16-bit cache equal the float32 cache's (measured here: 64
    tokens of 4 chat prompts identical for both; a divergence would have to be argued a near-tie)."""
    from cold_ms.formats.chat import chat_prompt_ids
    from cold_ms.pipeline.engine import Engine
    model = embedded_model
    prompts = [chat_prompt_ids(model.tokenizer, [{"role": "user", "content": q}])
               for q in ("What is the capital of France?", "Write a short poem about the sea.")]
    runs = {}
    for kv in ("float32",) + HALVES:
        # steps of 2 rows (the decode step's): one step graph to compile per engine, not two
        eng = Engine(model, slots=2, max_len=128, contrastive=False, kv_dtype=kv, max_step_tokens=2)
        runs[kv] = [r.token_ids for r in eng.generate([Request(p, amateur=None, max_new_tokens=32, ignore_eos=True)
                                                       for p in prompts])]
    assert runs["float16"] == runs["float32"] and runs["bfloat16"] == runs["float32"]


def test_the_mindformers_pipeline_passes_kv_dtype_on(tiny):
    from cold_ms.pipeline.mindformers import ColdModel, ColdTextGenerationPipeline
    pipe = ColdTextGenerationPipeline(ColdModel.from_pretrained(tiny["model_dir"]), kv_dtype="bfloat16")
    eng = pipe._engine(1, False, 64)
    assert eng.kv_dtype == "bfloat16" and str(eng.lm.model.layers[0].self_attn.cache.v_cache.dtype) == "BFloat16"
