// Host unit test of the BGMV kernels' tile arithmetic (custom_ops/ascend/op_kernel/bgmv_tiles.h),
// compiled with g++ and run by tests/test_ascend_tiles.py. Expected values are counted by hand in
// the comments; the UB budget static_asserts are compiled in with the header.
#include <cstdio>
#include <cstdlib>
#include <initializer_list>

#include "bgmv_tiles.h"

static int failures = 0;
#define CHECK_EQ(got, want)                                                                      \
    do {                                                                                         \
        const unsigned long long g_ = (got), w_ = (want);                                        \
        if (g_ != w_) {                                                                          \
            std::printf("%s:%d: %s = %llu, want %llu\n", __FILE__, __LINE__, #got, g_, w_);      \
            ++failures;                                                                          \
        }                                                                                        \
    } while (0)

using namespace bgmv;

static void tile_widths()
{
    // K tile: min(512, 8192 / r) in whole blocks (16 elements of 16-bit, 8 of float32)
    CHECK_EQ(ShrinkKTile(8, 2), 512);   // 8192 / 8 = 1024 -> cap 512
    CHECK_EQ(ShrinkKTile(16, 2), 512);  // 512
    CHECK_EQ(ShrinkKTile(48, 2), 160);  // 8192 / 48 = 170 -> 160 (10 blocks of 16)
    CHECK_EQ(ShrinkKTile(128, 2), 64);
    CHECK_EQ(ShrinkKTile(128, 4), 64);
    // B tile: min(2048, (32 KiB / element) / r) in whole blocks
    CHECK_EQ(ExpandNTile(8, 2), 2048);  // 16384 / 8 = 2048
    CHECK_EQ(ExpandNTile(16, 2), 1024);
    CHECK_EQ(ExpandNTile(24, 2), 672);  // 16384 / 24 = 682 -> 672 (42 blocks)
    CHECK_EQ(ExpandNTile(128, 2), 128);
    CHECK_EQ(ExpandNTile(8, 4), 1024);  // 8192 / 8
    CHECK_EQ(ExpandNTile(128, 4), 64);
}

static void counts_and_tails()
{
    // 4096 columns in tiles of 1024: 4 full tiles; 4100: a fifth tile of 4 (the tail)
    CHECK_EQ(TileCount(4096, 1024), 4);
    CHECK_EQ(TileLen(4096, 1024, 3), 1024);
    CHECK_EQ(TileCount(4100, 1024), 5);
    CHECK_EQ(TileLen(4100, 1024, 4), 4);
    CHECK_EQ(TileCount(1, 512), 1);
    CHECK_EQ(TileLen(1, 512, 0), 1);
    // LLaMA-2-7B's 11008-wide MLP at r = 16 (K tile 512): 21 full tiles and a tail of 256
    CHECK_EQ(TileCount(11008, ShrinkKTile(16, 2)), 22);
    CHECK_EQ(TileLen(11008, 512, 21), 256);
    // the tiles add up to the length, for many lengths and widths
    for (uint32_t len = 1; len < 3000; len += 7) {
        for (uint32_t tile : {16u, 64u, 160u, 512u, 672u}) {
            uint64_t sum = 0;
            for (uint32_t i = 0; i < TileCount(len, tile); ++i) {
                sum += TileLen(len, tile, i);
            }
            CHECK_EQ(sum, len);
        }
    }
}

static void ub_budgets()
{
    // shrink, 16-bit: 2 x (8192 + 8 x 512) x 2 B = 48 KiB; float32 copies 48 KiB;
    // (128 x 64 + 128 + 2 x 8 x 128) x 4 B = 40.5 KiB -> 139776 bytes
    CHECK_EQ(ShrinkUbBytes(2), 2 * (8192 + 4096) * 2 + (8192 + 4096) * 4 + (8192 + 128 + 2048) * 4);
    CHECK_EQ(ShrinkUbBytes(2), 139776);
    // expand, 16-bit, int64 indices: B 64 KiB, y + y_out 16 KiB, v 4 KiB, indices 8 KiB,
    // float32 B 64 KiB and accumulator 8 KiB -> 167936 bytes
    CHECK_EQ(ExpandUbBytes(2, 8), 65536 + 16384 + 4096 + 8192 + 65536 + 8192);
    CHECK_EQ(ExpandUbBytes(4, 8), 65536 + 32768 + 4096 + 8192);
    CHECK_EQ(FitsUb(ExpandUbBytes(2, 8)), 1);
    CHECK_EQ(FitsUb(UB_BYTES + 1), 0);
}

static void core_split()
{
    // every unit on exactly one core, contiguous, for uneven splits too
    for (uint64_t units = 0; units < 200; units += 3) {
        for (uint64_t cores : {1ull, 7ull, 40ull, 48ull}) {
            uint64_t covered = 0, next = 0;
            for (uint64_t c = 0; c < cores; ++c) {
                const Range r = CoreRange(units, cores, c);
                CHECK_EQ(r.first, next < units ? next : units);
                covered += r.last - r.first;
                next = r.last;
            }
            CHECK_EQ(covered, units);
        }
    }
}

static void expand_split()
{
    // decode, 2 rows, 4096 columns, 40 cores: 8 slices of 512 columns, then 2 row blocks of 1 row
    ExpandSplit s = SplitExpand(2, 4096, 40);
    CHECK_EQ(s.chunkCols, 512);
    CHECK_EQ(s.rowBlock, 1);
    CHECK_EQ(s.units, 16);
    // 64 rows: 8 slices, 5 row blocks (40 / 8) of 13 rows: a shared adapter's B slice is read 5
    // times, not 64
    s = SplitExpand(64, 4096, 40);
    CHECK_EQ(s.chunkCols, 512);
    CHECK_EQ(s.rowBlock, 13);
    CHECK_EQ(s.units, 5 * 8);
    // a narrow output (k_proj of a GQA model, 1024 columns): 2 slices, 20 row blocks of 1 row
    s = SplitExpand(20, 1024, 40);
    CHECK_EQ(s.chunkCols, 512);
    CHECK_EQ(s.units, 20 * 2);
    // an odd width: 4100 columns in 9 slices of 512 (rounded up to 128s), the last 4 wide
    s = SplitExpand(1, 4100, 40);
    CHECK_EQ(s.chunkCols, 512);
    CHECK_EQ(TileCount(4100, s.chunkCols), 9);
    CHECK_EQ(TileLen(4100, s.chunkCols, 8), 4);
    // prefill, 5000 rows on 40 cores: row blocks capped by the indices UB holds
    s = SplitExpand(5000, 4096, 40);
    CHECK_EQ(s.rowBlock, 1000);  // 8 slices -> 5 row blocks of 1000 rows (<= 1024)
    CHECK_EQ(SplitExpand(100000, 512, 1).rowBlock, ROW_BLOCK_CAP);
}

int main()
{
    tile_widths();
    counts_and_tails();
    ub_budgets();
    core_split();
    expand_split();
    if (failures) {
        std::printf("%d check(s) failed\n", failures);
        return 1;
    }
    std::printf("all tile checks passed\n");
    return 0;
}
