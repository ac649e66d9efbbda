// Tile arithmetic of the BGMV kernels: UB buffer sizes, tile widths, tile counts and tails, the
// split of work over vector cores. Shared by op_kernel/ (device), op_host/ (tiling) and the host
// unit test tests/ascend/bgmv_tiles_test.cc (g++), so the numbers the test checks are the ones the
// kernels use. Plain C++: no AscendC header, every function constexpr.
#ifndef COLD_MS_BGMV_TILES_H
#define COLD_MS_BGMV_TILES_H

#include <cstdint>

#ifndef __aicore__  // defined by kernel_operator.h on the device; empty on the host
#define __aicore__
#endif

namespace bgmv {

// Two UB buffers per queue: a DMA engine fills or drains one while the vector unit uses the other.
constexpr int32_t BUFFER_NUM = 2;
// Unified Buffer of one vector core on Atlas A2/A3 (ascend910b, ascend910_93).
constexpr uint32_t UB_BYTES = 192 * 1024;
// UB is addressed in 32-byte blocks: vector operands and each DMA row must start on one.
constexpr uint32_t BLOCK_BYTES = 32;
constexpr uint32_t F32_BYTES = 4;  // v and every accumulator are float32
// Largest LoRA rank: shrink's repeat count of one vector instruction (<= 255) and the height of
// its product block; op_host rejects more (BGMV_RANK_CAP).
constexpr uint32_t RANK_CAP = 128;

// ---- shrink: v[i, t] = x[i, t] @ A[idx[i]]^T
constexpr uint32_t LANES = 64;           // one vector repeat: 256 bytes = 64 floats
constexpr uint32_t A_TILE_ELEMS = 8192;  // r rows x kTile columns of A per buffer
constexpr uint32_t K_TILE_CAP = 512;     // a float32 row stays within the 8-bit repeat stride (64 blocks)
constexpr uint32_t TOK_BLOCK = 8;        // tokens sharing one pass over A

// ---- expand: y_out[i, t] = y[i, t] + v[i, t] @ B[idx[i]]
constexpr uint32_t B_TILE_BYTES = 32 * 1024;  // r rows x nTile columns of B per buffer: long MTE2 bursts
constexpr uint32_t N_TILE_CAP = 2048;         // widest column tile: sizes y, y_out and the accumulator
constexpr uint32_t V_TOK = 8;                 // tokens whose rank vectors one DataCopy brings to UB
constexpr uint32_t ROW_BLOCK_CAP = 1024;      // rows (indices in UB) one work unit groups by adapter
constexpr uint32_t MIN_CHUNK_COLS = 512;      // narrowest column slice worth a unit (MTE2 burst length)
constexpr uint32_t CHUNK_ALIGN = 128;         // slices start 256 bytes apart for 16-bit data

__aicore__ constexpr uint32_t Min(uint32_t a, uint32_t b) { return a < b ? a : b; }
__aicore__ constexpr uint64_t CeilDiv(uint64_t n, uint64_t d) { return (n + d - 1) / d; }
__aicore__ constexpr uint32_t CeilTo(uint32_t n, uint32_t step) { return (n + step - 1) / step * step; }
__aicore__ constexpr uint32_t BlockElems(uint32_t elemBytes) { return BLOCK_BYTES / elemBytes; }

// Tiles covering `len` elements `tile` at a time, and the length of tile i (the last may be a tail).
__aicore__ constexpr uint32_t TileCount(uint32_t len, uint32_t tile) { return static_cast<uint32_t>(CeilDiv(len, tile)); }
__aicore__ constexpr uint32_t TileLen(uint32_t len, uint32_t tile, uint32_t i) { return Min(tile, len - i * tile); }

// Columns of one K tile of A: as many as A_TILE_ELEMS holds for r rows, whole blocks, <= K_TILE_CAP.
__aicore__ constexpr uint32_t ShrinkKTile(uint32_t rank, uint32_t elemBytes)
{
    return Min(K_TILE_CAP, A_TILE_ELEMS / rank / BlockElems(elemBytes) * BlockElems(elemBytes));
}

// Columns of one tile of B: as many as B_TILE_BYTES holds for r rows, whole blocks, <= N_TILE_CAP.
__aicore__ constexpr uint32_t ExpandNTile(uint32_t rank, uint32_t elemBytes)
{
    return Min(N_TILE_CAP, B_TILE_BYTES / elemBytes / rank / BlockElems(elemBytes) * BlockElems(elemBytes));
}

// UB bytes of each kernel for data of elemBytes (2: fp16/bf16, with float32 copies; 4: float32).
__aicore__ constexpr uint32_t ShrinkUbBytes(uint32_t elemBytes)
{
    return BUFFER_NUM * (A_TILE_ELEMS + TOK_BLOCK * K_TILE_CAP) * elemBytes +          // A, x tiles
           (elemBytes == F32_BYTES ? 0 : (A_TILE_ELEMS + TOK_BLOCK * K_TILE_CAP) * F32_BYTES) +  // widened
           (RANK_CAP * LANES + RANK_CAP + BUFFER_NUM * TOK_BLOCK * RANK_CAP) * F32_BYTES;  // products, sums, v
}

__aicore__ constexpr uint32_t ExpandUbBytes(uint32_t elemBytes, uint32_t idxBytes)
{
    return BUFFER_NUM * B_TILE_BYTES + 2 * BUFFER_NUM * N_TILE_CAP * elemBytes +     // B; y, y_out tiles
           V_TOK * RANK_CAP * F32_BYTES + ROW_BLOCK_CAP * idxBytes +                   // v block, indices
           (elemBytes == F32_BYTES ? 0 : B_TILE_BYTES / elemBytes * F32_BYTES + N_TILE_CAP * F32_BYTES);
}

__aicore__ constexpr bool FitsUb(uint32_t bytes) { return bytes <= UB_BYTES; }

static_assert(FitsUb(ShrinkUbBytes(2)) && FitsUb(ShrinkUbBytes(4)), "BgmvShrink buffers exceed the UB");
static_assert(FitsUb(ExpandUbBytes(2, 8)) && FitsUb(ExpandUbBytes(4, 8)), "BgmvExpand buffers exceed the UB");
static_assert(A_TILE_ELEMS / RANK_CAP >= LANES, "a K tile must span one vector repeat at the largest rank");
static_assert(ExpandNTile(RANK_CAP, 4) >= BlockElems(4), "a B tile must hold one block per row");
static_assert(ROW_BLOCK_CAP * 8 % BLOCK_BYTES == 0 && V_TOK * RANK_CAP * F32_BYTES % BLOCK_BYTES == 0,
              "UB buffers must be whole blocks");

// Contiguous range [first, last) of `units` taken by core `idx` of `cores`.
struct Range {
    uint64_t first;
    uint64_t last;
};
__aicore__ constexpr Range CoreRange(uint64_t units, uint64_t cores, uint64_t idx)
{
    const uint64_t share = CeilDiv(units, cores);
    const uint64_t first = share * idx < units ? share * idx : units;
    return {first, first + share < units ? first + share : units};
}

// BgmvExpand's work units: rows in blocks of rowBlock (grouped by adapter inside a block, so a
// shared adapter's B tile is read once per block), columns in slices of chunkCols. Columns are
// split first (no byte of B is read twice for it), down to MIN_CHUNK_COLS; then rows, until
// every core has a unit.
struct ExpandSplit {
    uint32_t chunkCols;
    uint32_t rowBlock;
    uint64_t units;
};
__aicore__ constexpr ExpandSplit SplitExpand(uint32_t rows, uint32_t outDim, uint32_t cores)
{
    const uint32_t widest = static_cast<uint32_t>(CeilDiv(outDim, MIN_CHUNK_COLS));
    const uint32_t chunks = widest < 1 ? 1 : Min(widest, cores < 1 ? 1 : cores);
    const uint32_t cols = CeilTo(static_cast<uint32_t>(CeilDiv(outDim, chunks)), CHUNK_ALIGN);
    const uint32_t chunkCols = cols < CHUNK_ALIGN ? CHUNK_ALIGN : cols;
    const uint32_t realChunks = TileCount(outDim, chunkCols);
    const uint32_t rowBlocks = Min(rows < 1 ? 1 : rows, static_cast<uint32_t>(CeilDiv(cores, realChunks)));
    const uint32_t rowBlock = Min(ROW_BLOCK_CAP, static_cast<uint32_t>(CeilDiv(rows, rowBlocks < 1 ? 1 : rowBlocks)));
    const uint32_t block = rowBlock < 1 ? 1 : rowBlock;
    return {chunkCols, block, CeilDiv(rows, block) * realChunks};
}

}  // namespace bgmv

#endif  // COLD_MS_BGMV_TILES_H
