"""MindSpore registration of the AscendC BGMV kernels (custom_ops/ascend), for Ascend hosts only.

The kernels come from a CANN custom-op package: build and install it with
`bash custom_ops/ascend/build.sh`, then point MindSpore at it with
`export ASCEND_CUSTOM_OPP_PATH=<install>/vendors/cold_ms:$ASCEND_CUSTOM_OPP_PATH`
(custom_ops/ascend/README.md). `cold_ms.ops.bgmv` imports this module lazily, only when
COLD_MS_DEVICE=Ascend. Not executed yet: it was written on a machine with no NPU and no CANN.

Per MindSpore's AOT custom-op (Ascend) tutorial, a package-installed AscendC op with Python
shape/type inference is named by its op type alone, and the registration's input/output names
and dtypes must match the OpDef in custom_ops/ascend/op_host/.
"""
from mindspore import ops
from mindspore.ops import CustomRegOp, DataType

# The OpDef's six combinations: {fp16, bf16, fp32} data x {int32, int64} indices.
_COMBOS = [(data, index) for data in (DataType.F16_Default, DataType.BF16_Default, DataType.F32_Default)
           for index in (DataType.I32_Default, DataType.I64_Default)]
_F32 = DataType.F32_Default


def _reg_info(op, inputs, output, formats):
    reg = CustomRegOp(op)
    for i, name in enumerate(inputs):
        reg = reg.input(i, name, "required")
    reg = reg.output(0, output, "required")
    for row in formats:
        reg = reg.dtype_format(*row)
    return reg.target("Ascend").get_op_info()


def shrink_op(shape_fn, type_fn):
    """BgmvShrink(x, lora_a, idx) -> v (float32)."""
    info = _reg_info("BgmvShrink", ("x", "lora_a", "idx"), "v", [(d, d, i, _F32) for d, i in _COMBOS])
    return ops.Custom("BgmvShrink", out_shape=shape_fn, out_dtype=type_fn, func_type="aot", reg_info=info)


def expand_op(shape_fn, type_fn):
    """BgmvExpand(y, v, lora_b, idx) -> y_out (y's dtype)."""
    info = _reg_info("BgmvExpand", ("y", "v", "lora_b", "idx"), "y_out", [(d, _F32, d, i, d) for d, i in _COMBOS])
    return ops.Custom("BgmvExpand", out_shape=shape_fn, out_dtype=type_fn, func_type="aot", reg_info=info)
