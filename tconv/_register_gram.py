"""Fake (meta) kernels and batching rules of the tconv::gram_matrix* operators (their autograd
formulas, reverse and forward mode, are C++: csrc/autograd.cpp)."""
import torch

from ._vmap import fold_batch, unfold_batch

ops = torch.ops.tconv


# ---- fake kernels ---------------------------------------------------------------------------------

@torch.library.register_fake("tconv::gram_matrix")
def _gram_matrix_fake(features, normalize):
    torch._check(features.dim() == 3, lambda: "gram_matrix: expected features of shape (N, C, L)")
    n, c, _ = features.shape
    return features.new_empty((n, c, c))


@torch.library.register_fake("tconv::gram_matrix_backward")
def _gram_matrix_backward_fake(grad_gram, features, normalize):
    return features.new_empty(features.shape)  # contiguous


# ---- batching rules (vmap): the vmapped dimension folded into N ------------------------------------

@torch.library.register_vmap("tconv::gram_matrix")
def _gram_matrix_vmap(info, in_dims, features, normalize):
    size = info.batch_size
    return unfold_batch(ops.gram_matrix(fold_batch(features, in_dims[0], size), normalize), size), 0


@torch.library.register_vmap("tconv::gram_matrix_backward")
def _gram_matrix_backward_vmap(info, in_dims, grad_gram, features, normalize):
    size = info.batch_size
    out = ops.gram_matrix_backward(fold_batch(grad_gram, in_dims[0], size),
                                   fold_batch(features, in_dims[1], size), normalize)
    return unfold_batch(out, size), 0
