// Note [Winograd]
// A 3x3 stride-1 transposed convolution, forward and grad_input alike, is a 3x3 correlation
//   Y[n, i, j, c] = bias[c] + sum over a, b < 3 and k of X[n, i + a - qh, j + b - qw, k] f(k, c, a, b)
// (forward: X = x, k = ci, c = co, f = w[ci][co][2 - a][2 - b], q = 2 - p; grad_input: X =
// grad_output, k = co, c = ci, f = w[ci][co][a][b], q = p; X zero outside). Per 2x2 block of
// outputs and its 4x4 block of inputs d, Lavin & Gray's minimal filtering (arXiv:1509.09308)
//   Y = A^T [(G f G^T) . (B^T d B)] A
// costs 16 multiply-adds per channel pair where the direct sum costs 36: 2.25x fewer. The
// direct tiles (Note [direct tiles]) run at the FMA units' peak and so does oneDNN's direct
// convolution, so on 3x3 s1 layers fewer multiply-adds are the only way past it. The transforms
// are adds, once per block and channel (B^T d B, A^T m A) or per channel pair (G f G^T, once per
// call): with 64 channels they are ~5% of the FMAs. Each of the 16 elements e of the
// transformed blocks is then a GEMM over k, (blocks x K) (K x C), run by the direct tiles' own
// microkernel (direct_tile_row: 6 blocks x 64 channels per register tile).
//
// 4x4 stride 2 (DCGAN, the nearest resize-convolution) is a 2x2 correlation per output phase
// (forward, cpu/conv_transpose2d.cpp) or a sum of four over grad_output's polyphase components
// (grad_input, cpu/conv_transpose2d_backward.cpp): F(2x2, 2x2), 3x3 blocks of inputs, 9
// multiply-adds where the direct sum costs 16 (1.78x fewer), every coefficient 0 or +-1.
//
// Rounding: the transforms' coefficients (0, +-1, +-1/2) are exact; G f G^T is summed in
// float64 and rounded once; B^T d B adds up to 4 inputs twice, so the products' terms carry a
// few more roundings than the direct sum's (F(2x2, 3x3) is the variant cuDNN also runs for
// float32; F(4x4, 3x3) would save 4x but its +-1/4..8 coefficients cost ~2 more digits). The
// order of every sum is fixed by the shape: the same bits for any thread count. Inputs with a
// NaN or Inf never come here: B^T d B would spread one to the block's 4 outputs (Inf - Inf),
// where the direct sum places it exactly (the callers check, Note [NaN/Inf]).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "common/int_math.h"
#include "common/pad_fold_args.h"
#include "cpu/direct_tiles.h"
#include "cpu/finite.h"
#include "cpu/parallel.h"
#include "cpu/scratch.h"

namespace tconv::cpu::CPU_CAPABILITY {

#if defined(TCONV_CPU_DIRECT_TILES)

// 16 float lanes: one AVX-512 register or two AVX2 ones (the direct tiles' DirectVec). The
// transforms are lane-by-lane adds, subtractions and exact scalings, so either ISA gives the
// same bits. The first n lanes of a load or store (a channel tail): the rest read as zero and
// are neither read nor written in memory.
struct Vec16 {
#if defined(TCONV_CPU_AVX512)
  __m512 v;
  static Vec16 zero() { return {_mm512_setzero_ps()}; }
  static Vec16 set1(float x) { return {_mm512_set1_ps(x)}; }
  static Vec16 load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static Vec16 load_first(const float* p, int64_t n) { return {_mm512_maskz_loadu_ps(first(n), p)}; }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  void store_first(float* p, int64_t n) const { _mm512_mask_storeu_ps(p, first(n), v); }

 private:
  static __mmask16 first(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }
#else
  __m256 lo, hi;
  static Vec16 zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  static Vec16 set1(float x) { return {_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
  static Vec16 load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
  static Vec16 load_first(const float* p, int64_t n) {
    if (n >= 16) return load(p);
    return {_mm256_maskload_ps(p, first(n)), _mm256_maskload_ps(p + 8, first(n - 8))};
  }
  void store(float* p) const { _mm256_storeu_ps(p, lo), _mm256_storeu_ps(p + 8, hi); }
  void store_first(float* p, int64_t n) const {
    if (n >= 16) return store(p);
    _mm256_maskstore_ps(p, first(n), lo), _mm256_maskstore_ps(p + 8, first(n - 8), hi);
  }

 private:
  static __m256i first(int64_t n) {  // lanes i < n (none for n <= 0)
    const int c = static_cast<int>(std::clamp<int64_t>(n, 0, 8));
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
#endif
};

// (Free functions: GCC's `#pragma GCC target` does not reach friends defined in the class.)
#if defined(TCONV_CPU_AVX512)
inline Vec16 operator+(Vec16 a, Vec16 b) { return {_mm512_add_ps(a.v, b.v)}; }
inline Vec16 operator-(Vec16 a, Vec16 b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline Vec16 operator*(Vec16 a, Vec16 b) { return {_mm512_mul_ps(a.v, b.v)}; }
#else
inline Vec16 operator+(Vec16 a, Vec16 b) { return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
inline Vec16 operator-(Vec16 a, Vec16 b) { return {_mm256_sub_ps(a.lo, b.lo), _mm256_sub_ps(a.hi, b.hi)}; }
inline Vec16 operator*(Vec16 a, Vec16 b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
#endif

// F(2, R) in one dimension: the filter transform G (T x R), the data transform B^T (T x T) and
// the output transform A^T (2 x T) of 2 outputs from T = R + 1 inputs; applied along columns
// then rows for F(2x2, RxR).
template <int R>
struct WinogradF2;

template <>
struct WinogradF2<3> {  // interpolation points 0, 1, -1, infinity
  static constexpr int T = 4;
  static void filter(const double* g, double* u) {  // G's rows (1 0 0), 1/2 (1 1 1), 1/2 (1 -1 1), (0 0 1)
    u[0] = g[0], u[1] = 0.5 * (g[0] + g[1] + g[2]), u[2] = 0.5 * (g[0] - g[1] + g[2]), u[3] = g[2];
  }
  static void data(const Vec16* d, Vec16* v) {  // B^T's rows (1 0 -1 0), (0 1 1 0), (0 -1 1 0), (0 1 0 -1)
    v[0] = d[0] - d[2], v[1] = d[1] + d[2], v[2] = d[2] - d[1], v[3] = d[1] - d[3];
  }
  static void output(const Vec16* m, Vec16* y) {  // A^T's rows (1 1 1 0), (0 1 -1 -1)
    y[0] = (m[0] + m[1]) + m[2], y[1] = (m[1] - m[2]) - m[3];
  }
};

template <>
struct WinogradF2<2> {  // interpolation points 0, 1, infinity: every coefficient 0 or +-1
  static constexpr int T = 3;
  static void filter(const double* g, double* u) { u[0] = g[0], u[1] = g[0] + g[1], u[2] = g[1]; }
  static void data(const Vec16* d, Vec16* v) {  // B^T's rows (1 -1 0), (0 1 0), (0 -1 1)
    v[0] = d[0] - d[1], v[1] = d[1], v[2] = d[2] - d[1];
  }
  static void output(const Vec16* m, Vec16* y) {  // A^T's rows (1 1 0), (0 1 1)
    y[0] = m[0] + m[1], y[1] = m[1] + m[2];
  }
};

// G f G^T of every channel pair, packed as the direct tiles' panels: per block cb of up to 64
// channels c and element e = T u + v, a (K x width) matrix over k, rows width apart.
template <int R>
class WinogradWeights {
 public:
  static constexpr int T = WinogradF2<R>::T, E = T * T;
  static constexpr int64_t kMaxWidth = DirectPanels::kMaxWidth;
  template <typename F>
  WinogradWeights(int64_t K, int64_t C, const F& f)
      : K_(K), C_(C), blocks_(ceil_div(C, kMaxWidth)),
        buf_(ScratchSlot::kConvWeights, blocks_ * E * K * kMaxWidth, size_t(8) << 20) {
    parallel_for_work(0, K, K * C * E, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k)
        for (int64_t c = 0; c < C; ++c) {
          double g[R][R], col[R], gt[T][R], u[T][T];
          for (int a = 0; a < R; ++a)
            for (int b = 0; b < R; ++b) g[a][b] = f(k, c, a, b);
          for (int b = 0; b < R; ++b) {  // G g
            double t[T];
            for (int a = 0; a < R; ++a) col[a] = g[a][b];
            WinogradF2<R>::filter(col, t);
            for (int a = 0; a < T; ++a) gt[a][b] = t[a];
          }
          for (int a = 0; a < T; ++a) WinogradF2<R>::filter(gt[a], u[a]);  // (G g) G^T
          const int64_t cb = c / kMaxWidth, j = c % kMaxWidth, w = width(cb);
          for (int e = 0; e < E; ++e)
            buf_.data()[(cb * E + e) * K_ * kMaxWidth + k * w + j] = static_cast<float>(u[e / T][e % T]);
        }
    });
  }
  int64_t blocks() const { return blocks_; }
  int64_t width(int64_t cb) const { return std::min(kMaxWidth, C_ - cb * kMaxWidth); }
  const float* panel(int64_t cb, int e) const { return buf_.data() + (cb * E + e) * K_ * kMaxWidth; }

 private:
  int64_t K_, C_, blocks_;
  Scratch<float> buf_;
};

// padding_mode (Note [folded frame]): the grids' outputs are the full (padding 0) output's, of
// which y (Ho x Wo) is the part rows ph.. and columns pw.. inward; the rest, the frame (ph rows
// above and below, pw columns each side of the rows between), goes to `data` (pixels() pixels of
// C channels per image) and fold_frame adds each of its pixels onto the output F.pad copies it from.
struct WinogradFrame {
  int64_t ph, pw, Ho, Wo;
  PadFoldMode mode;
  float* data;
  int64_t full_width() const { return Wo + 2 * pw; }
  int64_t pixels() const { return 2 * ph * full_width() + Ho * 2 * pw; }
  int64_t index(int64_t fi, int64_t fj) const {  // of full output (fi, fj) outside y
    if (fi < ph) return fi * full_width() + fj;
    if (fi >= ph + Ho) return (fi - Ho) * full_width() + fj;
    return 2 * ph * full_width() + (fi - ph) * 2 * pw + (fj < pw ? fj : fj - Wo);
  }
};

// Adds each frame pixel onto y's (channels_last, N x Ho x Wo x C) pixel F.pad copies it from, in
// the frame's row-major order (a fixed order per output: deterministic).
inline void fold_frame(const WinogradFrame& f, float* y, int64_t N, int64_t C) {
  const int64_t FH = f.Ho + 2 * f.ph, FW = f.full_width();
  parallel_for_work(0, N, N * f.pixels() * C * 2, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n)
      for (int64_t fi = 0; fi < FH; ++fi) {
        const bool inner_row = fi >= f.ph && fi < f.ph + f.Ho;
        const int64_t ti = fold_target(fi, f.Ho, f.ph, f.mode);
        for (int64_t fj = 0; fj < FW; ++fj) {
          if (inner_row && fj >= f.pw && fj < f.pw + f.Wo) {
            fj = f.pw + f.Wo - 1;  // the row's right-hand frame next
            continue;
          }
          const float* src = f.data + (n * f.pixels() + f.index(fi, fj)) * C;
          float* dst = y + ((n * f.Ho + ti) * f.Wo + fold_target(fj, f.Wo, f.pw, f.mode)) * C;
          for (int64_t c = 0; c < C; c += 16) (Vec16::load(dst + c) + Vec16::load(src + c)).store(dst + c);
        }
      }
  });
}

// Where the outputs of winograd_f2 go: a rows x cols grid, grid output (i, j) at Y's (oh0 + i
// sy, ow0 + j sx) (stride 1: the whole Y; a phase of a stride-2 layer: every second row and
// column); Y (N, YH, YW, C) channels_last. With a frame, (oh0 + i sy, ow0 + j sx) is the full
// output's pixel, y's (YH x YW) pixel minus (ph, pw) or the frame's.
struct WinogradGrid {
  int64_t rows, cols, YH, YW, oh0, ow0, sy, sx;
  const WinogradFrame* frame = nullptr;
};

// What grid output (i, j) reads: pixel (i + a - qh, j + b - qw) of an H x W image of K channels,
// image n's pixel (h, w) at X + n sN + h sH + w sW, zero outside (channels_last: sW = K; a
// polyphase component of a stride-2 layer's grad_output: every second row and column).
// 3-D (Note [3-D transposed convolution], cpu/conv_transpose3d.cpp): the image is slice id = q *
// dstep - off of D slices sD apart (zero outside), q the output's depth cell (WinogradDepth).
struct WinogradSource {
  const float* X;
  int64_t sN, sH, sW, H, W, qh, qw;
  int64_t sD = 0, D = 1, off = 0, dstep = 1;
};

// The images of the grid: 2-D, one per batch element; 3-D, Q depth cells q = q0 .. q0 + Q - 1 per
// batch element n, whose outputs go to Y's slice od = q * od_step + od0 of YD (Y's image n * YD + od).
struct WinogradDepth {
  int64_t Q = 1, q0 = 0, YD = 1, od_step = 0, od0 = 0;
  int64_t batch(int64_t image) const { return image / Q; }
  int64_t cell(int64_t image) const { return q0 + image % Q; }
  int64_t output_image(int64_t image) const { return batch(image) * YD + cell(image) * od_step + od0; }
};

// Note [Winograd products]: the GEMMs of one element e and channel block, M_e (count x width, rows
// ldm apart) = V_e (count x Ks, rows ldv apart) U_e (Ks x width), summed over the Ks channels in
// chunks of kWinogradChunk: a chunk's panel (64 KiB at width 64) stays in L2 while every block of
// the task reads it, so the panel's traffic from L3 is one read per task however large Ks is and
// however many blocks the task has. The tile groups run one after another over a chunk, each
// prefetching a slice of the next chunk (or of next_panel, the caller's next panel) into L2: the
// first group would otherwise wait on each of the chunk's lines in turn (AVX2 reads a 16-channel
// part of the panel's 256-byte rows, a stride the hardware prefetch did not cover). Unchunked and
// unprefetched, the 1-D k16 s8 grad_input (Ks = 2048) took 126 ms for its 11.2 GFLOP on 2 Zen 3
// cores (89 GFLOP/s; the GEMM path runs at ~165); chunked 96 ms, prefetched 91 (benchmarks/NOTES.md,
// session 24).
inline constexpr int64_t kWinogradChunk = 256;

inline void winograd_products(const float* V, int64_t ldv, int64_t Ks, int64_t count, const float* panel,
                              int64_t width, float* M, int64_t ldm, const float* next_panel) {
  const int64_t rows = direct_tile_rows_of_width(width), groups = ceil_div(count, rows);
  for (int64_t k0 = 0; k0 < Ks; k0 += kWinogradChunk) {
    const int64_t kn = std::min(kWinogradChunk, Ks - k0);
    const bool last = k0 + kn == Ks;
    const float* next = last ? next_panel : panel + (k0 + kn) * width;
    const int64_t lines = next ? ceil_div(std::min(kWinogradChunk, last ? Ks : Ks - k0 - kn) * width, 16) : 0;
    const int64_t per_group = ceil_div(lines, groups);
    for (int64_t grp = 0; grp < groups; ++grp) {
      for (int64_t l = grp * per_group; l < std::min(lines, (grp + 1) * per_group); ++l)
        __builtin_prefetch(next + 16 * l, 0, 2);  // into L2 (prefetcht1); never faults
      const int64_t j0 = grp * rows, n = std::min(rows, count - j0);
      const DirectTap tap{V + j0 * ldv + k0, 0, panel + k0 * width};
      direct_tile_row_of_width(width, &tap, 1, DirectRowShape{1, ldv, n, kn}, n, k0 == 0 ? kNoBias : kAccumulate,
                               M + j0 * ldm, ldm, nullptr);
    }
  }
}

// The pitch of V's rows: Ks floats and one cache line more, so that the tiles' rows at a
// power-of-two Ks (2048: 8 KiB apart) do not all fall in one L1 set (no change measurable on Zen
// 3, and it costs nothing).
inline int64_t winograd_row_pitch(int64_t Ks) { return Ks + 16; }

// Blocks per task (of `total`): one channel block's working set (a chunk's transformed inputs,
// tiles x kWinogradChunk floats; its panel; the products, e_count x tiles x 64) within ~384 KiB of
// the core's L2, all the task's transformed inputs (e_count x tiles x Ks) within ~1.5 MiB of L3,
// and at least 4 tasks per thread where `total` allows; a multiple of the 6-block register tile
// from 12 to 96. Each panel read from L3 once per task is multiplied by 12-96 blocks. The
// grouping never changes a result (each block's sums run in the same order in any tile).
inline int64_t winograd_task_blocks(int64_t e_count, int64_t Ks, int64_t total) {
  const int64_t kc = std::min(Ks, kWinogradChunk);
  const int64_t l2 = ((384 << 10) - 4 * kc * 64) / (4 * kc + 256 * e_count);
  const int64_t l3 = (3 << 19) / (4 * e_count * Ks);
  const int64_t balance = ceil_div(total, 4 * static_cast<int64_t>(at::get_num_threads()));
  return std::min(total, std::clamp<int64_t>(std::min({l2, l3, balance}) / 6 * 6, 12, 96));
}

// The correlation of the Note summed over `nsrc` sources of K channels each (their channels one
// sequence of nsrc K, as U's rows), into the grid `o` of Y, C a multiple of 16; bias: C floats or
// null. The 2x2 blocks of grid outputs in one sequence over images and rows; per task a run of
// `tiles` of them: their transformed inputs (E x tiles x nsrc K floats), then per block of 64
// channels the E GEMMs and the output transform.
template <int R>
void winograd_f2(const WinogradSource* src, int nsrc, int64_t N, int64_t K, const WinogradWeights<R>& U,
                 const float* bias, float* Y, int64_t C, const WinogradGrid& o, const WinogradDepth& depth = {}) {
  using F2 = WinogradF2<R>;
  constexpr int T = F2::T, E = T * T;
  const int64_t Ks = nsrc * K, ldv = winograd_row_pitch(Ks);  // the GEMMs' summed channels
  const int64_t TH = ceil_div(o.rows, 2), TW = ceil_div(o.cols, 2), total = N * depth.Q * TH * TW;
  const int64_t tiles = winograd_task_blocks(E, Ks, total);
  const int64_t kv = ceil_div(K, 16), cw = WinogradWeights<R>::kMaxWidth;
  const int64_t tasks = ceil_div(total, tiles);
  parallel_for_work(0, tasks, total * E * Ks * C, [&](int64_t begin, int64_t end) {
    const Scratch<float> V(ScratchSlot::kConvBlockA, E * tiles * ldv), M(ScratchSlot::kConvBlockB, E * tiles * cw);
    const int64_t e_step = tiles * ldv;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t first = task * tiles, count = std::min(tiles, total - first);
      // B^T d B per block, source and 16 channels k.
      for (int64_t t = 0; t < count; ++t) {
        const int64_t tile = first + t, image = tile / (TH * TW), ty = tile / TW % TH, tx = tile % TW;
        const int64_t n = depth.batch(image), cell = depth.cell(image);
        for (int si = 0; si < nsrc; ++si) {
          const WinogradSource& S = src[si];
          const int64_t i0 = 2 * ty - S.qh, j0 = 2 * tx - S.qw, id = cell * S.dstep - S.off;
          const bool slice_inside = id >= 0 && id < S.D;
          const float* px[T][T];
          for (int r = 0; r < T; ++r)
            for (int c = 0; c < T; ++c) {
              const int64_t ih = i0 + r, iw = j0 + c;
              px[r][c] = slice_inside && ih >= 0 && ih < S.H && iw >= 0 && iw < S.W
                             ? S.X + n * S.sN + id * S.sD + ih * S.sH + iw * S.sW
                             : nullptr;
            }
          for (int64_t q = 0; q < kv; ++q) {
            const int64_t k0 = 16 * q;
            const int64_t n = K - k0;
            Vec16 d[T][T], tr[T][T];
            for (int c = 0; c < T; ++c) {
              Vec16 col[T], out[T];
              for (int r = 0; r < T; ++r) col[r] = px[r][c] ? Vec16::load_first(px[r][c] + k0, n) : Vec16::zero();
              F2::data(col, out);
              for (int r = 0; r < T; ++r) tr[r][c] = out[r];
            }
            float* v = V.data() + t * ldv + si * K + k0;
            for (int u = 0; u < T; ++u) {
              F2::data(tr[u], d[u]);
              for (int w = 0; w < T; ++w) d[u][w].store_first(v + (T * u + w) * e_step, n);
            }
          }
        }
      }
      for (int64_t cb = 0; cb < U.blocks(); ++cb) {
        const int64_t width = U.width(cb), c0 = cb * cw;
        for (int e = 0; e < E; ++e) {
          const float* next = e + 1 < E ? U.panel(cb, e + 1) : (cb + 1 < U.blocks() ? U.panel(cb + 1, 0) : nullptr);
          winograd_products(V.data() + e * e_step, ldv, Ks, count, U.panel(cb, e), width, M.data() + e * tiles * cw, cw,
                            next);
        }
        // A^T m A + bias per block and 16 channels.
        for (int64_t t = 0; t < count; ++t) {
          const int64_t tile = first + t, image = tile / (TH * TW), oi = 2 * (tile / TW % TH), oj = 2 * (tile % TW);
          const int64_t yimage = depth.output_image(image);
          for (int64_t c = 0; c < width; c += 16) {
            const float* mt = M.data() + t * cw + c;
            Vec16 s[2][T];
            for (int w = 0; w < T; ++w) {
              Vec16 col[T], out[2];
              for (int u = 0; u < T; ++u) col[u] = Vec16::load(mt + (T * u + w) * tiles * cw);
              F2::output(col, out);
              s[0][w] = out[0], s[1][w] = out[1];
            }
            const Vec16 b = bias ? Vec16::load(bias + c0 + c) : Vec16::zero();
            for (int i = 0; i < 2 && oi + i < o.rows; ++i) {
              Vec16 y[2];
              F2::output(s[i], y);
              const int64_t fi = o.oh0 + (oi + i) * o.sy;
              for (int j = 0; j < 2 && oj + j < o.cols; ++j) {
                const int64_t fj = o.ow0 + (oj + j) * o.sx;
                if (!o.frame) {
                  (y[j] + b).store(Y + ((yimage * o.YH + fi) * o.YW + fj) * C + c0 + c);
                  continue;
                }
                const WinogradFrame& f = *o.frame;
                const int64_t yi = fi - f.ph, yj = fj - f.pw;
                if (yi >= 0 && yi < o.YH && yj >= 0 && yj < o.YW) {
                  (y[j] + b).store(Y + ((yimage * o.YH + yi) * o.YW + yj) * C + c0 + c);
                } else {
                  y[j].store(f.data + (yimage * f.pixels() + f.index(fi, fj)) * C + c0 + c);
                }
              }
            }
          }
        }
      }
    }
  });
}

// Note [Winograd] for the forward, per depth phase (Note [3-D transposed convolution]; a 2-D layer:
// kUnitDepth), the phase's depth taps as sources. 3x3 stride 1: y is the correlation of x with the
// flipped kernel, q = 2 - p. 4x4 stride 2: per output phase (r, c) (the outputs (2 m + r - ph,
// 2 n + c - pw)) a 2x2 correlation, y_rc[m, n] = sum over a, b < 2 of x[m - 1 + a, n - 1 + b]
// w[r + 2 - 2a][c + 2 - 2b], by F(2x2, 2x2): 9 multiply-adds per 4 outputs and channel pair where
// the direct sum has 16. x, y channels_last(_3d); w (Cin, Cout, kD, k, k); b: Cout floats.
// frame (2-D padding_mode): g is the full (padding 0) layer's geometry and y the output of
// padding (frame->ph, frame->pw), the frame's pixels going aside (WinogradFrame).
inline void winograd_forward(const float* xp, const float* w, const float* b, float* yp, const ConvTranspose2dGeometry& g,
                             const DepthAxis& d, const WinogradFrame* frame = nullptr) {
  const int64_t YH = frame ? frame->Ho : g.Ho, YW = frame ? frame->Wo : g.Wo;
  const int64_t K = g.Cin, C = g.Cout, plane = g.H * g.W * K;
  for (int64_t r = 0; r < d.sd; ++r) {
    const IndexRange q = d.cells(r);
    std::vector<int64_t> kds;  // the phase's depth taps; source si reads slice q - (kd - r) / sd
    for (int64_t kd = r; kd < d.kD; kd += d.sd) kds.push_back(kd);
    if (q.hi <= q.lo || kds.empty()) continue;
    const int nsrc = static_cast<int>(kds.size());
    const WinogradDepth depth{q.hi - q.lo, q.lo, d.Do, d.sd, r - d.pd};
    std::vector<WinogradSource> src(nsrc);
    if (g.sh == 1) {
      const WinogradWeights<3> U(nsrc * K, C, [&](int64_t k, int64_t co, int a, int bb) {
        const int64_t kd = kds[k / K], ci = k % K;
        return w[(((ci * C + co) * d.kD + kd) * 3 + 2 - a) * 3 + 2 - bb];
      });
      for (int si = 0; si < nsrc; ++si)
        src[si] = WinogradSource{xp, d.D * plane, g.W * K, K, g.H, g.W, 2 - g.ph, 2 - g.pw,
                                  plane, d.D, (kds[si] - r) / d.sd};
      winograd_f2<3>(src.data(), nsrc, g.N, K, U, b, yp, C, WinogradGrid{g.Ho, g.Wo, YH, YW, 0, 0, 1, 1, frame}, depth);
      continue;
    }
    for (int rh = 0; rh < 2; ++rh)
      for (int rw = 0; rw < 2; ++rw) {
        // The phase's grid: the cells m with output 2 m + rh - ph inside the output.
        const IndexRange mh = indices_inside(g.qh_lo + g.Qh, 2, rh - g.ph, g.Ho);
        const IndexRange mw = indices_inside(g.qw_lo + g.Qw, 2, rw - g.pw, g.Wo);
        const int64_t m0 = mh.lo, n0 = mw.lo, rows = mh.hi - mh.lo, cols = mw.hi - mw.lo;
        if (rows <= 0 || cols <= 0) continue;
        const WinogradWeights<2> U(nsrc * K, C, [&](int64_t k, int64_t co, int a, int bb) {
          const int64_t kd = kds[k / K], ci = k % K;
          return w[(((ci * C + co) * d.kD + kd) * 4 + rh + 2 - 2 * a) * 4 + rw + 2 - 2 * bb];
        });
        for (int si = 0; si < nsrc; ++si)
          src[si] = WinogradSource{xp, d.D * plane, g.W * K, K, g.H, g.W, 1 - m0, 1 - n0,
                                    plane, d.D, (kds[si] - r) / d.sd};
        winograd_f2<2>(src.data(), nsrc, g.N, K, U, b, yp, C,
                       WinogradGrid{rows, cols, YH, YW, 2 * m0 + rh - g.ph, 2 * n0 + rw - g.pw, 2, 2, frame}, depth);
      }
  }
}

// Note [Winograd] for grad_input, every depth tap kd one more set of sources (a 2-D layer:
// kUnitDepth): grad_input's slice id reads grad_output's slice od = id * sd - pd + kd. 3x3 stride
// 1: gi is the correlation of grad_output with the kernel (channels swapped), q = p. 4x4 stride 2:
// gi[i] = sum over k < 4 of go[2 i + k - p] w[k] per axis; the taps k of one parity rho of k - p
// read one polyphase component G_rho[t] = go[2 t + rho] at t = i + d_rho + a, a < 2 (k = k_rho +
// 2 a, k_rho - p = 2 d_rho + rho), so gi is the sum over the four components (rho_h, rho_w) of 2x2
// correlations: F(2x2, 2x2) with the components' channels stacked (K = 4 kD Cout). go, gi
// channels_last(_3d).
inline void winograd_grad_input(const float* gop, const float* w, float* gip, const ConvTranspose2dGeometry& g,
                                const DepthAxis& d) {
  const int64_t K = g.Cout, C = g.Cin, plane = g.Ho * g.Wo * K;
  const WinogradGrid grid{g.H, g.W, g.H, g.W, 0, 0, 1, 1};
  const WinogradDepth depth{d.D, 0, d.D, 1, 0};
  std::vector<WinogradSource> src;
  if (g.sh == 1) {
    const WinogradWeights<3> U(d.kD * K, C, [&](int64_t k, int64_t ci, int a, int bb) {
      const int64_t kd = k / K, co = k % K;
      return w[(((ci * K + co) * d.kD + kd) * 3 + a) * 3 + bb];
    });
    for (int64_t kd = 0; kd < d.kD; ++kd)
      src.push_back(WinogradSource{gop, d.Do * plane, g.Wo * K, K, g.Ho, g.Wo, g.ph, g.pw, plane, d.Do, d.pd - kd, 1});
    winograd_f2<3>(src.data(), static_cast<int>(src.size()), g.N, K, U, nullptr, gip, C, grid, depth);
    return;
  }
  int64_t kh0[2], kw0[2];
  for (int rho = 0; rho < 2; ++rho) kh0[rho] = (rho + g.ph) % 2, kw0[rho] = (rho + g.pw) % 2;
  for (int64_t kd = 0; kd < d.kD; ++kd)
    for (int rh = 0; rh < 2; ++rh)
      for (int rw = 0; rw < 2; ++rw) {
        const int64_t dh = floor_div(kh0[rh] - g.ph, 2), dw = floor_div(kw0[rw] - g.pw, 2);
        src.push_back(WinogradSource{gop + (rh * g.Wo + rw) * K, d.Do * plane, 2 * g.Wo * K, 2 * K,
                                     ceil_div(g.Ho - rh, 2), ceil_div(g.Wo - rw, 2), -dh, -dw, plane, d.Do,
                                     d.pd - kd, d.sd});
      }
  const WinogradWeights<2> U(d.kD * 4 * K, C, [&](int64_t k, int64_t ci, int a, int bb) {
    const int64_t s = k / K, co = k % K, kd = s / 4, rh = s / 2 % 2, rw = s % 2;
    return w[(((ci * K + co) * d.kD + kd) * 4 + kh0[rh] + 2 * a) * 4 + kw0[rw] + 2 * bb];
  });
  winograd_f2<2>(src.data(), static_cast<int>(src.size()), g.N, K, U, nullptr, gip, C, grid, depth);
}

// Note [Winograd rows]: a 1 x 2s layer of stride (1, s) (kH = 1, sh = 1, ph = 0: each input row
// makes one output row; the 1-D layers of vocoders, k16 s8 and k4 s2) has per column phase r a
// 2-tap correlation, y[s m + r - p] = x[m - 1] g0 + x[m] g1 + bias with g0 = w[r + s], g1 = w[r],
// computed by F(B, 2) per block of B cells m0 .. m0 + B - 1 from the B + 1 pixels d_i = x[m0 - 1 + i]:
// B + 1 multiply-adds per channel pair where the direct sum has 2 B. Unlike the 2-D grids, all s
// phases read the same pixels, so a task transforms its blocks' inputs once and runs every
// phase's B + 1 GEMMs on them; its cells' outputs are one run of the row (s per cell), written
// whole: channels_last in place, NCHW through a pixels x 64 buffer transposed into the planes.
// grad_input is the same correlation summed over grad_output's s polyphase components
// (winograd_rows_grad_input), one phase of outputs.
// B = 3 (4/6 of the multiply-adds): 512->256 k16 s8 4x1000 NCL forward 36.2 ms, F(2, 2) 37.6, the
// direct tiles 43.6; grad_input 35.2 against the tiles' 43.9 (benchmarks/NOTES.md, session 21).
// Its coefficients are 0, +-1 and +-1/2 (exact scalings); the products carry a rounding or two
// more than the direct sum's. Inputs with a NaN or Inf never come here (the callers check, Note
// [NaN/Inf]): B^T d would spread one over a block's outputs.
template <int B>
struct WinogradRows;

template <>
struct WinogradRows<3> {  // F(3, 2), points 0, 1, -1, infinity: F(2, 3)'s G and A^T swapped
  static constexpr int T = 4;
  static void filter(Vec16 g0, Vec16 g1, Vec16* u) {  // G's rows (1 0), 1/2 (1 1), 1/2 (1 -1), (0 -1)
    const Vec16 h = Vec16::set1(0.5f);
    u[0] = g0, u[1] = h * (g0 + g1), u[2] = h * (g0 - g1), u[3] = Vec16::zero() - g1;
  }
  static void data(const Vec16* d, Vec16* v) { WinogradF2<3>::data(d, v); }
  static void output(const Vec16* m, Vec16* y) {  // A^T's rows (1 1 1 0), (0 1 -1 0), (0 1 1 1)
    y[0] = (m[0] + m[1]) + m[2], y[1] = m[1] - m[2], y[2] = (m[1] + m[2]) + m[3];
  }
};

// One summed source of a rows correlation: image i's pixel t (t < length; zero elsewhere) at
// X + i sImage + t sPixel, K channels; block cells m0 .. m0 + B - 1 read its pixels m0 + offset ..
// m0 + offset + B (the forward: x, offset -1; grad_input: grad_output's polyphase components).
struct RowsSource {
  const float* X;
  int64_t sImage, sPixel, length, offset;
};

// Sources read from NCHW planes instead: X (N, K, H, W), image i = n H + h its row (n, h). The
// sources keep their channels_last description at X as if the tensor were channels_last: pixel t
// of a source is the row's pixel (S.X - X) / K + t S.sPixel / K. Each task transposes the run of
// the row's pixels its blocks read into a channels_last window in L1/L2: no tensor-sized
// channels_last copy (allocated and faulted per call above 16 MiB) and second pass.
struct RowsPlanes {
  const float* X = nullptr;
  int64_t H = 0, W = 0;
};

// Where the outputs of winograd_rows go: phase r of cell m is output pixel step m + r - pad of the
// image's row of Wo pixels (phases = step for the forward, 1 for grad_input); C channels, Y
// channels_last (images x Wo x C) or, with nchw, planes (rows H of an image: image = n H + h).
struct RowsOutput {
  float* Y;
  int64_t phases, step, pad, Wo, C, H;
  bool nchw;
};

// The correlation of Note [Winograd rows] summed over nsrc sources of K channels each, into o.
// weight(k, r, a): where the a-th tap (a < 2; a = 0 multiplies the block's first pixel) of summed
// channel k = si K + kc of phase r starts; output channel c's at + c c_stride. bias: C floats.
// With `nonfinite` (planes only) it is set when a window of the planes holds Inf or NaN: each
// window is checked once transposed, in cache, so the caller needs no scan of the source (33 MB
// at 4x256x8000, ~1 ms a pass), and redoes the call on its path for non-finite inputs.
template <int B, typename WeightAt>
void winograd_rows(const RowsSource* src, int nsrc, int64_t K, int64_t images, const WeightAt& weight,
                   int64_t c_stride, const float* bias, const RowsOutput& o, const RowsPlanes& planes = {},
                   std::atomic<bool>* nonfinite = nullptr) {
  TORCH_INTERNAL_ASSERT(nonfinite == nullptr || planes.X != nullptr, "the check reads the planes' windows");
  using F = WinogradRows<B>;
  constexpr int T = F::T;
  constexpr int64_t cw = DirectPanels::kMaxWidth;
  const int64_t Ks = nsrc * K, ldv = winograd_row_pitch(Ks), C = o.C, P = o.phases, blocks = ceil_div(C, cw);
  const auto width = [&](int64_t cb) { return std::min(cw, C - cb * cw); };
  // Transformed weights: per phase r, channel block cb and element e a (Ks x width) panel.
  const Scratch<float> U(ScratchSlot::kConvWeights, P * blocks * T * Ks * cw);
  const auto panel = [&](int64_t r, int64_t cb, int e) { return U.data() + ((r * blocks + cb) * T + e) * Ks * cw; };
  parallel_for_work(0, Ks, Ks * C * P * T, [&](int64_t begin, int64_t end) {
    float g[2][cw];
    for (int64_t k = begin; k < end; ++k)
      for (int64_t r = 0; r < P; ++r)
        for (int64_t cb = 0; cb < blocks; ++cb) {
          const int64_t wd = width(cb);  // a multiple of 16 (C is)
          for (int a = 0; a < 2; ++a) {
            const float* f = weight(k, r, a) + cb * cw * c_stride;
            for (int64_t j = 0; j < wd; ++j) g[a][j] = f[j * c_stride];
          }
          for (int64_t j = 0; j < wd; j += 16) {
            Vec16 u[T];
            F::filter(Vec16::load(g[0] + j), Vec16::load(g[1] + j), u);
            for (int e = 0; e < T; ++e) u[e].store(panel(r, cb, e) + k * wd + j);
          }
        }
  });
  // The cells with an output inside the row, over all phases: step m + r - pad in [0, Wo).
  int64_t m_lo = INT64_MAX, m_hi = INT64_MIN;
  for (int64_t r = 0; r < P; ++r) {
    m_lo = std::min(m_lo, -floor_div(r - o.pad, o.step));
    m_hi = std::max(m_hi, floor_div(o.Wo - 1 - r + o.pad, o.step) + 1);
  }
  const int64_t row_blocks = ceil_div(m_hi - m_lo, B);
  const int64_t tiles = std::min(row_blocks, winograd_task_blocks(T, Ks, images * row_blocks));
  const int64_t row_tasks = ceil_div(row_blocks, tiles), kv = ceil_div(K, 16);
  // Planes: source si's pixel t is the row's pixel first[si] + step[si] t (RowsPlanes).
  std::vector<int64_t> first(nsrc, 0), step(nsrc, 1);
  int64_t max_step = 1;
  for (int si = 0; si < nsrc && planes.X; ++si) {
    TORCH_INTERNAL_ASSERT((src[si].X - planes.X) % K == 0 && src[si].sPixel % K == 0);
    first[si] = (src[si].X - planes.X) / K, step[si] = src[si].sPixel / K;
    max_step = std::max(max_step, step[si]);
  }
  // A task's pixels of one row, at most: B count + 1 of each source, whose offsets differ by <= 1.
  const int64_t window_pixels = max_step * (B * tiles + 3);
  parallel_for_work(0, images * row_tasks, images * row_blocks * B * P * 2 * Ks * C, [&](int64_t begin, int64_t end) {
    const Scratch<float> V(ScratchSlot::kConvBlockA, T * tiles * ldv), M(ScratchSlot::kConvBlockB, T * tiles * cw);
    const Scratch<float> O(ScratchSlot::kRowOut, o.nchw ? B * tiles * o.step * cw : 0);
    const Scratch<float> window(ScratchSlot::kRowIn, planes.X ? window_pixels * K : 0);
    const int64_t e_step = tiles * ldv;
    NonfiniteWatch<float> watch{nonfinite};
    for (int64_t task = begin; task < end; ++task) {
      const int64_t image = task / row_tasks, b0 = task % row_tasks * tiles;
      const int64_t count = std::min(tiles, row_blocks - b0), mA = m_lo + B * b0;
      // The task's outputs: cells mA .. mA + B count - 1, clipped to the row.
      const int64_t oA = std::max<int64_t>(o.step * mA - o.pad, 0);
      const int64_t oB = std::min(o.step * (mA + B * count) - o.pad, o.Wo);
      int64_t p_lo = INT64_MAX, p_hi = INT64_MIN;  // planes: the row's pixels the task reads, in `window`
      if (planes.X) {
        for (int si = 0; si < nsrc; ++si) {
          const RowsSource& S = src[si];
          const int64_t lo = std::max<int64_t>(mA + S.offset, 0), hi = std::min(mA + B * count + S.offset + 1, S.length);
          if (lo >= hi) continue;
          p_lo = std::min(p_lo, first[si] + step[si] * lo);
          p_hi = std::max(p_hi, first[si] + step[si] * (hi - 1) + 1);
        }
        if (p_hi > p_lo) {
          TORCH_INTERNAL_ASSERT(p_hi - p_lo <= window_pixels);
          const int64_t n = image / planes.H, h = image % planes.H, plane = planes.H * planes.W;
          transpose_block(planes.X + n * K * plane + h * planes.W + p_lo, plane, window.data(), K, p_hi - p_lo, K);
          watch.check(window.data(), (p_hi - p_lo) * K);
        }
      }
      for (int64_t t = 0; t < count; ++t)  // B^T d per block, source and 16 channels
        for (int si = 0; si < nsrc; ++si) {
          const RowsSource& S = src[si];
          const float* px[T];
          for (int c = 0; c < T; ++c) {
            const int64_t it = mA + B * t + S.offset + c;
            px[c] = it < 0 || it >= S.length ? nullptr
                    : planes.X               ? window.data() + (first[si] + step[si] * it - p_lo) * K
                                             : S.X + image * S.sImage + it * S.sPixel;
          }
          float* v = V.data() + t * ldv + si * K;
          for (int64_t q = 0; q < kv; ++q) {
            const int64_t k0 = 16 * q;
            const int64_t n = K - k0;
            Vec16 d[T], tv[T];
            for (int c = 0; c < T; ++c) d[c] = px[c] ? Vec16::load_first(px[c] + k0, n) : Vec16::zero();
            F::data(d, tv);
            for (int e = 0; e < T; ++e) tv[e].store_first(v + e * e_step + k0, n);
          }
        }
      for (int64_t cb = 0; cb < blocks; ++cb) {
        const int64_t wd = width(cb), c0 = cb * cw;
        for (int64_t r = 0; r < P; ++r) {
          for (int e = 0; e < T; ++e) {
            const float* next = e + 1 < T   ? panel(r, cb, e + 1)
                                : r + 1 < P ? panel(r + 1, cb, 0)
                                            : (cb + 1 < blocks ? panel(0, cb + 1, 0) : nullptr);
            winograd_products(V.data() + e * e_step, ldv, Ks, count, panel(r, cb, e), wd, M.data() + e * tiles * cw, cw,
                              next);
          }
          for (int64_t t = 0; t < count; ++t)  // A^T m + bias per block and 16 channels
            for (int64_t c = 0; c < wd; c += 16) {
              const float* mt = M.data() + t * cw + c;
              Vec16 mm[T], y[B];
              for (int e = 0; e < T; ++e) mm[e] = Vec16::load(mt + e * tiles * cw);
              F::output(mm, y);
              const Vec16 b = bias ? Vec16::load(bias + c0 + c) : Vec16::zero();
              for (int j = 0; j < B; ++j) {
                const int64_t out = o.step * (mA + B * t + j) + r - o.pad;
                if (out < oA || out >= oB) continue;
                float* dst = o.nchw ? O.data() + (out - oA) * cw + c : o.Y + (image * o.Wo + out) * C + c0 + c;
                (y[j] + b).store(dst);
              }
            }
        }
        if (o.nchw) {  // the run's pixels x wd into planes c0 .. c0 + wd of image (n, h)
          const int64_t n = image / o.H, h = image % o.H, plane = o.H * o.Wo;
          transpose_block(O.data(), cw, o.Y + (n * C + c0) * plane + h * o.Wo + oA, plane, wd, oB - oA);
        }
      }
    }
    watch.flush();
  });
}

// Note [Winograd rows] for the forward: phase r of cell m is output s m + r - p, reading x[m - 1]
// (tap r + s) and x[m] (tap r). x and y: channels_last (N H images of W pixels x Cin), or with
// nchw both NCHW; w (Cin, Cout, 1, 2s); bias: Cout floats. nonfinite: as winograd_rows (nchw).
inline void winograd_rows_forward(const float* xp, const float* w, const float* bias, float* yp, bool nchw,
                                  const ConvTranspose2dGeometry& g, std::atomic<bool>* nonfinite = nullptr) {
  const int64_t s = g.sw, K = g.Cin, C = g.Cout;
  const RowsSource x{xp, g.W * K, K, g.W, -1};
  const auto weight = [&](int64_t k, int64_t r, int a) { return w + k * C * 2 * s + (a == 0 ? r + s : r); };
  winograd_rows<3>(&x, 1, K, g.N * g.H, weight, 2 * s, bias, RowsOutput{yp, s, s, g.pw, g.Wo, C, g.H, nchw},
                   nchw ? RowsPlanes{xp, g.H, g.W} : RowsPlanes{}, nonfinite);
}

// Note [Winograd rows] for grad_input: gi[i] = sum over k < 2s of go[s i + k - p] w[k] (channels
// swapped). The taps k of one residue rho of s i + k - p read grad_output's polyphase component
// G_rho[t] = go[s t + rho] at t = i + d_rho + a, a < 2 (k = k_rho + s a, k_rho = (rho + p) mod s,
// k_rho - p = s d_rho + rho): gi is the sum over the s components of 2-tap correlations, stacked as
// s sources of Cout channels. go and gi: channels_last (N H images of Wo pixels x Cout), or with
// nchw both NCHW. nonfinite: as winograd_rows (nchw).
inline void winograd_rows_grad_input(const float* gop, const float* w, float* gip, bool nchw,
                                     const ConvTranspose2dGeometry& g, std::atomic<bool>* nonfinite = nullptr) {
  const int64_t s = g.sw, K = g.Cout, C = g.Cin;
  std::vector<RowsSource> src;
  std::vector<int64_t> k_rho;
  for (int64_t rho = 0; rho < s; ++rho) {
    k_rho.push_back((rho + g.pw) % s);
    src.push_back(RowsSource{gop + rho * K, g.Wo * K, s * K, ceil_div(g.Wo - rho, s), floor_div(k_rho[rho] - g.pw, s)});
  }
  const auto weight = [&](int64_t k, int64_t, int a) { return w + (k % K) * 2 * s + k_rho[k / K] + s * a; };
  winograd_rows<3>(src.data(), static_cast<int>(s), K, g.N * g.H, weight, K * 2 * s, nullptr,
                   RowsOutput{gip, 1, 1, 0, g.W, C, g.H, nchw}, nchw ? RowsPlanes{gop, g.H, g.Wo} : RowsPlanes{},
                   nonfinite);
}

#endif  // TCONV_CPU_DIRECT_TILES

}  // namespace tconv::cpu::CPU_CAPABILITY
