"""GGUF files written by the gguf package load to the same model as their HF twin."""
import gc

import numpy as np
import pytest

import fixtures
import gguf_fixtures
import numpy_llama as ref
from cold_ms.errors import CheckpointError, ConfigError
from cold_ms.formats.model import load_model
from cold_ms.formats.tokenizer import SentencePieceTokenizer
from cold_ms.pipeline.batching import Request
from helpers import all_logits, engine_for

CFG = dict(fixtures.TINY, vocab_size=300, max_position_embeddings=64)
PROMPT = [1, 50, 77, 200, 13, 299, 5, 42]


@pytest.fixture(scope="module")
def gguf_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf")
    weights = fixtures.random_weights(CFG, seed=11)
    vocab, tok = gguf_fixtures.bpe_vocab(fixtures.SP_TEXT)
    stored = gguf_fixtures.write_gguf(str(root / "tiny.gguf"), CFG, weights, vocab)
    fixtures.write_model(str(root / "hf"), cfg=CFG, weights=stored)
    return {"gguf": str(root / "tiny.gguf"), "hf": str(root / "hf"), "stored": stored, "tok": tok, "root": root}


def test_quantised_gguf_matches_its_hf_twin(gguf_model):
    from_gguf = engine_for({}, model_dir=gguf_model["gguf"], activations="float32")
    from_hf = engine_for({}, model_dir=gguf_model["hf"])
    assert from_gguf.model.config == from_hf.model.config.__class__(**{
        **from_hf.model.config.__dict__, "name": from_gguf.model.config.name})
    got = all_logits(from_gguf, PROMPT, -1)
    assert np.abs(got - all_logits(from_hf, PROMPT, -1)).max() < 1e-5
    want = ref.forward(ref.effective_weights(gguf_model["stored"]), CFG, PROMPT)
    assert np.abs(got - want).max() < 5e-5


def _mapped_rss_kb(array):
    """Resident kB of the mapping that holds `array` (/proc/self/smaps)."""
    address, inside = array.ctypes.data, False
    with open("/proc/self/smaps") as f:
        for line in f:
            span = line.split(" ", 1)[0]
            if "-" in span and not line.startswith(("VmFlags", "THPeligible")):
                low, high = (int(x, 16) for x in span.split("-"))
                inside = low <= address < high
            elif inside and line.startswith("Rss:"):
                return int(line.split()[1])
    raise AssertionError("no mapping holds the array")


def test_weights_are_the_stored_blocks_mapped_from_the_file(gguf_model):
    """A loaded model keeps each matrix's GGUF blocks as a view of the file (Q/K rows un-permuted
    on reading, whole rows moved); an engine that lays them out anew gives their pages back."""
    from gguf import quants
    from cold_ms import wtypes
    from cold_ms.formats import gguf_loader
    model = load_model(gguf_model["gguf"])
    reader = gguf_loader.open_gguf(gguf_model["gguf"])
    for t in reader.tensors:
        name = gguf_loader._our_name(t.name, model.config.arch)
        w = model.weights[name]
        want = quants.dequantize(t.data, t.tensor_type).reshape(w.shape)
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = CFG["num_attention_heads"] if "q_proj" in name else CFG["num_key_value_heads"]
            want = want[gguf_loader.unpermute(np.arange(w.shape[0]), heads)]
        if isinstance(w, wtypes.Packed):
            assert w.wtype.gguf == int(t.tensor_type) and not w.stored.flags.writeable  # the file's map
        np.testing.assert_array_equal(wtypes.to_float(w), want)
    stored = model.weights["model.embed_tokens.weight"].stored
    embedding = wtypes.to_float(model.weights["model.embed_tokens.weight"])
    assert _mapped_rss_kb(stored) > 0  # touched above
    model.release_pages()
    assert _mapped_rss_kb(stored) == 0
    np.testing.assert_array_equal(wtypes.to_float(model.weights["model.embed_tokens.weight"]), embedding)
    engine = engine_for({}, model_dir=gguf_model["gguf"])  # loads its own model, then releases its pages
    assert _mapped_rss_kb(engine.model.weights["model.embed_tokens.weight"].stored) == 0
    assert engine.generate([Request([5, 9, 14], amateur=None, max_new_tokens=3)])[0].token_ids


def test_gguf_bpe_vocab_encodes_like_the_trained_tokenizer(gguf_model):
    tok = load_model(gguf_model["gguf"]).tokenizer
    for text in fixtures.SP_TEXT[:5] + ["numbers 1234 and symbols !?", "  spaced\n\nlines"]:
        ids = tok.encode(text, add_bos=False)
        assert ids == gguf_model["tok"].encode(text).ids
        assert tok.decode(ids) == text
    assert tok.encode("Paris")[0] == 1  # add_bos_token from the file


def test_gguf_sentencepiece_vocab_rebuilds_the_model(tmp_path, tiny):
    sp_path = tiny["model_dir"] + "/tokenizer.model"
    cfg = dict(CFG, vocab_size=96)
    gguf_fixtures.write_gguf(str(tmp_path / "spm.gguf"), cfg, fixtures.random_weights(cfg), gguf_fixtures.spm_vocab(sp_path))
    rebuilt = load_model(str(tmp_path / "spm.gguf")).tokenizer
    original = SentencePieceTokenizer(sp_path)
    for text in fixtures.SP_TEXT[:5] + ["What is the capital of France? Paris.</s>"]:
        assert rebuilt.encode(text) == original.encode(text)
        assert rebuilt.decode(rebuilt.encode(text)) == original.decode(original.encode(text))


def test_unsupported_architecture(tmp_path):
    vocab, _ = gguf_fixtures.bpe_vocab(fixtures.SP_TEXT)
    gguf_fixtures.write_gguf(str(tmp_path / "g.gguf"), CFG, fixtures.random_weights(CFG), vocab, arch="falcon")
    with pytest.raises(ConfigError, match="GGUF architecture 'falcon' is not supported .supported: llama, qwen2"):
        load_model(str(tmp_path / "g.gguf"))


def test_truncated_gguf(gguf_model, tmp_path):
    data = open(gguf_model["gguf"], "rb").read()
    for cut in (len(data) // 2, 100):
        (tmp_path / "t.gguf").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            load_model(str(tmp_path / "t.gguf"))


def test_tokenizer_larger_than_the_model(tmp_path):
    vocab, _ = gguf_fixtures.bpe_vocab(fixtures.SP_TEXT)
    cfg = dict(CFG, vocab_size=280)
    gguf_fixtures.write_gguf(str(tmp_path / "v.gguf"), cfg, fixtures.random_weights(cfg), vocab)
    with pytest.raises(CheckpointError, match="tokenizer and model do not match"):
        load_model(str(tmp_path / "v.gguf"))


def test_display_name_is_the_hub_id():
    """issue 27, item 13: general.name ('Smollm2 135M 8k Lc100K Mix1 Ep2') is no loadable id; the
    organisation and the file's stem are."""
    from cold_ms.formats.gguf_loader import display_name
    assert display_name("/x/SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert display_name("gemma-3-270m-q4_k_m.gguf") == "gemma-3-270m"
    assert display_name("model.gguf", "") == "model"
