// Note [direct tiles]: a register-blocked direct convolution for float32 on AVX-512 and AVX2: the dense
// transposed convolution's forward and grad_input where they are stride-1 convolutions per phase
// (every case but stride == kernel), and its grad_weight (weight_tile, below). NCHW operands are
// transposed on the way (PixelRowCache, transpose_block, planes_to_pixels).
//
// A tile is R consecutive outputs of one output row and one phase (outputs `out_step` apart) by
// 16 V channels, its R x V vectors in registers for the whole sum:
//     out[p][c] = bias[c] + sum over taps t, k < K of in_t[p][k] * panel_t[k][c]
// where in_t[p] is the input pixel tap t reads for output p (pixels `in_step` apart along the
// row) and panel_t the tap's (K x 16 V) weights, packed once per call. Per k each tap costs V
// vector loads of the panel and R broadcasts for R x V FMAs, so the tiles are as wide as the
// registers allow (AVX-512: 6 x 64, 8 x 48, 12 x 32, 16 x 16 channels; AVX2, whose 16 registers
// hold 8 floats: 6 x 16, see DirectVec); no tap matrix is materialised and
// nothing is summed twice (the tap GEMM's T and its shifted sums, Note [tap row classes]).
// Taps whose input row is outside are left out; a tile that has a tap reaching past either end
// of its input row reads that tap from a zero-padded copy of the pixels (the patch), so the same
// register kernel serves the borders. Each output is summed in one fixed order (taps in (kh, kw)
// order, k ascending) by one tile: the result does not depend on the thread count. The patch's
// zeros multiply finite weights only (the callers check the weight), so NaN/Inf land where
// PyTorch's do.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/conv_transpose2d_args.h"
#include "common/conv_transpose2d_shape.h"
#include "common/int_math.h"
#include "cpu/parallel.h"
#include "cpu/scratch.h"
#include "cpu/simd_transpose.h"

// The ISAs the direct tiles are built for (one register kernel each, DirectVec).
#if defined(TCONV_CPU_AVX512) || defined(TCONV_CPU_AVX2)
#define TCONV_CPU_DIRECT_TILES 1
#endif

namespace tconv::cpu::CPU_CAPABILITY {

// At most kDirectMaxTaps taps per tile row.
constexpr int64_t kDirectMaxTaps = 64;

// The depth axis of a 3-D layer (Note [3-D transposed convolution], cpu/conv_transpose3d.cpp),
// whose (H, W) axes are a 2-D geometry: input and output slices, kernel, stride, padding,
// dilation. A 2-D layer has the unit axis (kUnitDepth): the kernels that take one serve both.
struct DepthAxis {
  int64_t D, Do, kD, sd, pd, dd;
  // The depth cells q of phase r (outputs od = q * sd + r - pd inside [0, Do)).
  IndexRange cells(int64_t r) const {
    const int64_t lo = ceil_div(std::max<int64_t>(pd - r, 0), sd);
    const int64_t hi = Do - 1 + pd - r >= 0 ? floor_div(Do - 1 + pd - r, sd) + 1 : 0;
    return {lo, std::max(lo, hi)};
  }
};
inline constexpr DepthAxis kUnitDepth{1, 1, 1, 1, 0, 1};

// The three passes the direct tiles serve, each with its own output channels: the forward's
// Cout_g, grad_input's Cin_g, grad_weight's Cout_g (its tiles: 6 Cin x 64 Cout of one tap).
enum class DirectPass { forward, grad_input, grad_weight };

// Where Note [direct tiles] serves `pass`: float32 on AVX-512 or AVX2 (the caller checks the type), whole
// 16-channel vectors of the pass's outputs, every phase of the output with a tap (kH >= sh, kW >=
// sw) and at most kDirectMaxTaps per tile row. On AVX-512, with two taps or more per output on average every
// pass takes them. With about one (stride == kernel, the U-Net k2 s2 layers: each pass one GEMM
// over the channels) the forward still gains (no cell matrix to gather or scatter: 1.2-1.7x the
// cell GEMM on the U-Net model's k2 s2 layers) but the backward's GEMMs over wide channels run
// faster through oneDNN: grad_input takes the tiles up to 256 input channels (2x512->256 at 8x8:
// 1.44 against 1.00 ms), grad_weight up to 256 x 128 channels (2x1024->512 at 16x16: 16.1
// against 12.4 ms; benchmarks/NOTES.md, session 16). TCONV_CONV_FORWARD=tap|cell forces the
// forward's GEMM paths instead (=rows|images one of the direct tiles' orders).
// Whether the direct tiles can serve `pass` at all (the first conditions below).
inline bool direct_tiles_can_run(const ConvTranspose2dGeometry& g, DirectPass pass) {
#if defined(TCONV_CPU_DIRECT_TILES)
  const int64_t out_channels = pass == DirectPass::grad_input ? g.Cin_g : g.Cout_g;
  return out_channels % 16 == 0 && g.kH >= g.sh && g.kW >= g.sw && g.kH * g.kW <= kDirectMaxTaps;
#else
  (void)g, (void)pass;
  return false;
#endif
}

// What a pass runs where the direct tiles do not: the 2-D ops' GEMMs (on NCHW or channels_last
// operands), or for the 3-D kernels the composite over the 2-D op. The AVX2 rules weigh the tiles
// against it; the AVX-512 rules hold for every alternative.
enum class DirectAlternative { gemm_nchw, gemm_channels_last, composite };

inline bool use_direct_tiles(const ConvTranspose2dGeometry& g, DirectPass pass, DirectAlternative alternative) {
#if defined(TCONV_CPU_DIRECT_TILES)
  const char* force = std::getenv(pass == DirectPass::forward ? "TCONV_CONV_FORWARD" : "TCONV_CONV_BACKWARD");
  const auto forced = [&](const char* path) { return force && std::strcmp(force, path) == 0; };
  if (pass == DirectPass::forward && (forced("tap") || forced("cell"))) return false;
  const int64_t taps = g.kH * g.kW;
  if (!direct_tiles_can_run(g, pass)) return false;
  if (forced("rows") || forced("images")) return true;  // a forced order (tests): wherever the tiles can run
#if defined(TCONV_CPU_AVX512)
  (void)alternative;
  if (taps >= 2 * g.sh * g.sw) return true;
  switch (pass) {
    case DirectPass::forward: return true;
    case DirectPass::grad_input: return g.Cin_g <= 256;
    case DirectPass::grad_weight: return g.Cin_g * g.Cout_g <= 256 * 128;
  }
#else
  // AVX2 (AMD Zen 3, 2 threads, against the GEMM paths; benchmarks/NOTES.md, session 22): its
  // tiles keep 12 accumulators and read their panel from L2 at about its rate, where oneDNN's
  // GEMM blocks for L1. The forward gains at stride 1 (3x3 64->64 8x64x64: 18.3 against 45.4 ms),
  // with under 4 taps per output phase (3x3 s2 256->128: 45.6 against 63.2) and on k2 s2 up to
  // 256 x 128 channels (24.5 against 33.8), not on 4x4 s2 (DCGAN 256->128 16x16x16: 52.6
  // against 38.1) or k2 s2 1024->512 (34.6 against 19.9); grad_input only at stride 1 (4x4 s2:
  // 49.8 against 33.1); grad_weight up to 256 x 128 channels (DCGAN 36.3 against 46.1; 512->256
  // at 4x4: 50.9 against 33.7).
  // On 3x3 s2 (between one and four taps per output phase; session 24) the tap GEMM's forward is
  // faster from 256 input channels NCHW (decoder 256->128 8x32x32: 30.9 ms against the tiles' 37.0;
  // 512->256 8x16x16: 29.3 against 33.8; 128->64 8x64x64 loses, 39.6 against 34.8; channels_last
  // 33.2 against 31.1) and the patch GEMM's grad_weight from 128 input channels (the decoder 32.8
  // against 39.4, channels_last 31.1 against 35.8; 128->64 38.5 against 42.4; 64->32 12.2 against
  // 11.0). The composite (the 3-D kernels' alternative) loses to the tiles' grad_input at any stride
  // (k2 s2 128->64 2x16^3 forward+backward 34.7 ms against 63.0; session 23).
  const bool small = g.Cin_g * g.Cout_g <= 256 * 128;
  const bool gemm = alternative != DirectAlternative::composite;
  const bool taps_3x3_s2 = g.sh * g.sw > 1 && taps > g.sh * g.sw && taps < 4 * g.sh * g.sw;
  switch (pass) {
    case DirectPass::forward:
      if (taps >= 4 * g.sh * g.sw && g.sh * g.sw > 1) return false;  // 4x4 s2 and denser strided layers
      if (taps_3x3_s2 && alternative == DirectAlternative::gemm_nchw && g.Cin_g >= 256) return false;
      return taps > g.sh * g.sw || small;  // about one tap per output: k2 s2
    case DirectPass::grad_input: return !gemm || (g.sh == 1 && g.sw == 1);
    case DirectPass::grad_weight: return small && !(gemm && taps_3x3_s2 && g.Cin_g >= 128);
  }
#endif
  return false;
#else
  (void)g, (void)pass, (void)alternative;
  return false;
#endif
}

// The 2-D ops' alternative in the layout `channels_last`.
inline DirectAlternative gemm_alternative(bool channels_last) {
  return channels_last ? DirectAlternative::gemm_channels_last : DirectAlternative::gemm_nchw;
}

// grad_weight's tiles: whether one input row and the grad_output rows it reaches fit a chunk (~512 KiB). The 3-D
// kernels need it (their chunks are whole rows); the 2-D ones cut wider rows into column runs (weight_chunks).
inline bool weight_tiles_fit(const ConvTranspose2dGeometry& g) {
  return (g.W * g.Cin + g.sh * g.Wo * g.Cout) * int64_t(sizeof(float)) <= (int64_t(512) << 10);
}

// The 2-D grad_weight's tiles: rows that fit a chunk, or wider rows cut into column runs where the
// accumulators stay in L2 (every run adds into all of them: the 1-D 512->256 k16 layer's 8 MiB made
// the tiles 1.15x slower than the patch GEMM, the 256->128 k4 layer's 512 KiB 1.25x faster).
inline bool weight_tiles_take(const ConvTranspose2dGeometry& g) {
  return weight_tiles_fit(g) || g.kH * g.kW * g.Cin * g.Cout_g * int64_t(sizeof(float)) <= (int64_t(1) << 20);
}

// Where Note [Winograd] (cpu/winograd.h) serves `pass` instead of the direct tiles:
// without dilation or groups, both channel counts at least 32 (with fewer the transforms cost as
// much as the multiply-adds saved), 3x3 stride 1 (forward and grad_input) up to 256 x 256
// channels or 4x4 stride 2 (F(2x2, 2x2): the forward per output phase, grad_input over
// grad_output's four polyphase components) up to 256 x 128. Beyond, each task re-reads its
// 16-36 transformed weight matrices from L3 for too few blocks (DCGAN's 512->256 k4 s2 at 4x4
// forward 7.9 ms along images against 9.4, channels_last; 3x3 512->256 8x8x8 8.6 against 12.7).
// NCHW grad_input of 4x4 stride 2 from more than 64 x 64 channels (its channels_last copy of the
// 4x larger grad_output costs more with fewer: 4x64->64 at 64x64 6.5 ms against 5.4 along rows).
// TCONV_CONV_FORWARD / TCONV_CONV_BACKWARD set to a direct order or a GEMM (tests) take those
// instead; set to winograd, Winograd wherever it can run (whole 16-channel vectors of the pass's
// outputs, no groups or dilation), so that tests check it on every shape. AVX2 (AMD Zen 3, 2
// threads; benchmarks/NOTES.md, session 23) takes the same rule: its tiles run the GEMMs at the
// direct tiles' rate, so the 2.25x (3x3) and 1.78x (4x4 s2) fewer multiply-adds carry over (3x3
// 64->64 8x64x64 forward 10.3 ms against the tiles' 15.4, channels_last 8.1 against 14.2; DCGAN
// 256->128 16x16x16 forward 20.0 against the GEMM's 27.3, grad_input 21.4 against 27.2).
inline bool use_winograd(const ConvTranspose2dGeometry& g, DirectPass pass, bool channels_last) {
#if defined(TCONV_CPU_DIRECT_TILES)
  const char* force = std::getenv(pass == DirectPass::forward ? "TCONV_CONV_FORWARD" : "TCONV_CONV_BACKWARD");
  const bool forced = force && std::strcmp(force, "winograd") == 0;
  if (force && !forced) return false;
  const bool k3s1 = g.kH == 3 && g.kW == 3 && g.sh == 1 && g.sw == 1;
  const bool k4s2 = g.kH == 4 && g.kW == 4 && g.sh == 2 && g.sw == 2;
  if (pass == DirectPass::grad_weight || !(k3s1 || k4s2) || g.dh != 1 || g.dw != 1 || g.groups != 1 ||
      (pass == DirectPass::forward ? g.Cout : g.Cin) % 16 != 0)
    return false;
  if (forced) return true;
  const int64_t pairs = g.Cin * g.Cout;
  return g.Cin >= 32 && g.Cout >= 32 &&
         (k3s1 ? pairs <= 256 * 256
               : pairs <= 256 * 128 && (channels_last || pass == DirectPass::forward || pairs > 64 * 64));
#else
  (void)g, (void)pass, (void)channels_last;
  return false;
#endif
}

// Where Note [Winograd rows] (cpu/winograd.h) serves `pass` instead of the direct tiles. grad_weight
// (Note [Winograd rows' grad_weight], cpu/conv_transpose2d_backward.cpp): NCHW, from 64 x 64 to 512 x
// 256 channels (AMD Zen 4, session 27: 4x256->128 k4 s2 8000 41.1 ms against the tiles' 47.5, 8x64->64
// k4 s2 8000 16.5 against 18.0, 4x512->256 k16 s8 1000 72.1 against the patch GEMM's 90.1; 2x1024->512
// k16 s8 500 111.6 against 107.4: there the sums, 4 x Cin x s Cout = 67 MB, are read and written again
// for every chunk of 192 blocks). The forward and grad_input: a 1 x 2s layer of stride (1, s), s >= 2,
// no padding along H, dilation or groups, float32 (the caller's), at least 32 input and output
// channels (the pass's outputs a multiple of 16), Cin x Cout up to 512 x 256 (beyond, a task re-reads
// its 8-48 MiB of transformed weights from memory: 2x1024->512 k16 s8 500 channels_last forward 66.7
// ms against 61.5, grad_input 91.2 against 72.7) and from a size where the transforms and the NCHW
// copy and transposes pay (benchmarks/NOTES.md, session 21): the forward from 128 x 64 channels_last
// (4x128->64 k4 s2 16000: 13.1 ms against 17.7) or 256 x 128 NCHW (the same layer NCHW 16.8 against
// 15.7); grad_input, whose GEMMs sum s Cout channels per output, from 256 x 128 channels (4x256->128
// k16 s8 2000: channels_last 15.6 against 20.3; NCHW 21.5 against 20.9 on AMD Zen 5, 35.5-36.3 against
// 41.5-41.8 on Zen 4, where 4x256->128 k4 s2 8000 NCHW ran 38.5-39.4 against 43.7-44.9, session 26;
// 4x512->256 k16 s8 1000: 35.2 against 43.9). On AVX2 (AMD Zen 3; benchmarks/NOTES.md, session 23) the
// forward takes the same rule (512->256 k16 s8 4x1000 NCL: 98.5 ms against the GEMM's 108 and the
// tiles' 126); grad_input from 128 x 64 channels (256->128 k4 s2 4x8000 NCL, 256 summed: 89.8 ms
// against 111 with the forward); since its GEMMs run in L2-sized chunks (Note [Winograd products])
// also at 2048 summed channels (512->256 k16 s8: 91 ms against the GEMM's 100, session 24; 126 before
// the chunks), up to 512 x 256 channels as on AVX-512. TCONV_CONV_FORWARD / TCONV_CONV_BACKWARD set to
// another path take that instead; set to winograd, the rows wherever they can run.
inline bool use_winograd_rows(const ConvTranspose2dGeometry& g, bool channels_last,
                              DirectPass pass = DirectPass::forward) {
#if defined(TCONV_CPU_DIRECT_TILES)
  const bool forward = pass == DirectPass::forward;
  const char* force = std::getenv(forward ? "TCONV_CONV_FORWARD" : "TCONV_CONV_BACKWARD");
  const bool forced = force && std::strcmp(force, "winograd") == 0;
  if (force && !forced) return false;
  const int64_t pairs = g.Cin * g.Cout, outputs = forward ? g.Cout : g.Cin;
  const bool rows_layer = g.kH == 1 && g.sh == 1 && g.ph == 0 && g.sw >= 2 && g.kW == 2 * g.sw && g.dh == 1 &&
                          g.dw == 1 && g.groups == 1;
  if (pass == DirectPass::grad_weight)  // Note [Winograd rows' grad_weight]: NCHW only
    return rows_layer && !channels_last && (forced || (g.Cin >= 64 && g.Cout >= 64 && pairs <= 512 * 256));
  if (!rows_layer || outputs % 16 != 0) return false;
  if (forced) return true;
#if !defined(TCONV_CPU_AVX512)
  if (!forward) return g.Cin >= 32 && g.Cout >= 32 && pairs >= 128 * 64 && pairs <= 512 * 256;
#endif
  const int64_t fewest = forward && channels_last ? 128 * 64 : 256 * 128;
  return g.Cin >= 32 && g.Cout >= 32 && pairs >= fewest && pairs <= 512 * 256;
#else
  (void)g, (void)channels_last, (void)pass;
  return false;
#endif
}

#if defined(TCONV_CPU_DIRECT_TILES)

// The register vector of the tiles: a 16-channel vector of the tiles is one AVX-512 register or
// two AVX2 ones (kParts).
struct DirectVec {
#if defined(TCONV_CPU_AVX512)
  using type = __m512;
  static constexpr int kParts = 1;
  static type load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, type v) { _mm512_storeu_ps(p, v); }
  static type broadcast(float x) { return _mm512_set1_ps(x); }
  static type fma(type a, type b, type c) { return _mm512_fmadd_ps(a, b, c); }
#else
  using type = __m256;
  static constexpr int kParts = 2;
  static type load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, type v) { _mm256_storeu_ps(p, v); }
  static type broadcast(float x) { return _mm256_set1_ps(x); }
  static type fma(type a, type b, type c) { return _mm256_fmadd_ps(a, b, c); }
#endif
  static constexpr int kLanes = 16 / kParts;
  // Registers a tile's accumulators may take: the rest hold the panel's vectors and the broadcast.
  static constexpr int kAccumulators = kParts == 1 ? 24 : 12;
};

// The outputs of one tile row: widest tile per vector count V (channel block of 16 V) that keeps
// its R x V accumulators in registers (AVX-512: 24 of 32). AVX2 runs every block 16 channels at
// a time (direct_tile_row_of_width), 6 outputs x 2 registers: 12 accumulators of 16, and of the
// shapes tried the one that reads the least of the panel per FMA (its L2 traffic bounds AVX2).
#if defined(TCONV_CPU_AVX512)
template <int V>
constexpr int kDirectTileRows = V == 4 ? 6 : (V == 3 ? 8 : (V == 2 ? 12 : 16));
#else
template <int V>
constexpr int kDirectTileRows = 6;
#endif

// The tile: panel rows (k) are ld floats apart (16 V, or a block's width when the tile is a
// part of the block). It starts from bias (per channel) or, with bias kAccumulate, from out
// (a sum over K in chunks).
inline constexpr const float* kAccumulate = nullptr;

template <int R, int V>
inline void direct_tile(const float* const* in, int taps, int64_t in_step, int64_t K, const float* const* panel,
                        int64_t ld, const float* bias, float* out, int64_t out_step) {
  using Vec = DirectVec;
  constexpr int P = V * Vec::kParts, L = Vec::kLanes;
  static_assert(R * P <= Vec::kAccumulators, "the accumulators fit the registers");
  typename Vec::type acc[R][P];
  for (int v = 0; v < P; ++v) {
    if (bias == kAccumulate) {
      for (int p = 0; p < R; ++p) acc[p][v] = Vec::load(out + p * out_step + L * v);
      continue;
    }
    const auto b = Vec::load(bias + L * v);
    for (int p = 0; p < R; ++p) acc[p][v] = b;
  }
  for (int t = 0; t < taps; ++t) {
    const float* a = in[t];
    const float* w = panel[t];
    for (int64_t k = 0; k < K; ++k) {
      typename Vec::type b[P];
      for (int v = 0; v < P; ++v) b[v] = Vec::load(w + k * ld + L * v);
      for (int p = 0; p < R; ++p) {
        const auto x = Vec::broadcast(a[p * in_step + k]);
        for (int v = 0; v < P; ++v) acc[p][v] = Vec::fma(x, b[v], acc[p][v]);
      }
    }
  }
  for (int p = 0; p < R; ++p)
    for (int v = 0; v < P; ++v) Vec::store(out + p * out_step + L * v, acc[p][v]);
}

// direct_tile<R, V> for a run-time R in 1 .. Rmax (the row's last tile).
template <int R, int V>
inline void direct_tile_of(int rows, const float* const* in, int taps, int64_t in_step, int64_t K,
                           const float* const* panel, int64_t ld, const float* bias, float* out, int64_t out_step) {
  if constexpr (R >= 1) {
    if (rows == R) {
      direct_tile<R, V>(in, taps, in_step, K, panel, ld, bias, out, out_step);
    } else {
      direct_tile_of<R - 1, V>(rows, in, taps, in_step, K, panel, ld, bias, out, out_step);
    }
  }
}

// The weight packed for the tiles, once per call into the calling thread's scratch: per group and
// block of up to 64 tile channels (the forward's output channels, grad_input's input channels),
// per tap a (K x width) matrix over the summed channels (Cin_g, or Cout_g), rows width apart.
class DirectPanels {
 public:
  static constexpr int64_t kMaxWidth = 64;
  DirectPanels(const float* w, const ConvTranspose2dGeometry& g, bool tiles_of_input_channels)
      : kW_(g.kW), taps_(g.kH * g.kW), tile_channels_(tiles_of_input_channels ? g.Cin_g : g.Cout_g),
        summed_(tiles_of_input_channels ? g.Cout_g : g.Cin_g), blocks_(ceil_div(tile_channels_, kMaxWidth)),
        block_floats_(taps_ * summed_ * kMaxWidth),
        buf_(ScratchSlot::kConvWeights, g.groups * blocks_ * block_floats_, size_t(8) << 20) {
    parallel_for_work(0, g.groups * blocks_ * taps_, g.Cin * g.Cout_g * taps_, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t k = t % taps_, cb = t / taps_ % blocks_, grp = t / (taps_ * blocks_);
        const int64_t c0 = cb * kMaxWidth, width = this->width(cb);
        float* panel = buf_.data() + (grp * blocks_ + cb) * block_floats_ + k * summed_ * width;
        for (int64_t s = 0; s < summed_; ++s)
          for (int64_t j = 0; j < width; ++j) {
            const int64_t ci = tiles_of_input_channels ? c0 + j : s, co = tiles_of_input_channels ? s : c0 + j;
            panel[s * width + j] = w[((grp * g.Cin_g + ci) * g.Cout_g + co) * taps_ + k];
          }
      }
    });
  }
  int64_t blocks() const { return blocks_; }
  int64_t width(int64_t cb) const { return std::min(kMaxWidth, tile_channels_ - cb * kMaxWidth); }
  const float* panel(int64_t grp, int64_t cb, int64_t kh, int64_t kw) const {
    return buf_.data() + (grp * blocks_ + cb) * block_floats_ + (kh * kW_ + kw) * summed_ * width(cb);
  }

 private:
  int64_t kW_, taps_, tile_channels_, summed_, blocks_, block_floats_;
  Scratch<float> buf_;
};

// The tiles' starting values where a pass has no bias (grad_input, Winograd's products).
alignas(64) inline constexpr float kNoBias[DirectPanels::kMaxWidth] = {};

// Tiles along images (the outputs of one position in `images` images: same taps, no patch) rather
// than along a row (`row` outputs of one phase): whichever leaves less of its tiles empty, images
// on a tie (a row's border tiles need patches). DCGAN's 4x4-16x16 layers in batches of 16-64 go
// along images, a 3x3 layer in a batch of 8 along its rows.
inline bool direct_tiles_along_images(int64_t images, int64_t row, int64_t channels) {
  const int64_t R = channels >= 64 ? kDirectTileRows<4> : (channels % 64 == 48 ? kDirectTileRows<3> : kDirectTileRows<2>);
  const auto filled = [&](int64_t count) { return double(count) / double((count + R - 1) / R * R); };
  return filled(images) >= filled(row);
}

// One tap of a tile row: output j (0 <= j < count) reads input pixel column base + j * mult of
// `row` (pixels `pixel` elements apart, `len` of them; outside: zero), through `panel`.
struct DirectTap {
  const float* row;
  int64_t base;
  const float* panel;
};
struct DirectRowShape {
  int64_t mult, pixel, len, K;
};

// The patch's floats for `taps` taps (the callers allocate it once per range of tasks).
inline int64_t direct_patch_floats(int64_t taps, const DirectRowShape& s) { return taps * 16 * s.mult * s.pixel; }

// The `count` outputs of one tile row (out: the first, outputs out_step apart; 16 V channels from
// channel `part` of a block whose panel rows are ld floats apart).
template <int V>
void direct_tile_row(const DirectTap* taps, int ntaps, const DirectRowShape& s, int64_t count, int64_t ld,
                     int64_t part, const float* bias, float* out, int64_t out_step, float* patch) {
  constexpr int Rmax = kDirectTileRows<V>;
  const float* in[kDirectMaxTaps];
  const float* panel[kDirectMaxTaps];
  const int64_t step = s.mult * s.pixel;  // between a tap's pixels of consecutive outputs
  for (int64_t j0 = 0; j0 < count; j0 += Rmax) {
    const int rows = static_cast<int>(std::min<int64_t>(Rmax, count - j0));
    for (int t = 0; t < ntaps; ++t) {
      const DirectTap& tp = taps[t];
      const int64_t first = tp.base + j0 * s.mult, last = first + (rows - 1) * s.mult;
      panel[t] = tp.panel + part;
      if (first >= 0 && last < s.len) {
        in[t] = tp.row + first * s.pixel;
        continue;
      }
      // The tile's pixels of this tap at the in-place pitch (so every tap has one in_step), zero
      // outside the row.
      float* pt = patch + t * Rmax * step;
      for (int p = 0; p < rows; ++p) {
        const int64_t col = first + p * s.mult;
        if (col >= 0 && col < s.len) {
          std::memcpy(pt + p * step, tp.row + col * s.pixel, s.K * sizeof(float));
        } else {
          std::memset(pt + p * step, 0, s.K * sizeof(float));
        }
      }
      in[t] = pt;
    }
    direct_tile_of<Rmax, V>(rows, in, ntaps, step, s.K, panel, ld, bias, out + j0 * out_step, out_step);
  }
}

// The rows of direct_tile_row_of_width's tiles for a block of `width` channels.
inline int64_t direct_tile_rows_of_width(int64_t width) {
#if defined(TCONV_CPU_AVX512)
  return width == 64   ? kDirectTileRows<4>
         : width == 48 ? kDirectTileRows<3>
         : width == 32 ? kDirectTileRows<2>
                       : kDirectTileRows<1>;
#else
  (void)width;
  return kDirectTileRows<1>;
#endif
}

// direct_tile_row for a block of `width` channels (16, 32, 48 or 64).
inline void direct_tile_row_of_width(int64_t width, const DirectTap* taps, int ntaps, const DirectRowShape& s,
                                     int64_t count, const float* bias, float* out, int64_t out_step, float* patch) {
#if defined(TCONV_CPU_AVX512)
  switch (width) {
    case 64: direct_tile_row<4>(taps, ntaps, s, count, 64, 0, bias, out, out_step, patch); break;
    case 48: direct_tile_row<3>(taps, ntaps, s, count, 48, 0, bias, out, out_step, patch); break;
    case 32: direct_tile_row<2>(taps, ntaps, s, count, 32, 0, bias, out, out_step, patch); break;
    default: direct_tile_row<1>(taps, ntaps, s, count, 16, 0, bias, out, out_step, patch); break;
  }
#else
  for (int64_t c = 0; c < width; c += 16)
    direct_tile_row<1>(taps, ntaps, s, count, width, c, bias == kAccumulate ? kAccumulate : bias + c, out + c, out_step,
                       patch);
#endif
}

// Note [direct tiles] for grad_weight: gw_tap[ci][co] = sum over pixel pairs of x[pixel][ci] *
// go[pixel'][co], a tile of R input channels by 16 V output channels of one tap summed in
// registers over segments (one input row's run of pixels whose tap lands inside grad_output:
// x's pixels a_step apart, grad_output's b_step apart), starting from and returning to acc (rows
// ld apart). Per pixel: V loads of grad_output and R broadcasts of x for R x V FMAs.
struct WeightSegment {
  const float* a;
  const float* b;
  int64_t K;
};

template <int R, int V>
inline void weight_tile(const WeightSegment* segs, int nsegs, int64_t a_off, int64_t b_off, int64_t a_step,
                        int64_t b_step, float* acc_mem, int64_t ld) {
  using Vec = DirectVec;
  constexpr int P = V * Vec::kParts, L = Vec::kLanes;
  static_assert(R * P <= Vec::kAccumulators, "the accumulators fit the registers");
  typename Vec::type acc[R][P];
  for (int p = 0; p < R; ++p)
    for (int v = 0; v < P; ++v) acc[p][v] = Vec::load(acc_mem + p * ld + L * v);
  for (int s = 0; s < nsegs; ++s) {
    const float* a = segs[s].a + a_off;
    const float* b = segs[s].b + b_off;
    for (int64_t k = 0; k < segs[s].K; ++k) {
      typename Vec::type bv[P];
      for (int v = 0; v < P; ++v) bv[v] = Vec::load(b + k * b_step + L * v);
      for (int p = 0; p < R; ++p) {
        const auto x = Vec::broadcast(a[k * a_step + p]);
        for (int v = 0; v < P; ++v) acc[p][v] = Vec::fma(x, bv[v], acc[p][v]);
      }
    }
  }
  for (int p = 0; p < R; ++p)
    for (int v = 0; v < P; ++v) Vec::store(acc_mem + p * ld + L * v, acc[p][v]);
}

template <int R, int V>
inline void weight_tile_of(int rows, const WeightSegment* segs, int nsegs, int64_t a_off, int64_t b_off,
                           int64_t a_step, int64_t b_step, float* acc_mem, int64_t ld) {
  if constexpr (R >= 1) {
    if (rows == R) {
      weight_tile<R, V>(segs, nsegs, a_off, b_off, a_step, b_step, acc_mem, ld);
    } else {
      weight_tile_of<R - 1, V>(rows, segs, nsegs, a_off, b_off, a_step, b_step, acc_mem, ld);
    }
  }
}

// The weight tiles of rows (<= 6) input channels by width (16, 32, 48 or 64) output channels.
// AVX2 (6 x 2 accumulator registers per 16 channels) runs the width 16 channels at a time.
constexpr int kWeightTileRows = 6;
inline void weight_tile_of_width(int64_t width, int rows, const WeightSegment* segs, int nsegs, int64_t a_off,
                                 int64_t b_off, int64_t a_step, int64_t b_step, float* acc_mem, int64_t ld) {
#if defined(TCONV_CPU_AVX512)
  switch (width) {
    case 64: weight_tile_of<kWeightTileRows, 4>(rows, segs, nsegs, a_off, b_off, a_step, b_step, acc_mem, ld); break;
    case 48: weight_tile_of<kWeightTileRows, 3>(rows, segs, nsegs, a_off, b_off, a_step, b_step, acc_mem, ld); break;
    case 32: weight_tile_of<kWeightTileRows, 2>(rows, segs, nsegs, a_off, b_off, a_step, b_step, acc_mem, ld); break;
    default: weight_tile_of<kWeightTileRows, 1>(rows, segs, nsegs, a_off, b_off, a_step, b_step, acc_mem, ld); break;
  }
#else
  for (int64_t c = 0; c < width; c += 16)
    weight_tile_of<kWeightTileRows, 1>(rows, segs, nsegs, a_off, b_off + c, a_step, b_step, acc_mem + c, ld);
#endif
}

// The weight tiles' accumulators: gwt[group][tap][ci][co] (KK taps), zeroed by the caller. A
// thread owns the tiles of its range [begin, end) of this tap's (group, block of kWeightTileRows
// input channels) (for_each_weight_tap) and adds the tap's segments into them: in groups of
// segments of ~64 pixels (a group's grad_output columns, 64 pixels x 64 channels, stay in L1 while
// every tile of the thread reads them), per block of 64 output channels. a_step, b_step: x's and
// grad_output's pixel steps.
inline void add_weight_segments(const WeightSegment* segs, int nsegs, int64_t tap, int64_t begin, int64_t end,
                                const ConvTranspose2dGeometry& g, int64_t KK, int64_t a_step, int64_t b_step,
                                float* gwt) {
  const int64_t cbw_max = 64, co_blocks = ceil_div(g.Cout_g, cbw_max);
  const int64_t ci_blocks = ceil_div(g.Cin_g, int64_t(kWeightTileRows));
  for (int s0 = 0; s0 < nsegs;) {
    int s1 = s0;
    for (int64_t px = 0; s1 < nsegs && px < 64; ++s1) px += segs[s1].K;
    for (int64_t cb = 0; cb < co_blocks; ++cb) {
      const int64_t co0 = cb * cbw_max, width = std::min(cbw_max, g.Cout_g - co0);
      for (int64_t t = begin; t < end; ++t) {
        const int64_t grp = t / ci_blocks, ci0 = t % ci_blocks * kWeightTileRows;
        const int rows = static_cast<int>(std::min<int64_t>(kWeightTileRows, g.Cin_g - ci0));
        float* acc = gwt + ((grp * KK + tap) * g.Cin_g + ci0) * g.Cout_g + co0;
        weight_tile_of_width(width, rows, segs + s0, s1 - s0, grp * g.Cin_g + ci0, grp * g.Cout_g + co0, a_step,
                             b_step, acc, g.Cout_g);
      }
    }
    s0 = s1;
  }
}

// The threads' shares of the weight tiles: units (tap, group, block of kWeightTileRows input
// channels), `units` per tap, taps outermost, so that the shares are equal whatever the blocks
// (64 channels are 11 blocks: 6 against 5 when split by channels) and each thread reads
// grad_output for its taps only. f(tap, first, last) for each tap of units [begin, end), with
// its (group, block) range.
template <typename F>
inline void for_each_weight_tap(int64_t begin, int64_t end, int64_t units, const F& f) {
  for (int64_t tap = begin / units; tap <= (end - 1) / units; ++tap)
    f(tap, std::max(begin - tap * units, int64_t(0)), std::min(end - tap * units, units));
}

// gwt (group, tap, ci, co) -> the weight's gradient (Cin, Cout_g, KK taps).
inline void weight_tiles_to_weight(const float* gwt, float* gw, const ConvTranspose2dGeometry& g, int64_t KK) {
  parallel_for_work(0, g.Cin, g.Cin * g.Cout_g * KK, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t grp = c / g.Cin_g, ci = c % g.Cin_g;
      for (int64_t co = 0; co < g.Cout_g; ++co)
        for (int64_t tap = 0; tap < KK; ++tap)
          gw[(c * g.Cout_g + co) * KK + tap] = gwt[((grp * KK + tap) * g.Cin_g + ci) * g.Cout_g + co];
    }
  });
}

// Chunks of ~512 KiB of input rows and the grad_output rows they reach: rows of one image, or
// (small images: DCGAN's 4x4 to 16x16) several whole images, so the weight tiles' accumulators go
// to memory once per ~512 KiB of pixels; a row wider than that (the 1-D layers: 1000-8000 pixels
// of 256-512 channels) is cut into runs of `cols` input columns and the grad_output columns they
// reach. A function of the shape only.
struct WeightChunks {
  int64_t rows, images, row_chunks, image_chunks, cols = 0, col_chunks = 1;
};
inline WeightChunks weight_chunks(const ConvTranspose2dGeometry& g, int64_t images) {
  constexpr int64_t kChunkBytes = int64_t(512) << 10;
  const int64_t row_bytes = (g.W * g.Cin + g.sh * g.Wo * g.Cout) * int64_t(sizeof(float));
  const int64_t rows_wanted = std::max<int64_t>(kChunkBytes / std::max<int64_t>(row_bytes, 1), 1);
  const int64_t rows = std::min(rows_wanted, g.H);
  const int64_t per_chunk = rows_wanted >= 2 * g.H ? std::min(rows_wanted / g.H, images) : 1;
  const int64_t column_bytes = (g.Cin + g.sw * g.Cout) * int64_t(sizeof(float));  // an input column's share
  const int64_t cols = row_bytes <= kChunkBytes ? g.W : std::clamp<int64_t>(kChunkBytes / column_bytes, 16, g.W);
  return {rows, per_chunk, ceil_div(g.H, rows), ceil_div(images, per_chunk), cols, ceil_div(g.W, cols)};
}

// NCHW operands: dst[n][c][r] = src[n][r][c], image by image, for r < rows, c < cols (16 x 16
// register transposes where whole). planes_to_pixels: an NCHW tensor as channels_last.
inline void transpose_images(const float* src, float* dst, int64_t N, int64_t rows, int64_t cols) {
  const int64_t rb = ceil_div(rows, 16), cb = ceil_div(cols, 16);
  parallel_for_work(0, N * rb, N * rows * cols * 2, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / rb, r0 = t % rb * 16;
      const float* s = src + n * rows * cols;
      float* d = dst + n * rows * cols;
      for (int64_t c0 = 0; c0 < cb * 16; c0 += 16) {
        if (r0 + 16 <= rows && c0 + 16 <= cols) {
          transpose_16x16(s + r0 * cols + c0, cols, d + c0 * rows + r0, rows);
          continue;
        }
        for (int64_t r = r0; r < std::min(rows, r0 + 16); ++r)
          for (int64_t c = c0; c < std::min(cols, c0 + 16); ++c) d[c * rows + r] = s[r * cols + c];
      }
    }
  });
}
inline void planes_to_pixels(const float* src, float* dst, int64_t N, int64_t C, int64_t HW) {
  transpose_images(src, dst, N, C, HW);
}

// A kernel that wants channels_last on an NCHW call: its input (N x Cin planes of in_plane) as
// channels_last and a channels_last buffer for its result (N x Cout planes of out_plane), both in
// the calling thread's kept scratch (kLayoutIn, kLayoutOut: fresh copies page-fault on every
// call), and store() transposes the result into the NCHW output. On a channels_last call in()
// and out() are the tensors' own memory and store() does nothing.
class ChannelsLastStaging {
 public:
  ChannelsLastStaging(bool nchw, const float* in, int64_t N, int64_t Cin, int64_t in_plane, float* out,
                      int64_t Cout, int64_t out_plane)
      : nchw_(nchw), in_(in), out_(out), N_(N), Cout_(Cout), out_plane_(out_plane),
        in_copy_(ScratchSlot::kLayoutIn, nchw ? N * Cin * in_plane : 0),
        out_copy_(ScratchSlot::kLayoutOut, nchw ? N * Cout * out_plane : 0) {
    if (nchw) planes_to_pixels(in, in_copy_.data(), N, Cin, in_plane);
  }
  const float* in() const { return nchw_ ? in_copy_.data() : in_; }
  float* out() const { return nchw_ ? out_copy_.data() : out_; }
  void store() const {
    if (nchw_) transpose_images(out_copy_.data(), out_, N_, out_plane_, Cout_);
  }

 private:
  bool nchw_;
  const float* in_;
  float* out_;
  int64_t N_, Cout_, out_plane_;
  Scratch<float> in_copy_, out_copy_;
};

// dst[r * ld_dst + c] = src[c * ld_src + r] for r < rows, c < cols: one row of planes as pixels
// (ld_src = the plane's size) or a row of pixels into planes.
inline void transpose_block(const float* src, int64_t ld_src, float* dst, int64_t ld_dst, int64_t rows, int64_t cols) {
  for (int64_t c0 = 0; c0 < cols; c0 += 16)
    for (int64_t r0 = 0; r0 < rows; r0 += 16) {
      if (c0 + 16 <= cols && r0 + 16 <= rows) {
        transpose_16x16(src + c0 * ld_src + r0, ld_src, dst + r0 * ld_dst + c0, ld_dst);
        continue;
      }
      for (int64_t c = c0; c < std::min(cols, c0 + 16); ++c)
        for (int64_t r = r0; r < std::min(rows, r0 + 16); ++r) dst[r * ld_dst + c] = src[c * ld_src + r];
    }
}

// An NCHW tensor's rows, or windows of their columns (ColumnWindows), as channels_last pixels
// (columns x C), transposed on first use and kept in a few slots: a thread's consecutive tasks
// (output rows of one window) read each input row about kH / sh times, so the whole input is
// transposed about once, in L2, with no input-sized copy. The least recently used slot is
// refilled, so a task that reads fewer rows than there are slots keeps all of its own.
class PixelRowCache {
 public:
  PixelRowCache(const float* planes, int64_t C, int64_t H, int64_t W, int64_t slots, int64_t max_cols)
      : planes_(planes), C_(C), H_(H), W_(W), slot_floats_(max_cols * C),
        buf_(ScratchSlot::kPixelRows, slots * max_cols * C), keys_(slots, Key{-1, 0, 0}), used_(slots, 0) {}
  // Columns [lo, hi) of row h of image n: column lo + j at j * C.
  const float* row(int64_t n, int64_t h, int64_t lo, int64_t hi) {
    const Key key{n * H_ + h, lo, hi};
    ++clock_;
    size_t victim = 0;
    for (size_t s = 0; s < keys_.size(); ++s) {
      if (keys_[s] == key) {
        used_[s] = clock_;
        return buf_.data() + s * slot_floats_;
      }
      if (used_[s] < used_[victim]) victim = s;
    }
    keys_[victim] = key;
    used_[victim] = clock_;
    float* d = buf_.data() + victim * slot_floats_;
    transpose_block(planes_ + n * C_ * H_ * W_ + h * W_ + lo, H_ * W_, d, C_, hi - lo, C_);
    return d;
  }

 private:
  struct Key {
    int64_t row, lo, hi;
    bool operator==(const Key& o) const { return row == o.row && lo == o.lo && hi == o.hi; }
  };
  const float* planes_;
  int64_t C_, H_, W_, slot_floats_;
  Scratch<float> buf_;
  std::vector<Key> keys_;
  std::vector<int64_t> used_;
  int64_t clock_ = 0;
};

// Note [column windows]: the NCHW row paths stage each task's input rows as pixels
// (PixelRowCache) and its tile rows' outputs in a row buffer. A 1-D layer's row is its whole
// signal (4 x 8000 pixels of 256 channels: 8 MiB per row, out of L2, transposed and re-read), so
// rows wider than ~1 MiB of staging go in windows of `width` tile outputs, each with just the
// input columns it reads (~256 KiB in all): the same outputs, each summed by one tile in the same
// order, so the same bits as one window. `outputs`: the tile row's length (Wo forward, W
// grad_input); bytes_per_output: the staging an output brings (its share of input columns and its
// 64-channel output pixel).
struct ColumnWindows {
  int64_t width, count;
  int64_t begin(int64_t w) const { return w * width; }
};
inline ColumnWindows column_windows(int64_t outputs, int64_t bytes_per_output, bool allowed) {
  constexpr int64_t kRowBytes = int64_t(1) << 20, kWindowBytes = int64_t(256) << 10;
  if (!allowed || outputs * bytes_per_output <= kRowBytes) return {std::max<int64_t>(outputs, 1), 1};
  const int64_t width = ceil_div(std::max<int64_t>(kWindowBytes / bytes_per_output, 64), 16) * 16;
  return {width, ceil_div(outputs, width)};
}

#endif  // TCONV_CPU_DIRECT_TILES

}  // namespace tconv::cpu::CPU_CAPABILITY
