"""Fake (meta) kernels and batching rules of the tconv::upsample_* operators (their autograd
formulas, reverse and forward mode, are C++: csrc/autograd.cpp)."""
import torch
from torch._prims_common import suggest_memory_format

from ._vmap import fold_batch, front, unfold_batch

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


# ---- upsample_taps2d: the resize-convolution's upsampling half (Note [mix first]) -------------------

def _taps_out(size, s, k, lo, hi):
    return s * size + lo + hi - k + 1


@torch.library.register_fake("tconv::upsample_taps2d")
def _taps_fake(taps, bias, kernel_size, scale, padding, mode, channels_last=False):
    torch._check(taps.dim() == 5, lambda: f"upsample_taps2d: taps must be 5-D, got {taps.dim()}-D")
    torch._check(taps.shape[1] == kernel_size[0] * kernel_size[1],
                 lambda: f"upsample_taps2d: taps has {taps.shape[1]} planes for a {list(kernel_size)} kernel")
    ho = _taps_out(taps.shape[3], scale[0], kernel_size[0], padding[0], padding[1])
    wo = _taps_out(taps.shape[4], scale[1], kernel_size[1], padding[2], padding[3])
    torch._check(ho > 0 and wo > 0, lambda: "upsample_taps2d: the kernel is larger than the padded upsampled input")
    out = taps.new_empty((taps.shape[0], taps.shape[2], ho, wo))
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


@torch.library.register_fake("tconv::upsample_taps2d_backward")
def _taps_backward_fake(grad_output, kernel_size, scale, padding, mode, input_hw):
    torch._check(grad_output.dim() == 4, lambda: f"expected a 4-D grad_output, got {grad_output.dim()}-D")
    n, c, kk = grad_output.shape[0], grad_output.shape[1], kernel_size[0] * kernel_size[1]
    if grad_output.device.type == "cpu" and grad_output.is_contiguous(memory_format=torch.channels_last) \
            and not grad_output.is_contiguous():
        # pixel-major taps, as the CPU kernel returns them for a channels_last gradient
        return grad_output.new_empty((n, *input_hw, kk, c)).permute(0, 3, 4, 1, 2)
    return grad_output.new_empty((n, kk, c, *input_hw))


def _taps_vmap(info, in_dims, taps, bias, kernel_size, scale, padding, mode, channels_last=False):
    # Each image is its own problem: the vmapped dimension folds into N; a per-sample bias is
    # added after the bias-free call.
    batch = info.batch_size
    if in_dims[1] is None:
        out = ops.upsample_taps2d(fold_batch(taps, in_dims[0], batch), bias, kernel_size, scale, padding, mode,
                                  channels_last)
        return unfold_batch(out, batch), 0
    out = unfold_batch(ops.upsample_taps2d(fold_batch(taps, in_dims[0], batch), None, kernel_size, scale,
                                           padding, mode, channels_last), batch)
    return out + front(bias, in_dims[1], batch)[:, None, :, None, None], 0


def _taps_backward_vmap(info, in_dims, grad_output, kernel_size, scale, padding, mode, input_hw):
    batch = info.batch_size
    out = ops.upsample_taps2d_backward(fold_batch(grad_output, in_dims[0], batch), kernel_size, scale, padding,
                                       mode, input_hw)
    return unfold_batch(out, batch), 0


torch.library.register_vmap("tconv::upsample_taps2d", _taps_vmap)
torch.library.register_vmap("tconv::upsample_taps2d_backward", _taps_backward_vmap)


@torch.library.register_fake("tconv::_upsample_conv2d_mixed")
def _mixed_fake(input, weight, bias, scale, padding, mode):
    torch._check(input.dim() == 4 and weight.dim() == 4, lambda: "expected 4-D input and weight")
    ho = _taps_out(input.shape[2], scale[0], weight.shape[2], padding[0], padding[1])
    wo = _taps_out(input.shape[3], scale[1], weight.shape[3], padding[2], padding[3])
    torch._check(ho > 0 and wo > 0, lambda: "the kernel is larger than the padded upsampled input")
    return _empty_like_format(input, (input.shape[0], weight.shape[0], ho, wo))


@torch.library.register_fake("tconv::_upsample_conv2d_mixed_backward")
def _mixed_backward_fake(grad_output, input, weight, scale, padding, mode, output_mask):
    torch._check(input.dim() == 4 and weight.dim() == 4 and grad_output.dim() == 4,
                 lambda: "expected 4-D grad_output, input and weight")
    grad_input = _empty_like_format(input, input.shape) if output_mask[0] else input.new_empty(0)
    grad_weight = weight.new_empty(weight.shape) if output_mask[1] else weight.new_empty(0)
    return grad_input, grad_weight
