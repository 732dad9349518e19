// Tiling of the Gram matrix G = s * X X^T (X: C x L) into square tiles, shared by every device.
//
// G is symmetric, so only the tiles (i, j) with i <= j of the upper triangle are computed and the
// lower triangle is their mirror image. The T (T + 1) / 2 upper tiles are numbered column by column:
// column j holds tiles (0, j) .. (j, j), so tile t = j (j + 1) / 2 + i. Walking t in order reuses
// the panel of column j for every tile of that column.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/int_math.h"
#include "common/macros.h"

namespace tconv {

struct TilePair {
  int64_t i;  // tile row
  int64_t j;  // tile column, i <= j
};

// Number of upper-triangle tiles (diagonal included) of a T x T tiling.
TCONV_HOST_DEVICE int64_t triangle_tile_count(int64_t tiles_per_side) {
  return tiles_per_side * (tiles_per_side + 1) / 2;
}

// Tile t of the column-by-column enumeration above.
TCONV_HOST_DEVICE TilePair triangle_tile(int64_t t) {
  // j = floor((sqrt(8t + 1) - 1) / 2), then corrected for the rounding of sqrt.
  int64_t j = static_cast<int64_t>((sqrt(8.0 * static_cast<double>(t) + 1.0) - 1.0) * 0.5);
  while (j * (j + 1) / 2 > t) --j;
  while ((j + 1) * (j + 2) / 2 <= t) ++j;
  return {t - j * (j + 1) / 2, j};
}

// The factor G is multiplied by: 1 / (C * L) (= 1 / (C H W), the D2L style-transfer convention)
// when normalizing, else 1. An empty feature map (C * L == 0) has an all-zero Gram, not 0 / 0.
TCONV_HOST_DEVICE double gram_scale(int64_t channels, int64_t length, bool normalize) {
  const int64_t count = channels * length;
  return normalize && count > 0 ? 1.0 / static_cast<double>(count) : 1.0;
}

}  // namespace tconv
