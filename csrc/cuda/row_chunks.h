// Chunks of the CUDA GEMM paths: how many "rows" (cell rows or input rows, over all images) one
// round of gather, GEMM and scatter processes, and views of the scratch buffers for one chunk. The gathered operands grow with the rows, so rows are chunked to bound the scratch
// memory; the chunking depends on the shape only, so results are bitwise reproducible.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>

namespace tconv::cuda {

// Scratch budget for the gathered matrices and GEMM results of one chunk.
constexpr int64_t kChunkBytes = int64_t(512) << 20;
// cuBLAS takes 32-bit sizes and leading dimensions: one matrix of a chunk stays below 2^31.
constexpr int64_t kMaxMatrixElems = (int64_t(1) << 31) - 1;

// rows: total rows; row_elems: scratch elements one row needs (all matrices together);
// row_matrix_elems: the largest single matrix's elements per row.
inline int64_t rows_per_chunk(int64_t rows, int64_t row_elems, int64_t row_matrix_elems,
                              int64_t elem_size) {
  const int64_t by_budget = kChunkBytes / std::max<int64_t>(row_elems * elem_size, 1);
  const int64_t by_blas = kMaxMatrixElems / std::max<int64_t>(row_matrix_elems, 1);
  return std::clamp<int64_t>(std::min(by_budget, by_blas), 1, std::max<int64_t>(rows, 1));
}

// A dense (groups, rows, cols) view of the start of a scratch buffer sized for the largest chunk
// (narrow() would keep the full buffer's group stride; the kernels expect a dense block).
inline at::Tensor dense_prefix(const at::Tensor& buffer, int64_t groups, int64_t rows,
                               int64_t cols) {
  return buffer.view({-1}).narrow(0, 0, groups * rows * cols).view({groups, rows, cols});
}

}  // namespace tconv::cuda
