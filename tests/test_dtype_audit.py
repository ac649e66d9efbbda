"""The dtype audit of the compiled float16 decode step (Cells path, gather backend): MindSpore
writes the graph with save_graphs, and every float32 tensor in it must come from a planned place.

The graph read is 20_validate, the whole step after the frontend's optimisation (inlined, common
subexpressions merged) and before the device backend. A float32 tensor in it is born only by a Cast
(a float16 tensor widened, a bool mask made a number, or a promotion MindSpore inserts), from a
float32 graph input, by an op whose inputs are all non-float32, or by an op that takes float16 and
float32 tensors together (MindSpore 2.9's Mul promotes inside the op, with no Cast); every such
birth is checked against PLANNED by the cold_ms function holding the
innermost line of ours in the node's source trace (found with ast in our source). Source lines are
not keys, so edits inside a function keep the list valid. (A node shared by several call sites,
such as MindSpore's indexing helpers, carries the trace of one of them: the births audited here
are Casts, which MindSpore only merges when they widen the same tensor.) The CPU backend adds Casts of its own afterwards (graph_build_*.ir: around ops whose
CPU kernel lacks float16, e.g. Gather of the picked rows); those say what MindSpore's CPU kernels
support, not what the model asks for, and are not audited here."""
import ast
import functools
import glob
import os
import re

import mindspore as ms
import numpy as np
import pytest

import fixtures
import cold_ms
from cold_ms.formats.adapters import AdapterRegistry, load_peft_adapter
from cold_ms.formats.model import load_model
from cold_ms.pipeline.engine import Engine

SLOTS = 2
# (file under cold_ms/, function): how many of its statements give birth to float32, and why.
# A count, not the statements, so edits keep the list valid; a promotion Cast added inside one of
# these functions (a float32 operand meeting a float16 one) is one statement more, and fails.
PLANNED = {
    ("cells/norm.py", "construct"): (1, "RMSNorm statistics: x widened for mean of squares and rsqrt"),
    ("cells/attention.py", "whole"): (1, "attention scores widened for mask and softmax"),
    ("cells/transformer.py", "additive_mask"): (1, "the attention mask, added to float32 scores"),
    ("cells/transformer.py", "logits"): (1, "the logits: the CoLD scores are computed in float32"),
    # the LoRA term accumulates in float32 (ops/bgmv.py: v is float32) and is added to y in float32
    # before its one rounding to y's dtype; the row masks of idx < 0 are float32 factors of it
    ("ops/reference.py", "_f32"): (1, "LoRA shrink/expand operands widened"),
    ("ops/reference.py", "shrink_gather"): (1, "LoRA row mask"),
    ("ops/reference.py", "expand_gather"): (1, "LoRA row mask"),
    ("ops/contrastive.py", "draw"): (2, "the draw's masks over float32 scores, as numbers"),
}
INPUTS = {"alpha", "beta", "extra"}  # the per-slot CoLD knobs, float32 by ColdStep's contract
NODE = re.compile(r"^  %\S+ = (\S+?)\(")
TRACE = re.compile(r"^\s+# In file \S+?/cold_ms/(\S+?):(\d+)[,~]")
PACKAGE = os.path.dirname(cold_ms.__file__)


@functools.lru_cache(maxsize=None)
def functions(path):
    """[(first line, last line, name)] of every function in cold_ms/`path`."""
    with open(os.path.join(PACKAGE, path)) as f:
        tree = ast.parse(f.read())
    return [(n.lineno, n.end_lineno, n.name) for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def enclosing(path, line):
    """(path, name, line): the innermost function of cold_ms/`path` holding `line`."""
    spans = [(first, last, name) for first, last, name in functions(path) if first <= line <= last]
    return path, min(spans, key=lambda s: s[1] - s[0])[2] if spans else "<module>", line


def nodes(text):
    """(op, types line, (file, function) of the innermost cold_ms line of the trace or None) of every CNode."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = NODE.match(line)
        if not m:
            continue
        where, j = None, i + 1
        while j + 1 < len(lines) and lines[j + 1].startswith("      "):
            j += 1
            f = TRACE.match(lines[j])
            if f:
                where = f.group(1), int(f.group(2))
        yield m.group(1), lines[i + 1], where and enclosing(*where)


def births(text):
    """[(op, types, where)] of the float32 tensors born in the graph (see the module docstring),
    where being (file, function, line) of the innermost cold_ms line of the node's trace."""
    found = []
    for op, types, where in nodes(text):
        ins, _, out = types.partition("->")
        if "Float32" not in out or op.startswith("%"):  # a call's body is audited as its own subgraph
            continue
        mixed = "Tensor[Float32]" in ins and ("Tensor[Float16]" in ins or "Tensor[BFloat16]" in ins)
        if op == "PrimFunc_Cast" or "Float32" not in ins or mixed:
            found.append((op, types.strip(), where))
    return found


@pytest.fixture(scope="module")
def decode_graph(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    cfg, _ = fixtures.write_model(str(root / "m"), seed=6)
    fixtures.write_adapter(str(root / "a"), cfg, rank=4, alpha=8, seed=4, targets=tuple(fixtures.PROJ_DIMS))
    model = load_model(str(root / "m"))
    reg = AdapterRegistry([load_peft_adapter(str(root / "a"), "lora", model.config)])
    eng = Engine(model, reg, slots=SLOTS, max_len=32, lora_backend="gather", dtype="float16")
    key = ("step", 2 * SLOTS, SLOTS)  # every slot decoding: an expert and an amateur row each
    assert key in eng.graphs()
    out = root / "ir"
    ms.set_context(save_graphs=1, save_graphs_path=str(out))
    try:
        eng._call(key, eng._dummy_inputs(key))  # compiles the decode step (graphs compile on first call)
    finally:
        ms.set_context(save_graphs=0)
    paths = glob.glob(str(out / "20_validate_*.ir"))
    assert len(paths) == 1, sorted(glob.glob(str(out / "*.ir")))[:5]
    return open(paths[0]).read()


def audit(found):
    """The births of `found` outside PLANNED, or in a planned function beyond its count."""
    lines = {}
    for _, _, where in found:
        lines.setdefault(where and where[:2], set()).add(where and where[2])
    return [b for b in found if b[2] is None or b[2][:2] not in PLANNED
            or len(lines[b[2][:2]]) > PLANNED[b[2][:2]][0]]


def test_float32_is_born_only_at_the_planned_points(decode_graph):
    found = births(decode_graph)
    unplanned = audit(found)
    assert not unplanned, "\n".join(f"{op} in {where}: {types}" for op, types, where in unplanned)
    # the planned points are there: the audit sees the casts it is meant to allow
    assert {b[2][:2] for b in found} >= {("cells/norm.py", "construct"), ("cells/attention.py", "whole"),
                                         ("cells/transformer.py", "logits"), ("ops/reference.py", "_f32")}


def test_no_weight_or_cache_is_float32(decode_graph):
    params = [(n.rsplit(".", 1)[-1], t) for n, t in
              re.findall(r"^%para\d+_(\S*): <(?:Ref\[)?Tensor\[(\w+)\]", decode_graph, re.M)]
    assert {n for n, t in params if t == "Float32"} == INPUTS
    kinds = {"k_cache", "v_cache", "lora_a", "lora_b", "weight"}
    assert {n for n, t in params if n in kinds} == kinds  # the weights, caches and stacks are all there
    assert {t for n, t in params if n in kinds} == {"Float16"}


def test_the_audit_catches_a_float32_tensor_where_none_is_planned():
    """A float16 residual added to a float32 one: MindSpore promotes with a Cast, found in the MLP."""
    line = 1 + next(i for i, s in enumerate(open(os.path.join(PACKAGE, "cells/mlp.py"))) if "return self.down" in s)
    text = f"""  %7(CNode_1) = PrimFunc_Cast(%6, I64(43))
      : (<Tensor[Float16], (4, 1, 32)>, <Int64, NoShape>) -> (<Tensor[Float32], (4, 1, 32)>)
      # In file /x/cold_ms/cells/transformer.py:70, 4~60/        h = h + attn/
      # In file /x/cold_ms/cells/mlp.py:{line}, 15~30/        return self.down_proj(gate * self.up_proj(x, lora_idx), lora_idx)/
"""
    found = births(text)
    assert [b[2][:2] for b in found] == [("cells/mlp.py", "construct")] and audit(found) == found
    extra = [("PrimFunc_Cast", "", ("cells/norm.py", "construct", n)) for n in (25, 27)]  # a second one
    assert audit(extra) == extra and audit(extra[:1]) == []
