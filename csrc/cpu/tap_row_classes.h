// Note [tap row classes]: a kernel row kh sends input row ih inside the output only for ih in
// [ih_lo, ih_hi) (indices_inside). On small images the rest is a large share of the GEMMs that
// multiply every input pixel by every kernel row: with 4x4 s2 p1, kernel rows 0 and 3 miss one
// input row each, 12.5% of the multiply-adds at 4x4 (DCGAN's 512->256) and 6.25% at 8x8. Those
// GEMMs therefore group consecutive kernel rows with the same input rows into classes and run
// one GEMM per class over only the input rows it needs, its weights or patches packed densely:
// the forward's pixel-major tap GEMM (cpu/conv_transpose2d.cpp) and grad_input's patch GEMM
// (cpu/conv_transpose2d_backward.cpp, whose class products are summed per pixel in class order).
// grad_weight does not use them: there the class GEMMs (reductions over the class's pixels, 192
// of a block's 256 at DCGAN's 4x4) ran 5-8% slower in all than one GEMM over every pixel
// (benchmarks/NOTES.md, session 13). Where classes save less than 1/16 of the work, one class
// holds every kernel row and every input row.
#pragma once

#include <cstdint>
#include <vector>

#include "common/conv_transpose2d_args.h"

namespace tconv::cpu::CPU_CAPABILITY {

struct TapRowClass {
  int64_t kh_begin, kh_end;  // the kernel rows of the class
  int64_t ih_lo, ih_hi;      // the input rows they send inside the output
  int64_t kernel_rows() const { return kh_end - kh_begin; }
  int64_t rows() const { return ih_hi - ih_lo; }
  // The class's columns (kh, kw, co) of a block of cn output channels, and where they start.
  int64_t columns(int64_t kW, int64_t cn) const { return (kh_end - kh_begin) * kW * cn; }
  int64_t column_offset(int64_t kW, int64_t cn) const { return kh_begin * kW * cn; }
};

// Every kernel row and every input row.
inline TapRowClass whole_kernel(const ConvTranspose2dGeometry& g) { return {0, g.kH, 0, g.H}; }

inline std::vector<TapRowClass> tap_row_classes(const ConvTranspose2dGeometry& g) {
  std::vector<TapRowClass> classes;
  int64_t used = 0;
  for (int64_t kh = 0; kh < g.kH; ++kh) {
    const IndexRange r = indices_inside(g.H, g.sh, kh * g.dh - g.ph, g.Ho);
    used += r.hi - r.lo;
    if (!classes.empty() && classes.back().ih_lo == r.lo && classes.back().ih_hi == r.hi) {
      classes.back().kh_end = kh + 1;
    } else {
      classes.push_back({kh, kh + 1, r.lo, r.hi});
    }
  }
  if (used * 16 > g.H * g.kH * 15) return {whole_kernel(g)};
  return classes;
}

}  // namespace tconv::cpu::CPU_CAPABILITY
