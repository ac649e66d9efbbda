// The dtype combinations both BGMV ops are built for, shared by their OpDefs.
// NOT COMPILED OR RUN: written on a machine without an NPU or the CANN toolkit (../README.md).
#ifndef COLD_MS_BGMV_DTYPES_H
#define COLD_MS_BGMV_DTYPES_H

#include <vector>

#include "register/op_def_registry.h"

namespace ops {

// Six combinations, one kernel binary each (read the lists column by column):
// {fp16, bf16, fp32} data x {int32, int64} indices.
struct BgmvDtypes {
    std::vector<ge::DataType> data = {ge::DT_FLOAT16, ge::DT_FLOAT16, ge::DT_BF16,
                                      ge::DT_BF16,    ge::DT_FLOAT,   ge::DT_FLOAT};
    std::vector<ge::DataType> index = {ge::DT_INT32, ge::DT_INT64, ge::DT_INT32,
                                       ge::DT_INT64, ge::DT_INT32, ge::DT_INT64};
    std::vector<ge::DataType> f32 = std::vector<ge::DataType>(6, ge::DT_FLOAT);
    std::vector<ge::Format> nd = std::vector<ge::Format>(6, ge::FORMAT_ND);
};

}  // namespace ops

#endif  // COLD_MS_BGMV_DTYPES_H
