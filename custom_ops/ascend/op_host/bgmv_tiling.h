// Tiling data of the BGMV custom ops: the sizes each kernel reads through GET_TILING_DATA.
// NOT COMPILED OR RUN: written on a machine without an NPU or the CANN toolkit (../README.md).
//
// Only the data layouts live here. REGISTER_TILING_DATA_CLASS defines a global object, so each
// op registers its class in its own .cpp; registering here would define it twice at link time.
#ifndef COLD_MS_BGMV_TILING_H
#define COLD_MS_BGMV_TILING_H

#include <cstdint>

#include "../op_kernel/bgmv_tiles.h"
#include "register/tilingdata_base.h"

namespace optiling {

// Largest LoRA rank, declared with the kernels' tiles (op_kernel/bgmv_tiles.h).
constexpr int64_t BGMV_RANK_CAP = bgmv::RANK_CAP;
// Dimensions travel as uint32 fields; offsets are computed in 64 bits on the device.
constexpr int64_t BGMV_DIM_MAX = 0xFFFFFFFFLL;

inline bool BgmvDimOk(int64_t dim) { return dim >= 0 && dim <= BGMV_DIM_MAX; }

// BgmvShrink: x (rows, seq, inDim), lora_a (slots, rank, inDim).
BEGIN_TILING_DATA_DEF(BgmvShrinkTilingData)
TILING_DATA_FIELD_DEF(uint32_t, rows);
TILING_DATA_FIELD_DEF(uint32_t, seq);
TILING_DATA_FIELD_DEF(uint32_t, inDim);
TILING_DATA_FIELD_DEF(uint32_t, rank);
TILING_DATA_FIELD_DEF(uint32_t, slots);
END_TILING_DATA_DEF;

// BgmvExpand: y (rows, seq, outDim), lora_b (slots, rank, outDim); a work unit is rowBlock rows
// (grouped by adapter on the device) by chunkCols output columns (bgmv::SplitExpand).
BEGIN_TILING_DATA_DEF(BgmvExpandTilingData)
TILING_DATA_FIELD_DEF(uint32_t, rows);
TILING_DATA_FIELD_DEF(uint32_t, seq);
TILING_DATA_FIELD_DEF(uint32_t, rank);
TILING_DATA_FIELD_DEF(uint32_t, outDim);
TILING_DATA_FIELD_DEF(uint32_t, slots);
TILING_DATA_FIELD_DEF(uint32_t, chunkCols);
TILING_DATA_FIELD_DEF(uint32_t, rowBlock);
END_TILING_DATA_DEF;

}  // namespace optiling

#endif  // COLD_MS_BGMV_TILING_H
