// Note [Winograd F(2x2, 3x3)]
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
// Rounding: the transforms' coefficients (0, +-1, +-1/2) are exact; G f G^T is summed in
// float64 and rounded once; B^T d B adds up to 4 inputs twice, so the products' terms carry a
// few more roundings than the direct sum's (F(2x2, 3x3) is the variant cuDNN also runs for
// float32; F(4x4, 3x3) would save 4x but its +-1/4..8 coefficients cost ~2 more digits). The
// order of every sum is fixed by the shape: the same bits for any thread count. Inputs with a
// NaN or Inf never come here: B^T d B would spread one to the block's 4 outputs (Inf - Inf),
// where the direct sum places it exactly (the callers check, Note [NaN/Inf]).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/int_math.h"
#include "cpu/direct_tiles.h"
#include "cpu/parallel.h"
#include "cpu/scratch.h"

namespace tconv::cpu::CPU_CAPABILITY {

#if defined(TCONV_CPU_AVX512)

// G f G^T of every channel pair, packed as the direct tiles' panels: per block cb of up to 64
// channels c and element e = 4 u + v, a (K x width) matrix over k, rows width apart.
class WinogradWeights {
 public:
  static constexpr int64_t kMaxWidth = DirectPanels::kMaxWidth;
  template <typename F>
  WinogradWeights(int64_t K, int64_t C, const F& f)
      : K_(K), C_(C), blocks_(ceil_div(C, kMaxWidth)),
        buf_(ScratchSlot::kConvWeights, blocks_ * 16 * K * kMaxWidth, size_t(8) << 20) {
    parallel_for_work(0, K, K * C * 16, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k)
        for (int64_t c = 0; c < C; ++c) {
          double g[3][3], t[4][3];
          for (int a = 0; a < 3; ++a)
            for (int b = 0; b < 3; ++b) g[a][b] = f(k, c, a, b);
          for (int b = 0; b < 3; ++b) {  // G g: G's rows (1 0 0), 1/2 (1 1 1), 1/2 (1 -1 1), (0 0 1)
            t[0][b] = g[0][b];
            t[1][b] = 0.5 * (g[0][b] + g[1][b] + g[2][b]);
            t[2][b] = 0.5 * (g[0][b] - g[1][b] + g[2][b]);
            t[3][b] = g[2][b];
          }
          const int64_t cb = c / kMaxWidth, j = c % kMaxWidth, w = width(cb);
          for (int u = 0; u < 4; ++u) {  // (G g) G^T
            const double row[4] = {t[u][0], 0.5 * (t[u][0] + t[u][1] + t[u][2]), 0.5 * (t[u][0] - t[u][1] + t[u][2]),
                                   t[u][2]};
            for (int v = 0; v < 4; ++v) buf_.data()[(cb * 16 + 4 * u + v) * K_ * kMaxWidth + k * w + j] = static_cast<float>(row[v]);
          }
        }
    });
  }
  int64_t blocks() const { return blocks_; }
  int64_t width(int64_t cb) const { return std::min(kMaxWidth, C_ - cb * kMaxWidth); }
  const float* panel(int64_t cb, int e) const { return buf_.data() + (cb * 16 + e) * K_ * kMaxWidth; }

 private:
  int64_t K_, C_, blocks_;
  Scratch<float> buf_;
};

// The correlation of the Note for channels_last X (N, H, W, K) into channels_last Y (N, Ho, Wo,
// C), C a multiple of 16; bias: C floats or null. The 2x2 blocks of outputs in one sequence over
// images and rows; per task a run of `tiles` of them: their transformed inputs (16 x tiles x K
// floats), then per block of 64 channels the 16 GEMMs and the output transform.
inline void winograd_3x3(const float* X, int64_t N, int64_t H, int64_t W, int64_t K, const WinogradWeights& U,
                         const float* bias, float* Y, int64_t Ho, int64_t Wo, int64_t C, int64_t qh, int64_t qw) {
  const int64_t TH = ceil_div(Ho, 2), TW = ceil_div(Wo, 2), total = N * TH * TW;
  // Blocks per task: its transformed inputs and one channel block's products within ~512 KiB of
  // the core's L2 (each weight panel read once per task is then multiplied by 12-60 blocks),
  // a multiple of the 6-block register tile.
  const int64_t tiles = std::min<int64_t>(total, std::clamp<int64_t>((512 << 10) / (64 * K + 4096) / 6 * 6, 12, 96));
  const int64_t kv = ceil_div(K, 16), cw = WinogradWeights::kMaxWidth;
  const int64_t tasks = ceil_div(total, tiles);
  alignas(64) static const float zeros[WinogradWeights::kMaxWidth] = {};
  parallel_for_work(0, tasks, total * 16 * K * C, [&](int64_t begin, int64_t end) {
    std::vector<float> V(16 * tiles * K), M(16 * tiles * cw);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t first = task * tiles, count = std::min(tiles, total - first);
      // B^T d B per block and 16 channels k; B^T's rows (1 0 -1 0), (0 1 1 0), (0 -1 1 0), (0 1 0 -1).
      for (int64_t t = 0; t < count; ++t) {
        const int64_t tile = first + t, n = tile / (TH * TW), ty = tile / TW % TH, tx = tile % TW;
        const int64_t i0 = 2 * ty - qh, j0 = 2 * tx - qw;
        const float* px[4][4];
        for (int r = 0; r < 4; ++r)
          for (int s = 0; s < 4; ++s) {
            const int64_t ih = i0 + r, iw = j0 + s;
            px[r][s] = ih >= 0 && ih < H && iw >= 0 && iw < W ? X + ((n * H + ih) * W + iw) * K : nullptr;
          }
        for (int64_t q = 0; q < kv; ++q) {
          const int64_t k0 = 16 * q;
          const __mmask16 m = K - k0 >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (K - k0)) - 1);
          __m512 d[4][4];
          for (int r = 0; r < 4; ++r)
            for (int s = 0; s < 4; ++s) d[r][s] = px[r][s] ? _mm512_maskz_loadu_ps(m, px[r][s] + k0) : _mm512_setzero_ps();
          __m512 tr[4][4];
          for (int s = 0; s < 4; ++s) {
            tr[0][s] = _mm512_sub_ps(d[0][s], d[2][s]);
            tr[1][s] = _mm512_add_ps(d[1][s], d[2][s]);
            tr[2][s] = _mm512_sub_ps(d[2][s], d[1][s]);
            tr[3][s] = _mm512_sub_ps(d[1][s], d[3][s]);
          }
          float* v = V.data() + t * K + k0;
          const int64_t e_step = tiles * K;
          for (int u = 0; u < 4; ++u) {
            _mm512_mask_storeu_ps(v + (4 * u + 0) * e_step, m, _mm512_sub_ps(tr[u][0], tr[u][2]));
            _mm512_mask_storeu_ps(v + (4 * u + 1) * e_step, m, _mm512_add_ps(tr[u][1], tr[u][2]));
            _mm512_mask_storeu_ps(v + (4 * u + 2) * e_step, m, _mm512_sub_ps(tr[u][2], tr[u][1]));
            _mm512_mask_storeu_ps(v + (4 * u + 3) * e_step, m, _mm512_sub_ps(tr[u][1], tr[u][3]));
          }
        }
      }
      for (int64_t cb = 0; cb < U.blocks(); ++cb) {
        const int64_t width = U.width(cb), c0 = cb * cw;
        const DirectRowShape shape{1, K, count, K};
        for (int e = 0; e < 16; ++e) {
          const DirectTap tap{V.data() + e * tiles * K, 0, U.panel(cb, e)};
          direct_tile_row_of_width(width, &tap, 1, shape, count, zeros, M.data() + e * tiles * cw, cw, nullptr);
        }
        // A^T m A + bias per block and 16 channels; A^T's rows (1 1 1 0), (0 1 -1 -1).
        for (int64_t t = 0; t < count; ++t) {
          const int64_t tile = first + t, n = tile / (TH * TW), oi = 2 * (tile / TW % TH), oj = 2 * (tile % TW);
          for (int64_t c = 0; c < width; c += 16) {
            const float* mt = M.data() + t * cw + c;
            __m512 mm[4][4];
            for (int e = 0; e < 16; ++e) mm[e / 4][e % 4] = _mm512_loadu_ps(mt + e * tiles * cw);
            __m512 s[2][4];
            for (int v = 0; v < 4; ++v) {
              s[0][v] = _mm512_add_ps(_mm512_add_ps(mm[0][v], mm[1][v]), mm[2][v]);
              s[1][v] = _mm512_sub_ps(_mm512_sub_ps(mm[1][v], mm[2][v]), mm[3][v]);
            }
            const __m512 b = bias ? _mm512_loadu_ps(bias + c0 + c) : _mm512_setzero_ps();
            for (int i = 0; i < 2 && oi + i < Ho; ++i) {
              float* yrow = Y + ((n * Ho + oi + i) * Wo + oj) * C + c0 + c;
              _mm512_storeu_ps(yrow, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[i][0], s[i][1]), s[i][2]), b));
              if (oj + 1 < Wo)
                _mm512_storeu_ps(yrow + C, _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[i][1], s[i][2]), s[i][3]), b));
            }
          }
        }
      }
    }
  });
}

#endif  // TCONV_CPU_AVX512

}  // namespace tconv::cpu::CPU_CAPABILITY
