"""Weight formats end to end: what an engine reads a checkpoint as, and that it computes with
exactly those numbers (the numpy reference runs on the same values, dequantised), engines of
different formats on one loaded model, half-precision checkpoints kept as stored, a GGUF type
no kernel reads, and the MindSpore Cells' compute dtype."""
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

import fixtures
import gguf_fixtures
import numpy_llama as ref
from cold_ms import wtypes
from cold_ms.errors import ConfigError
from cold_ms.formats.model import load_model
from cold_ms.pipeline.batching import Request
from cold_ms.pipeline.engine import Engine
from helpers import all_logits

# 64-wide rows: whole q8_0/q4 blocks everywhere; 64 outputs: integer panels everywhere
CFG = dict(fixtures.TINY, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
           vocab_size=300, max_position_embeddings=64, tie_word_embeddings=True)
PROMPT = [1, 50, 77, 200, 13, 299, 5, 42, 8]
TOL = 5e-5  # float32 activations: the same numbers as the float64 reference, summed in float32


@pytest.fixture(scope="module")
def gguf_model(tmp_path_factory):
    """Q4_1 projections and a tied Q8_0 embedding, as the embedded SmolLM2 is stored (one Q4_0 matrix too)."""
    root = tmp_path_factory.mktemp("formats")
    weights = {n: w for n, w in fixtures.random_weights(CFG, seed=21).items() if n != "lm_head.weight"}
    vocab, _ = gguf_fixtures.bpe_vocab(fixtures.SP_TEXT)
    stored = gguf_fixtures.write_gguf(str(root / "m.gguf"), CFG, weights, vocab, quant=Q.Q4_1,
                                      types={"token_embd": Q.Q8_0, "ffn_down": Q.Q4_0})
    return load_model(str(root / "m.gguf")), stored


def _reference(weights, tokens):
    return ref.forward(ref.effective_weights(weights), CFG, tokens)


def _engine(model, **kw):
    return Engine(model, slots=1, max_len=64, contrastive=False, compile_cache=False, **kw)


def test_native_weights_are_read_as_stored_and_give_the_reference_logits(gguf_model):
    model, stored = gguf_model
    assert model.stored.startswith("gguf: q4_1 x")
    assert {wtypes.type_of(w).name for w in model.weights.values()} == {"q4_1", "q4_0", "q8_0", "f32"}
    eng = _engine(model, weights="native", activations="float32")
    assert eng.weights == "native: q4_1 x12, q4_0 x2, q8_0 x1"
    got = all_logits(eng, PROMPT, -1)
    assert np.abs(got - _reference(stored, PROMPT)).max() < TOL
    tokens = eng.generate([Request(PROMPT, amateur=None, max_new_tokens=6, ignore_eos=True)])[0].token_ids
    seq = list(PROMPT)
    for token in tokens:  # greedy choices equal the reference's, step by step
        assert token == int(np.argmax(_reference(stored, seq)[-1]))
        seq.append(token)


@pytest.fixture(scope="module")
def float_activations_logits(gguf_model):
    """all_logits of the integer panels with float32 activations: what both integer cases meet."""
    return all_logits(_engine(gguf_model[0], activations="float32"), PROMPT, -1)


@pytest.mark.parametrize("activations,bound", [("int16", 5e-4), ("int8", 0.15)])
def test_integer_activations_stay_near_float_activations(gguf_model, float_activations_logits, activations, bound):
    """Integer panels read the same stored values; only the activations are rounded (to
    int16: 1.5e-5 of a block's largest value; int8: 4e-3). Relative to the largest logit the
    differences measured 2e-4 (int16) and 7e-2 (int8) on this random model, whose weights are
    far larger than a trained model's; the bounds hold them with room."""
    model, exact = gguf_model[0], float_activations_logits
    eng = _engine(model, activations=activations)
    assert eng.weights == f"auto: q4_1 x12, q4_0 x2, q8_0 x1 ({activations} activations)"
    assert np.abs(all_logits(eng, PROMPT, -1) - exact).max() < bound * np.abs(exact).max()


@pytest.mark.parametrize("choice,name", [("float32", "f32"), ("bfloat16", "bf16"), ("float16", "f16"),
                                         ("q8_0", "q8_0")])
def test_converted_weights_are_the_converted_numbers(gguf_model, choice, name):
    model, stored = gguf_model
    eng = _engine(model, weights=choice, activations="float32")
    assert eng.weights == f"{choice}: {name} x15"
    target = wtypes.TYPES[name]
    values = {n: wtypes.to_float(wtypes.convert(w, target)) if w.ndim == 2 else w for n, w in model.weights.items()}
    assert np.abs(all_logits(eng, PROMPT, -1) - _reference(values, PROMPT)).max() < TOL


def test_two_engines_of_different_formats_share_one_loaded_model(gguf_model):
    """Each engine prepares its own weights; the loaded model is never changed."""
    model, _ = gguf_model
    before = {n: np.array(w.data if isinstance(w, wtypes.Packed) else w, copy=True) for n, w in model.weights.items()}
    req = [Request(PROMPT, amateur=None, max_new_tokens=6, ignore_eos=True)]
    native, dense = _engine(model, weights="native"), _engine(model, weights="float32")
    alone = native.generate(req)[0].token_ids, dense.generate(req)[0].token_ids
    for _ in range(2):  # interleaved, each still generates what it generated alone
        assert (native.generate(req)[0].token_ids, dense.generate(req)[0].token_ids) == alone
    for n, w in model.weights.items():
        np.testing.assert_array_equal(w.data if isinstance(w, wtypes.Packed) else w, before[n])


def test_a_bf16_checkpoint_stays_bf16_and_matches_its_rounded_weights(tmp_path):
    cfg, weights = fixtures.write_model(str(tmp_path / "m"), cfg=dict(fixtures.TINY), seed=4, dtype="bfloat16")
    model = load_model(str(tmp_path / "m"))
    matrices = [w for w in model.weights.values() if w.ndim == 2]
    assert all(isinstance(w, wtypes.Packed) and w.wtype.name == "bf16" for w in matrices)
    eng = Engine(model, max_len=64, contrastive=False, compile_cache=False)
    assert eng.weights.startswith("auto: bf16 x")
    got = all_logits(eng, [1, 17, 42, 5, 88, 3], -1)
    assert np.abs(got - ref.forward(ref.effective_weights(weights), cfg, [1, 17, 42, 5, 88, 3])).max() < TOL


def test_a_gguf_type_without_a_kernel(tmp_path):
    """Q5_1 has no kernel: native refuses it by name; auto reads it as q8_0."""
    weights = {n: w for n, w in fixtures.random_weights(CFG, seed=23).items() if n != "lm_head.weight"}
    vocab, _ = gguf_fixtures.bpe_vocab(fixtures.SP_TEXT)
    gguf_fixtures.write_gguf(str(tmp_path / "m.gguf"), CFG, weights, vocab, quant=Q.Q8_0, types={"attn_v": Q.Q5_1})
    model = load_model(str(tmp_path / "m.gguf"))
    with pytest.raises(ConfigError, match="v_proj.weight is stored as q5_1, which no cold_ms kernel reads"):
        _engine(model, weights="native")
    eng = _engine(model, weights="auto", activations="float32")
    assert eng.weights == "auto: q8_0 x13, q4_1 x2"  # the two q5_1 matrices became q8_0
    q8 = wtypes.TYPES["q8_0"]
    values = {n: wtypes.to_float(wtypes.convert(w, q8)) if "v_proj" in n else wtypes.to_float(w)
              for n, w in model.weights.items()}
    assert np.abs(all_logits(eng, PROMPT, -1) - _reference(values, PROMPT)).max() < TOL


def test_compute_dtype_of_the_cells(gguf_model):
    """float16 Cells on the MindSpore path (norm statistics, softmax and logits in float32);
    bfloat16 has no CPU MatMul kernel in MindSpore 2.9, and the CPU kernels take no compute dtype."""
    model, stored = gguf_model
    eng = Engine(model, slots=1, max_len=64, contrastive=False, lora_backend="gather", dtype="float16",
                 compile_cache=False)
    params = dict(eng.lm.parameters_and_names())
    assert str(params["model.layers.0.self_attn.q_proj.weight"].dtype) == "Float16"
    half = {n: w.astype(np.float16).astype(np.float32) if w.ndim == 2 else w for n, w in stored.items()}
    want = _reference(half, PROMPT)
    # float16 weights, activations and cache against float32 ones: measured 2.1e-3 of the largest logit
    assert np.abs(all_logits(eng, PROMPT, -1) - want).max() < 5e-3 * np.abs(want).max()
    with pytest.raises(ConfigError, match="bfloat16 needs an Ascend NPU"):
        Engine(model, lora_backend="gather", dtype="bfloat16", max_len=64)
    with pytest.raises(ConfigError, match="compute dtype float16 is for the MindSpore Cells"):
        Engine(model, dtype="float16", max_len=64)
