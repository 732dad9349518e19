"""Fake (meta) kernels and batching rules of the tconv::upsample_* operators (their autograd
formulas, reverse and forward mode, are C++: csrc/autograd.cpp)."""
import torch
from torch._prims_common import suggest_memory_format

from ._vmap import fold_batch, unfold_batch

ops = torch.ops.tconv
MODES = ("bilinear", "bicubic")


def _empty_like_format(like, shape):
    return like.new_empty(shape).contiguous(memory_format=suggest_memory_format(like))


def _register(mode):
    @torch.library.register_fake(f"tconv::upsample_{mode}2d")
    def _forward_fake(input, output_size, align_corners, antialias, scale_h, scale_w):
        torch._check(input.dim() == 4, lambda: f"expected a 4-D input, got {input.dim()}-D")
        torch._check(output_size[0] > 0 and output_size[1] > 0,
                     lambda: f"output size must be positive, got {list(output_size)}")
        return _empty_like_format(input, (input.shape[0], input.shape[1], *output_size))

    @torch.library.register_fake(f"tconv::upsample_{mode}2d_backward")
    def _backward_fake(grad_output, input_size, align_corners, antialias, scale_h, scale_w):
        torch._check(grad_output.dim() == 4, lambda: f"expected a 4-D grad_output, got {grad_output.dim()}-D")
        return _empty_like_format(grad_output, (grad_output.shape[0], grad_output.shape[1], *input_size))

    # vmap: each image is resampled on its own, so the vmapped dimension folds into N.
    for name in (f"upsample_{mode}2d", f"upsample_{mode}2d_backward"):
        op = getattr(ops, name)

        def _vmap(info, in_dims, input, size, align_corners, antialias, scale_h, scale_w, op=op):
            batch = info.batch_size
            out = op(fold_batch(input, in_dims[0], batch), size, align_corners, antialias, scale_h, scale_w)
            return unfold_batch(out, batch), 0

        torch.library.register_vmap(f"tconv::{name}", _vmap)


for _mode in MODES:
    _register(_mode)
