// CUDA forward of tconv::gram_matrix: G = s * X X^T for each batch item (X: C x L), the upper
// triangle only. Computes what csrc/cpu/gram_matrix.cpp computes.
//
// G is cut into kTile x kTile tiles and only the tiles (i, j) with i <= j are computed
// (common/gram_tiles.h enumerates them): half the FLOPs of X @ X^T. One thread block per upper
// tile: the rows of tile row i and of tile column j are streamed through shared memory in
// kDepth-wide slices of L (a kStages-deep cp.async pipeline; rows >= C and positions >= L are zero
// filled), and the warps multiply them on tensor cores (cuda/gram_mma.cuh: the step per dtype).
// Each accumulator (a, b) with a <= b is scaled in the accumulation type, rounded once and written
// to both G[a][b] and G[b][a]: G equals G^T bit for bit; float16 Grams whose raw sums exceed 65504
// stay finite as on the CPU.
//
// float32's 3xTF32 split cannot carry Inf / NaN; a block that met one recomputes its tile with
// plain float32 FMAs, so Inf and NaN land where a matmul puts them (rare: no cost otherwise).
//
// Few tiles (small C) with long L would leave most of the GPU idle, so L is then split into a
// fixed number of segments (a function of the shape only): each block writes its segment's raw
// float sums to a workspace and a second kernel adds the segments in order. No atomics: bitwise
// reproducible.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <type_traits>
#include <vector>

#include "common/gram_args.h"
#include "common/gram_tiles.h"
#include "common/macros.h"
#include "cuda/async_copy.cuh"
#include "cuda/gram_mma.cuh"
#include "cuda/launch.cuh"

namespace tconv::cuda {
namespace {

using at::Tensor;

// L is split when fewer upper tiles (over the batch) than the GPU holds at once would run, so that
// the GPU fills (resident_blocks); each segment keeps at least kMinStepsPerSegment pipeline steps.
constexpr int64_t kMinStepsPerSegment = 8;

// Shape of one thread block of the Gram kernel. Every warp owns a kWarpRows x kWarpCols block of
// the tile, i.e. kFragsM x kFragsN accumulator fragments.
template <typename Mma, int kTileSize>
struct GramTileConfig {
  using shared_t = typename Mma::shared_t;
  static constexpr int kTile = kTileSize;
  static constexpr int kWarpRows = kTile == 128 ? 64 : 32, kWarpCols = 32;
  static constexpr int kWarpsM = kTile / kWarpRows, kWarpsN = kTile / kWarpCols;
  static constexpr int kWarps = kWarpsM * kWarpsN, kThreads = 32 * kWarps;
  static constexpr int kFragsM = kWarpRows / Mma::kM, kFragsN = kWarpCols / Mma::kN;
  // One pipeline step: 64 bytes of positions per row. Rows are padded by 16 bytes: wmma needs
  // 16-byte multiples and the 80-byte row stride spreads 8 rows over all 32 banks.
  static constexpr int kDepth = 64 / int(sizeof(shared_t));
  static constexpr int kLd = kDepth + 16 / int(sizeof(shared_t));
  static constexpr int kStages = 4;
  static constexpr int kStageElems = 2 * kTile * kLd;  // the row panel, then the column panel
  static constexpr int kSmemBytes = kStages * kStageElems * int(sizeof(shared_t));
  static_assert(kDepth % Mma::kK == 0, "a pipeline step holds whole mma steps");
  // The epilogue's per-warp scratch: one fragment, rows padded by 16 bytes (wmma's ldm unit), so
  // the column-wise mirror reads hit 2 banks per row pair instead of 8.
  static constexpr int kScratchLd = Mma::kN + 16 / int(sizeof(typename Mma::acc_t));
  static_assert(kWarps * Mma::kM * kScratchLd * int(sizeof(typename Mma::acc_t)) <= kSmemBytes,
                "the epilogue's per-warp scratch reuses the pipeline's shared memory");
};

// Unsigned integer of the same size as T: panels are copied as raw bits (zero fill = 0).
template <typename T>
using bits_of = std::conditional_t<
    sizeof(T) == 2, uint16_t, std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>>;

// Copies rows [row0, row0 + kTile) x positions [k0, k0 + kDepth) of one batch item's X (C x L,
// contiguous) into a panel (kTile rows of kLd); rows >= C and positions >= L become zero.
// 16-byte cp.async where the source is whole and aligned, element copies at ragged edges.
template <typename Cfg>
__device__ __forceinline__ void load_panel(const typename Cfg::shared_t* x, int64_t C, int64_t L,
                                           int64_t row0, int64_t k0,
                                           typename Cfg::shared_t* panel) {
  using bits_t = bits_of<typename Cfg::shared_t>;
  constexpr int kVec = 16 / int(sizeof(bits_t));
  constexpr int kChunksPerRow = Cfg::kDepth / kVec;
  for (int chunk = threadIdx.x; chunk < Cfg::kTile * kChunksPerRow; chunk += Cfg::kThreads) {
    const int r = chunk / kChunksPerRow, kc = chunk % kChunksPerRow * kVec;
    bits_t* dst = reinterpret_cast<bits_t*>(panel + r * Cfg::kLd + kc);
    const int64_t row = row0 + r, k = k0 + kc;
    if (row < C && k < L) {
      const bits_t* src = reinterpret_cast<const bits_t*>(x + row * L + k);
      if (k + kVec <= L && aligned_16(src)) {
        cp_async_16(dst, src);
      } else {
#pragma unroll
        for (int v = 0; v < kVec; ++v) dst[v] = k + v < L ? src[v] : bits_t(0);
      }
    } else {
      *reinterpret_cast<int4*>(dst) = make_int4(0, 0, 0, 0);
    }
  }
}

// A Gram element from its raw sum: scaled in the accumulation type, then rounded once.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ scalar_t gram_value(acc_t sum, acc_t scale) {
  return static_cast<scalar_t>(sum * scale);
}

// The raw sums of a tile's upper elements (a <= b < C) over positions [k_begin, k_end) by plain
// FMAs, stored like the tensor-core results: the fallback for tiles whose inputs hold Inf / NaN.
template <typename Cfg, typename scalar_t, typename acc_t>
__device__ void direct_tile_sums(const scalar_t* x, int64_t C, int64_t L, int64_t row0,
                                 int64_t col0, int64_t k_begin, int64_t k_end, acc_t scale,
                                 scalar_t* g, acc_t* partial_tile) {
  for (int e = threadIdx.x; e < Cfg::kTile * Cfg::kTile; e += Cfg::kThreads) {
    const int64_t a = row0 + e / Cfg::kTile, b = col0 + e % Cfg::kTile;
    if (b >= C || a > b) continue;
    acc_t sum = 0;
    for (int64_t k = k_begin; k < k_end; ++k)
      sum = fma(static_cast<acc_t>(x[a * L + k]), static_cast<acc_t>(x[b * L + k]), sum);
    if (partial_tile != nullptr) {
      partial_tile[e] = sum;
    } else {
      g[a * C + b] = g[b * C + a] = gram_value<scalar_t>(sum, scale);
    }
  }
}

// One thread block per (upper tile, segment of L): blockIdx.x = n * tiles + t, blockIdx.y = the
// segment. With one segment the tile is scaled and stored into G (and its mirror); with several,
// the raw sums go to partial[blockIdx.x][blockIdx.y] (kTile x kTile, row-major).
template <typename Mma, int kTile>
__global__ void __launch_bounds__(GramTileConfig<Mma, kTile>::kThreads)
    gram_upper_tiles_kernel(const typename Mma::scalar_t* __restrict__ features, int64_t C,
                            int64_t L, int64_t tiles, int64_t segment_len,
                            typename Mma::acc_t scale, typename Mma::scalar_t* __restrict__ gram,
                            typename Mma::acc_t* __restrict__ partial) {
#if TCONV_GRAM_HAS_MMA
  using Cfg = GramTileConfig<Mma, kTile>;
  using shared_t = typename Mma::shared_t;
  using scalar_t = typename Mma::scalar_t;
  using acc_t = typename Mma::acc_t;
  extern __shared__ __align__(128) unsigned char smem[];
  shared_t* stages = reinterpret_cast<shared_t*>(smem);

  const int64_t item = blockIdx.x;
  const int64_t n = item / tiles;
  const TilePair tp = triangle_tile(item % tiles);
  const bool diagonal = tp.i == tp.j;
  const int64_t row0 = tp.i * kTile, col0 = tp.j * kTile;
  const shared_t* x = reinterpret_cast<const shared_t*>(features) + n * C * L;
  const int64_t k_begin = int64_t(blockIdx.y) * segment_len;
  const int64_t k_end = std::min(L, k_begin + segment_len);
  const int64_t steps = ceil_div(k_end - k_begin, Cfg::kDepth);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  bool non_finite = false;  // set by Mma::step where its split cannot carry Inf / NaN
  const int warp_m = warp / Cfg::kWarpsN, warp_n = warp % Cfg::kWarpsN;

  // A diagonal tile multiplies a panel by itself: its column panel is not loaded.
  auto load_step = [&](int64_t step, int stage_index) {
    shared_t* stage = stages + stage_index * Cfg::kStageElems;
    const int64_t k0 = k_begin + step * Cfg::kDepth;
    load_panel<Cfg>(x, C, L, row0, k0, stage);
    if (!diagonal) load_panel<Cfg>(x, C, L, col0, k0, stage + kTile * Cfg::kLd);
  };

  typename Mma::FragAcc acc[Cfg::kFragsM][Cfg::kFragsN];
#pragma unroll
  for (int i = 0; i < Cfg::kFragsM; ++i)
#pragma unroll
    for (int j = 0; j < Cfg::kFragsN; ++j) wmma::fill_fragment(acc[i][j], acc_t(0));

  // Multistage pipeline: kStages - 1 steps in flight while one is multiplied. Every iteration
  // commits a group (empty past the end), so wait_group counts stay uniform.
#pragma unroll
  for (int s = 0; s < Cfg::kStages - 1; ++s) {
    if (s < steps) load_step(s, s);
    cp_async_commit();
  }
  int read_stage = 0, write_stage = Cfg::kStages - 1;  // step % kStages, (step - 1) % kStages
  for (int64_t step = 0; step < steps; ++step) {
    cp_async_wait<Cfg::kStages - 2>();
    __syncthreads();  // step's panel is complete for every thread; step - 1's stage is free
    if (step + Cfg::kStages - 1 < steps) load_step(step + Cfg::kStages - 1, write_stage);
    cp_async_commit();
    const shared_t* rows = stages + read_stage * Cfg::kStageElems;
    write_stage = read_stage;
    read_stage = read_stage + 1 == Cfg::kStages ? 0 : read_stage + 1;
    const shared_t* cols = diagonal ? rows : rows + kTile * Cfg::kLd;
    const shared_t* a = rows + warp_m * Cfg::kWarpRows * Cfg::kLd;
    const shared_t* b = cols + warp_n * Cfg::kWarpCols * Cfg::kLd;
#pragma unroll
    for (int kk = 0; kk < Cfg::kDepth; kk += Mma::kK)
      Mma::template step<Cfg::kFragsM, Cfg::kFragsN>(a + kk, b + kk, Cfg::kLd, acc, non_finite);
  }
  cp_async_wait<0>();
  // Then the pipeline's shared memory becomes the epilogue's scratch.
  acc_t* out = partial == nullptr ? nullptr : partial + (item * gridDim.y + blockIdx.y) * kTile * kTile;
  if constexpr (Mma::kFlagsNonFinite) {
    if (__syncthreads_or(non_finite)) {
      direct_tile_sums<Cfg>(features + n * C * L, C, L, row0, col0, k_begin, k_end, scale,
                            out == nullptr ? gram + n * C * C : nullptr, out);
      return;
    }
  } else {
    __syncthreads();
  }

  if (out != nullptr) {  // raw segment sums, added in order by gram_add_segments_kernel
#pragma unroll
    for (int i = 0; i < Cfg::kFragsM; ++i)
#pragma unroll
      for (int j = 0; j < Cfg::kFragsN; ++j) {
        const int r = warp_m * Cfg::kWarpRows + i * Mma::kM, c = warp_n * Cfg::kWarpCols + j * Mma::kN;
        wmma::store_matrix_sync(out + r * kTile + c, acc[i][j], kTile, wmma::mem_row_major);
      }
    return;
  }

  // Each fragment goes through a per-warp scratch, then is written row by row to G[a][b] (a <= b)
  // and column by column to the mirror G[b][a] (a < b): both stores coalesce.
  constexpr int kFragElems = Mma::kM * Mma::kN;
  constexpr int kLdS = Cfg::kScratchLd;
  acc_t* scratch = reinterpret_cast<acc_t*>(smem) + warp * (Mma::kM * kLdS);
  scalar_t* g = gram + n * C * C;
#pragma unroll
  for (int i = 0; i < Cfg::kFragsM; ++i)
#pragma unroll
    for (int j = 0; j < Cfg::kFragsN; ++j) {
      const int64_t a0 = row0 + warp_m * Cfg::kWarpRows + i * Mma::kM;
      const int64_t b0 = col0 + warp_n * Cfg::kWarpCols + j * Mma::kN;
      // Warp-uniform: skip fragments past the last column or wholly below the diagonal.
      if (b0 >= C || a0 > b0 + Mma::kN - 1) continue;
      wmma::store_matrix_sync(scratch, acc[i][j], kLdS, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < kFragElems; e += 32) {
        const int64_t a = a0 + e / Mma::kN, b = b0 + e % Mma::kN;
        if (b < C && a <= b)
          g[a * C + b] = gram_value<scalar_t>(scratch[(e / Mma::kN) * kLdS + e % Mma::kN], scale);
      }
      for (int e = lane; e < kFragElems; e += 32) {
        const int r = e % Mma::kM, c = e / Mma::kM;
        const int64_t a = a0 + r, b = b0 + c;
        if (b < C && a < b) g[b * C + a] = gram_value<scalar_t>(scratch[r * kLdS + c], scale);
      }
      __syncwarp();  // the scratch is reused by the next fragment
    }
#else
  __trap();  // the host never launches this below sm_80 (gram_matrix_cuda)
#endif
}

// G from the segments' raw sums: partial[n * tiles + t][segment] (tile x tile), added in segment
// order, scaled, rounded once, stored to (a, b) and (b, a). One thread per upper-tile element.
template <typename scalar_t, typename acc_t>
__global__ void gram_add_segments_kernel(const acc_t* __restrict__ partial, int64_t N, int64_t C,
                                         int64_t tile, int64_t tiles, int64_t segments,
                                         acc_t scale, scalar_t* __restrict__ gram) {
  const int64_t tile_elems = tile * tile;
  TCONV_GRID_STRIDE_LOOP(e, N * tiles * tile_elems) {
    const int64_t item = e / tile_elems, within = e % tile_elems;
    const TilePair tp = triangle_tile(item % tiles);
    const int64_t a = tp.i * tile + within / tile, b = tp.j * tile + within % tile;
    if (b >= C || a > b) continue;
    const acc_t* sums = partial + item * segments * tile_elems + within;
    acc_t sum = sums[0];
    for (int64_t s = 1; s < segments; ++s) sum += sums[s * tile_elems];
    const scalar_t value = gram_value<scalar_t>(sum, scale);
    scalar_t* g = gram + item / tiles * C * C;
    g[a * C + b] = value;
    g[b * C + a] = value;
  }
}

// Blocks of `kernel` (kThreads threads, kSmemBytes dynamic shared memory) the current GPU holds at
// once: the occupancy calculator's blocks per SM times the SMs. It depends on the kernel's
// registers and shared memory and on the GPU only, so it is computed once per device (the
// function-local static is one per kernel instantiation). The segment count derived from it is a
// function of the shape and the GPU: on a given GPU the sums' order never changes.
template <typename Kernel>
int64_t resident_blocks(Kernel kernel, int threads, int smem_bytes) {
  static std::mutex mutex;
  static std::vector<int64_t> per_device;  // 0: not yet computed
  const int device = c10::cuda::current_device();
  const std::lock_guard<std::mutex> lock(mutex);
  if (per_device.size() <= static_cast<size_t>(device)) per_device.resize(device + 1, 0);
  if (per_device[device] == 0) {
    int per_sm = 0;
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem_bytes));
    const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
    per_device[device] = std::max<int64_t>(int64_t(per_sm) * sms, 1);
  }
  return per_device[device];
}

template <typename Mma, int kTile>
void launch_gram_tiles(const Tensor& x, Tensor& out, double scale) {
  using Cfg = GramTileConfig<Mma, kTile>;
  using scalar_t = typename Mma::scalar_t;
  using acc_t = typename Mma::acc_t;
  const int64_t N = x.size(0), C = x.size(1), L = x.size(2);
  const int64_t tiles = triangle_tile_count(ceil_div(C, kTile));
  const int64_t blocks = N * tiles;
  TORCH_CHECK(blocks <= INT_MAX, "gram_matrix: too many tiles (", blocks, ") for one launch");

  const auto stream = at::cuda::getCurrentCUDAStream();
  const acc_t s = static_cast<acc_t>(scale);
  auto kernel = gram_upper_tiles_kernel<Mma, kTile>;
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      Cfg::kSmemBytes));

  // Segments of L: about one full wave of blocks (the GPU's resident blocks for this kernel), a
  // function of the shape and the GPU only, so the sums' order never changes on a given GPU.
  // TCONV_CUDA_GRAM_TARGET_BLOCKS overrides the target (tests: many segments on small shapes).
  int64_t target_blocks = resident_blocks(kernel, Cfg::kThreads, Cfg::kSmemBytes);
  if (const char* v = std::getenv("TCONV_CUDA_GRAM_TARGET_BLOCKS"); v != nullptr && std::atoll(v) > 0)
    target_blocks = std::atoll(v);
  const int64_t steps = ceil_div(L, Cfg::kDepth);
  int64_t segments = 1;
  if (blocks < target_blocks)
    segments = std::clamp<int64_t>(ceil_div(target_blocks, blocks), 1,
                                   std::max<int64_t>(1, steps / kMinStepsPerSegment));
  segments = std::min<int64_t>(segments, 65535);  // gridDim.y
  const int64_t segment_len = ceil_div(steps, segments) * Cfg::kDepth;
  segments = ceil_div(L, segment_len);  // no empty segment
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(segments));
  if (segments == 1) {
    kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(
        x.const_data_ptr<scalar_t>(), C, L, tiles, segment_len, s, out.mutable_data_ptr<scalar_t>(),
        nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return;
  }
  Tensor partial = at::empty({blocks, segments, kTile, kTile},
                             x.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
  kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(
      x.const_data_ptr<scalar_t>(), C, L, tiles, segment_len, s, nullptr,
      partial.mutable_data_ptr<acc_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  gram_add_segments_kernel<scalar_t, acc_t>
      <<<blocks_for(blocks * kTile * kTile), kThreads, 0, stream>>>(
          partial.const_data_ptr<acc_t>(), N, C, kTile, tiles, segments, s,
          out.mutable_data_ptr<scalar_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Small C wastes most of a 128-wide tile on zero rows: 64-wide tiles there. float64 tiles are
// 64 wide always (8x8 mma fragments, twice the bytes per element).
template <typename Mma>
void launch_gram(const Tensor& x, Tensor& out, double scale) {
  if constexpr (std::is_same_v<Mma, DoubleMma>) {
    launch_gram_tiles<Mma, 64>(x, out, scale);
  } else if (x.size(1) <= 64) {
    launch_gram_tiles<Mma, 64>(x, out, scale);
  } else {
    launch_gram_tiles<Mma, 128>(x, out, scale);
  }
}

// GPUs before sm_80 lack the tensor-core shapes above: cuBLAS computes X X^T in the accumulation
// type and the upper triangle is mirrored, so G stays exactly symmetric.
Tensor gram_matrix_cublas(const Tensor& x, double scale) {
  const Tensor xa = x.to(at::toOpMathType(x.scalar_type()));
  const Tensor full = at::bmm(xa, xa.mT()).mul_(scale);
  const Tensor upper = full.triu();
  return (upper + upper.triu(1).mT()).to(x.scalar_type());
}

Tensor gram_matrix_cuda(const Tensor& features, bool normalize) {
  check_gram_features(features, "gram_matrix");
  const c10::cuda::CUDAGuard device_guard(features.device());
  const int64_t N = features.size(0), C = features.size(1), L = features.size(2);
  Tensor out = at::empty({N, C, C}, features.options());
  if (out.numel() == 0) return out;
  if (L == 0) return out.zero_();
  const double scale = gram_scale(C, L, normalize);
  const Tensor x = features.contiguous();  // the panels are read as rows of L positions
  if (at::cuda::getCurrentDeviceProperties()->major < 8) return gram_matrix_cublas(x, scale);

  TCONV_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gram_matrix_cuda", [&] {
    if constexpr (std::is_same_v<scalar_t, at::Half>) {
      launch_gram<HalfMma>(x, out, scale);
    } else if constexpr (std::is_same_v<scalar_t, at::BFloat16>) {
      launch_gram<BFloat16Mma>(x, out, scale);
    } else if constexpr (std::is_same_v<scalar_t, float>) {
      // float32 keeps float32 accuracy unless TF32 is allowed for cuBLAS matmuls too.
      if (at::globalContext().allowTF32CuBLAS()) {
        launch_gram<Tf32Mma>(x, out, scale);
      } else {
        launch_gram<Tf32x3Mma>(x, out, scale);
      }
    } else {
      launch_gram<DoubleMma>(x, out, scale);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(tconv, CUDA, m) {
  m.impl("gram_matrix", &gram_matrix_cuda);
}

}  // namespace tconv::cuda
