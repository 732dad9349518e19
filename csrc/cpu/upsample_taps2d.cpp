// CPU kernels of tconv::upsample_taps2d and its backward (Note [mix first], common/upsample_taps.h).
//
// Forward, per output plane (n, c), one output row at a time: first the rows of every tap plane
// the row reads, combined over the row axis (contiguous rows of W values: vectorised), into kw
// rows, one per column tap; then each output value gathers its few (column tap, index, weight)
// entries from those. Backward: the same two steps transposed, column pass first over the whole
// plane, then each (tap, input row) sums its output rows in increasing order. Every sum has a
// fixed order, so results are bitwise the same for any thread count. float16 / bfloat16 sum in
// float32 and round once. Also the whole resize-convolution without its taps tensor:
// tconv::_upsample_conv2d_mixed (a sliding window of tap rows, mixed_forward) and its backward
// (Note [banded backward], mixed_backward).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/int_math.h"
#include "common/macros.h"
#include "common/upsample_taps.h"
#include "cpu/gemm.h"
#include "cpu/kernels.h"
#include "cpu/output_alloc.h"
#include "cpu/parallel.h"
#include "cpu/scratch.h"

#if defined(TCONV_CPU_AVX512)
#include <immintrin.h>
#endif

namespace tconv::cpu::CPU_CAPABILITY {
namespace {

using at::Tensor;

// Note [column phases]: along the columns, output X = s q + r of an interior q reads the same
// entries as its neighbours of the same phase r, shifted by q: (column tap aw, input column q + d,
// weight). So per phase one pattern of (offset aw W + d, weight) serves a run of q with contiguous,
// vectorised loads; the columns near the borders (clamped indices, taps outside the image) keep
// their own entries. The same holds transposed for the backward: input column j of tap aw reads
// outputs s j + c, which the backward reads from the output row split into its s phases. The sums
// run in the entries' order either way, so both forms give the same bits.
template <typename acc_t>
struct PhaseRun {
  int64_t first = 0, last = 0;  // the run of q (forward) or j (backward) the pattern serves
  std::vector<int64_t> offset;
  std::vector<acc_t> weight;
};

// Grows `run` both ways from index mid of [0, count) while pattern(index, offset, weight) gives
// the pattern it gives at mid: [first, last) with last exclusive; left empty where that pattern
// is empty. forward_phases and adjoint_phases differ only in their pattern.
template <typename acc_t, typename Pattern>
void grow_run(PhaseRun<acc_t>& run, int64_t mid, int64_t count, const Pattern& pattern) {
  pattern(mid, run.offset, run.weight);
  if (run.offset.empty()) return;
  std::vector<int64_t> off;
  std::vector<acc_t> w;
  const auto same = [&](int64_t at) {
    pattern(at, off, w);
    return off == run.offset && w == run.weight;
  };
  run.first = run.last = mid;
  while (run.first > 0 && same(run.first - 1)) --run.first;
  while (run.last + 1 < count && same(run.last + 1)) ++run.last;
  ++run.last;  // exclusive
}

// Forward: for each phase r, the run of q whose column X = s q + r has entries (tap, q + d, w) with
// one (tap W + d, w) pattern (the one of the phase's middle column).
template <typename acc_t>
std::vector<PhaseRun<acc_t>> forward_phases(const TapAxis<acc_t>& tw, int64_t s, int64_t W) {
  const auto& f = tw.forward;
  std::vector<PhaseRun<acc_t>> runs(s);
  for (int64_t r = 0; r < s && r < tw.out; ++r) {
    const int64_t qn = (tw.out - r + s - 1) / s;  // columns of this phase
    grow_run(runs[r], qn / 2, qn, [&](int64_t q, std::vector<int64_t>& off, std::vector<acc_t>& w) {
      const int64_t x = s * q + r;
      off.clear();
      w.clear();
      for (int64_t e = f.ptr[x]; e < f.ptr[x + 1]; ++e) {
        off.push_back(f.tap[e] * W + f.index[e] - q);
        w.push_back(f.weight[e]);
      }
    });
  }
  return runs;
}

// Backward: for each column tap aw, the run of input columns j whose adjoint entries are outputs
// s j + c with one (c, w) pattern; offset holds c.
template <typename acc_t>
std::vector<PhaseRun<acc_t>> adjoint_phases(const TapAxis<acc_t>& tw, int64_t s, int64_t W) {
  const auto& g = tw.adjoint;
  std::vector<PhaseRun<acc_t>> runs(tw.k);
  for (int64_t aw = 0; aw < tw.k; ++aw)
    grow_run(runs[aw], W / 2, W, [&](int64_t j, std::vector<int64_t>& off, std::vector<acc_t>& w) {
      const int64_t row = aw * W + j;
      off.clear();
      w.clear();
      for (int64_t e = g.ptr[row]; e < g.ptr[row + 1]; ++e) {
        off.push_back(g.index[e] - s * j);
        w.push_back(g.weight[e]);
      }
    });
  return runs;
}

// One output row of one plane: rows[aw * W + j] = sum over the row's entries (ah, i, lambda) of
// lambda * tap_row(ah * kw + aw, i)[j], then each output value gathers its column entries from
// those kw rows (col_off: entry offsets into them). out[ox * out_step] for ox < Wo.
template <typename scalar_t, typename TapRow>
inline void output_row(int64_t oy, const UpsampleTapsGeometry& g, const TapAxis<at::opmath_type<scalar_t>>& th,
                       const TapAxis<at::opmath_type<scalar_t>>& tw, const std::vector<int64_t>& col_off,
                       const std::vector<PhaseRun<at::opmath_type<scalar_t>>>& phases,
                       at::opmath_type<scalar_t> bias, const TapRow& tap_row, at::opmath_type<scalar_t>* rows,
                       at::opmath_type<scalar_t>* phase_row, scalar_t* out, int64_t out_step) {
  using acc_t = at::opmath_type<scalar_t>;
  std::fill(rows, rows + g.kw * g.W, acc_t(0));
  for (int64_t q = th.forward.ptr[oy]; q < th.forward.ptr[oy + 1]; ++q) {
    const int64_t ah = th.forward.tap[q], i = th.forward.index[q];
    const acc_t lambda = th.forward.weight[q];
    for (int64_t aw = 0; aw < g.kw; ++aw) {
      const scalar_t* src = tap_row(ah * g.kw + aw, i);
      acc_t* dst = rows + aw * g.W;
      for (int64_t j = 0; j < g.W; ++j) dst[j] += lambda * static_cast<acc_t>(src[j]);
    }
  }
  // Each phase r's columns into phase_row[r * qn + q] (Note [column phases]), then one store pass.
  const int64_t s = g.sw, qn = (g.Wo + s - 1) / s;
  for (int64_t r = 0; r < s && r < g.Wo; ++r) {
    const auto& run = phases[r];
    const int64_t qr = (g.Wo - r + s - 1) / s;  // columns of this phase
    acc_t* p = phase_row + r * qn;
    const auto scalar_column = [&](int64_t q) {
      const int64_t ox = s * q + r;
      acc_t v = bias;
      for (int64_t e = tw.forward.ptr[ox]; e < tw.forward.ptr[ox + 1]; ++e) v += tw.forward.weight[e] * rows[col_off[e]];
      p[q] = v;
    };
    for (int64_t q = 0; q < std::min(run.first, qr); ++q) scalar_column(q);
    if (run.last > run.first) {
      acc_t* d = p + run.first;
      const int64_t len = run.last - run.first;
      for (int64_t q = 0; q < len; ++q) d[q] = bias;
      for (size_t e = 0; e < run.offset.size(); ++e) {
        const acc_t w = run.weight[e];
        const acc_t* src = rows + run.offset[e] + run.first;
        for (int64_t q = 0; q < len; ++q) d[q] += w * src[q];
      }
    }
    for (int64_t q = std::max(run.last, run.first); q < qr; ++q) scalar_column(q);
  }
  if (s == 2 && out_step == 1) {  // interleave the two phases (vectorised: permutes)
    const acc_t *p0 = phase_row, *p1 = phase_row + qn;
    const int64_t pairs = g.Wo / 2;
    for (int64_t q = 0; q < pairs; ++q) {
      out[2 * q] = static_cast<scalar_t>(p0[q]);
      out[2 * q + 1] = static_cast<scalar_t>(p1[q]);
    }
    if (g.Wo % 2) out[g.Wo - 1] = static_cast<scalar_t>(p0[pairs]);
    return;
  }
  for (int64_t q = 0; q < qn; ++q)
    for (int64_t r = 0; r < s && s * q + r < g.Wo; ++r) out[(s * q + r) * out_step] = static_cast<scalar_t>(phase_row[r * qn + q]);
}

template <typename acc_t>
std::vector<int64_t> column_offsets(const UpsampleTapsGeometry& g, const TapAxis<acc_t>& tw) {
  std::vector<int64_t> off(tw.forward.index.size());
  for (size_t q = 0; q < off.size(); ++q) off[q] = tw.forward.tap[q] * g.W + tw.forward.index[q];
  return off;
}

template <typename scalar_t>
void taps_forward(const scalar_t* m, const scalar_t* bias, scalar_t* y, bool y_channels_last, const UpsampleTapsGeometry& g,
                  const TapAxis<at::opmath_type<scalar_t>>& th, const TapAxis<at::opmath_type<scalar_t>>& tw) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t kk = g.kh * g.kw, plane = g.H * g.W, out_plane = g.Ho * g.Wo;
  const std::vector<int64_t> col_off = column_offsets(g, tw);
  const auto phases = forward_phases(tw, g.sw, g.W);
  const int64_t entries_h = std::max<int64_t>(th.forward.index.size(), 1);
  const int64_t work = (entries_h / g.Ho + 1) * g.kw * g.W * g.Ho + out_plane * 2 * g.kw;  // per plane
  parallel_for_work(0, g.N * g.C, work * g.N * g.C, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> rows(g.kw * g.W), phase_row(g.sw * ((g.Wo + g.sw - 1) / g.sw));
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / g.C, c = p % g.C;
      const acc_t b = bias ? static_cast<acc_t>(bias[c]) : acc_t(0);
      const auto tap_row = [&](int64_t a, int64_t i) { return m + ((n * kk + a) * g.C + c) * plane + i * g.W; };
      for (int64_t oy = 0; oy < g.Ho; ++oy) {
        scalar_t* out = y_channels_last ? y + ((n * g.Ho + oy) * g.Wo) * g.C + c : y + p * out_plane + oy * g.Wo;
        output_row<scalar_t>(oy, g, th, tw, col_off, phases, b, tap_row, rows.data(), phase_row.data(), out,
                             y_channels_last ? g.C : 1);
      }
    }
  });
}

// Output rows [lo, hi) that reach input rows [i0, i1) of any row tap (empty: lo == hi).
template <typename acc_t>
std::pair<int64_t, int64_t> output_rows_reaching(const TapAxis<acc_t>& th, int64_t i0, int64_t i1) {
  int64_t lo = th.out, hi = 0;
  for (int64_t ah = 0; ah < th.k; ++ah)
    for (int64_t r = ah * th.in + i0; r < ah * th.in + i1; ++r)
      for (int64_t q = th.adjoint.ptr[r]; q < th.adjoint.ptr[r + 1]; ++q) {
        lo = std::min(lo, th.adjoint.index[q]);
        hi = std::max(hi, th.adjoint.index[q] + 1);
      }
  return lo < hi ? std::make_pair(lo, hi) : std::make_pair(int64_t(0), int64_t(0));
}

// Per-thread buffers of adjoint_plane_rows for output rows [0, out_rows) and W input columns.
template <typename acc_t>
struct AdjointRowBuffers {
  std::vector<acc_t> cols, row, split;
  AdjointRowBuffers(const UpsampleTapsGeometry& g, int64_t out_rows)
      : cols(out_rows * g.kw * g.W), row(g.W), split(g.sw * ((g.Wo + g.sw - 1) / g.sw + 2), acc_t(0)) {}
};

// The adjoint of one plane for input rows [i0, i1): go is the plane's gradient (row stride ys,
// column stride xs), [olo, ohi) the output rows reaching those input rows (output_rows_reaching).
// First each output row is gathered onto each column tap's input columns (cols[oy - olo][aw][j]),
// then each (row tap ah, input row i, column tap aw) sums its output rows in increasing order
// into dst(ah kw + aw, i), W values. The same bits for any band: each value's sums are whole.
template <typename scalar_t, typename Dst>
void adjoint_plane_rows(const scalar_t* go, int64_t ys, int64_t xs, int64_t i0, int64_t i1, int64_t olo,
                        int64_t ohi, const UpsampleTapsGeometry& g, const TapAxis<at::opmath_type<scalar_t>>& th,
                        const TapAxis<at::opmath_type<scalar_t>>& tw,
                        const std::vector<PhaseRun<at::opmath_type<scalar_t>>>& phases,
                        AdjointRowBuffers<at::opmath_type<scalar_t>>& buf, const Dst& dst) {
  using acc_t = at::opmath_type<scalar_t>;
  // The output row split into its s phases (Note [column phases]): phase r's value q at
  // split[r * (qn + 2) + 1 + q], with a zero on either side for reads one step past the ends.
  const int64_t s = g.sw, qn = (g.Wo + s - 1) / s;
  acc_t* split = buf.split.data();
  for (int64_t oy = olo; oy < ohi; ++oy) {
    const scalar_t* grow = go + oy * ys;
    acc_t* dst_row = buf.cols.data() + (oy - olo) * g.kw * g.W;
    for (int64_t r = 0; r < s; ++r) {
      acc_t* ph = split + r * (qn + 2) + 1;
      for (int64_t q = 0; s * q + r < g.Wo; ++q) ph[q] = static_cast<acc_t>(grow[(s * q + r) * xs]);
    }
    for (int64_t aw = 0; aw < g.kw; ++aw) {
      const auto& run = phases[aw];
      const auto scalar_column = [&](int64_t j) {
        const int64_t r = aw * g.W + j;
        acc_t v = 0;
        for (int64_t q = tw.adjoint.ptr[r]; q < tw.adjoint.ptr[r + 1]; ++q)
          v += tw.adjoint.weight[q] * static_cast<acc_t>(grow[tw.adjoint.index[q] * xs]);
        dst_row[r] = v;
      };
      for (int64_t j = 0; j < std::min(run.first, g.W); ++j) scalar_column(j);
      if (run.last > run.first) {
        acc_t* d = dst_row + aw * g.W + run.first;
        const int64_t len = run.last - run.first;
        for (int64_t j = 0; j < len; ++j) d[j] = 0;
        for (size_t e = 0; e < run.offset.size(); ++e) {
          // output s j + c = s (j + floor(c / s)) + (c mod s)
          const int64_t c_off = run.offset[e], ph = ((c_off % s) + s) % s, shift = (c_off - ph) / s;
          const acc_t w = run.weight[e];
          const acc_t* src = split + ph * (qn + 2) + 1 + run.first + shift;
          for (int64_t j = 0; j < len; ++j) d[j] += w * src[j];
        }
      }
      for (int64_t j = std::max(run.last, run.first); j < g.W; ++j) scalar_column(j);
    }
  }
  acc_t* row = buf.row.data();
  for (int64_t ah = 0; ah < g.kh; ++ah) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r = ah * g.H + i;
      for (int64_t aw = 0; aw < g.kw; ++aw) {
        std::fill(row, row + g.W, acc_t(0));
        for (int64_t q = th.adjoint.ptr[r]; q < th.adjoint.ptr[r + 1]; ++q) {
          const acc_t lambda = th.adjoint.weight[q];
          const acc_t* src = buf.cols.data() + ((th.adjoint.index[q] - olo) * g.kw + aw) * g.W;
          for (int64_t j = 0; j < g.W; ++j) row[j] += lambda * src[j];
        }
        scalar_t* out = dst(ah * g.kw + aw, i);
        for (int64_t j = 0; j < g.W; ++j) out[j] = static_cast<scalar_t>(row[j]);
      }
    }
  }
}

template <typename scalar_t>
void taps_backward(const scalar_t* gy, c10::IntArrayRef gy_strides, scalar_t* gm, const UpsampleTapsGeometry& g,
                   const TapAxis<at::opmath_type<scalar_t>>& th, const TapAxis<at::opmath_type<scalar_t>>& tw) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t kk = g.kh * g.kw, plane = g.H * g.W, out_plane = g.Ho * g.Wo;
  const int64_t work = out_plane * 4 * g.kw + kk * plane * 4;
  const auto phases = adjoint_phases(tw, g.sw, g.W);
  parallel_for_work(0, g.N * g.C, work * g.N * g.C, [&](int64_t begin, int64_t end) {
    AdjointRowBuffers<acc_t> buf(g, g.Ho);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / g.C, c = p % g.C;
      const scalar_t* go = gy + n * gy_strides[0] + c * gy_strides[1];
      adjoint_plane_rows<scalar_t>(go, gy_strides[2], gy_strides[3], 0, g.H, 0, g.Ho, g, th, tw, phases, buf,
                                   [&](int64_t a, int64_t i) { return gm + ((n * kk + a) * g.C + c) * plane + i * g.W; });
    }
  });
}

// dst[0, n) = init[0, n) (or 0) + sum over e < count of weight(e) * src(e)[0, n), n <= kSumLanes,
// summed in registers in the entries' order and stored once (summing into memory entry by entry
// cost the channels_last stencil a third of its time). float32 on AVX-512 sums up to four vector
// registers per entry: blocks of one register (one chain of dependent FMAs, and the index math of
// every entry per 16 lanes) left the stencil of the 64-channel resize-convolution as long as its
// GEMM. Other types and paths sum 16 lanes at a time with a fixed trip count (the compiler's
// vectors; with more lanes it spilled them to the stack). Reads init in place: a per-block copy
// into a local array compiled to a string move that was half the stencil's time.
constexpr int64_t kSumLanes = 64;
constexpr int64_t kPortableLanes = 16;  // the portable blocks' lanes, and sum_vectors_f32's per register

#if defined(TCONV_CPU_AVX512)
template <int V, typename Weight, typename Src>
inline void sum_vectors_f32(float* dst, const float* init, int64_t count, const Weight& weight, const Src& src) {
  __m512 v[V];
  for (int i = 0; i < V; ++i) v[i] = init ? _mm512_loadu_ps(init + 16 * i) : _mm512_setzero_ps();
  for (int64_t e = 0; e < count; ++e) {
    const __m512 w = _mm512_set1_ps(weight(e));
    const float* x = src(e);
    for (int i = 0; i < V; ++i) v[i] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + 16 * i), v[i]);
  }
  for (int i = 0; i < V; ++i) _mm512_storeu_ps(dst + 16 * i, v[i]);
}
#endif

template <typename acc_t, typename Dst, typename Init, typename Weight, typename Src>
inline void sum_lanes(Dst* dst, const Init* init, int64_t n, int64_t count, const Weight& weight, const Src& src) {
  // Lanes [off, off + width) (width fixed, or 0: the run-time rest).
  const auto body = [&](auto width, int64_t off) {
    const int64_t w_n = decltype(width)::value > 0 ? decltype(width)::value : n - off;
    acc_t v[kPortableLanes];
    if (init) {
      for (int64_t c = 0; c < w_n; ++c) v[c] = static_cast<acc_t>(init[off + c]);
    } else {
      for (int64_t c = 0; c < w_n; ++c) v[c] = acc_t(0);
    }
    for (int64_t e = 0; e < count; ++e) {
      const acc_t w = weight(e);
      const auto* x = src(e) + off;
      for (int64_t c = 0; c < w_n; ++c) v[c] += w * static_cast<acc_t>(x[c]);
    }
    for (int64_t c = 0; c < w_n; ++c) dst[off + c] = static_cast<Dst>(v[c]);
  };
  int64_t off = 0;
#if defined(TCONV_CPU_AVX512)
  using src_t = std::remove_cv_t<std::remove_pointer_t<decltype(src(int64_t(0)))>>;
  if constexpr (std::is_same_v<acc_t, float> && std::is_same_v<Dst, float> && std::is_same_v<Init, float> &&
                std::is_same_v<src_t, float>) {
    switch (n / kPortableLanes) {
      case 4: sum_vectors_f32<4>(dst, init, count, weight, src); break;
      case 3: sum_vectors_f32<3>(dst, init, count, weight, src); break;
      case 2: sum_vectors_f32<2>(dst, init, count, weight, src); break;
      case 1: sum_vectors_f32<1>(dst, init, count, weight, src); break;
      default: break;
    }
    off = n / kPortableLanes * kPortableLanes;
  }
#endif
  for (; off + kPortableLanes <= n; off += kPortableLanes)
    body(std::integral_constant<int64_t, kPortableLanes>{}, off);
  if (off < n) body(std::integral_constant<int64_t, 0>{}, off);
}

// One output row of a block of cb channels, channels innermost (channels_last taps and output):
// tap_px(a, i) points at tap a's value of channel 0 of input row i, column 0; consecutive taps
// are cb apart, consecutive columns j_stride, channels contiguous. The same two passes as output_row, each vectorised
// over the block's channels: rows[(aw W + j) cb + c] first, then every output pixel's cb values.
// Each pass sums up to 64 channels at a time (sum_lanes).
template <typename scalar_t, typename TapPx>
inline void output_row_channels_last(int64_t oy, const UpsampleTapsGeometry& g, int64_t cb,
                                     const TapAxis<at::opmath_type<scalar_t>>& th,
                                     const TapAxis<at::opmath_type<scalar_t>>& tw, const scalar_t* bias,
                                     const TapPx& tap_px, int64_t j_stride, at::opmath_type<scalar_t>* rows,
                                     scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  // rows[(j kw + aw) cb + c]: a row tap's kw column taps are contiguous in the taps (tap stride
  // cb), so each entry's kw cb values of column j are one contiguous run, read in order.
  const int64_t q0 = th.forward.ptr[oy], nq = th.forward.ptr[oy + 1] - q0, run = g.kw * cb;
  for (int64_t j = 0; j < g.W; ++j)
    for (int64_t t = 0; t < run; t += kSumLanes)
      sum_lanes<acc_t>(
          rows + j * run + t, static_cast<const scalar_t*>(nullptr), std::min(kSumLanes, run - t), nq,
          [&](int64_t e) { return th.forward.weight[q0 + e]; },
          [&](int64_t e) {
            return tap_px(th.forward.tap[q0 + e] * g.kw, th.forward.index[q0 + e]) + j * j_stride + t;
          });
  for (int64_t ox = 0; ox < g.Wo; ++ox) {
    const int64_t e0 = tw.forward.ptr[ox], ne = tw.forward.ptr[ox + 1] - e0;
    for (int64_t c = 0; c < cb; c += kSumLanes)
      sum_lanes<acc_t>(
          out + ox * g.C + c, bias ? bias + c : nullptr, std::min(kSumLanes, cb - c), ne,
          [&](int64_t e) { return tw.forward.weight[e0 + e]; },
          [&](int64_t e) { return rows + (tw.forward.index[e0 + e] * g.kw + tw.forward.tap[e0 + e]) * cb + c; });
  }
}

// The inference kernel's sliding window over input rows: it holds rows [lo, hi) of at most `cap`,
// and cover(need_lo, need_hi, move, compute) makes it hold [need_lo, need_hi) for the next output
// row (rows never go back). New rows come at least `band` at a time (one GEMM each); when they
// would overflow, the rows still needed are first moved to the front, move(from, count) with
// window positions, so no row is computed twice. compute(row, count, at) computes input rows
// [row, row + count) into window positions from `at`. Both layouts of mixed_forward use it.
struct RowWindow {
  int64_t H, band, cap;
  int64_t lo = 0, hi = 0;

  template <typename Move, typename Compute>
  void cover(int64_t need_lo, int64_t need_hi, Move&& move, Compute&& compute) {
    if (need_hi <= hi) return;
    if (need_lo >= hi) lo = hi = need_lo;  // nothing held is needed again
    const int64_t new_hi = std::min(H, std::max(need_hi, hi + band));
    if (new_hi - lo > cap) {
      move(need_lo - lo, hi - need_lo);
      lo = need_lo;
    }
    compute(hi, new_hi - hi, hi - lo);
    hi = new_hi;
  }
};

// The whole resize-convolution without its taps tensor (tconv::_upsample_conv2d_mixed, inference):
// per task (image n, block of output channels), output rows in order, the taps W_a x of the input
// rows they read are computed into a sliding window of rows (one GEMM per band of >= 512 input
// pixels; rows still needed are moved to the front when the window is full, so no row is computed
// twice), and each output row is made from the window (output_row). The window holds
// kh kw Cb (span + band) W values: 1-1.5 MiB, not the kh kw Cout H W of the taps.
template <typename scalar_t>
void mixed_forward(const scalar_t* x, const scalar_t* wpack, const scalar_t* bias, scalar_t* y, bool channels_last,
                   const UpsampleTapsGeometry& g, int64_t cin, int64_t cb,
                   const TapAxis<scalar_t>& th, const TapAxis<scalar_t>& tw) {
  const int64_t kk = g.kh * g.kw, plane = g.H * g.W, blocks = (g.C + cb - 1) / cb;
  const std::vector<int64_t> col_off = column_offsets(g, tw);
  const auto phases = forward_phases(tw, g.sw, g.W);
  // Input rows [lo, hi) each output row reads (non-decreasing in the row).
  std::vector<int64_t> lo(g.Ho, 0), hi(g.Ho, 0);
  int64_t span = 1;
  for (int64_t oy = 0; oy < g.Ho; ++oy) {
    if (th.forward.ptr[oy] == th.forward.ptr[oy + 1]) {
      lo[oy] = hi[oy] = oy > 0 ? hi[oy - 1] : 0;
      continue;
    }
    lo[oy] = g.H;
    for (int64_t q = th.forward.ptr[oy]; q < th.forward.ptr[oy + 1]; ++q) {
      lo[oy] = std::min(lo[oy], th.forward.index[q]);
      hi[oy] = std::max(hi[oy], th.forward.index[q] + 1);
    }
    span = std::max(span, hi[oy] - lo[oy]);
  }
  // Bands of at least 512 pixels (against 256: the 3x3 forwards of issue 19 5-15% faster on Zen 5,
  // the GEMM's fixed costs spread over twice the pixels; 1024 was slower: a window of ~2.4 MiB),
  // and float32 GEMMs big enough for oneDNN (Note [float32 GEMM engine]: MKL's generic kernels ran
  // these blocks at a third of its rate on AMD Zen 5).
  const int64_t engine_rows =
      std::is_same_v<scalar_t, float> ? ceil_div(kOneDnnMinWork, g.W * kk * cb * cin) : 1;
  const int64_t band = std::min(g.H, std::max(ceil_div(512, g.W), engine_rows));
  const int64_t cap = span + band;
  if (channels_last) {  // input and output
    // Pixel-major: the window holds, per input pixel, its kh kw cb taps (tap-major, channels
    // innermost): one GEMM X (pixels x Cin, channels_last rows) @ W^T, dense, and the stencil
    // vectorised over the block's channels with contiguous stores.
    at::parallel_for(0, g.N * blocks, 1, [&](int64_t begin, int64_t end) {
      Scratch<scalar_t> window(ScratchSlot::kWindow, kk * cb * cap * g.W);
      std::vector<scalar_t> rows(g.kw * g.W * cb);
      for (int64_t t = begin; t < end; ++t) {
        const int64_t n = t / blocks, blk = t % blocks, o0 = blk * cb, cbk = std::min(cb, g.C - o0), m = kk * cbk;
        const scalar_t* a = wpack + o0 * kk * cin;  // (kk cbk) x cin: the GEMM's B, transposed
        const scalar_t* xn = x + n * cin * plane;
        scalar_t* buf = window.data();
        RowWindow win{g.H, band, cap};
        for (int64_t oy = 0; oy < g.Ho; ++oy) {
          win.cover(
              lo[oy], hi[oy],
              [&](int64_t from, int64_t count) {
                std::memmove(buf, buf + from * g.W * m, count * g.W * m * sizeof(scalar_t));
              },
              [&](int64_t row, int64_t count, int64_t at) {
                gemm<scalar_t>(count * g.W, m, cin, MatRef<scalar_t>{xn + row * g.W * cin, cin, false},
                               MatRef<scalar_t>{a, cin, true}, buf + at * g.W * m, m, false);
              });
          const int64_t blo = win.lo;
          const auto tap_px = [&](int64_t tap, int64_t i) { return buf + (i - blo) * g.W * m + tap * cbk; };
          output_row_channels_last<scalar_t>(oy, g, cbk, th, tw, bias ? bias + o0 : nullptr, tap_px, m,
                                             rows.data(), y + ((n * g.Ho + oy) * g.Wo) * g.C + o0);
        }
      }
    });
    return;
  }
  at::parallel_for(0, g.N * blocks, 1, [&](int64_t begin, int64_t end) {
    Scratch<scalar_t> window(ScratchSlot::kWindow, kk * cb * cap * g.W);
    // oneDNN takes dense operands only: the band's input rows (H W apart in the input) pass
    // through a dense block; the result's gaps (the window's rows are cap W apart) gemm() stages.
    Scratch<scalar_t> dense_in(ScratchSlot::kWindowInput, cin * cap * g.W);
    std::vector<scalar_t> rows(g.kw * g.W), phase_row(g.sw * ((g.Wo + g.sw - 1) / g.sw));
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / blocks, blk = t % blocks, o0 = blk * cb, cbk = std::min(cb, g.C - o0), m = kk * cbk;
      const scalar_t* a = wpack + o0 * kk * cin;  // (kk cbk) x cin, rows (tap, channel)
      const scalar_t* xn = x + n * cin * plane;
      scalar_t* buf = window.data();  // tap row r of the window at buf + r * cap * W
      RowWindow win{g.H, band, cap};
      for (int64_t oy = 0; oy < g.Ho; ++oy) {
        win.cover(
            lo[oy], hi[oy],
            [&](int64_t from, int64_t count) {
              for (int64_t r = 0; r < m; ++r)
                std::memmove(buf + r * cap * g.W, buf + (r * cap + from) * g.W, count * g.W * sizeof(scalar_t));
            },
            [&](int64_t row, int64_t count, int64_t at) {
              const int64_t px = count * g.W;
              scalar_t* in = dense_in.data();
              for (int64_t c = 0; c < cin; ++c) std::memcpy(in + c * px, xn + c * plane + row * g.W, px * sizeof(scalar_t));
              gemm<scalar_t>(m, px, cin, MatRef<scalar_t>{a, cin, false}, MatRef<scalar_t>{in, px, false}, buf + at * g.W,
                             cap * g.W, false);
            });
        const int64_t blo = win.lo;
        for (int64_t ol = 0; ol < cbk; ++ol) {
          const int64_t o = o0 + ol;
          const auto tap_row = [&](int64_t tap, int64_t i) { return buf + ((tap * cbk + ol) * cap + i - blo) * g.W; };
          output_row<scalar_t>(oy, g, th, tw, col_off, phases, bias ? bias[o] : scalar_t(0), tap_row, rows.data(),
                               phase_row.data(), y + ((n * g.C + o) * g.Ho + oy) * g.Wo, 1);
        }
      }
    }
  });
}

// Pixel-major taps (N, H, W, kh kw, C) and a channels_last output: one task per output row,
// every channel at once (output_row_channels_last). The composite's layout for a channels_last
// input: the 1x1 transposed convolution's channels_last output is exactly this.
template <typename scalar_t>
void taps_forward_pixel_major(const scalar_t* m, const scalar_t* bias, scalar_t* y, const UpsampleTapsGeometry& g,
                              const TapAxis<at::opmath_type<scalar_t>>& th,
                              const TapAxis<at::opmath_type<scalar_t>>& tw) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t kk = g.kh * g.kw, px = kk * g.C;  // values per input pixel
  const int64_t work = (g.kw * g.W * 4 + g.Wo * 2 * g.kw) * g.C;  // per output row
  parallel_for_work(0, g.N * g.Ho, work * g.N * g.Ho, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> rows(g.kw * g.W * g.C);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / g.Ho, oy = r % g.Ho;
      const scalar_t* mn = m + n * g.H * g.W * px;
      const auto tap_px = [&](int64_t a, int64_t i) { return mn + i * g.W * px + a * g.C; };
      output_row_channels_last<scalar_t>(oy, g, g.C, th, tw, bias, tap_px, px, rows.data(),
                                         y + r * g.Wo * g.C);
    }
  });
}

// The adjoint of one input row i for a channels_last gradient (gyn: image n's (Ho, Wo, C)), into
// pixel-major taps out (W, kh kw, C): per row tap ah, the output rows reading row i summed (in
// increasing order) over whole channels_last rows, then each (column tap, input column) gathers
// its output columns; every step vectorised over the channels (sum_lanes). hrow: Wo C values.
template <typename scalar_t>
void adjoint_pixel_row(const scalar_t* gyn, int64_t i, scalar_t* out, const UpsampleTapsGeometry& g,
                       const TapAxis<at::opmath_type<scalar_t>>& th, const TapAxis<at::opmath_type<scalar_t>>& tw,
                       at::opmath_type<scalar_t>* hrow) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t px = g.kh * g.kw * g.C, row_len = g.Wo * g.C;
  const scalar_t* no_init = nullptr;
  for (int64_t ah = 0; ah < g.kh; ++ah) {
    const int64_t q0 = th.adjoint.ptr[ah * g.H + i], nq = th.adjoint.ptr[ah * g.H + i + 1] - q0;
    for (int64_t e = 0; e < row_len; e += kSumLanes)
      sum_lanes<acc_t>(
          hrow + e, no_init, std::min(kSumLanes, row_len - e), nq, [&](int64_t q) { return th.adjoint.weight[q0 + q]; },
          [&](int64_t q) { return gyn + th.adjoint.index[q0 + q] * row_len + e; });
    for (int64_t aw = 0; aw < g.kw; ++aw)
      for (int64_t j = 0; j < g.W; ++j) {
        const int64_t r0 = tw.adjoint.ptr[aw * g.W + j], nr = tw.adjoint.ptr[aw * g.W + j + 1] - r0;
        scalar_t* dst = out + j * px + (ah * g.kw + aw) * g.C;
        for (int64_t c = 0; c < g.C; c += kSumLanes)
          sum_lanes<acc_t>(
              dst + c, no_init, std::min(kSumLanes, g.C - c), nr, [&](int64_t r) { return tw.adjoint.weight[r0 + r]; },
              [&](int64_t r) { return hrow + tw.adjoint.index[r0 + r] * g.C + c; });
      }
  }
}

// The adjoint for a channels_last gradient, into pixel-major taps (N, H, W, kh kw, C): one task
// per input row (adjoint_pixel_row).
template <typename scalar_t>
void taps_backward_pixel_major(const scalar_t* gy, scalar_t* gm, const UpsampleTapsGeometry& g,
                               const TapAxis<at::opmath_type<scalar_t>>& th,
                               const TapAxis<at::opmath_type<scalar_t>>& tw) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t kk = g.kh * g.kw, px = kk * g.C, row_len = g.Wo * g.C;
  const int64_t work = (g.kh * row_len * 2 + g.W * kk * g.C * 4);  // per input row
  parallel_for_work(0, g.N * g.H, work * g.N * g.H, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> hrow(row_len);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / g.H, i = r % g.H;
      adjoint_pixel_row<scalar_t>(gy + n * g.Ho * row_len, i, gm + r * g.W * px, g, th, tw, hrow.data());
    }
  });
}

// Note [banded backward]: the resize-convolution's gradients without the taps' gradient
// (tconv::_upsample_conv2d_mixed_backward). With G_a = Up^T shift_a^T (gy), the adjoint of
// upsample_taps2d, grad_x = sum_a W_a^T G_a and grad_w[:, :, a] = G_a x^T. Per band of input rows
// of one image, bands in order: G of the band (planes: a task per output channel; channels_last:
// one per input row), then grad_x's rows of the band (one GEMM over the kh kw Cout values of each
// pixel) and grad_w^T += x_band G_band^T, both cut into slices of input channels (or pixels) big
// enough to take oneDNN with dense operands (Note [float32 GEMM engine]): small or strided
// blocks ran at half the rate. Bands and slices are fixed by the shape, so the results are the
// same for any thread count. What a call holds beyond the gradients is one band of G (about
// kBandBytes) and of x, not the composite's kh kw Cout H W values per image (2.25x the upsampled
// input for 3x3 after x2).
constexpr int64_t kBandBytes = int64_t(2) << 20;

// Rows of a GEMM slice whose rows cost row_work multiply-adds each: enough for oneDNN, a multiple
// of 8, at most `rows`.
inline int64_t slice_rows(int64_t row_work, int64_t rows) {
  const int64_t want = ceil_div(kOneDnnMinWork, std::max<int64_t>(row_work, 1));
  return std::min(rows, ceil_div(want, 8) * 8);
}

// gy (N, Cout, Ho, Wo) and x (N, Cin, H, W), both contiguous in the format channels_last says;
// wpack: W (kh kw Cout x Cin, rows (tap, channel)) for channels_last, its transpose (Cin x kh kw
// Cout) for planes; gx like x and gwt (Cin x kh kw Cout), either null when not wanted.
template <typename scalar_t>
void mixed_backward(const scalar_t* gy, const scalar_t* x, const scalar_t* wpack, scalar_t* gx, scalar_t* gwt,
                    bool channels_last, const UpsampleTapsGeometry& g, int64_t cin, const TapAxis<scalar_t>& th,
                    const TapAxis<scalar_t>& tw) {
  const int64_t kc = g.kh * g.kw * g.C, plane = g.H * g.W, out_plane = g.Ho * g.Wo;
  const int64_t rows = std::clamp<int64_t>(kBandBytes / int64_t(sizeof(scalar_t) * kc * g.W), 1, g.H);
  Scratch<scalar_t> band(ScratchSlot::kWindow, kc * rows * g.W);
  Scratch<scalar_t> x_band(ScratchSlot::kWindowInput, gwt ? cin * rows * g.W : 0);
  scalar_t* gb = band.data();
  scalar_t* xb = x_band.data();
  const auto phases = adjoint_phases(tw, g.sw, g.W);
  bool first = true;
  for (int64_t n = 0; n < g.N; ++n) {
    for (int64_t i0 = 0; i0 < g.H; i0 += rows) {
      const int64_t i1 = std::min(g.H, i0 + rows), px = (i1 - i0) * g.W;
      // G of the band: channels_last (px x kh kw Cout, pixel-major), planes (kh kw Cout x px).
      if (channels_last) {
        const scalar_t* gyn = gy + n * out_plane * g.C;
        at::parallel_for(i0, i1, 1, [&](int64_t begin, int64_t end) {
          std::vector<scalar_t> hrow(g.Wo * g.C);
          for (int64_t i = begin; i < end; ++i)
            adjoint_pixel_row<scalar_t>(gyn, i, gb + (i - i0) * g.W * kc, g, th, tw, hrow.data());
        });
      } else {
        const auto [olo, ohi] = output_rows_reaching(th, i0, i1);
        at::parallel_for(0, g.C, 1, [&](int64_t begin, int64_t end) {
          AdjointRowBuffers<scalar_t> buf(g, ohi - olo);
          for (int64_t o = begin; o < end; ++o)
            adjoint_plane_rows<scalar_t>(gy + (n * g.C + o) * out_plane, g.Wo, 1, i0, i1, olo, ohi, g, th, tw, phases,
                                         buf, [&](int64_t a, int64_t i) { return gb + (a * g.C + o) * px + (i - i0) * g.W; });
        });
      }
      // The band of x as (Cin x px), and grad_x's rows of the band: channels_last (px x Cin) =
      // G (px x kc) @ W (kc x Cin) in place, per slice of pixels; planes (Cin x px) = W^T (Cin x
      // kc) @ G (kc x px) per slice of channels, in place (rows H W apart: gemm() stages them).
      const int64_t cs = slice_rows(kc * px, cin), ps = slice_rows(kc * cin, px);
      const int64_t channel_slices = ceil_div(cin, cs);
      const int64_t dx_slices = gx ? (channels_last ? ceil_div(px, ps) : channel_slices) : 0;
      const int64_t xb_slices = gwt ? channel_slices : 0;
      at::parallel_for(0, std::max(dx_slices, xb_slices), 1, [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
          if (t < dx_slices && channels_last) {
            const int64_t p0 = t * ps, m = std::min(ps, px - p0);
            gemm<scalar_t>(m, cin, kc, MatRef<scalar_t>{gb + p0 * kc, kc, false}, MatRef<scalar_t>{wpack, cin, false},
                           gx + (n * plane + i0 * g.W + p0) * cin, cin, false);
          } else if (t < dx_slices) {
            const int64_t c0 = t * cs, m = std::min(cs, cin - c0);
            gemm<scalar_t>(m, px, kc, MatRef<scalar_t>{wpack + c0 * kc, kc, false}, MatRef<scalar_t>{gb, px, false},
                           gx + (n * cin + c0) * plane + i0 * g.W, plane, false);
          }
          if (t < xb_slices) {
            const int64_t c0 = t * cs, c1 = std::min(cin, c0 + cs);
            if (channels_last) {
              const scalar_t* src = x + (n * plane + i0 * g.W) * cin;
              for (int64_t p = 0; p < px; ++p)
                for (int64_t c = c0; c < c1; ++c) xb[c * px + p] = src[p * cin + c];
            } else {
              for (int64_t c = c0; c < c1; ++c)
                std::memcpy(xb + c * px, x + (n * cin + c) * plane + i0 * g.W, px * sizeof(scalar_t));
            }
          }
        }
      });
      if (gwt) {  // (Cin x kc) += x_band (Cin x px) @ G^T (px x kc), per slice of channels
        at::parallel_for(0, channel_slices, 1, [&](int64_t begin, int64_t end) {
          for (int64_t t = begin; t < end; ++t) {
            const int64_t c0 = t * cs, m = std::min(cs, cin - c0);
            const MatRef<scalar_t> gt = channels_last ? MatRef<scalar_t>{gb, kc, false} : MatRef<scalar_t>{gb, px, true};
            gemm<scalar_t>(m, kc, px, MatRef<scalar_t>{xb + c0 * px, px, false}, gt, gwt + c0 * kc, kc, !first);
          }
        });
      }
      first = false;
    }
  }
}

// Whether a 5-D taps tensor (N, kk, C, H, W) is pixel-major: a (N, H, W, kk, C) contiguous tensor
// seen through permute(0, 3, 4, 1, 2).
bool pixel_major(const Tensor& t) {
  const auto z = t.sizes();
  const int64_t want[5] = {z[3] * z[4] * z[1] * z[2], z[2], 1, z[4] * z[1] * z[2], z[1] * z[2]};
  for (int d = 0; d < 5; ++d)
    if (z[d] > 1 && t.stride(d) != want[d]) return false;  // a dimension of size 1 has any stride
  return true;
}

// The shapes of a _upsample_conv2d_mixed call (its backward's too), checked: input (N, Cin, H, W),
// weight (Cout, Cin, kh, kw), float32 or float64.
UpsampleTapsGeometry mixed_geometry(const Tensor& input, const Tensor& weight, IntArrayRef scale, IntArrayRef padding) {
  TORCH_CHECK(input.dim() == 4 && weight.dim() == 4 && input.size(1) == weight.size(1),
              "_upsample_conv2d_mixed: input (N, Cin, H, W) and weight (Cout, Cin, kh, kw) expected, got ",
              input.sizes(), " and ", weight.sizes());
  TORCH_CHECK((input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble) &&
                  weight.scalar_type() == input.scalar_type(),
              "_upsample_conv2d_mixed: float32 or float64 input and weight of one dtype expected");
  const int64_t kh = weight.size(2), kw = weight.size(3);
  return upsample_taps_geometry({input.size(0), kh * kw, weight.size(0), input.size(2), input.size(3)}, {kh, kw}, scale,
                                padding);
}

}  // namespace

Tensor upsample_taps2d_cpu(const Tensor& taps, const std::optional<Tensor>& bias, IntArrayRef kernel_size,
                           IntArrayRef scale, IntArrayRef padding, c10::string_view mode_name, bool channels_last) {
  const TapMode mode = upsample_taps_mode(std::string(mode_name));
  const UpsampleTapsGeometry g = upsample_taps_geometry(taps.sizes(), kernel_size, scale, padding);
  check_upsample_taps(taps, bias, g);
  const bool has_bias = bias.has_value() && bias->defined();
  Tensor out = empty_output({g.N, g.C, g.Ho, g.Wo}, taps.options(),
                            channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  if (out.numel() == 0) return out;
  const bool pixels = channels_last && pixel_major(taps);
  const Tensor m = pixels ? taps : taps.contiguous();
  const Tensor b = has_bias ? bias->contiguous() : Tensor();
  TCONV_DISPATCH_FLOATING_TYPES(m.scalar_type(), "upsample_taps2d_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto t = upsample_tap_axes<acc_t>(g, mode);
    const auto &th = t.h, &tw = t.w;
    if (pixels) {
      taps_forward_pixel_major<scalar_t>(m.const_data_ptr<scalar_t>(),
                                         has_bias ? b.const_data_ptr<scalar_t>() : nullptr,
                                         out.mutable_data_ptr<scalar_t>(), g, th, tw);
      return;
    }
    taps_forward<scalar_t>(m.const_data_ptr<scalar_t>(), has_bias ? b.const_data_ptr<scalar_t>() : nullptr,
                           out.mutable_data_ptr<scalar_t>(), channels_last, g, th, tw);
  });
  return out;
}

Tensor upsample_taps2d_backward_cpu(const Tensor& grad_output, IntArrayRef kernel_size, IntArrayRef scale,
                                    IntArrayRef padding, c10::string_view mode_name, IntArrayRef input_hw) {
  const TapMode mode = upsample_taps_mode(std::string(mode_name));
  const UpsampleTapsGeometry g = upsample_taps_backward_geometry(grad_output, kernel_size, scale, padding, input_hw);
  // A channels_last gradient gives pixel-major taps (what the composite's channels_last 1x1
  // convolution made); any other, planar ones.
  const bool pixels = grad_output.is_contiguous(at::MemoryFormat::ChannelsLast) && !grad_output.is_contiguous();
  if (pixels) {
    Tensor out = empty_output({g.N, g.H, g.W, g.kh * g.kw, g.C}, grad_output.options());
    if (out.numel() != 0) {
      TCONV_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "upsample_taps2d_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto t = upsample_tap_axes<acc_t>(g, mode);
        const auto &th = t.h, &tw = t.w;
        taps_backward_pixel_major<scalar_t>(grad_output.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
                                            g, th, tw);
      });
    }
    return out.permute({0, 3, 4, 1, 2});
  }
  Tensor out = empty_output({g.N, g.kh * g.kw, g.C, g.H, g.W}, grad_output.options());
  if (out.numel() == 0) return out;
  // Read through its strides (a channels_last gradient needs no copy); a stride-0 (expanded) one
  // too, as long as its sizes match.
  const Tensor& go = grad_output;
  TCONV_DISPATCH_FLOATING_TYPES(go.scalar_type(), "upsample_taps2d_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto t = upsample_tap_axes<acc_t>(g, mode);
    const auto &th = t.h, &tw = t.w;
    taps_backward<scalar_t>(go.const_data_ptr<scalar_t>(), go.strides(), out.mutable_data_ptr<scalar_t>(), g, th, tw);
  });
  return out;
}

Tensor _upsample_conv2d_mixed_cpu(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
                                  IntArrayRef scale, IntArrayRef padding, c10::string_view mode_name) {
  const TapMode mode = upsample_taps_mode(std::string(mode_name));
  const UpsampleTapsGeometry g = mixed_geometry(input, weight, scale, padding);
  const int64_t cout = weight.size(0), cin = weight.size(1), kh = weight.size(2), kw = weight.size(3);
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias)
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == cout && bias->scalar_type() == input.scalar_type(),
                "_upsample_conv2d_mixed: bias must be a (", cout, ") tensor of the input's dtype");
  const bool channels_last = input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  Tensor out = empty_output({g.N, cout, g.Ho, g.Wo}, input.options(), format);
  if (out.numel() == 0) return out;
  const Tensor x = input.contiguous(format);
  const Tensor b = has_bias ? bias->contiguous() : Tensor();
  // Channel blocks fixed by the shape and layout (never the thread count): the GEMMs, and so the
  // results, are the same for any number of threads. Up to 64 channels in a batch of at least 4
  // images (tasks enough) take one block: one GEMM of kh kw Cout rows instead of two; wider layers
  // take blocks of 64. Zen 5, 2 threads, with 512-pixel bands: 64->64 4x64x64 5.9 -> 5.4 ms
  // channels_last (5.9 -> 5.0 ms contiguous, session 15), 128->128 1x64x64 (blocks of 32 before)
  // 5.5 -> 5.1 ms channels_last, 6.0 -> 5.7 ms contiguous.
  const int64_t cb = cout <= 32 || (cout <= 64 && g.N >= 4) ? cout : (cout <= 64 ? 32 : 64);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "_upsample_conv2d_mixed_cpu", [&] {
    const auto t = upsample_tap_axes<scalar_t>(g, mode);
    const auto &th = t.h, &tw = t.w;
    // Per block of channels, its rows (tap, channel) of Cin weights each: W_a stacked. One copy.
    const Tensor wc = weight.contiguous();
    const scalar_t* w = wc.const_data_ptr<scalar_t>();
    const int64_t kk = kh * kw;
    Scratch<scalar_t> packed(ScratchSlot::kPackedWeight, cout * kk * cin);
    for (int64_t o0 = 0; o0 < cout; o0 += cb) {
      const int64_t cbk = std::min(cb, cout - o0);
      scalar_t* dst = packed.data() + o0 * kk * cin;
      for (int64_t a = 0; a < kk; ++a)
        for (int64_t ol = 0; ol < cbk; ++ol)
          for (int64_t c = 0; c < cin; ++c) dst[(a * cbk + ol) * cin + c] = w[((o0 + ol) * cin + c) * kk + a];
    }
    mixed_forward<scalar_t>(x.const_data_ptr<scalar_t>(), packed.data(), has_bias ? b.const_data_ptr<scalar_t>() : nullptr,
                            out.mutable_data_ptr<scalar_t>(), channels_last, g, cin, cb, th, tw);
  });
  return out;
}


std::tuple<Tensor, Tensor> _upsample_conv2d_mixed_backward_cpu(const Tensor& grad_output, const Tensor& input,
                                                               const Tensor& weight, IntArrayRef scale,
                                                               IntArrayRef padding, c10::string_view mode_name,
                                                               std::array<bool, 2> output_mask) {
  const TapMode mode = upsample_taps_mode(std::string(mode_name));
  const UpsampleTapsGeometry g = mixed_geometry(input, weight, scale, padding);
  const int64_t cout = weight.size(0), cin = weight.size(1), kk = weight.size(2) * weight.size(3), kc = kk * cout;
  TORCH_CHECK(grad_output.dim() == 4 && grad_output.size(0) == g.N && grad_output.size(1) == cout &&
                  grad_output.size(2) == g.Ho && grad_output.size(3) == g.Wo &&
                  grad_output.scalar_type() == input.scalar_type(),
              "_upsample_conv2d_mixed_backward: grad_output must be (", g.N, ", ", cout, ", ", g.Ho, ", ", g.Wo,
              ") of the input's dtype, got ", grad_output.sizes(), " ", grad_output.scalar_type());
  const bool channels_last = input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  // A gradient not wanted is an empty tensor (the schema returns tensors).
  Tensor gx = output_mask[0] ? empty_output(input.sizes(), input.options(), format) : at::empty({0}, input.options());
  Tensor gw = output_mask[1] ? at::empty(weight.sizes(), weight.options()) : at::empty({0}, weight.options());
  if (!output_mask[0] && !output_mask[1]) return {gx, gw};
  if (g.N == 0) {
    if (output_mask[1]) gw.zero_();
    return {gx, gw};
  }
  const Tensor x = input.contiguous(format), gy = grad_output.contiguous(format);
  // grad_w^T (Cin x kh kw Cout, columns (tap, output channel)); into gw's order after.
  Tensor gwt = output_mask[1] ? at::empty({cin, kk, cout}, weight.options()) : Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "_upsample_conv2d_mixed_backward_cpu", [&] {
    const auto t = upsample_tap_axes<scalar_t>(g, mode);
    const Tensor wc = weight.contiguous();
    const scalar_t* w = wc.const_data_ptr<scalar_t>();
    // grad_x's GEMM operand: W (kk Cout x Cin) for channels_last, W^T (Cin x kk Cout) for planes.
    Scratch<scalar_t> packed(ScratchSlot::kPackedWeight, output_mask[0] ? kc * cin : 0);
    if (output_mask[0])
      for (int64_t o = 0; o < cout; ++o)
        for (int64_t c = 0; c < cin; ++c)
          for (int64_t a = 0; a < kk; ++a) {
            const int64_t r = a * cout + o;
            packed[channels_last ? r * cin + c : c * kc + r] = w[(o * cin + c) * kk + a];
          }
    mixed_backward<scalar_t>(gy.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), packed.data(),
                             output_mask[0] ? gx.mutable_data_ptr<scalar_t>() : nullptr,
                             output_mask[1] ? gwt.mutable_data_ptr<scalar_t>() : nullptr, channels_last, g, cin,
                             t.h, t.w);
  });
  if (output_mask[1]) gw.view({cout, cin, kk}).copy_(gwt.permute({2, 0, 1}));
  return {gx, gw};
}

}  // namespace tconv::cpu::CPU_CAPABILITY
