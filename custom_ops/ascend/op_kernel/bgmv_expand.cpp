// BgmvExpand on an Ascend AI Core (vector unit): y_out[i, t] = y[i, t] + v[i, t] @ B[idx[i]].
//
//   y (R, T, out)  v (R, T, r) float32  lora_b (S, r, out)  idx (R,) int32/int64  ->  y_out like y
//   Sums are float32 and rounded once (round-to-nearest-even) into y's dtype.
//   idx[i] < 0: y_out[i] = y[i] bit for bit and B is never read.  idx[i] >= S: AscendC::Trap().
//
// NOT COMPILED OR RUN: written on a machine without an NPU or the CANN toolkit (../README.md).
//
// Work unit: a block of rows and a slice of output columns (bgmv::SplitExpand, shared with the
// tiling); each core takes a contiguous range of units. Per unit:
//   - the block's indices come to UB in one DataCopy and are read there by the scalar unit;
//   - rows are grouped by adapter: for each slot in the block, its B tiles stream through UB once
//     and serve every row of the block with that slot (a shared adapter is read once per unit);
//   - B tiles are double buffered: tile k+1's copy-in (MTE2) is issued before tile k's compute;
//   - each row's rank vectors v[t, :] come to UB in one DataCopy per V_TOK tokens, read there.
// Dependent vector instructions are separated by PipeBarrier<PIPE_V> (explicit, whether or not
// the toolchain's automatic synchronisation is on).
//
// Data type and index type come from the build: the op package compiles this file once per
// dtype combination declared in op_host/bgmv_expand.cpp, defining DTYPE_Y and DTYPE_IDX.
#include "kernel_operator.h"
#include "bgmv_tiles.h"

namespace {

using bgmv::BLOCK_BYTES;
using bgmv::BUFFER_NUM;
using bgmv::F32_BYTES;

template <typename T, typename I>
class BgmvExpandKernel {
public:
    __aicore__ inline BgmvExpandKernel() {}

    __aicore__ inline void Init(GM_ADDR y, GM_ADDR v, GM_ADDR loraB, GM_ADDR idx, GM_ADDR yOut, uint32_t rows,
                                uint32_t seq, uint32_t rank, uint32_t outDim, uint32_t slots, uint32_t chunkCols,
                                uint32_t rowBlock)
    {
        rows_ = rows;
        seq_ = seq;
        rank_ = rank;
        out_ = outDim;
        slots_ = slots;
        chunkCols_ = chunkCols;
        rowBlock_ = rowBlock;
        yGm_.SetGlobalBuffer((__gm__ T *)y);
        vGm_.SetGlobalBuffer((__gm__ float *)v);
        bGm_.SetGlobalBuffer((__gm__ T *)loraB);
        idxGm_.SetGlobalBuffer((__gm__ I *)idx);
        yOutGm_.SetGlobalBuffer((__gm__ T *)yOut);
        nTile_ = bgmv::ExpandNTile(rank, T_BYTES);

        pipe_.InitBuffer(bQueue_, BUFFER_NUM, bgmv::B_TILE_BYTES);
        pipe_.InitBuffer(yQueue_, BUFFER_NUM, bgmv::N_TILE_CAP * T_BYTES);
        pipe_.InitBuffer(outQueue_, BUFFER_NUM, bgmv::N_TILE_CAP * T_BYTES);
        pipe_.InitBuffer(vBuf_, bgmv::V_TOK * bgmv::RANK_CAP * F32_BYTES);
        pipe_.InitBuffer(idxBuf_, bgmv::ROW_BLOCK_CAP * sizeof(I));
        if constexpr (!IS_F32) {
            pipe_.InitBuffer(bF32_, bgmv::B_TILE_BYTES / T_BYTES * F32_BYTES);
            pipe_.InitBuffer(accF32_, bgmv::N_TILE_CAP * F32_BYTES);
        }
    }

    __aicore__ inline void Process()
    {
        const uint32_t chunks = bgmv::TileCount(out_, chunkCols_);
        const uint64_t units = bgmv::CeilDiv(rows_, rowBlock_) * chunks;
        const bgmv::Range mine = bgmv::CoreRange(units, AscendC::GetBlockNum(), AscendC::GetBlockIdx());
        for (uint64_t u = mine.first; u < mine.last; ++u) {
            const uint32_t r0 = static_cast<uint32_t>(u / chunks) * rowBlock_;
            const uint32_t r1 = bgmv::Min(rows_, r0 + rowBlock_);
            const uint32_t c0 = static_cast<uint32_t>(u % chunks) * chunkCols_;
            const uint32_t c1 = bgmv::Min(out_, c0 + chunkCols_);
            LoadIndices(r0, r1 - r0);
            for (uint32_t r = r0; r < r1; ++r) {
                const int64_t slot = Slot(r - r0);
                if (slot >= static_cast<int64_t>(slots_)) {
                    AscendC::Trap();
                }
                if (slot < 0) {  // base-model row: y passes through and no adapter byte moves
                    PassThrough(r, c0, c1);
                } else if (FirstOfSlot(r - r0, slot)) {  // later rows of the slot ride along
                    Group(slot, r0, r - r0, r1 - r0, c0, c1);
                }
            }
        }
    }

private:
    static constexpr bool IS_F32 = AscendC::IsSameType<T, float>::value;
    static constexpr uint32_t T_BYTES = sizeof(T);
    static constexpr uint32_t BLOCK_ELEMS = bgmv::BlockElems(T_BYTES);
    static_assert(bgmv::FitsUb(bgmv::ExpandUbBytes(T_BYTES, sizeof(I))), "BgmvExpand buffers exceed the UB");

    // The scalar unit may read UB only after the copy into it has landed (MTE2 -> S).
    __aicore__ inline void WaitCopyForScalar()
    {
        const event_t ready = static_cast<event_t>(GetTPipePtr()->FetchEventID(AscendC::HardEvent::MTE2_S));
        AscendC::SetFlag<AscendC::HardEvent::MTE2_S>(ready);
        AscendC::WaitFlag<AscendC::HardEvent::MTE2_S>(ready);
    }

    // MTE2: the block's n indices in one copy, then read from UB by Slot().
    __aicore__ inline void LoadIndices(uint32_t r0, uint32_t n)
    {
        idx_ = idxBuf_.Get<I>();
        const AscendC::DataCopyExtParams params(1, n * static_cast<uint32_t>(sizeof(I)), 0, 0, 0);
        AscendC::DataCopyPad(idx_, idxGm_[r0], params, AscendC::DataCopyPadExtParams<I>{});
        WaitCopyForScalar();
    }

    __aicore__ inline int64_t Slot(uint32_t k) { return static_cast<int64_t>(idx_.GetValue(k)); }

    __aicore__ inline bool FirstOfSlot(uint32_t k, int64_t slot)
    {
        for (uint32_t j = 0; j < k; ++j) {
            if (Slot(j) == slot) {
                return false;
            }
        }
        return true;
    }

    // Every row k in [first, end) of the block with this slot, columns [c0, c1): B's tiles are
    // read once for all of them, tile k+1 in flight while tile k is computed.
    __aicore__ inline void Group(int64_t slot, uint32_t r0, uint32_t first, uint32_t end, uint32_t c0, uint32_t c1)
    {
        const uint64_t bBase = static_cast<uint64_t>(slot) * rank_ * out_ + c0;
        const uint32_t width = c1 - c0;
        const uint32_t tiles = bgmv::TileCount(width, nTile_);
        CopyInWeights(bBase, bgmv::TileLen(width, nTile_, 0));
        for (uint32_t i = 0; i < tiles; ++i) {
            if (i + 1 < tiles) {  // the next tile's MTE2 runs under this tile's vector work
                CopyInWeights(bBase + (i + 1) * nTile_, bgmv::TileLen(width, nTile_, i + 1));
            }
            const uint32_t n0 = c0 + i * nTile_;
            const uint32_t nLen = bgmv::TileLen(width, nTile_, i);
            const uint32_t bStride = bgmv::CeilTo(nLen, BLOCK_ELEMS);  // elements between B rows in UB
            AscendC::LocalTensor<T> bLocal = bQueue_.DeQue<T>();
            const AscendC::LocalTensor<float> b32 = Widen(bLocal, rank_ * bStride);
            for (uint32_t k = first; k < end; ++k) {
                if (Slot(k) == slot) {
                    Row(b32, bStride, r0 + k, n0, nLen);
                }
            }
            bQueue_.FreeTensor(bLocal);
        }
    }

    // One row's tokens against one B tile, V_TOK rank vectors brought to UB at a time.
    __aicore__ inline void Row(const AscendC::LocalTensor<float> &b32, uint32_t bStride, uint32_t row, uint32_t n0,
                               uint32_t nLen)
    {
        for (uint32_t t0 = 0; t0 < seq_; t0 += bgmv::V_TOK) {
            const uint32_t nTok = bgmv::Min(bgmv::V_TOK, seq_ - t0);
            AscendC::LocalTensor<float> vLocal = vBuf_.Get<float>();
            const AscendC::DataCopyExtParams params(1, nTok * rank_ * F32_BYTES, 0, 0, 0);
            AscendC::DataCopyPad(vLocal, vGm_[(static_cast<uint64_t>(row) * seq_ + t0) * rank_], params,
                                 AscendC::DataCopyPadExtParams<float>{});
            WaitCopyForScalar();
            for (uint32_t t = t0; t < t0 + nTok; ++t) {
                CopyIn(row, t, n0, nLen);
                Compute(b32, bStride, vLocal[(t - t0) * rank_], nLen);
                CopyOut(row, t, n0, nLen);
            }
        }
    }

    __aicore__ inline uint64_t YOffset(uint32_t row, uint32_t t, uint32_t n0) const
    {
        return (static_cast<uint64_t>(row) * seq_ + t) * out_ + n0;
    }

    // MTE2: r rows of nLen columns of B, `out` elements apart in GM, one block-aligned UB row each.
    __aicore__ inline void CopyInWeights(uint64_t offset, uint32_t nLen)
    {
        AscendC::LocalTensor<T> bLocal = bQueue_.AllocTensor<T>();
        const AscendC::DataCopyExtParams params(static_cast<uint16_t>(rank_), nLen * T_BYTES,
                                                (out_ - nLen) * T_BYTES, 0, 0);
        AscendC::DataCopyPad(bLocal, bGm_[offset], params, AscendC::DataCopyPadExtParams<T>{});
        bQueue_.EnQue(bLocal);
    }

    // MTE2: one token's nLen columns of y.
    __aicore__ inline void CopyIn(uint32_t row, uint32_t t, uint32_t n0, uint32_t nLen)
    {
        AscendC::LocalTensor<T> yLocal = yQueue_.AllocTensor<T>();
        const AscendC::DataCopyExtParams params(1, nLen * T_BYTES, 0, 0, 0);
        AscendC::DataCopyPad(yLocal, yGm_[YOffset(row, t, n0)], params, AscendC::DataCopyPadExtParams<T>{});
        yQueue_.EnQue(yLocal);
    }

    // V: acc = y + sum_j v[j] * B[j, :] in float32, rounded once into y's dtype. Each Axpy reads
    // the accumulator the previous one wrote, hence a barrier between them.
    __aicore__ inline void Compute(const AscendC::LocalTensor<float> &b32, uint32_t bStride,
                                   const AscendC::LocalTensor<float> &v, uint32_t nLen)
    {
        AscendC::LocalTensor<T> yLocal = yQueue_.DeQue<T>();
        AscendC::LocalTensor<T> outLocal = outQueue_.AllocTensor<T>();
        AscendC::LocalTensor<float> acc;
        if constexpr (IS_F32) {
            acc = outLocal;
            AscendC::DataCopy(acc, yLocal, bgmv::CeilTo(nLen, BLOCK_ELEMS));
        } else {
            acc = accF32_.Get<float>();
            AscendC::Cast(acc, yLocal, AscendC::RoundMode::CAST_NONE, nLen);
        }
        yQueue_.FreeTensor(yLocal);
        for (uint32_t j = 0; j < rank_; ++j) {
            AscendC::PipeBarrier<PIPE_V>();
            AscendC::Axpy(acc, b32[j * bStride], v.GetValue(j), static_cast<int32_t>(nLen));  // v read in UB
        }
        if constexpr (!IS_F32) {
            AscendC::PipeBarrier<PIPE_V>();
            AscendC::Cast(outLocal, acc, AscendC::RoundMode::CAST_RINT, nLen);
        }
        outQueue_.EnQue(outLocal);
    }

    // MTE3: one token's nLen columns of y_out.
    __aicore__ inline void CopyOut(uint32_t row, uint32_t t, uint32_t n0, uint32_t nLen)
    {
        AscendC::LocalTensor<T> outLocal = outQueue_.DeQue<T>();
        const AscendC::DataCopyExtParams params(1, nLen * T_BYTES, 0, 0, 0);
        AscendC::DataCopyPad(yOutGm_[YOffset(row, t, n0)], outLocal, params);
        outQueue_.FreeTensor(outLocal);
    }

    // float32 view of the B tile: the tile itself for float32 data, else its Cast into bF32_. The
    // barrier keeps the Cast from overwriting bF32_ while the previous tile's Axpys still read it.
    __aicore__ inline AscendC::LocalTensor<float> Widen(const AscendC::LocalTensor<T> &tile, uint32_t count)
    {
        if constexpr (IS_F32) {
            return tile;
        } else {
            AscendC::LocalTensor<float> wide = bF32_.Get<float>();
            AscendC::PipeBarrier<PIPE_V>();
            AscendC::Cast(wide, tile, AscendC::RoundMode::CAST_NONE, count);
            return wide;
        }
    }

    // idx < 0: y_out = y through UB (GM-to-GM needs a UB hop), a vector-pipe copy ordered by the
    // same queue hand-offs as Compute.
    __aicore__ inline void PassThrough(uint32_t row, uint32_t c0, uint32_t c1)
    {
        const uint32_t width = c1 - c0;
        for (uint32_t i = 0; i < bgmv::TileCount(width, bgmv::N_TILE_CAP); ++i) {
            const uint32_t n0 = c0 + i * bgmv::N_TILE_CAP;
            const uint32_t nLen = bgmv::TileLen(width, bgmv::N_TILE_CAP, i);
            for (uint32_t t = 0; t < seq_; ++t) {
                CopyIn(row, t, n0, nLen);
                AscendC::LocalTensor<T> yLocal = yQueue_.DeQue<T>();
                AscendC::LocalTensor<T> outLocal = outQueue_.AllocTensor<T>();
                AscendC::DataCopy(outLocal, yLocal, bgmv::CeilTo(nLen, BLOCK_ELEMS));
                yQueue_.FreeTensor(yLocal);
                outQueue_.EnQue(outLocal);
                CopyOut(row, t, n0, nLen);
            }
        }
    }

    AscendC::TPipe pipe_;
    AscendC::TQue<AscendC::QuePosition::VECIN, BUFFER_NUM> bQueue_;  // depth 2: tile k and tile k+1
    AscendC::TQue<AscendC::QuePosition::VECIN, BUFFER_NUM> yQueue_;
    AscendC::TQue<AscendC::QuePosition::VECOUT, BUFFER_NUM> outQueue_;
    AscendC::TBuf<AscendC::QuePosition::VECCALC> vBuf_;    // V_TOK rank vectors of one row
    AscendC::TBuf<AscendC::QuePosition::VECCALC> idxBuf_;  // the unit's row-block indices
    AscendC::TBuf<AscendC::QuePosition::VECCALC> bF32_;
    AscendC::TBuf<AscendC::QuePosition::VECCALC> accF32_;
    AscendC::LocalTensor<I> idx_;
    AscendC::GlobalTensor<T> yGm_;
    AscendC::GlobalTensor<float> vGm_;
    AscendC::GlobalTensor<T> bGm_;
    AscendC::GlobalTensor<I> idxGm_;
    AscendC::GlobalTensor<T> yOutGm_;
    uint32_t rows_ = 0;
    uint32_t seq_ = 0;
    uint32_t rank_ = 0;
    uint32_t out_ = 0;
    uint32_t slots_ = 0;
    uint32_t chunkCols_ = 0;  // output columns per work unit (host-chosen)
    uint32_t rowBlock_ = 0;   // rows per work unit, grouped by adapter (host-chosen)
    uint32_t nTile_ = 0;      // output columns per B tile
};

}  // namespace

extern "C" __global__ __aicore__ void bgmv_expand(GM_ADDR y, GM_ADDR v, GM_ADDR lora_b, GM_ADDR idx, GM_ADDR y_out,
                                                  GM_ADDR workspace, GM_ADDR tiling)
{
    GET_TILING_DATA(tilingData, tiling);
    BgmvExpandKernel<DTYPE_Y, DTYPE_IDX> op;
    op.Init(y, v, lora_b, idx, y_out, tilingData.rows, tilingData.seq, tilingData.rank, tilingData.outDim,
            tilingData.slots, tilingData.chunkCols, tilingData.rowBlock);
    op.Process();
}
