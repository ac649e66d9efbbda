// BgmvShrink on an Ascend AI Core (vector unit): v[i, t] = x[i, t] @ A[idx[i]]^T, float32 sums.
//
//   x (R, T, in)  lora_a (S, r, in)  idx (R,) int32/int64  ->  v (R, T, r) float32
//   A is rank-major like the CPU kernel's (PEFT's lora_A as stored): v[i, t, j] = x[i, t] . A[s, j].
//   idx[i] < 0: v[i] = 0 and A is never read.  idx[i] >= S: AscendC::Trap() (the launch fails,
//   as the CPU kernel fails); the indices are device data, so the host cannot check them.
//
// NOT COMPILED OR RUN: written on a machine without an NPU or the CANN toolkit (../README.md).
//
// Work unit: one row and a block of up to TOK_BLOCK of its tokens; each vector core takes a
// contiguous range of units (GetBlockIdx). Per unit the scalar unit reads the slot from GM, then
// the r x in matrix A[slot] and the tokens' x stream through UB in K tiles (column slices), each
// CopyIn (MTE2) then Compute (V); the unit's v leaves in one CopyOut (MTE3). Every queue holds
// two buffers, so MTE2 fills tile k+1 while V works on tile k, and MTE3 writes one unit's v
// while V accumulates the next.
//
// Compute, per token and tile: r rows of A times x, 64 lanes at a time, accumulated into an
// r x 64 float32 block by one repeated Mul/MulAddDst per 64 columns (the rank is the repeat
// count, x's repeat stride is 0); WholeReduceSum folds each row to one float; Add puts the r
// partial dot products into v.
//
// Data type and index type come from the build: the op package compiles this file once per
// dtype combination declared in op_host/bgmv_shrink.cpp, defining DTYPE_X and DTYPE_IDX.
#include "kernel_operator.h"
#include "bgmv_tiles.h"

namespace {

using bgmv::BLOCK_BYTES;
using bgmv::BUFFER_NUM;
using bgmv::F32_BYTES;
using bgmv::LANES;
using bgmv::RANK_CAP;
using bgmv::TOK_BLOCK;
constexpr uint8_t LANE_BLOCKS = LANES * F32_BYTES / BLOCK_BYTES;  // 8 blocks per vector repeat

template <typename T, typename I>
class BgmvShrinkKernel {
public:
    __aicore__ inline BgmvShrinkKernel() {}

    __aicore__ inline void Init(GM_ADDR x, GM_ADDR loraA, GM_ADDR idx, GM_ADDR v, uint32_t rows, uint32_t seq,
                                uint32_t inDim, uint32_t rank, uint32_t slots)
    {
        rows_ = rows;
        seq_ = seq;
        in_ = inDim;
        rank_ = rank;
        slots_ = slots;
        xGm_.SetGlobalBuffer((__gm__ T *)x);
        aGm_.SetGlobalBuffer((__gm__ T *)loraA);
        idxGm_.SetGlobalBuffer((__gm__ I *)idx);
        vGm_.SetGlobalBuffer((__gm__ float *)v);

        // As many columns as fit A_TILE_ELEMS for r rows, whole blocks per row, at most K_TILE_CAP.
        kTile_ = bgmv::ShrinkKTile(rank, T_BYTES);
        accStride_ = bgmv::CeilTo(rank * F32_BYTES, BLOCK_BYTES) / F32_BYTES;

        pipe_.InitBuffer(aQueue_, BUFFER_NUM, bgmv::A_TILE_ELEMS * T_BYTES);
        pipe_.InitBuffer(xQueue_, BUFFER_NUM, TOK_BLOCK * bgmv::K_TILE_CAP * T_BYTES);
        pipe_.InitBuffer(vQueue_, BUFFER_NUM, TOK_BLOCK * RANK_CAP * F32_BYTES);
        pipe_.InitBuffer(prod_, RANK_CAP * LANES * F32_BYTES);
        pipe_.InitBuffer(sums_, RANK_CAP * F32_BYTES);
        if constexpr (!IS_F32) {
            pipe_.InitBuffer(aF32_, bgmv::A_TILE_ELEMS * F32_BYTES);
            pipe_.InitBuffer(xF32_, TOK_BLOCK * bgmv::K_TILE_CAP * F32_BYTES);
        }
    }

    __aicore__ inline void Process()
    {
        const uint32_t tokBlocks = bgmv::TileCount(seq_, TOK_BLOCK);
        const uint64_t units = static_cast<uint64_t>(rows_) * tokBlocks;
        const bgmv::Range mine = bgmv::CoreRange(units, AscendC::GetBlockNum(), AscendC::GetBlockIdx());
        for (uint64_t u = mine.first; u < mine.last; ++u) {
            const uint32_t row = static_cast<uint32_t>(u / tokBlocks);
            const uint32_t t0 = static_cast<uint32_t>(u % tokBlocks) * TOK_BLOCK;
            const uint32_t nTok = bgmv::Min(TOK_BLOCK, seq_ - t0);
            // Scalar-unit GM read, before any tile of this unit is queued. The scalar unit only
            // issues work to MTE2/V/MTE3, so it usually reads this index while the pipes are still
            // busy with the previous unit.
            const int64_t slot = static_cast<int64_t>(idxGm_.GetValue(row));
            if (slot >= static_cast<int64_t>(slots_)) {
                AscendC::Trap();
            }
            AscendC::LocalTensor<float> acc = vQueue_.AllocTensor<float>();
            AscendC::Duplicate(acc, 0.0f, static_cast<int32_t>(nTok * accStride_));  // Compute's barriers order it
            if (slot < 0) {  // base-model row: its v stays zero and no adapter byte moves
                vQueue_.EnQue(acc);
                CopyOut(row, t0, nTok);
                continue;
            }
            const uint64_t aBase = static_cast<uint64_t>(slot) * rank_ * in_;
            const uint64_t xBase = (static_cast<uint64_t>(row) * seq_ + t0) * in_;
            const uint32_t tiles = bgmv::TileCount(in_, kTile_);
            CopyIn(aBase, xBase, nTok, bgmv::TileLen(in_, kTile_, 0));
            for (uint32_t i = 0; i < tiles; ++i) {
                if (i + 1 < tiles) {  // tile i+1's MTE2 is issued before tile i's vector work
                    const uint32_t next = (i + 1) * kTile_;
                    CopyIn(aBase + next, xBase + next, nTok, bgmv::TileLen(in_, kTile_, i + 1));
                }
                Compute(acc, nTok, bgmv::TileLen(in_, kTile_, i));
            }
            vQueue_.EnQue(acc);
            CopyOut(row, t0, nTok);
        }
    }

private:
    static constexpr bool IS_F32 = AscendC::IsSameType<T, float>::value;
    static constexpr uint32_t T_BYTES = sizeof(T);
    static constexpr uint32_t BLOCK_ELEMS = bgmv::BlockElems(T_BYTES);
    static_assert(bgmv::FitsUb(bgmv::ShrinkUbBytes(T_BYTES)), "BgmvShrink buffers exceed the UB");

    // MTE2: columns [k0, k0 + kLen) of the r rows of A[slot] and of the unit's nTok rows of x.
    // Rows are `in` elements apart in GM and land block-aligned in UB, CeilTo(kLen) apart.
    __aicore__ inline void CopyIn(uint64_t aOffset, uint64_t xOffset, uint32_t nTok, uint32_t kLen)
    {
        const uint32_t rowBytes = kLen * T_BYTES;
        const uint32_t gapBytes = (in_ - kLen) * T_BYTES;
        AscendC::LocalTensor<T> aLocal = aQueue_.AllocTensor<T>();
        const AscendC::DataCopyExtParams aParams(static_cast<uint16_t>(rank_), rowBytes, gapBytes, 0, 0);
        AscendC::DataCopyPad(aLocal, aGm_[aOffset], aParams, AscendC::DataCopyPadExtParams<T>{});
        aQueue_.EnQue(aLocal);
        AscendC::LocalTensor<T> xLocal = xQueue_.AllocTensor<T>();
        const AscendC::DataCopyExtParams xParams(static_cast<uint16_t>(nTok), rowBytes, gapBytes, 0, 0);
        AscendC::DataCopyPad(xLocal, xGm_[xOffset], xParams, AscendC::DataCopyPadExtParams<T>{});
        xQueue_.EnQue(xLocal);
    }

    // V: acc[t, j] += x[t, k0:k0+kLen] . A[j, k0:k0+kLen] for every token t and rank row j.
    __aicore__ inline void Compute(AscendC::LocalTensor<float> &acc, uint32_t nTok, uint32_t kLen)
    {
        const uint32_t stride = bgmv::CeilTo(kLen, BLOCK_ELEMS);  // elements between rows in UB
        AscendC::LocalTensor<T> aLocal = aQueue_.DeQue<T>();
        AscendC::LocalTensor<T> xLocal = xQueue_.DeQue<T>();
        const AscendC::LocalTensor<float> a32 = Widen(aLocal, aF32_, rank_ * stride);
        const AscendC::LocalTensor<float> x32 = Widen(xLocal, xF32_, nTok * stride);
        AscendC::LocalTensor<float> prod = prod_.Get<float>();
        AscendC::LocalTensor<float> sums = sums_.Get<float>();
        const uint8_t rank = static_cast<uint8_t>(rank_);
        // Repeat j reads row j of A (stride / 8 blocks on) and the same 64 lanes of x (stride 0),
        // and writes row j of the contiguous r x 64 product block (8 blocks on).
        const AscendC::BinaryRepeatParams rowsTimesX(1, 1, 1, LANE_BLOCKS,
                                                     static_cast<uint8_t>(stride * F32_BYTES / BLOCK_BYTES), 0);
        const int32_t lanes = static_cast<int32_t>(bgmv::Min(LANES, kLen));
        // Every instruction below reads what the one before it wrote (the widened tiles, prod,
        // sums, acc): PipeBarrier<PIPE_V> between each dependent pair.
        for (uint32_t t = 0; t < nTok; ++t) {
            const AscendC::LocalTensor<float> xt = x32[t * stride];
            AscendC::PipeBarrier<PIPE_V>();
            AscendC::Mul(prod, a32, xt, static_cast<uint64_t>(lanes), rank, rowsTimesX);
            for (uint32_t c = LANES; c < kLen; c += LANES) {
                const uint64_t mask = bgmv::Min(LANES, kLen - c);  // the tile's last slice may be partial
                AscendC::PipeBarrier<PIPE_V>();
                AscendC::MulAddDst(prod, a32[c], xt[c], mask, rank, rowsTimesX);
            }
            AscendC::PipeBarrier<PIPE_V>();
            AscendC::WholeReduceSum(sums, prod, lanes, static_cast<int32_t>(rank_), 1, 1, LANE_BLOCKS);
            AscendC::LocalTensor<float> accRow = acc[t * accStride_];
            AscendC::PipeBarrier<PIPE_V>();
            AscendC::Add(accRow, accRow, sums, static_cast<int32_t>(rank_));
        }
        aQueue_.FreeTensor(aLocal);
        xQueue_.FreeTensor(xLocal);
    }

    // MTE3: the unit's nTok rows of v (r floats each, contiguous in GM).
    __aicore__ inline void CopyOut(uint32_t row, uint32_t t0, uint32_t nTok)
    {
        AscendC::LocalTensor<float> vLocal = vQueue_.DeQue<float>();
        const AscendC::DataCopyExtParams params(static_cast<uint16_t>(nTok), rank_ * F32_BYTES, 0, 0, 0);
        AscendC::DataCopyPad(vGm_[(static_cast<uint64_t>(row) * seq_ + t0) * rank_], vLocal, params);
        vQueue_.FreeTensor(vLocal);
    }

    // float32 view of a UB tile: the tile itself for float32 data, else its Cast into `scratch`.
    __aicore__ inline AscendC::LocalTensor<float> Widen(const AscendC::LocalTensor<T> &tile,
                                                        AscendC::TBuf<AscendC::QuePosition::VECCALC> &scratch,
                                                        uint32_t count)
    {
        if constexpr (IS_F32) {
            return tile;
        } else {
            AscendC::LocalTensor<float> wide = scratch.Get<float>();
            AscendC::PipeBarrier<PIPE_V>();  // the previous tile's products may still read `scratch`
            AscendC::Cast(wide, tile, AscendC::RoundMode::CAST_NONE, count);
            return wide;
        }
    }

    AscendC::TPipe pipe_;
    AscendC::TQue<AscendC::QuePosition::VECIN, BUFFER_NUM> aQueue_;
    AscendC::TQue<AscendC::QuePosition::VECIN, BUFFER_NUM> xQueue_;
    AscendC::TQue<AscendC::QuePosition::VECOUT, BUFFER_NUM> vQueue_;
    AscendC::TBuf<AscendC::QuePosition::VECCALC> aF32_;
    AscendC::TBuf<AscendC::QuePosition::VECCALC> xF32_;
    AscendC::TBuf<AscendC::QuePosition::VECCALC> prod_;
    AscendC::TBuf<AscendC::QuePosition::VECCALC> sums_;
    AscendC::GlobalTensor<T> xGm_;
    AscendC::GlobalTensor<T> aGm_;
    AscendC::GlobalTensor<I> idxGm_;
    AscendC::GlobalTensor<float> vGm_;
    uint32_t rows_ = 0;
    uint32_t seq_ = 0;
    uint32_t in_ = 0;
    uint32_t rank_ = 0;
    uint32_t slots_ = 0;
    uint32_t kTile_ = 0;      // input columns per K tile
    uint32_t accStride_ = 0;  // floats between token rows of the accumulator
};

}  // namespace

extern "C" __global__ __aicore__ void bgmv_shrink(GM_ADDR x, GM_ADDR lora_a, GM_ADDR idx, GM_ADDR v,
                                                  GM_ADDR workspace, GM_ADDR tiling)
{
    GET_TILING_DATA(tilingData, tiling);
    BgmvShrinkKernel<DTYPE_X, DTYPE_IDX> op;
    op.Init(x, lora_a, idx, v, tilingData.rows, tilingData.seq, tilingData.inDim, tilingData.rank,
            tilingData.slots);
    op.Process();
}
