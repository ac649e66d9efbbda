"""The front doors on the families beyond LLaMA (tiny HF checkpoints with a LoRA adapter): the
HTTP server and the MindFormers pipeline return the numpy reference's CoLD tokens."""
import httpx
import pytest

import family_fixtures
import fixtures
import numpy_families as ref
from cold_ms.bench.serve import start_server, stop_server

PROMPT = [1, 5, 7, 9, 30, 44, 12]


def _family(tmp_path, name):
    cfg, weights = family_fixtures.write_family_model(str(tmp_path / "model"), name)
    fixtures.write_sentencepiece(str(tmp_path / "model" / "tokenizer.model"))
    adapter = fixtures.write_adapter(str(tmp_path / "adapters" / "lora"), cfg, rank=4, alpha=8, seed=4, scale=0.2,
                                     targets=tuple(fixtures.PROJ_DIMS))
    base = {k: v.astype("float64") for k, v in weights.items()}
    return ref.generate(cfg, ref.effective_weights(weights, adapter), base, PROMPT, 6, 0.2, 1.0, eos=2)


def _text(tmp_path, ids):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "model" / "tokenizer.model"))
    return sp.decode([i for i in ids if 2 < i < sp.vocab_size()])


@pytest.mark.parametrize("name", ["qwen2", "qwen3", "gemma3", "llama3"])
def test_server_completion_equals_the_reference(tmp_path, name):
    want = _family(tmp_path, name)
    # a step of 4 rows holds the decode step (expert and amateur): 3 graphs to compile, not 7
    proc, url = start_server(1, str(tmp_path / "model"), str(tmp_path / "adapters"),
                             ["--max-len", "64", "--max-step-tokens", "4"])
    try:
        r = httpx.post(url + "/v1/completions", json={"model": "lora", "prompt": PROMPT, "max_tokens": 6,
                                                      "alpha": 0.2, "beta": 1.0}, timeout=120)
    finally:
        stop_server(proc)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["usage"]["completion_tokens"] == len(want)
    assert body["choices"][0]["text"] == _text(tmp_path, want)


@pytest.mark.parametrize("name", ["gemma3", "qwen2"])
def test_mindformers_pipeline_generates_the_reference_ids(tmp_path, name):
    from cold_ms.pipeline.mindformers import ColdModel
    import mindformers
    want = _family(tmp_path, name)
    model = ColdModel.from_pretrained(str(tmp_path / "model"), adapters=[f"lora={tmp_path / 'adapters' / 'lora'}"])
    pipe = mindformers.pipeline(task="cold_text_generation", model=model, adapter="lora", alpha=0.2, beta=1.0)
    assert pipe.generate_ids([PROMPT], max_new_tokens=6) == [want]  # the EOS (2) that ends it included
