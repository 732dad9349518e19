// CPU kernel of tconv::pad_fold2d, the adjoint of F.pad(mode) (common/pad_fold_args.h): one pass
// over the padded tensor. Each task writes whole output rows: the row's source rows (one, or a few
// at a border) are added in increasing order, each as its interior (one contiguous run, vectorised
// by the compiler) then its border columns onto the columns they come from. Contiguous input is
// folded per (n, c) plane; channels_last input per image with the channels as the innermost run, so
// both layouts read and write contiguous memory. float16 / bfloat16 sum in float32 and round once.
// The order of every sum is fixed by the shape: bitwise the same for any thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

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

template <typename scalar_t>
void pad_fold(const scalar_t* in, scalar_t* out, const FoldGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool direct = std::is_same_v<acc_t, scalar_t>;  // sum in the output row itself
  const int64_t v = g.v, row_in = g.wp * v, row_out = g.out_w * v;
  const int64_t in_plane = g.hp * row_in, out_plane = g.out_h * row_out;
  const std::vector<int64_t> cols = border_columns(g);
  const int64_t right_start = g.left + g.out_w;
  parallel_for_work(0, g.planes * g.out_h, g.planes * in_plane, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> buffer(direct ? 0 : row_out);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t plane = task / g.out_h, i = task % g.out_h;
      scalar_t* dst = out + plane * out_plane + i * row_out;
      acc_t* acc = nullptr;
      if constexpr (direct) acc = dst; else acc = buffer.data();
      const FoldSources rows = fold_sources(i, g.out_h, g.top, g.bottom, g.mode);
      bool first = true;
      for (int r = 0; r < rows.count; ++r) {
        for (int64_t a = rows.lo[r]; a < rows.hi[r]; ++a) {
          const scalar_t* src = in + plane * in_plane + a * row_in;
          const scalar_t* mid = src + g.left * v;
          if (first) {
            for (int64_t e = 0; e < row_out; ++e) acc[e] = static_cast<acc_t>(mid[e]);
            first = false;
          } else {
            for (int64_t e = 0; e < row_out; ++e) acc[e] += static_cast<acc_t>(mid[e]);
          }
          for (int64_t b = 0; b < g.left; ++b) {
            acc_t* to = acc + cols[b] * v;
            const scalar_t* from = src + b * v;
            for (int64_t e = 0; e < v; ++e) to[e] += static_cast<acc_t>(from[e]);
          }
          for (int64_t b = right_start; b < g.wp; ++b) {
            acc_t* to = acc + cols[b - g.out_w] * v;
            const scalar_t* from = src + b * v;
            for (int64_t e = 0; e < v; ++e) to[e] += static_cast<acc_t>(from[e]);
          }
        }
      }
      if constexpr (!direct)
        for (int64_t e = 0; e < row_out; ++e) dst[e] = static_cast<scalar_t>(acc[e]);
    }
  });
}

}  // namespace

Tensor pad_fold2d_cpu(const Tensor& input, IntArrayRef pad, c10::string_view mode_name) {
  const PadFoldMode mode = pad_fold_mode(std::string(mode_name));
  check_pad_fold(input, pad, mode);
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), "pad_fold2d is not implemented for '",
              input.scalar_type(), "'");
  const auto format = input.suggest_memory_format() == at::MemoryFormat::ChannelsLast ? at::MemoryFormat::ChannelsLast
                                                                                      : at::MemoryFormat::Contiguous;
  const Tensor x = input.contiguous(format);
  const int64_t n = x.size(0), c = x.size(1), hp = x.size(2), wp = x.size(3);
  const int64_t out_h = hp - pad[2] - pad[3], out_w = wp - pad[0] - pad[1];
  Tensor out = empty_output({n, c, out_h, out_w}, x.options(), format);
  if (out.numel() == 0) return out;
  const bool last = format == at::MemoryFormat::ChannelsLast;
  const FoldGeometry g{last ? n : n * c, hp, wp, last ? c : 1, out_h, out_w, pad[0], pad[2], pad[3], mode};
  TCONV_DISPATCH_FLOATING_TYPES(x.scalar_type(), "pad_fold2d_cpu", [&] {
    pad_fold<scalar_t>(x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), g);
  });
  return out;
}

}  // namespace tconv::cpu::CPU_CAPABILITY
