"""Write a loaded model as config.json + model.ckpt (+ tokenizer files): scripts/convert.py."""
import json
import os
import time

from cold_ms.errors import InputError
from cold_ms.formats.model import load_model
from cold_ms.formats.tokenizer import HFTokenizer, SentencePieceTokenizer


def save_tokenizer(tok, out):
    """tokenizer.json or tokenizer.model, plus tokenizer_config.json with BOS/EOS and the template."""
    if isinstance(tok, HFTokenizer):
        tok.tok.save(os.path.join(out, "tokenizer.json"))
    elif isinstance(tok, SentencePieceTokenizer):
        with open(os.path.join(out, "tokenizer.model"), "wb") as f:
            f.write(tok.sp.serialized_model_proto())
    flags = {"add_bos_token": tok.add_bos, "chat_template": tok.chat_template,
             "bos_token": tok.token(tok.bos_id) if tok.bos_id is not None else None,
             "eos_token": tok.token(tok.eos_ids[0]) if tok.eos_ids else None}
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(flags, f, indent=1)


def convert(source, out):
    """Load `source` (see load_model) and write it to the new directory `out`; returns `out`."""
    import mindspore as ms
    if os.path.exists(os.path.join(out, "config.json")):
        raise InputError(f"{out} already holds a model; choose an empty directory")
    model = load_model(source)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(model.config.to_hf(), f, indent=1)
    params = [{"name": n, "data": ms.Tensor(a)} for n, a in sorted(model.float_weights().items())]
    tmp = os.path.join(out, f".model.{time.time_ns()}.ckpt")
    ms.save_checkpoint(params, tmp)
    os.replace(tmp, os.path.join(out, "model.ckpt"))  # never leave half a checkpoint behind
    if model.tokenizer is not None:
        save_tokenizer(model.tokenizer, out)
    return out
