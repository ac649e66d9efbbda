"""Write a loaded model as config.json + model.ckpt (+ tokenizer files): scripts/convert.py."""
import json
import os
import stat
import time

from cold_ms.errors import CheckpointError, InputError
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


def _check_out(out):
    """Refuse an --out that cannot take a model before the (long) load."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {out} is a file, not a directory")
    if os.path.exists(os.path.join(out, "config.json")):
        raise InputError(f"{out} already holds a model; choose an empty directory")
    existing = os.path.abspath(out)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: {existing} is not a writable directory")


def _write(model, out):
    """config.json, model.ckpt and the tokenizer files of `model` in `out`."""
    import mindspore as ms
    os.makedirs(out, exist_ok=True)
    config_path = os.path.join(out, "config.json")
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(model.config.to_hf(), f, indent=1)
    params = [{"name": n, "data": ms.Tensor(a)} for n, a in sorted(model.float_weights().items())]
    tmp = os.path.join(out, f".model.{time.time_ns()}.ckpt")
    ms.save_checkpoint(params, tmp)
    # MindSpore leaves its checkpoints owner-read-only (0400); a model directory is shared,
    # copied and replaced, so the checkpoint takes the mode of the files written beside it
    # (the user's umask: 0644 with the usual 022)
    os.chmod(tmp, stat.S_IMODE(os.stat(config_path).st_mode))
    os.replace(tmp, os.path.join(out, "model.ckpt"))  # never leave half a checkpoint behind
    if model.tokenizer is not None:
        save_tokenizer(model.tokenizer, out)


def convert(source, out):
    """Load `source` (see load_model) and write it to the new directory `out`; returns `out`."""
    _check_out(out)
    model = load_model(source)
    try:
        _write(model, out)
    except OSError as e:
        raise CheckpointError(f"cannot write the model to {out}: {e.strerror or e}") from None
    return out
