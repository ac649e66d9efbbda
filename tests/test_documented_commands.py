"""Every script's --help and every `bench.py` sub-command at its smallest size run, so a move
of the code cannot silently break a documented command again (issue 27, item 4)."""
import json
import math
import os

import pytest

from helpers import script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(f for f in os.listdir(os.path.join(ROOT, "scripts")) if f.endswith(".py"))


@pytest.mark.parametrize("name", [f[:-3] for f in SCRIPTS])
def test_every_script_has_help(name, capsys):
    with pytest.raises(SystemExit) as info:
        script(name).main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "--help" in out


def test_bench_help_lists_every_sub_command(capsys):
    bench = script("bench")
    with pytest.raises(SystemExit):
        bench.main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in bench.COMMANDS)


def test_bench_bgmv_smallest(tmp_path, capsys):
    out = tmp_path / "bgmv.json"
    script("bench").main(["bgmv", "--hidden", "64", "--ranks", "8", "--batches", "2", "--adapters", "2",
                          "--calls", "2", "--json", str(out)])
    [row] = json.loads(out.read_text())["bgmv"]
    assert (row["hidden"], row["rank"], row["batch"], row["adapters"]) == (64, 8, 2, 2)
    # at this size the times are noise around zero; the point is that both backends ran
    assert all(math.isfinite(row[k]) for k in ("custom_ms", "gather_ms", "custom_peak_mb", "gather_peak_mb"))
    assert "speed-up" in capsys.readouterr().out


def test_bench_decode_smallest(capsys):
    script("bench").main(["decode", "--size", "tiny", "--batch", "1", "--steps", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[2:]] == [["greedy", "1"], ["cold", "1"]]


def test_bench_e2e_smallest(tmp_path, capsys):
    out = tmp_path / "e2e.json"
    script("bench").main(["e2e", "--model", "random:tiny", "--batches", "1", "--steps", "2", "--rounds", "1",
                          "--variants", "greedy,cold", "--json", str(out)])
    rows = json.loads(out.read_text())["e2e"]
    assert sorted(r["variant"] for r in rows) == ["cold", "greedy"]


def test_bench_train_smallest(tiny, tmp_path, capsys):
    """Our step and (where torch, transformers and peft are installed) PEFT's on the same tiny batch; the
    step-0 losses agree (B = 0: both the base model's loss), the test of the peer's set-up itself:
    tests/test_bench_train.py."""
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {a} plus {a}?", "answer": f"#### {2 * a}"}) + "\n"
                            for a in range(3)))
    out = tmp_path / "train.json"
    script("bench").main(["train", "--model", tiny["model_dir"], "--task", f"jsonl:{data}", "--chat-template",
                          "chatml", "--batch", "2", "--rank", "4", "--steps", "2", "--rounds", "1", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["sides"][0]["side"] == "cold_ms" and result["sides"][0]["steps"] == 2
    assert (result["batch"]["rows"], result["config"]["rank"]) == (2, 4)
    if len(result["sides"]) == 2:
        assert result["loss_step0_abs_diff"] < 1e-4 and result["ratio_ours_to_peft"] > 0
    assert "ms/step" in capsys.readouterr().out and (tmp_path / "train.md").exists()


def test_bench_kernels_smallest(capsys):
    with pytest.raises(SystemExit) as info:
        script("bench").main(["kernels", "--variants", "f32", "q4_1", "--rows", "1", "--rounds", "1",
                              "--shape", "1,64,32,128"])
    assert info.value.code == 0


# bench.py serve at its smallest size: tests/test_bench_serve.py (both load modes, the report's figures)


def test_the_readme_documents_the_cache_and_the_stderr_lines():
    """issue 27, item 15: COLD_MS_CACHE was undocumented and "stderr gets one line" was not true (the
    lines themselves are checked on the default demo, tests/test_readme_examples.py)."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert "$COLD_MS_CACHE" in text and "stderr gets one line" not in text
    assert "stderr gets one settings line" in text


def test_the_readme_until_recall_command_runs_at_its_smallest(tiny, tmp_path, capsys):
    """README, "Train an adapter": the --facts/--until-recall command as written, on the tiny model
    at its smallest (options repeated later win): two steps, a probe after each."""
    import shlex
    from helpers import run_script
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    [line] = [x for x in text.splitlines() if "train_lora.py" in x and "--until-recall" in x]
    argv = shlex.split(line)[2:]
    assert argv[argv.index("--task") + 1] == "facts" and "--facts" in argv and "--probe-every" in argv
    out = tmp_path / "run"
    argv += ["--out", str(out), "--model", tiny["model_dir"], "--chat-template", "chatml", "--facts", "1",
             "--max-steps", "2", "--probe-every", "1", "--probe-n", "2", "--probe-tokens", "4", "--max-len", "128",
             "--rank", "4", "--batch", "4"]
    code, _, err = run_script("train_lora", argv, capsys)
    assert code == 0, err[-2000:]
    assert (out / "probe.csv").read_text().splitlines()[0] == "step,recall"
    assert [row.split(",")[0] for row in (out / "probe.csv").read_text().splitlines()[1:]] == ["1", "2"]
    assert "stopped: " in err and (out / "adapter_model.safetensors").exists()
