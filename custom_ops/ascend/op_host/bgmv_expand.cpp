// Host side of BgmvExpand: tiling, shape/type inference and the op definition.
// NOT COMPILED OR RUN: written on a machine without an NPU or the CANN toolkit (../README.md).
//
//   y (R, T, out), v (R, T, r) float32, lora_b (S, r, out), idx (R,) -> y_out like y
// The names "y", "v", "lora_b", "idx", "y_out" must match cold_ms/ops/ascend.py (CustomRegOp).
#include <algorithm>
#include <vector>

#include "../op_kernel/bgmv_tiles.h"
#include "bgmv_dtypes.h"
#include "bgmv_tiling.h"
#include "register/op_def_registry.h"
#include "tiling/platform/platform_ascendc.h"

namespace optiling {

REGISTER_TILING_DATA_CLASS(BgmvExpand, BgmvExpandTilingData)

static ge::graphStatus BgmvExpandTiling(gert::TilingContext *context)
{
    const gert::Shape &y = context->GetInputShape(0)->GetStorageShape();
    const gert::Shape &v = context->GetInputShape(1)->GetStorageShape();
    const gert::Shape &b = context->GetInputShape(2)->GetStorageShape();
    const gert::Shape &idx = context->GetInputShape(3)->GetStorageShape();
    if (y.GetDimNum() != 3 || v.GetDimNum() != 3 || b.GetDimNum() != 3 || idx.GetDimNum() != 1 ||
        v.GetDim(0) != y.GetDim(0) || v.GetDim(1) != y.GetDim(1) || v.GetDim(2) != b.GetDim(1) ||
        b.GetDim(2) != y.GetDim(2) || idx.GetDim(0) != y.GetDim(0)) {
        return ge::GRAPH_FAILED;
    }
    const int64_t rows = y.GetDim(0), seq = y.GetDim(1), outDim = y.GetDim(2);
    const int64_t slots = b.GetDim(0), rank = b.GetDim(1);
    if (rank < 1 || rank > BGMV_RANK_CAP || !BgmvDimOk(rows) || !BgmvDimOk(seq) || !BgmvDimOk(outDim) ||
        !BgmvDimOk(slots)) {
        return ge::GRAPH_FAILED;
    }

    auto platform = platform_ascendc::PlatformAscendC(context->GetPlatformInfo());
    const int64_t cores = static_cast<int64_t>(platform.GetCoreNumAiv());
    // Column slices first, then row blocks grouped by adapter, until every core has a unit
    // (the arithmetic the host test tests/ascend/bgmv_tiles_test.cc checks).
    const bgmv::ExpandSplit split = bgmv::SplitExpand(static_cast<uint32_t>(rows), static_cast<uint32_t>(outDim),
                                                      static_cast<uint32_t>(cores));

    BgmvExpandTilingData tiling;
    tiling.set_rows(static_cast<uint32_t>(rows));
    tiling.set_seq(static_cast<uint32_t>(seq));
    tiling.set_rank(static_cast<uint32_t>(rank));
    tiling.set_outDim(static_cast<uint32_t>(outDim));
    tiling.set_slots(static_cast<uint32_t>(slots));
    tiling.set_chunkCols(split.chunkCols);
    tiling.set_rowBlock(split.rowBlock);

    // One core per unit at most, and at least one core must be launched.
    context->SetBlockDim(static_cast<uint32_t>(std::max<int64_t>(1, std::min<int64_t>(cores, split.units))));
    tiling.SaveToBuffer(context->GetRawTilingData()->GetData(), context->GetRawTilingData()->GetCapacity());
    context->GetRawTilingData()->SetDataSize(tiling.GetDataSize());
    context->GetWorkspaceSizes(1)[0] = 0;  // no device scratch beyond UB
    return ge::GRAPH_SUCCESS;
}

}  // namespace optiling

namespace ge {

static ge::graphStatus BgmvExpandInferShape(gert::InferShapeContext *context)
{
    const gert::Shape *y = context->GetInputShape(0);
    gert::Shape *yOut = context->GetOutputShape(0);
    if (y == nullptr || yOut == nullptr) {
        return ge::GRAPH_FAILED;
    }
    *yOut = *y;
    return ge::GRAPH_SUCCESS;
}

static ge::graphStatus BgmvExpandInferDataType(gert::InferDataTypeContext *context)
{
    return context->SetOutputDataType(0, context->GetInputDataType(0));  // y_out keeps y's dtype
}

}  // namespace ge

namespace ops {

class BgmvExpand : public OpDef {
public:
    explicit BgmvExpand(const char *name) : OpDef(name)
    {
        const BgmvDtypes t;
        this->Input("y").ParamType(REQUIRED).DataType(t.data).Format(t.nd);
        this->Input("v").ParamType(REQUIRED).DataType(t.f32).Format(t.nd);
        this->Input("lora_b").ParamType(REQUIRED).DataType(t.data).Format(t.nd);
        this->Input("idx").ParamType(REQUIRED).DataType(t.index).Format(t.nd);
        this->Output("y_out").ParamType(REQUIRED).DataType(t.data).Format(t.nd);
        this->SetInferShape(ge::BgmvExpandInferShape).SetInferDataType(ge::BgmvExpandInferDataType);
        // Atlas A2/A3 only: the kernels use DataCopyPad and bfloat16, which Atlas 300I/310P
        // (ascend310p) AI Cores lack.
        this->AICore().SetTiling(optiling::BgmvExpandTiling).AddConfig("ascend910b").AddConfig("ascend910_93");
    }
};

OP_ADD(BgmvExpand);

}  // namespace ops
