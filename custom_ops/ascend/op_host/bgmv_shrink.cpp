// Host side of BgmvShrink: tiling, shape/type inference and the op definition.
// NOT COMPILED OR RUN: written on a machine without an NPU or the CANN toolkit (../README.md).
//
//   x (R, T, in), lora_a (S, r, in) (rank-major, as the CPU kernel), idx (R,) -> v (R, T, r) float32
// The names "x", "lora_a", "idx", "v" must match cold_ms/ops/ascend.py (CustomRegOp).
#include <algorithm>
#include <vector>

#include "bgmv_dtypes.h"
#include "bgmv_tiling.h"
#include "register/op_def_registry.h"
#include "tiling/platform/platform_ascendc.h"

namespace optiling {

REGISTER_TILING_DATA_CLASS(BgmvShrink, BgmvShrinkTilingData)

static ge::graphStatus BgmvShrinkTiling(gert::TilingContext *context)
{
    const gert::Shape &x = context->GetInputShape(0)->GetStorageShape();
    const gert::Shape &a = context->GetInputShape(1)->GetStorageShape();
    const gert::Shape &idx = context->GetInputShape(2)->GetStorageShape();
    if (x.GetDimNum() != 3 || a.GetDimNum() != 3 || idx.GetDimNum() != 1 || a.GetDim(2) != x.GetDim(2) ||
        idx.GetDim(0) != x.GetDim(0)) {
        return ge::GRAPH_FAILED;
    }
    const int64_t rows = x.GetDim(0), seq = x.GetDim(1), inDim = x.GetDim(2);
    const int64_t slots = a.GetDim(0), rank = a.GetDim(1);
    if (rank < 1 || rank > BGMV_RANK_CAP || !BgmvDimOk(rows) || !BgmvDimOk(seq) || !BgmvDimOk(inDim) ||
        !BgmvDimOk(slots)) {
        return ge::GRAPH_FAILED;
    }

    BgmvShrinkTilingData tiling;
    tiling.set_rows(static_cast<uint32_t>(rows));
    tiling.set_seq(static_cast<uint32_t>(seq));
    tiling.set_inDim(static_cast<uint32_t>(inDim));
    tiling.set_rank(static_cast<uint32_t>(rank));
    tiling.set_slots(static_cast<uint32_t>(slots));

    // The kernel splits rows x token blocks over the cores it is given; rows x tokens bounds the
    // useful count (one core per decode row), and at least one core must be launched.
    auto platform = platform_ascendc::PlatformAscendC(context->GetPlatformInfo());
    const int64_t cores = static_cast<int64_t>(platform.GetCoreNumAiv());
    context->SetBlockDim(static_cast<uint32_t>(std::max<int64_t>(1, std::min(cores, rows * seq))));

    tiling.SaveToBuffer(context->GetRawTilingData()->GetData(), context->GetRawTilingData()->GetCapacity());
    context->GetRawTilingData()->SetDataSize(tiling.GetDataSize());
    context->GetWorkspaceSizes(1)[0] = 0;  // no device scratch beyond UB
    return ge::GRAPH_SUCCESS;
}

}  // namespace optiling

namespace ge {

static ge::graphStatus BgmvShrinkInferShape(gert::InferShapeContext *context)
{
    const gert::Shape *x = context->GetInputShape(0);
    const gert::Shape *a = context->GetInputShape(1);
    gert::Shape *v = context->GetOutputShape(0);
    if (x == nullptr || a == nullptr || v == nullptr || x->GetDimNum() != 3 || a->GetDimNum() != 3) {
        return ge::GRAPH_FAILED;
    }
    v->SetDimNum(3);
    v->SetDim(0, x->GetDim(0));
    v->SetDim(1, x->GetDim(1));
    v->SetDim(2, a->GetDim(1));
    return ge::GRAPH_SUCCESS;
}

static ge::graphStatus BgmvShrinkInferDataType(gert::InferDataTypeContext *context)
{
    return context->SetOutputDataType(0, ge::DT_FLOAT);  // v always accumulates in float32
}

}  // namespace ge

namespace ops {

class BgmvShrink : public OpDef {
public:
    explicit BgmvShrink(const char *name) : OpDef(name)
    {
        const BgmvDtypes t;
        this->Input("x").ParamType(REQUIRED).DataType(t.data).Format(t.nd);
        this->Input("lora_a").ParamType(REQUIRED).DataType(t.data).Format(t.nd);
        this->Input("idx").ParamType(REQUIRED).DataType(t.index).Format(t.nd);
        this->Output("v").ParamType(REQUIRED).DataType(t.f32).Format(t.nd);
        this->SetInferShape(ge::BgmvShrinkInferShape).SetInferDataType(ge::BgmvShrinkInferDataType);
        // Atlas A2/A3 only: the kernels use DataCopyPad and bfloat16, which Atlas 300I/310P
        // (ascend310p) AI Cores lack.
        this->AICore().SetTiling(optiling::BgmvShrinkTiling).AddConfig("ascend910b").AddConfig("ascend910_93");
    }
};

OP_ADD(BgmvShrink);

}  // namespace ops
