// A thread's scratch memory, kept between calls (as oneDNN keeps its scratchpad), so that a call
// allocates and page-faults none of it after the first: the resize-convolution's inference window
// and packed weight (~0.5 MiB per thread at 32 channels of 64 columns), the tap GEMM's T and input
// block (1-2 MiB per thread on DCGAN's layers: 3-4% of G3's forward went to allocating and
// faulting them, benchmarks/NOTES.md session 12) and its packed weights (the calling thread's,
// up to 8 MiB). Each role has its own slot (a thread runs one kernel at a time, so the dense
// forward and backward share theirs); a request over the caller's limit is allocated for the call
// alone and freed after, so what a thread keeps is bounded.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace tconv::cpu::CPU_CAPABILITY {

// kWindow, kPackedWeight: the resize-convolution's inference kernel, and its backward's band of
// the taps' gradient and packed weight (Note [banded backward]); kWindowInput that backward's band
// of the input; kWindowInput also the inference kernel's dense block of input rows.
// kConvBlockA, kConvBlockB: the
// dense transposed convolution's two per-task blocks (forward: T and the input block; grad_input:
// the patches and the GEMM result; grad_weight: the patches and the input block), kConvWeights
// its packed weights, kConvSmall grad_weight's per-task block of columns, kConvClass grad_input's
// product of one class of kernel rows (Note [tap row classes]). kLayoutIn, kLayoutOut: the
// calling thread's channels_last copies of an NCHW call's tensors (Winograd, the direct tiles
// along images: fresh 8 MiB copies per call made a 64->64 8x64x64 Winograd forward 4.4-10 ms
// instead of 3.9-4.3). kFrame: padding_mode's frame of the full output (Note [Winograd]).
// kPixelRows, kRowOut: the direct tiles' NCHW rows as pixels and their row of outputs
// (PixelRowCache, Note [column windows]).
enum class ScratchSlot : int {
  kWindow, kWindowInput, kPackedWeight, kConvBlockA, kConvBlockB, kConvWeights, kConvSmall, kConvClass,
  kLayoutIn, kLayoutOut, kFrame, kPixelRows, kRowIn, kRowOut, kCount
};

template <typename T>
class Scratch {
 public:
  Scratch(ScratchSlot slot, size_t count, size_t keep_limit_bytes = size_t(16) << 20) {
    thread_local std::vector<unsigned char> kept[static_cast<int>(ScratchSlot::kCount)];
    const size_t bytes = count * sizeof(T);
    if (bytes > keep_limit_bytes) {
      // Uninitialised (a vector's resize would zero every byte: 24 MiB of grad_input's
      // channels_last copy cost a pass of its own); the caller writes what it reads.
      own_.reset(new unsigned char[bytes]);
      data_ = reinterpret_cast<T*>(own_.get());
      return;
    }
    auto& b = kept[static_cast<int>(slot)];
    if (b.size() < bytes) b.resize(bytes);
    data_ = reinterpret_cast<T*>(b.data());
  }
  T* data() const { return data_; }
  T& operator[](size_t i) const { return data_[i]; }

 private:
  std::unique_ptr<unsigned char[]> own_;
  T* data_ = nullptr;
};

}  // namespace tconv::cpu::CPU_CAPABILITY
