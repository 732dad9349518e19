// CPU kernels of tconv::pad_fold2d, the adjoint of F.pad(mode) (common/pad_fold_args.h), and of
// tconv::pad_fold2d_frame, the same fold of a padded tensor given as its interior and the four
// strips of its frame: one pass over the padded tensor. Each task writes whole output rows: the row's source rows (one, or a few
// at a border) are added in increasing order, each as its interior (one contiguous run, vectorised
// by the compiler) then its border columns onto the columns they come from. Contiguous input is
// folded per (n, c) plane; channels_last input per image with the channels as the innermost run, so
// both layouts read and write contiguous memory. float16 / bfloat16 sum in float32 and round once.
// The order of every sum is fixed by the shape: bitwise the same for any thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <cstring>
#include <type_traits>
#include <vector>

#include "common/macros.h"
#include "common/pad_fold_args.h"
#include "cpu/kernels.h"
#include "cpu/output_alloc.h"
#include "cpu/parallel.h"

namespace tconv::cpu::CPU_CAPABILITY {
namespace {

using at::Tensor;

struct FoldGeometry {
  int64_t planes, hp, wp, v;  // planes of hp x wp positions, each position v contiguous values
  int64_t out_h, out_w;
  int64_t left, top, bottom;
  PadFoldMode mode;
};

// The output column each border column b of the padded row comes from (col_src[b] for b < left,
// col_src[left + k] for the k-th column after the interior).
std::vector<int64_t> border_columns(const FoldGeometry& g) {
  const int64_t n = g.out_w, right = g.wp - g.left - n;
  std::vector<int64_t> src;
  src.reserve(g.left + right);
  for (int64_t b = 0; b < g.left; ++b) {
    const int64_t t = b - g.left;  // < 0
    src.push_back(g.mode == PadFoldMode::Reflect ? -t : g.mode == PadFoldMode::Replicate ? 0 : t + n);
  }
  for (int64_t k = 0; k < right; ++k) {
    const int64_t t = n + k;  // >= n
    src.push_back(g.mode == PadFoldMode::Reflect ? 2 * (n - 1) - t : g.mode == PadFoldMode::Replicate ? n - 1 : t - n);
  }
  return src;
}

// One padded row in three runs: its left border (left * v values), interior (out_w * v) and right
// border. A padded tensor's row is one run of the three; the frame op's interior rows are a row of
// `left`, one of `center` and one of `right`.
template <typename scalar_t>
struct PaddedRow {
  const scalar_t *left, *mid, *right;
};

// Adds a border run (count columns of v values) onto the output columns to_cols it comes from.
template <typename acc_t, typename scalar_t>
void add_border(acc_t* acc, const scalar_t* from, const int64_t* to_cols, int64_t count, int64_t v) {
  if (v == 1) {
    for (int64_t b = 0; b < count; ++b) acc[to_cols[b]] += static_cast<acc_t>(from[b]);
    return;
  }
  for (int64_t b = 0; b < count; ++b) {
    acc_t* to = acc + to_cols[b] * v;
    const scalar_t* f = from + b * v;
    for (int64_t e = 0; e < v; ++e) to[e] += static_cast<acc_t>(f[e]);
  }
}

// Where each output row's terms come from (fold_sources of every row).
std::vector<FoldSources> row_sources_of(const FoldGeometry& g) {
  std::vector<FoldSources> rows(g.out_h);
  for (int64_t i = 0; i < g.out_h; ++i) rows[i] = fold_sources(i, g.out_h, g.top, g.bottom, g.mode);
  return rows;
}

// Writes every output row from the padded rows row_of(plane, a) (a in [0, hp)), in the fixed order
// of the file comment.
template <typename scalar_t, typename RowOf>
void fold_rows(scalar_t* out, const FoldGeometry& g, const RowOf& row_of) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool direct = std::is_same_v<acc_t, scalar_t>;  // sum in the output row itself
  const int64_t v = g.v, row_out = g.out_w * v, out_plane = g.out_h * row_out;
  const std::vector<int64_t> cols = border_columns(g);
  const int64_t right = g.wp - g.left - g.out_w;
  const std::vector<FoldSources> row_sources = row_sources_of(g);
  parallel_for_work(0, g.planes * g.out_h, g.planes * g.hp * g.wp * v, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> buffer(direct ? 0 : row_out);
    int64_t plane = begin / g.out_h, i = begin % g.out_h;  // then stepped (no division per row)
    for (int64_t task = begin; task < end; ++task, ++i) {
      if (i == g.out_h) {
        i = 0;
        ++plane;
      }
      scalar_t* dst = out + plane * out_plane + i * row_out;
      acc_t* acc = nullptr;
      if constexpr (direct) acc = dst; else acc = buffer.data();
      const FoldSources& rows = row_sources[i];
      bool first = true;
      for (int r = 0; r < rows.count; ++r) {
        for (int64_t a = rows.lo[r]; a < rows.hi[r]; ++a) {
          const PaddedRow<scalar_t> src = row_of(plane, a);
          const scalar_t* mid = src.mid;
          if (first) {
            if constexpr (direct) std::memcpy(acc, mid, row_out * sizeof(scalar_t));
            else for (int64_t e = 0; e < row_out; ++e) acc[e] = static_cast<acc_t>(mid[e]);
            first = false;
          } else {
            for (int64_t e = 0; e < row_out; ++e) acc[e] += static_cast<acc_t>(mid[e]);
          }
          add_border(acc, src.left, cols.data(), g.left, v);
          add_border(acc, src.right, cols.data() + g.left, right, v);
        }
      }
      if constexpr (!direct)
        for (int64_t e = 0; e < row_out; ++e) dst[e] = static_cast<scalar_t>(acc[e]);
    }
  });
}

// float / double frames: out = center, one copy per plane, then the frame's terms added onto it row
// by row (each output element: its center value, then the other terms in the order of fold_rows).
// Saves the short per-row copies of fold_rows: the interior is one run per plane.
template <typename scalar_t, typename RowOf>
void fold_onto_center(scalar_t* out, const scalar_t* center, const FoldGeometry& g, const RowOf& row_of) {
  // out == center: in place (pad_fold2d_frame_), the copy skipped
  const int64_t v = g.v, row_out = g.out_w * v, out_plane = g.out_h * row_out;
  const std::vector<int64_t> cols = border_columns(g);
  const int64_t right = g.wp - g.left - g.out_w;
  const std::vector<FoldSources> row_sources = row_sources_of(g);
  parallel_for_work(0, g.planes, g.planes * g.hp * g.wp * v, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      scalar_t* dst = out + plane * out_plane;
      if (out != center) std::memcpy(dst, center + plane * out_plane, out_plane * sizeof(scalar_t));
      for (int64_t i = 0; i < g.out_h; ++i) {
        scalar_t* acc = dst + i * row_out;
        const FoldSources& rows = row_sources[i];
        for (int r = 0; r < rows.count; ++r) {
          for (int64_t a = rows.lo[r]; a < rows.hi[r]; ++a) {
            const PaddedRow<scalar_t> src = row_of(plane, a);
            if (a < g.top || a >= g.top + g.out_h)  // a strip row: its interior too
              for (int64_t e = 0; e < row_out; ++e) acc[e] += src.mid[e];
            add_border(acc, src.left, cols.data(), g.left, v);
            add_border(acc, src.right, cols.data() + g.left, right, v);
          }
        }
      }
    }
  });
}

at::MemoryFormat fold_format(const Tensor& t) {
  return t.suggest_memory_format() == at::MemoryFormat::ChannelsLast ? at::MemoryFormat::ChannelsLast
                                                                      : at::MemoryFormat::Contiguous;
}

// The geometry of a fold to an (n, c, out_h, out_w) output in memory format `format`.
FoldGeometry fold_geometry(int64_t n, int64_t c, int64_t out_h, int64_t out_w, IntArrayRef pad, PadFoldMode mode,
                           at::MemoryFormat format) {
  const bool last = format == at::MemoryFormat::ChannelsLast;
  return FoldGeometry{last ? n : n * c, out_h + pad[2] + pad[3], out_w + pad[0] + pad[1], last ? c : 1,
                      out_h, out_w, pad[0], pad[2], pad[3], mode};
}

}  // namespace

Tensor pad_fold2d_cpu(const Tensor& input, IntArrayRef pad, c10::string_view mode_name) {
  const PadFoldMode mode = pad_fold_mode(std::string(mode_name));
  check_pad_fold(input, pad, mode);
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), "pad_fold2d is not implemented for '",
              input.scalar_type(), "'");
  const auto format = fold_format(input);
  const Tensor x = input.contiguous(format);
  const int64_t n = x.size(0), c = x.size(1);
  const int64_t out_h = x.size(2) - pad[2] - pad[3], out_w = x.size(3) - pad[0] - pad[1];
  Tensor out = empty_output({n, c, out_h, out_w}, x.options(), format);
  if (out.numel() == 0) return out;
  const FoldGeometry g = fold_geometry(n, c, out_h, out_w, pad, mode, format);
  TCONV_DISPATCH_FLOATING_TYPES(x.scalar_type(), "pad_fold2d_cpu", [&] {
    const scalar_t* in = x.const_data_ptr<scalar_t>();
    const int64_t row_in = g.wp * g.v, in_plane = g.hp * row_in;
    fold_rows<scalar_t>(out.mutable_data_ptr<scalar_t>(), g, [&](int64_t plane, int64_t a) {
      const scalar_t* row = in + plane * in_plane + a * row_in;
      return PaddedRow<scalar_t>{row, row + g.left * g.v, row + (g.left + g.out_w) * g.v};
    });
  });
  return out;
}

namespace {

// pad_fold2d_frame into `out` (a fresh output, or center itself: float / double only).
void fold_frame(const Tensor& c0, const Tensor& t, const Tensor& b, const Tensor& l, const Tensor& r, Tensor& out,
                IntArrayRef pad, PadFoldMode mode, at::MemoryFormat format) {
  const int64_t n = c0.size(0), c = c0.size(1), out_h = c0.size(2), out_w = c0.size(3);
  const FoldGeometry g = fold_geometry(n, c, out_h, out_w, pad, mode, format);
  TCONV_DISPATCH_FLOATING_TYPES(c0.scalar_type(), "pad_fold2d_frame_cpu", [&] {
    const int64_t v = g.v, wide = g.wp * v, narrow_l = pad[0] * v, narrow_r = pad[1] * v, mid = out_w * v;
    const scalar_t *pc = c0.const_data_ptr<scalar_t>(), *pt = t.const_data_ptr<scalar_t>(),
                   *pb = b.const_data_ptr<scalar_t>(), *pl = l.const_data_ptr<scalar_t>(),
                   *pr = r.const_data_ptr<scalar_t>();
    const auto row_of = [&](int64_t plane, int64_t a) {
      if (a < g.top || a >= g.top + out_h) {  // a row of the top or bottom strip: the full padded width
        const scalar_t* row = a < g.top ? pt + (plane * g.top + a) * wide
                                        : pb + (plane * g.bottom + a - g.top - out_h) * wide;
        return PaddedRow<scalar_t>{row, row + narrow_l, row + narrow_l + mid};
      }
      const int64_t i = plane * out_h + a - g.top;
      return PaddedRow<scalar_t>{pl + i * narrow_l, pc + i * mid, pr + i * narrow_r};
    };
    if constexpr (std::is_same_v<at::opmath_type<scalar_t>, scalar_t>)
      fold_onto_center<scalar_t>(out.mutable_data_ptr<scalar_t>(), pc, g, row_of);
    else
      fold_rows<scalar_t>(out.mutable_data_ptr<scalar_t>(), g, row_of);
  });
}

}  // namespace

Tensor pad_fold2d_frame_cpu(const Tensor& center, const Tensor& top, const Tensor& bottom, const Tensor& left,
                            const Tensor& right, IntArrayRef pad, c10::string_view mode_name) {
  const PadFoldMode mode = pad_fold_mode(std::string(mode_name));
  check_pad_fold_frame(center, top, bottom, left, right, pad, mode);
  const auto format = fold_format(center);
  const Tensor c0 = center.contiguous(format);
  Tensor out = empty_output(c0.sizes(), c0.options(), format);
  if (out.numel() == 0) return out;
  fold_frame(c0, top.contiguous(format), bottom.contiguous(format), left.contiguous(format),
             right.contiguous(format), out, pad, mode, format);
  return out;
}

void pad_fold2d_frame__cpu(const Tensor& center, const Tensor& top, const Tensor& bottom, const Tensor& left,
                           const Tensor& right, IntArrayRef pad, c10::string_view mode_name) {
  const PadFoldMode mode = pad_fold_mode(std::string(mode_name));
  check_pad_fold_frame(center, top, bottom, left, right, pad, mode);
  const auto format = fold_format(center);
  TORCH_CHECK(center.is_contiguous(format) && (center.scalar_type() == at::kFloat || center.scalar_type() == at::kDouble),
              "pad_fold2d_frame_: center must be a contiguous (or channels_last) float32 / float64 tensor");
  if (center.numel() == 0) return;
  Tensor out = center;
  fold_frame(center, top.contiguous(format), bottom.contiguous(format), left.contiguous(format),
             right.contiguous(format), out, pad, mode, format);
}

}  // namespace tconv::cpu::CPU_CAPABILITY
