// Row-major GEMM on raw buffers through ATen's BLAS (MKL/OpenBLAS via at::mm_out) or oneDNN, one
// single-threaded call per fixed block: the callers cut the work into blocks that depend on the
// shape only and sum them in a fixed order, so the result is the same for any thread count.
//
// Note [float32 GEMM engine]: ATen sends float32 at::mm to MKL, whose sgemm on AMD Zen 4 runs
// 10-18% below oneDNN's JIT kernels on the blocks these ops use (1 thread: 80-93 against 93-110
// GFLOP/s, benchmarks/NOTES.md "Session 8"), and PyTorch's own convolutions run on oneDNN. So on
// x86 a float32 block of at least kOneDnnMinWork multiply-adds whose operands are dense goes to
// oneDNN's matmul (at::native::mkldnn_matmul, exported by libtorch_cpu; weak, so a torch without
// it keeps MKL), under an OpenMP thread count of 1 so that oneDNN plans and runs it on the calling
// thread.
// Smaller blocks stay on MKL: a oneDNN call costs about 14 us before it computes. Which engine a
// block takes depends on its shape only, so results stay the same for any thread count. On AMD
// Zen 5 the gap is about 2x (MKL runs its generic kernels there), so a block whose result has
// gaps between its rows goes to oneDNN too, through a dense staging block and one copy.
//
// Note [single-threaded BLAS]: being inside at::parallel_for does not make the BLAS sequential.
// PyTorch turns MKL's dynamic threading off (mkl_set_dynamic(0)), so MKL plans a call for
// torch.get_num_threads() threads even inside a parallel region or when parallel_for runs the
// range inline, and on Intel CPUs its sgemm then splits K and sums the parts in another order
// for 1 and 2 threads. Each call therefore runs under MKL's thread-local thread count of 1
// (mkl_set_num_threads_local). The symbol is weak: a torch built on another BLAS (OpenBLAS on
// aarch64) has none, and there the calls rely on the BLAS running one thread inside ATen's
// parallel regions.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cpu/Utils.h>

#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

// MKL's C entry point (mkl_service.h #defines mkl_set_num_threads_local to it; the lower-case
// symbols are the Fortran interface, which takes a pointer).
extern "C" int MKL_Set_Num_Threads_Local(int) __attribute__((weak));

// result = beta * result + alpha * mat1 @ mat2 on oneDNN (ATen/native/mkldnn/Matmul.h, a header
// the wheel does not ship; Note [float32 GEMM engine]).
namespace at::native {
void mkldnn_matmul(const at::Tensor& mat1, const at::Tensor& mat2, const at::Tensor& result, float beta,
                   float alpha) __attribute__((weak));
}

namespace tconv::cpu {

// Runs the BLAS calls of its scope on the calling thread only (Note [single-threaded BLAS]).
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() : previous_(MKL_Set_Num_Threads_Local ? MKL_Set_Num_Threads_Local(1) : 0) {}
  // 0 restores the global setting, which is what a previous local value of 0 meant.
  ~SingleThreadedBlas() {
    if (MKL_Set_Num_Threads_Local) MKL_Set_Num_Threads_Local(previous_);
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int previous_;
};

// Runs the oneDNN calls of its scope on the calling thread only: oneDNN sizes its plan by
// omp_get_max_threads(), a per-thread setting (Note [float32 GEMM engine]).
class SingleThreadedOneDnn {
 public:
#if defined(_OPENMP)
  SingleThreadedOneDnn() : previous_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~SingleThreadedOneDnn() { omp_set_num_threads(previous_); }
#endif
  SingleThreadedOneDnn(const SingleThreadedOneDnn&) = delete;
  SingleThreadedOneDnn& operator=(const SingleThreadedOneDnn&) = delete;

 private:
  int previous_ = 1;
};

// Blocks of at least this many multiply-adds take oneDNN (Note [float32 GEMM engine]).
constexpr int64_t kOneDnnMinWork = int64_t(1) << 23;

// Whether float32 GEMMs can go to oneDNN here: x86, oneDNN present and enabled
// (torch.backends.mkldnn), and its matmul accepting float32 (checked once on a 2 x 2 product:
// older torch releases took only 16-bit types).
inline bool onednn_float32_gemm() {
#if defined(__x86_64__) || defined(_M_X64)
  static const bool usable = [] {
    if (at::native::mkldnn_matmul == nullptr || !at::hasMKLDNN()) return false;
    try {
      const at::Tensor a = at::ones({2, 2}), c = at::empty({2, 2});
      SingleThreadedOneDnn single_threaded;
      at::native::mkldnn_matmul(a, a, c, 0.f, 1.f);
      return c.eq(2).all().item<bool>();
    } catch (const c10::Error&) {
      return false;
    }
  }();
  return usable && at::globalContext().userEnabledMkldnn();
#else
  return false;
#endif
}

// Operand of a row-major GEMM: `rows x cols` logical matrix at `data` with leading dimension
// `ld`; `transposed` means memory holds its transpose (element (i, j) at data[j * ld + i]).
template <typename T>
struct MatRef {
  const T* data;
  int64_t ld;
  bool transposed;
};

template <typename T>
inline at::Tensor as_tensor(const T* data, int64_t rows, int64_t cols, int64_t ld, bool transposed) {
  auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  const std::vector<int64_t> strides =
      transposed ? std::vector<int64_t>{1, ld} : std::vector<int64_t>{ld, 1};
  return at::from_blob(const_cast<T*>(data), {rows, cols}, strides, options);
}

// Whether a rows x cols operand fills its memory without gaps. oneDNN copies an operand with a
// larger leading dimension first (a transposed one ran at 69 instead of 110 GFLOP/s), so only
// dense operands go there; callers pack their blocks densely where that pays.
template <typename T>
inline bool dense(const MatRef<T>& op, int64_t rows, int64_t cols) {
  return op.ld == (op.transposed ? rows : cols);
}

// C (m x n, row-major, leading dimension ldc) = A (m x k) @ B (k x n) [+ C when accumulate].
template <typename T>
inline void gemm(int64_t m, int64_t n, int64_t k, MatRef<T> a, MatRef<T> b, T* c, int64_t ldc,
                 bool accumulate) {
  if (m == 0 || n == 0) return;
  at::Tensor out = as_tensor(c, m, n, ldc, false);
  if (k == 0) {
    if (!accumulate) out.zero_();
    return;
  }
  at::Tensor lhs = as_tensor(a.data, m, k, a.ld, a.transposed);
  at::Tensor rhs = as_tensor(b.data, k, n, b.ld, b.transposed);
  if constexpr (std::is_same_v<T, float>) {
    if (m * n * k >= kOneDnnMinWork && dense(a, m, k) && dense(b, k, n) && onednn_float32_gemm()) {
      SingleThreadedOneDnn single_threaded;
      if (ldc == n) {
        at::native::mkldnn_matmul(lhs, rhs, out, accumulate ? 1.f : 0.f, 1.f);
        return;
      }
      // A result with gaps between its rows (a block written in place into a larger output)
      // goes through a dense block: the copy costs far less than MKL's generic kernels, which
      // ran these blocks at half oneDNN's rate on AMD Zen 5 (benchmarks/NOTES.md, session 14).
      thread_local std::vector<float> staging;
      if (staging.size() < static_cast<size_t>(m * n)) staging.resize(m * n);
      at::Tensor block = as_tensor(staging.data(), m, n, n, false);
      if (accumulate) block.copy_(out);
      at::native::mkldnn_matmul(lhs, rhs, block, accumulate ? 1.f : 0.f, 1.f);
      out.copy_(block);
      if (staging.size() > (size_t(4) << 20) / sizeof(float)) std::vector<float>().swap(staging);  // keep at most 4 MiB
      return;
    }
  }
  SingleThreadedBlas single_threaded;
  if (accumulate) {
    at::addmm_out(out, out, lhs, rhs);
  } else {
    at::mm_out(out, lhs, rhs);
  }
}

// Whether GEMMs on 16-bit operands (bfloat16, float16) should run in that type: where the CPU
// multiplies it natively (AVX512-BF16 / AMX-BF16, AVX512-FP16 / AMX-FP16), ATen's matmul runs
// it through oneDNN at about twice the float32 rate, accumulating in float32. Elsewhere a 16-bit
// GEMM is emulated and slower than converting to float32 first. ATen's own conv_transpose2d
// makes the same choice (oneDNN for bfloat16 where the CPU has it).
template <typename T>
inline bool gemm_in_16_bits() {
  if constexpr (std::is_same_v<T, at::BFloat16> || std::is_same_v<T, at::Half>) {
    static const bool fast = [] {
      const auto caps = at::cpu::get_cpu_capabilities();
      auto has = [&](const char* name) {
        const auto it = caps.find(name);
        return it != caps.end() && it->second.isBool() && it->second.toBool();
      };
      return std::is_same_v<T, at::BFloat16> ? has("avx512_bf16") || has("amx_bf16")
                                             : has("avx512_fp16") || has("amx_fp16");
    }();
    return fast;
  } else {
    return false;
  }
}

}  // namespace tconv::cpu
