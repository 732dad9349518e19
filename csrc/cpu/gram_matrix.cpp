// CPU forward of tconv::gram_matrix: G = s * X X^T for each batch item, upper triangle only.
//
// G is cut into W x W tiles (W = one SIMD vector of the accumulation type, simd_tile.h). Only the
// tiles (i, j) with i <= j are computed (common/gram_tiles.h): about half the FLOPs of X @ X^T.
// Each is written to both (i, j) and (j, i), so G equals G^T bit for bit.
// Packing transposes each W-row panel of X to (k, W) order (float: 16 x 16 register transposes
// with AVX-512, 8 x 8 with AVX2) and converts it to the accumulation type (float16 / bfloat16
// accumulate in float32); the microkernel then adds panel products into tile sums, which are
// scaled in the accumulation type (raw sums above the float16 range do not overflow) and rounded
// once into G. Two schedules:
//   - short L (packed batch, or each item's for short rows, fits in cache; see kShortLength):
//     pack everything, then one work item per unit (a tile, or with AVX2 three tiles of a column,
//     see Unit), summed over all of L in registers and stored directly;
//   - long L: work items are (batch item, segment of L), each packing cache-sized chunks and
//     accumulating partial tile sums; a second pass adds the segments in order.
// Two parallel regions either way (few barriers). The schedule, segments and chunks depend on the
// shape only, never on the thread count: bitwise reproducible results. The baseline build (no
// AVX2) takes the BLAS's row blocks instead (gram_forward_blas).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "common/gram_args.h"
#include "common/gram_tiles.h"
#include "common/macros.h"
#include "cpu/gemm.h"
#include "cpu/parallel.h"
#include "cpu/simd_tile.h"
#include "cpu/simd_transpose.h"
#include "cpu/kernels.h"

namespace tconv::cpu::CPU_CAPABILITY {
namespace {

using at::Tensor;

// Inputs whose packed copy (whole batch) is at most kPackedInputBytes take the tiles-parallel path.
// So do short rows (L <= kShortLength) whose packed copy is at most kPackedInputBytes per batch
// item and kPackedBatchBytes in all: many channels make the segments' chunks short (C = 512:
// 128 positions), and 4 x 512 x 32 x 32 ran at 1.60x bmm there instead of 1.84x with AVX2 (1.86x
// instead of 1.96x with AVX-512, one thread). Long rows keep the segments, whose partial sums
// also round less.
constexpr int64_t kPackedInputBytes = 2 << 20;
constexpr int64_t kShortLength = 2048;
constexpr int64_t kPackedBatchBytes = 32 << 20;
// Splitting L: up to this many (batch item, segment) work items, each segment at least this long,
// so the partial sums (one triangle per segment, added up at the end) stay cheap.
constexpr int64_t kParallelItems = 4;
constexpr int64_t kMinSegmentLength = 128;
// Within a segment, chunks of L whose packed panels fit in about half the L2 cache.
constexpr int64_t kPackedChunkBytes = 256 << 10;
// Packing transposes blocks of this many positions, so source and destination lines stay in L1.
constexpr int64_t kPackBlock = 16;

// Packs rows [panel * W, panel * W + W) of X (rows >= C are zero), positions [k0, k0 + len), into
// dst[k * W + r] in the accumulation type.
template <typename scalar_t, typename acc_t>
void pack_panel(const scalar_t* x, int64_t C, int64_t stride_c, int64_t stride_l, int64_t panel,
                int64_t k0, int64_t len, acc_t* dst) {
  constexpr int W = kLanes<acc_t>;
  const int64_t row0 = panel * W;
  const int64_t rows = std::min<int64_t>(W, C - row0);
  if (rows < W) std::fill(dst, dst + len * W, acc_t(0));
  if (stride_c == 1 && rows == W) {  // channels-last: W channels of one position are contiguous
    for (int64_t k = 0; k < len; ++k) {
      const scalar_t* src = x + (k0 + k) * stride_l + row0;
      for (int r = 0; r < W; ++r) dst[k * W + r] = static_cast<acc_t>(src[r]);
    }
    return;
  }
  int64_t k_done = 0;
  if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<acc_t, float> && W == 16 &&
                kHasTranspose16x16) {
    if (stride_l == 1 && rows == W) {  // float rows: 16 x 16 blocks transposed in registers
      const float* src = x + row0 * stride_c + k0;
      for (; k_done + 16 <= len; k_done += 16) transpose_16x16(src + k_done, stride_c, dst + k_done * W);
    }
  }
  if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<acc_t, float> && W == 8 &&
                kHasTranspose8x8) {
    if (stride_l == 1 && rows == W) {  // float rows, AVX2: 8 x 8 blocks transposed in registers
      const float* src = x + row0 * stride_c + k0;
      for (; k_done + 8 <= len; k_done += 8)
        transpose_8x8(src + k_done, stride_c, dst + k_done * W);
    }
  }
  for (int64_t kb = k_done; kb < len; kb += kPackBlock) {
    const int64_t kb_end = std::min(len, kb + kPackBlock);
    for (int64_t r = 0; r < rows; ++r) {
      const scalar_t* src = x + (row0 + r) * stride_c + k0 * stride_l;
      for (int64_t k = kb; k < kb_end; ++k) dst[k * W + r] = static_cast<acc_t>(src[k * stride_l]);
    }
  }
}

// The work units of the upper triangle, column by column (the order of common/gram_tiles.h): with
// AVX2, tile column j is cut into groups of kGroupPanels tile rows [i0, i0 + 3); a full group
// (i0 + 2 <= j, the diagonal tile included if i0 + 2 == j: store_tile keeps its upper half) runs
// block3_multiply_accumulate (simd_tile.h), a group cut short by the diagonal runs its tiles i0..j
// one by one. Otherwise every unit is one tile.
// A unit's tiles are consecutive in the tile numbering (tile0, tile0 + 1, ...).
#if defined(TCONV_CPU_AVX2)
constexpr int64_t kGroupPanels = 3;
#else
constexpr int64_t kGroupPanels = 1;
#endif

struct Unit {
  int64_t i0, j;  // first tile row, tile column
  int64_t tiles;  // tiles (i0, j) .. (i0 + tiles - 1, j)
  int64_t tile0;  // number of tile (i0, j) in the column-by-column order
  bool block;     // kGroupPanels tiles by the block kernel
};

inline std::vector<Unit> make_units(int64_t panels) {
  std::vector<Unit> units;
  for (int64_t j = 0; j < panels; ++j) {
    for (int64_t i0 = 0; i0 <= j; i0 += kGroupPanels) {
      const bool block = kGroupPanels > 1 && i0 + kGroupPanels <= j + 1;
      units.push_back({i0, j, std::min(kGroupPanels, j - i0 + 1), j * (j + 1) / 2 + i0, block});
    }
  }
  return units;
}

// Adds a unit's products over `len` positions into its tiles' sums (tile r at sums + r * W * W).
// panels: the packed panels, panel p at panels + p * panel_stride.
template <typename acc_t>
void unit_multiply_accumulate(const Unit& u, const acc_t* panels, int64_t panel_stride, int64_t len,
                              acc_t* sums, bool first) {
  constexpr int W = kLanes<acc_t>;
  const acc_t* b = panels + u.j * panel_stride;
  if constexpr (kGroupPanels == 3) {
    if (u.block) {
      block3_multiply_accumulate<acc_t>(panels + u.i0 * panel_stride, panel_stride, b, len, sums,
                                        first);
      return;
    }
  }
  for (int64_t r = 0; r < u.tiles; ++r)
    tile_multiply_accumulate<acc_t>(panels + (u.i0 + r) * panel_stride, b, len, sums + r * W * W,
                                    first);
}

// Scales a tile's sums in acc_t, rounds once, and writes tile (i, j) of G row by row and its
// mirror (j, i), whose rows are the tile's columns: both store contiguously. A diagonal tile uses
// only its upper half (r <= c), so G equals G^T bit for bit.
template <typename scalar_t, typename acc_t>
void store_tile(acc_t* sum, TilePair tp, int64_t C, acc_t s, scalar_t* g) {
  constexpr int W = kLanes<acc_t>;
  const int64_t rows = std::min<int64_t>(W, C - tp.i * W), cols = std::min<int64_t>(W, C - tp.j * W);
  const bool diagonal = tp.i == tp.j;
  for (int e = 0; e < W * W; ++e) sum[e] *= s;
  for (int64_t r = 0; r < rows; ++r) {
    scalar_t* dst = g + (tp.i * W + r) * C + tp.j * W;
    for (int64_t c = diagonal ? r : 0; c < cols; ++c) dst[c] = static_cast<scalar_t>(sum[c * W + r]);
  }
  for (int64_t c = 0; c < cols; ++c) {
    scalar_t* dst = g + (tp.j * W + c) * C + tp.i * W;
    const int64_t r_end = diagonal ? c : rows;
    for (int64_t r = 0; r < r_end; ++r) dst[r] = static_cast<scalar_t>(sum[c * W + r]);
  }
}

// Short L: the packed X of the whole batch fits in cache, so it is packed once and the tiles are
// the work items; each sums over all of L in registers and is stored straight into G.
template <typename scalar_t>
void gram_forward_tiles(const Tensor& x, Tensor& out, double scale) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int W = kLanes<acc_t>;
  const int64_t N = x.size(0), C = x.size(1), L = x.size(2);
  const int64_t panels = ceil_div(C, W), tiles = triangle_tile_count(panels);
  Tensor packed = at::empty({N, panels, L * W}, x.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
  acc_t* pk = packed.mutable_data_ptr<acc_t>();
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  parallel_for_work(0, N * panels, N * C * L, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item)
      pack_panel<scalar_t, acc_t>(xp + item / panels * x.stride(0), C, x.stride(1), x.stride(2),
                                  item % panels, 0, L, pk + item * L * W);
  });
  const acc_t s = static_cast<acc_t>(scale);
  scalar_t* op = out.mutable_data_ptr<scalar_t>();
  const std::vector<Unit> units = make_units(panels);
  // The range is split by tiles (balanced work); a unit is run by the range holding its first tile.
  parallel_for_work(0, N * tiles, N * C * C * L / 2, [&](int64_t begin, int64_t end) {
    acc_t sum[kGroupPanels * W * W];
    for (int64_t item = begin; item < end;) {
      const int64_t n = item / tiles, t_end = std::min(end - n * tiles, tiles);
      const acc_t* base = pk + n * panels * L * W;
      auto u = std::lower_bound(units.begin(), units.end(), item % tiles,
                                [](const Unit& x, int64_t t) { return x.tile0 < t; });
      for (; u != units.end() && u->tile0 < t_end; ++u) {
        unit_multiply_accumulate<acc_t>(*u, base, L * W, L, sum, true);
        for (int64_t r = 0; r < u->tiles; ++r)
          store_tile<scalar_t, acc_t>(sum + r * W * W, {u->i0 + r, u->j}, C, s, op + n * C * C);
      }
      item = (n + 1) * tiles;
    }
  });
}

// Long L: the work items are (batch item, segment of L); each walks its segment in cache-sized
// chunks (pack, then add the chunk into the segment's partial tile sums); a second pass adds the
// segments' partial sums in order and stores G.
template <typename scalar_t>
void gram_forward_segments(const Tensor& x, Tensor& out, double scale) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int W = kLanes<acc_t>;
  const int64_t N = x.size(0), C = x.size(1), L = x.size(2);
  const int64_t panels = ceil_div(C, W);
  const int64_t tiles = triangle_tile_count(panels);
  const int64_t splits = std::max<int64_t>(
      1, std::min(ceil_div(kParallelItems, N), L / kMinSegmentLength));
  const int64_t seg_len = ceil_div(L, splits);
  const int64_t chunk = std::clamp<int64_t>(
      kPackedChunkBytes / (panels * W * static_cast<int64_t>(sizeof(acc_t))), kPackBlock, seg_len);
  const auto acc_opts = x.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
  // partial[n][s][t]: tile t of batch item n summed over segment s.
  Tensor partial = at::empty({N, splits, tiles, W * W}, acc_opts);
  const std::vector<Unit> units = make_units(panels);
  acc_t* partial_p = partial.mutable_data_ptr<acc_t>();
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const int64_t sN = x.stride(0), sC = x.stride(1), sL = x.stride(2);

  parallel_for_work(0, N * splits, N * C * C * L / 2, [&](int64_t begin, int64_t end) {
    Tensor packed = at::empty({panels, chunk * W}, acc_opts);
    acc_t* pk = packed.mutable_data_ptr<acc_t>();
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / splits, k_begin = item % splits * seg_len;
      const int64_t k_end = std::min(L, k_begin + seg_len);
      acc_t* sums = partial_p + item * tiles * W * W;
      for (int64_t k0 = k_begin; k0 < k_end; k0 += chunk) {
        const int64_t len = std::min(chunk, k_end - k0);
        for (int64_t p = 0; p < panels; ++p)
          pack_panel<scalar_t, acc_t>(xp + n * sN, C, sC, sL, p, k0, len, pk + p * chunk * W);
        for (const Unit& u : units)
          unit_multiply_accumulate<acc_t>(u, pk, chunk * W, len, sums + u.tile0 * W * W,
                                          k0 == k_begin);
      }
    }
  });

  const acc_t s = static_cast<acc_t>(scale);
  scalar_t* op = out.mutable_data_ptr<scalar_t>();
  parallel_for_work(0, N * tiles, N * C * C * L / 2, [&](int64_t begin, int64_t end) {
    acc_t sum[W * W];
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / tiles, t = item % tiles;
      const acc_t* part = partial_p + (n * splits * tiles + t) * W * W;
      std::copy(part, part + W * W, sum);
      for (int64_t sp = 1; sp < splits; ++sp)
        for (int e = 0; e < W * W; ++e) sum[e] += part[sp * tiles * W * W + e];
      store_tile<scalar_t, acc_t>(sum, triangle_tile(t), C, s, op + n * C * C);
    }
  });
}

// The baseline build has no FMA and 16-byte vectors: its tiles run at a third of bmm's speed, and
// the BLAS's own GEMM (its best kernels whatever the capability) is faster. There the
// upper triangle is computed in row blocks by the BLAS: G[r0:r1, r0:C] = X[r0:r1] X[r0:C]^T (about
// half the FLOPs of X X^T when C is several blocks of kBlasRows rows), one single-threaded call per (batch item,
// row block, segment of L). A second pass adds the segments in order, scales, rounds and writes
// each upper-triangle sum to (i, j) and (j, i): G equals G^T bit for bit, and the segments depend
// on the shape only (bitwise reproducible for any thread count).
constexpr int64_t kBlasRows = 32;
constexpr int64_t kMinBlasSegment = 1024;

template <typename scalar_t>
void gram_forward_blas(const Tensor& x_in, Tensor& out, double scale) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = x_in.size(0), C = x_in.size(1), L = x_in.size(2);
  // The BLAS operand: X in acc_t with rows (stride_l == 1) or columns (stride_c == 1) contiguous.
  Tensor x = x_in.to(c10::CppTypeToScalarType<acc_t>::value);
  if (x.stride(2) != 1 && x.stride(1) != 1) x = x.contiguous();
  const bool rows_contiguous = x.stride(2) == 1;
  const int64_t ld = rows_contiguous ? x.stride(1) : x.stride(2);
  const acc_t* xp = x.const_data_ptr<acc_t>();
  const int64_t blocks = ceil_div(C, kBlasRows);
  // Enough work items for the threads a machine may have, each segment long enough for the BLAS.
  const int64_t segments = std::clamp<int64_t>(ceil_div(kParallelItems, N * blocks), 1,
                                               std::max<int64_t>(L / kMinBlasSegment, 1));
  const int64_t seg_len = ceil_div(L, segments);
  Tensor partial = at::empty({N, segments, C, C}, x.options());
  acc_t* pp = partial.mutable_data_ptr<acc_t>();
  // Row block b's GEMM has C - b * kBlasRows columns: the blocks go in the order 0, last, 1,
  // last - 1, ... so that the contiguous ranges at::parallel_for gives each thread hold about the
  // same work (in plain order, the first of two threads got 3/4 of it).
  parallel_for_work(0, N * blocks * segments, N * C * C * L / 2, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t seg = item % segments, pos = item / segments % blocks, n = item / (segments * blocks);
      const int64_t blk = pos % 2 == 0 ? pos / 2 : blocks - 1 - pos / 2;
      const int64_t r0 = blk * kBlasRows, rows = std::min(kBlasRows, C - r0);
      const int64_t l0 = seg * seg_len, len = std::min(seg_len, L - l0);
      const acc_t* origin = xp + n * x.stride(0) + r0 * (rows_contiguous ? ld : 1) + l0 * (rows_contiguous ? 1 : ld);
      // A = X[r0:r0+rows, l0:l0+len], B = X[r0:C, l0:l0+len]^T.
      gemm<acc_t>(rows, C - r0, len, {origin, ld, !rows_contiguous}, {origin, ld, rows_contiguous},
                  pp + ((n * segments + seg) * C + r0) * C + r0, C, false);
    }
  });
  const acc_t s = static_cast<acc_t>(scale);
  scalar_t* op = out.mutable_data_ptr<scalar_t>();
  parallel_for_work(0, N * C, N * C * C * segments, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / C, pos = item % C;
      const int64_t i = pos % 2 == 0 ? pos / 2 : C - 1 - pos / 2;  // rows paired as the blocks
      const acc_t* row = pp + (n * segments * C + i) * C;
      scalar_t* g = op + n * C * C;
      for (int64_t j = i; j < C; ++j) {
        acc_t sum = row[j];
        for (int64_t seg = 1; seg < segments; ++seg) sum += row[seg * C * C + j];
        g[i * C + j] = g[j * C + i] = static_cast<scalar_t>(sum * s);
      }
    }
  });
}

template <typename scalar_t>
void gram_forward(const Tensor& x, Tensor& out, double scale) {
#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t item_bytes =
      ceil_div(x.size(1), kLanes<acc_t>) * kLanes<acc_t> * x.size(2) * sizeof(acc_t);
  const int64_t batch_bytes = x.size(0) * item_bytes;
  if (batch_bytes <= kPackedInputBytes ||
      (x.size(2) <= kShortLength && item_bytes <= kPackedInputBytes && batch_bytes <= kPackedBatchBytes)) {
    gram_forward_tiles<scalar_t>(x, out, scale);
  } else {
    gram_forward_segments<scalar_t>(x, out, scale);
  }
#else
  gram_forward_blas<scalar_t>(x, out, scale);
#endif
}

}  // namespace

// Entry point (cpu/kernels.h), compiled once per CPU capability (cpu/capability/).
Tensor gram_matrix_cpu(const Tensor& features, bool normalize) {
  check_gram_features(features, "gram_matrix");
  const int64_t N = features.size(0), C = features.size(1), L = features.size(2);
  Tensor out = at::empty({N, C, C}, features.options());
  if (out.numel() == 0) return out;
  if (L == 0) return out.zero_();
  TCONV_DISPATCH_FLOATING_TYPES(features.scalar_type(), "gram_matrix",
                                  [&] { gram_forward<scalar_t>(features, out, gram_scale(C, L, normalize)); });
  return out;
}

}  // namespace tconv::cpu::CPU_CAPABILITY
