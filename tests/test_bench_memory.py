"""`bench.py memory`: the allocation plan's bytes on the tiny fixture's shape against bytes counted
by hand, LLaMA-2-7B's published parameter count for random:7b, and the sub-command run as the
README documents it."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from cold_ms.bench import memory, random_model
from cold_ms.config import LORA_TARGETS, LoraLayout, ModelConfig
from fixtures import TINY
from helpers import run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "scripts", "bench.py")

# By hand for TINY (V 96, d 32, f 48, 2 layers, 4 heads, 2 kv heads, head_dim 8, untied), bf16,
# S = 2 slots (4 cache / token rows), max_len 16, K = 3 adapters of rank 4 on all 7 targets:
PARAMS = 96 * 32 * 2 + 2 * (32 * 32 * 2 + 32 * 16 * 2 + 32 * 48 * 3 + 2 * 32) + 32  # 21664
WEIGHTS = PARAMS * 2                                                                 # 43328
KV = 2 * 2 * 4 * 2 * 16 * 8 * 2       # k and v, layers, rows, kv heads, max_len, head_dim, bytes
ADAPTER = 2 * 4 * ((32 + 32) * 2 + (32 + 16) * 2 + (32 + 48) * 3)  # elements a slot: 3712
ADAPTERS = 3 * ADAPTER * 2
WORKSPACE = 4 * (96 * 4 + 4 * 16 * 4 + 2 * 48 * 2 + (32 + 8 * 8) * 2)  # logits, scores, mlp, h+qkv
STREAMED = (PARAMS - 96 * 32) * 2     # every weight but the embedding table, of which 4 rows:
GATHERED = 4 * 32 * 2


def _plans(**kw):
    cfg = ModelConfig.from_hf(dict(TINY))
    layout = LoraLayout(kw.get("adapters", 3), 4, LORA_TARGETS, "bfloat16")
    return memory.plans(cfg, layout, kw.get("slots", 2), 16)


def test_the_plan_of_the_tiny_shape_is_the_hand_count():
    cold, two = _plans()["cold"], _plans()["two_models"]
    assert (cold.weights, cold.kv_cache, cold.adapters, cold.workspace) == (WEIGHTS, KV, ADAPTERS, WORKSPACE)
    assert (two.weights, two.kv_cache, two.adapters, two.workspace) == (2 * WEIGHTS, KV, 0, WORKSPACE)
    assert cold.total == 43328 + 8192 + 22272 + 4096 and two.total == 2 * 43328 + 8192 + 4096
    # a step reads the streamed weights, the gathered rows, the whole cache and the adapters in
    # use: 3 here (K = 3 < 4 rows)
    assert cold.read_per_step == STREAMED + GATHERED + KV + 3 * ADAPTER * 2 == 67904
    assert two.read_per_step == 2 * STREAMED + GATHERED + KV == 82816


def test_adapters_read_are_bounded_by_the_rows():
    # K = 9 stacked, but 2 slots have only 4 rows: at most 4 adapters are read in a step
    cold = _plans(adapters=9)["cold"]
    assert cold.adapters == 9 * ADAPTER * 2 and cold.read_per_step == STREAMED + GATHERED + KV + 4 * ADAPTER * 2


def test_random_7b_is_llama2_7b_and_needs_no_weights():
    cfg = ModelConfig.from_hf(dict(random_model.SIZES["7b"]))
    assert cfg.num_params == 6_738_415_616  # LLaMA-2-7B's published count
    assert memory.plans(cfg, LoraLayout(0, 16, LORA_TARGETS, "bfloat16"), 1, 4096)["cold"].weights == 2 * cfg.num_params


def _bench(*args, fresh=False):
    """`bench.py memory ARGS`: in a fresh process as a user runs it with `fresh`, else its main()
    in-process (a fresh process adds ~2 s)."""
    if fresh:
        return subprocess.run([sys.executable, BENCH, "memory", *args], capture_output=True, text=True, timeout=120)
    code, stdout, stderr = run_main("bench", ["memory", *args])
    return SimpleNamespace(returncode=code, stdout=stdout, stderr=stderr)


def test_the_readme_command_prints_the_readme_table():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    command = next(line.strip() for line in readme.splitlines() if "scripts/bench.py memory" in line)
    out = _bench(*command.split()[3:], fresh=True)
    assert out.returncode == 0, out.stderr
    for row in ("weights", "kv_cache", "adapters", "workspace", "total", "paper (LLaMA-2-7B, 16-bit)",
                "read per step at max_len", "ms/step floor"):
        assert row in out.stdout
    assert "13.477" in out.stdout and "26.954" in out.stdout  # 6.74e9 parameters x 2 bytes, once / twice
    assert all("    " + line in readme for line in out.stdout.splitlines())  # the table as printed


def test_the_command_on_a_model_directory_matches_the_hand_count(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    out = _bench("--model", str(tmp_path), "--slots", "2", "--max-len", "16", "--adapters", "3", "--rank", "4",
                 "--json", "--hbm-gbps", "100")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["cold"]["total"] == WEIGHTS + KV + ADAPTERS + WORKSPACE and got["two_models"]["adapters"] == 0


@pytest.mark.parametrize("args,message", [
    (("--slots", "0"), "--slots must be positive"),
    (("--model", "random:70b"), "SIZE must be one of"),
    (("--model", "/nonexistent"), "neither random:SIZE nor a directory"),
    (("--hbm-gbps", "-1"), "--hbm-gbps must be >= 0"),
])
def test_bad_arguments_are_named(args, message):
    out = _bench(*args)
    assert out.returncode != 0 and message in out.stderr and "Traceback" not in out.stderr
