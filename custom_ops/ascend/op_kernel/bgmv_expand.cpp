// BgmvExpand on an Ascend AI Core (vector unit): y_out[i, t] = y[i, t] + v[i, t] @ B[idx[i]].
//
//   y (R, T, out)  v (R, T, r) float32  lora_b (S, r, out)  idx (R,) int32/int64  ->  y_out like y
//   Sums are float32 and rounded once (round-to-nearest-even) into y's dtype.
//   idx[i] < 0: y_out[i] = y[i] bit for bit and B is never read.  idx[i] >= S: AscendC::Trap().
//
// NOT COMPILED OR RUN: written on a machine without an NPU or the CANN toolkit (../README.md).
//
// Work unit: one row and one slice of chunkCols output columns (the host splits columns so that
// a small decode batch still covers every vector core); each core takes a contiguous range of
// units (GetBlockIdx). Per unit the scalar unit reads the slot from GM, then for each column tile
// the r x nTile block of B is loaded once (MTE2) and reused by every token of the row: CopyIn of
// the token's y tile (MTE2), Compute (V: y + sum_j v[t, j] * B[j, :]), CopyOut (MTE3). Every queue
// holds two buffers, so the three engines work on neighbouring tiles at the same time.
//
// Data type and index type come from the build: the op package compiles this file once per
// dtype combination declared in op_host/bgmv_expand.cpp, defining DTYPE_Y and DTYPE_IDX.
#include "kernel_operator.h"

namespace {

// Two UB buffers per queue: one is filled or drained by a DMA engine while V uses the other.
constexpr int32_t BUFFER_NUM = 2;
// Unified Buffer of one vector core on Atlas A2/A3 (ascend910b, ascend910_93).
constexpr uint32_t UB_BYTES = 192 * 1024;
// UB is addressed in 32-byte blocks: vector operands and each DMA row must start on one.
constexpr uint32_t BLOCK_BYTES = 32;
// One r x nTile block of B per buffer: 32 KiB keeps MTE2 bursts long; two of them plus the
// float32 copy (64 KiB for 16-bit data) fit UB next to the y tiles.
constexpr uint32_t B_TILE_BYTES = 32 * 1024;
// Widest column tile: sizes the y, y_out and float32 accumulator buffers (8 KiB of floats).
constexpr uint32_t N_TILE_CAP = 2048;
// Largest rank (shrink's limit, op_host/bgmv_tiling.h BGMV_RANK_CAP, checked before launch);
// with B_TILE_BYTES every B row keeps at least one 32-byte block per tile.
constexpr uint32_t RANK_CAP = 128;
constexpr uint32_t F32_BYTES = sizeof(float);  // v and the accumulators are float32

__aicore__ inline uint32_t CeilTo(uint32_t n, uint32_t step) { return (n + step - 1) / step * step; }
__aicore__ inline uint32_t MinU32(uint32_t a, uint32_t b) { return a < b ? a : b; }

template <typename T, typename I>
class BgmvExpandKernel {
public:
    __aicore__ inline BgmvExpandKernel() {}

    __aicore__ inline void Init(GM_ADDR y, GM_ADDR v, GM_ADDR loraB, GM_ADDR idx, GM_ADDR yOut, uint32_t rows,
                                uint32_t seq, uint32_t rank, uint32_t outDim, uint32_t slots, uint32_t chunkCols)
    {
        rows_ = rows;
        seq_ = seq;
        rank_ = rank;
        out_ = outDim;
        slots_ = slots;
        chunkCols_ = chunkCols;
        yGm_.SetGlobalBuffer((__gm__ T *)y);
        vGm_.SetGlobalBuffer((__gm__ float *)v);
        bGm_.SetGlobalBuffer((__gm__ T *)loraB);
        idxGm_.SetGlobalBuffer((__gm__ I *)idx);
        yOutGm_.SetGlobalBuffer((__gm__ T *)yOut);

        // As many columns as fit B_TILE_BYTES for r rows, whole blocks per row, at most N_TILE_CAP.
        nTile_ = MinU32(N_TILE_CAP, B_TILE_ELEMS / rank / BLOCK_ELEMS * BLOCK_ELEMS);

        pipe_.InitBuffer(bQueue_, BUFFER_NUM, B_TILE_BYTES);
        pipe_.InitBuffer(yQueue_, BUFFER_NUM, N_TILE_CAP * T_BYTES);
        pipe_.InitBuffer(outQueue_, BUFFER_NUM, N_TILE_CAP * T_BYTES);
        if constexpr (!IS_F32) {
            pipe_.InitBuffer(bF32_, B_TILE_ELEMS * F32_BYTES);
            pipe_.InitBuffer(accF32_, N_TILE_CAP * F32_BYTES);
        }
    }

    __aicore__ inline void Process()
    {
        const uint32_t chunks = (out_ + chunkCols_ - 1) / chunkCols_;
        const uint64_t units = static_cast<uint64_t>(rows_) * chunks;
        const uint64_t cores = static_cast<uint64_t>(AscendC::GetBlockNum());
        const uint64_t share = (units + cores - 1) / cores;
        const uint64_t first = share * static_cast<uint64_t>(AscendC::GetBlockIdx());
        const uint64_t last = first + share < units ? first + share : units;
        for (uint64_t u = first; u < last; ++u) {
            const uint32_t row = static_cast<uint32_t>(u / chunks);
            const uint32_t c0 = static_cast<uint32_t>(u % chunks) * chunkCols_;
            const uint32_t c1 = MinU32(out_, c0 + chunkCols_);
            // Scalar-unit GM read, before any tile of this unit is queued. The scalar unit only
            // issues work to MTE2/V/MTE3, so it usually reads this index while the pipes are still
            // busy with the previous unit.
            const int64_t slot = static_cast<int64_t>(idxGm_.GetValue(row));
            if (slot >= static_cast<int64_t>(slots_)) {
                AscendC::Trap();
            }
            if (slot < 0) {  // base-model row: y passes through and no adapter byte moves
                PassThrough(row, c0, c1);
                continue;
            }
            const uint64_t bBase = static_cast<uint64_t>(slot) * rank_ * out_;
            for (uint32_t n0 = c0; n0 < c1; n0 += nTile_) {
                const uint32_t nLen = MinU32(nTile_, c1 - n0);
                const uint32_t bStride = CeilTo(nLen, BLOCK_ELEMS);  // elements between B rows in UB
                CopyInWeights(bBase + n0, nLen);
                AscendC::LocalTensor<T> bLocal = bQueue_.DeQue<T>();
                const AscendC::LocalTensor<float> b32 = Widen(bLocal, rank_ * bStride);
                for (uint32_t t = 0; t < seq_; ++t) {
                    CopyIn(row, t, n0, nLen);
                    Compute(b32, bStride, row, t, nLen);
                    CopyOut(row, t, n0, nLen);
                }
                bQueue_.FreeTensor(bLocal);
            }
        }
    }

private:
    static constexpr bool IS_F32 = AscendC::IsSameType<T, float>::value;
    static constexpr uint32_t T_BYTES = sizeof(T);
    static constexpr uint32_t BLOCK_ELEMS = BLOCK_BYTES / T_BYTES;
    static constexpr uint32_t B_TILE_ELEMS = B_TILE_BYTES / T_BYTES;
    static_assert(B_TILE_ELEMS / RANK_CAP >= BLOCK_ELEMS, "a B tile must hold one block per row");
    static_assert(BUFFER_NUM * B_TILE_BYTES + 2 * BUFFER_NUM * N_TILE_CAP * T_BYTES +
                      (IS_F32 ? 0 : (B_TILE_ELEMS + N_TILE_CAP) * F32_BYTES) <= UB_BYTES,
                  "BgmvExpand buffers exceed the Unified Buffer");

    __aicore__ inline uint64_t YOffset(uint32_t row, uint32_t t, uint32_t n0) const
    {
        return (static_cast<uint64_t>(row) * seq_ + t) * out_ + n0;
    }

    // MTE2: r rows of nLen columns of B[slot], `out` elements apart in GM, one block-aligned
    // UB row each.
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

    // V: acc = y + sum_j v[t, j] * B[j, :] in float32, then rounded once into y's dtype.
    __aicore__ inline void Compute(const AscendC::LocalTensor<float> &b32, uint32_t bStride, uint32_t row,
                                   uint32_t t, uint32_t nLen)
    {
        AscendC::LocalTensor<T> yLocal = yQueue_.DeQue<T>();
        AscendC::LocalTensor<T> outLocal = outQueue_.AllocTensor<T>();
        AscendC::LocalTensor<float> acc;
        if constexpr (IS_F32) {
            acc = outLocal;
            AscendC::DataCopy(acc, yLocal, CeilTo(nLen, BLOCK_ELEMS));
        } else {
            acc = accF32_.Get<float>();
            AscendC::Cast(acc, yLocal, AscendC::RoundMode::CAST_NONE, nLen);
        }
        yQueue_.FreeTensor(yLocal);
        const uint64_t vRow = (static_cast<uint64_t>(row) * seq_ + t) * rank_;
        for (uint32_t j = 0; j < rank_; ++j) {
            // v[t, j] is a scalar GM read and rides the vector instruction as its scalar operand.
            const float vj = vGm_.GetValue(vRow + j);
            AscendC::Axpy(acc, b32[j * bStride], vj, static_cast<int32_t>(nLen));
        }
        if constexpr (!IS_F32) {
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

    // float32 view of the B tile: the tile itself for float32 data, else its Cast into bF32_.
    // It serves every token of the row, so the tile is freed after the token loop.
    __aicore__ inline AscendC::LocalTensor<float> Widen(const AscendC::LocalTensor<T> &tile, uint32_t count)
    {
        if constexpr (IS_F32) {
            return tile;
        } else {
            AscendC::LocalTensor<float> wide = bF32_.Get<float>();
            AscendC::Cast(wide, tile, AscendC::RoundMode::CAST_NONE, count);
            return wide;
        }
    }

    // idx < 0: y_out = y through UB (GM-to-GM needs a UB hop). The UB copy runs on the vector
    // pipe, so the same queue hand-offs as Compute order it.
    __aicore__ inline void PassThrough(uint32_t row, uint32_t c0, uint32_t c1)
    {
        for (uint32_t n0 = c0; n0 < c1; n0 += N_TILE_CAP) {
            const uint32_t nLen = MinU32(N_TILE_CAP, c1 - n0);
            for (uint32_t t = 0; t < seq_; ++t) {
                CopyIn(row, t, n0, nLen);
                AscendC::LocalTensor<T> yLocal = yQueue_.DeQue<T>();
                AscendC::LocalTensor<T> outLocal = outQueue_.AllocTensor<T>();
                AscendC::DataCopy(outLocal, yLocal, CeilTo(nLen, BLOCK_ELEMS));
                yQueue_.FreeTensor(yLocal);
                outQueue_.EnQue(outLocal);
                CopyOut(row, t, n0, nLen);
            }
        }
    }

    AscendC::TPipe pipe_;
    AscendC::TQue<AscendC::QuePosition::VECIN, BUFFER_NUM> bQueue_;
    AscendC::TQue<AscendC::QuePosition::VECIN, BUFFER_NUM> yQueue_;
    AscendC::TQue<AscendC::QuePosition::VECOUT, BUFFER_NUM> outQueue_;
    AscendC::TBuf<AscendC::QuePosition::VECCALC> bF32_;
    AscendC::TBuf<AscendC::QuePosition::VECCALC> accF32_;
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
    uint32_t nTile_ = 0;      // output columns per B tile
};

}  // namespace

extern "C" __global__ __aicore__ void bgmv_expand(GM_ADDR y, GM_ADDR v, GM_ADDR lora_b, GM_ADDR idx, GM_ADDR y_out,
                                                  GM_ADDR workspace, GM_ADDR tiling)
{
    GET_TILING_DATA(tilingData, tiling);
    BgmvExpandKernel<DTYPE_Y, DTYPE_IDX> op;
    op.Init(y, v, lora_b, idx, y_out, tilingData.rows, tilingData.seq, tilingData.rank, tilingData.outDim,
            tilingData.slots, tilingData.chunkCols);
    op.Process();
}
