// Buffers of the composite ops (csrc/conv_transpose_nd.cpp, csrc/upsample_nd.cpp): Note [1-D and
// 3-D ops as composites] (docs/ARCHITECTURE.md).
//
// A composite's intermediates and result are written once by a copy or a sum. On a plain eager
// CPU call they come from the output cache (cpu/output_alloc.h, Note [output cache policy]) and
// are filled in place: a fresh malloc'ed buffer of that size costs its page faults, as much as
// the copy itself. Anywhere else (fake tensors under torch.compile / opcheck, functionalization,
// torch.func transforms, CUDA, Python dispatch modes) the composites use only functional ATen ops,
// which every transform knows.
#pragma once

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
#include <torch/library.h>

#include "cpu/output_alloc.h"

namespace tconv {

// Registers a file's composite kernels (register_kernels: void(torch::Library&)) for
// CompositeImplicitAutograd and for FuncTorchBatched: under vmap the same decomposition then runs
// on the batched tensors (each op inside has its batching rule, the 2-D ops' in
// tconv/_register_*.py) instead of functorch's per-sample fallback for the composite op.
#define TCONV_REGISTER_COMPOSITES(register_kernels)                                     \
  TORCH_LIBRARY_IMPL(tconv, CompositeImplicitAutograd, m) { register_kernels(m); } \
  TORCH_LIBRARY_IMPL(tconv, FuncTorchBatched, m) { register_kernels(m); }

// True when every tensor is a real CPU tensor, none wrapped by a torch.func transform (vmap,
// grad, jvp wrap the tensors they act on), the legacy vmap of autograd's batched gradients
// (gradcheck's check_batched_grad), functionalization or Python, and no dispatch mode is active: a
// buffer may then be allocated outside the dispatcher and written in place.
inline bool plain_cpu_call(std::initializer_list<const at::Tensor*> tensors) {
  if (c10::impl::TorchDispatchModeTLS::any_modes_set()) return false;
  constexpr c10::DispatchKeySet wrapped({c10::DispatchKey::Python, c10::DispatchKey::Functionalize,
                                         c10::DispatchKey::FuncTorchBatched, c10::DispatchKey::Batched,
                                         c10::DispatchKey::FuncTorchGradWrapper,
                                         c10::DispatchKey::PythonTLSSnapshot});
  for (const at::Tensor* t : tensors) {
    if (t == nullptr || !t->defined()) continue;
    if (!t->is_cpu() || t->key_set().has_any(wrapped)) return false;
  }
  return true;
}

// plain_cpu_call outside a torch.func transform (which hands a composite unwrapped tensors while
// it is active).
inline bool plain_eager_cpu_call(std::initializer_list<const at::Tensor*> tensors) {
  return plain_cpu_call(tensors) &&
         !c10::impl::tls_is_dispatch_key_included(c10::DispatchKey::FuncTorchDynamicLayerFrontMode);
}

// A plain eager CPU call outside autocast (whose 2-D ops compute in bfloat16) and forward-mode AD:
// a composite may call CPU kernels below autograd for it (conv_transpose3d's, the volume kernel).
inline bool cpu_kernels_may_serve(std::initializer_list<const at::Tensor*> tensors) {
  for (const at::Tensor* t : tensors)
    if (t != nullptr && t->defined() && t->_fw_grad(/*level=*/0).defined()) return false;
  return plain_eager_cpu_call(tensors) && !at::autocast::is_autocast_enabled(at::kCPU);
}

// An uninitialised buffer of `sizes` (contiguous) for a plain CPU call: cpu/output_alloc.h.
inline at::Tensor cached_buffer(at::IntArrayRef sizes, const at::Tensor& like) {
  return cpu::empty_output(sizes, like.options());
}

}  // namespace tconv
