"""Fake (meta) kernels and batching rules of the tconv::conv_transpose2d* operators (their autograd
formulas, reverse and forward mode, are C++: csrc/autograd.cpp)."""
import torch
from torch._prims_common import suggest_memory_format

from ._vmap import fold_batch, fold_channels, front, unfold_batch, unfold_channels

ops = torch.ops.tconv


def _out_size(size, kernel, stride, padding, output_padding, dilation):
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def _conv_memory_format(a, b):
    cl = torch.channels_last
    return cl if cl in (suggest_memory_format(a), suggest_memory_format(b)) else torch.contiguous_format


# ---- fake kernels ---------------------------------------------------------------------------------

@torch.library.register_fake("tconv::conv_transpose2d")
def _conv_transpose2d_fake(input, weight, bias, stride, padding, output_padding, groups, dilation):
    n, _, h, w = input.shape
    ho = _out_size(h, weight.shape[2], stride[0], padding[0], output_padding[0], dilation[0])
    wo = _out_size(w, weight.shape[3], stride[1], padding[1], output_padding[1], dilation[1])
    return input.new_empty((n, weight.shape[1] * groups, ho, wo)).contiguous(
        memory_format=_conv_memory_format(input, weight))


@torch.library.register_fake("tconv::conv_transpose2d_backward_input")
def _backward_input_fake(grad_output, weight, stride, padding, groups, dilation, input_hw):
    shape = (grad_output.shape[0], weight.shape[0], input_hw[0], input_hw[1])
    return grad_output.new_empty(shape).contiguous(
        memory_format=_conv_memory_format(grad_output, weight))


@torch.library.register_fake("tconv::conv_transpose2d_backward_weight")
def _backward_weight_fake(grad_output, input, kernel_hw, stride, padding, groups, dilation):
    shape = (input.shape[1], grad_output.shape[1] // groups, kernel_hw[0], kernel_hw[1])
    return grad_output.new_empty(shape)


@torch.library.register_fake("tconv::conv_transpose2d_backward_bias")
def _backward_bias_fake(grad_output):
    return grad_output.new_empty((grad_output.shape[1],))


# ---- batching rules (vmap) ---------------------------------------------------------------------------
# A vmapped input (or grad_output) alone folds into N. A vmapped weight makes each sample its own
# convolution: the samples become groups of one grouped convolution, channels (N, B*C, H, W) and
# weight (B*Cin, Cout/groups, kH, kW), groups * B.

@torch.library.register_vmap("tconv::conv_transpose2d")
def _conv_transpose2d_vmap(info, in_dims, input, weight, bias, stride, padding, output_padding,
                           groups, dilation):
    batch = info.batch_size
    x_dim, w_dim, b_dim = in_dims[:3]
    if w_dim is None:
        # (only the bias can be vmapped when the input is not: one convolution, B biases)
        y = ops.conv_transpose2d(input if x_dim is None else fold_batch(input, x_dim, batch), weight,
                                 bias if b_dim is None else None, stride, padding, output_padding,
                                 groups, dilation)
        y = unfold_batch(y, batch) if x_dim is not None else y.expand(batch, *y.shape)
    else:
        y = unfold_channels(ops.conv_transpose2d(
            fold_channels(input, x_dim, batch), fold_batch(weight, w_dim, batch),
            None if bias is None or b_dim is not None else bias.repeat(batch),
            stride, padding, output_padding, groups * batch, dilation), batch)
    if b_dim is not None:
        y = y + front(bias, b_dim, batch)[:, None, :, None, None]
    return y, 0


@torch.library.register_vmap("tconv::conv_transpose2d_backward_input")
def _backward_input_vmap(info, in_dims, grad_output, weight, stride, padding, groups, dilation,
                         input_hw):
    batch = info.batch_size
    go_dim, w_dim = in_dims[:2]
    if w_dim is None:
        gi = ops.conv_transpose2d_backward_input(fold_batch(grad_output, go_dim, batch), weight,
                                                 stride, padding, groups, dilation, input_hw)
        return unfold_batch(gi, batch), 0
    gi = ops.conv_transpose2d_backward_input(
        fold_channels(grad_output, go_dim, batch), fold_batch(weight, w_dim, batch), stride,
        padding, groups * batch, dilation, input_hw)
    return unfold_channels(gi, batch), 0


@torch.library.register_vmap("tconv::conv_transpose2d_backward_weight")
def _backward_weight_vmap(info, in_dims, grad_output, input, kernel_hw, stride, padding, groups,
                          dilation):
    # Per-sample weight gradients (vmap of grad): one grouped weight gradient.
    batch = info.batch_size
    gw = ops.conv_transpose2d_backward_weight(
        fold_channels(grad_output, in_dims[0], batch), fold_channels(input, in_dims[1], batch),
        kernel_hw, stride, padding, groups * batch, dilation)
    return unfold_batch(gw, batch), 0


@torch.library.register_vmap("tconv::conv_transpose2d_backward_bias")
def _backward_bias_vmap(info, in_dims, grad_output):
    batch = info.batch_size
    gb = ops.conv_transpose2d_backward_bias(fold_channels(grad_output, in_dims[0], batch))
    return unfold_batch(gb, batch), 0


# ---- pad_fold2d (padding_mode of the transposed convolution) ------------------------------------

@torch.library.register_fake("tconv::pad_fold2d")
def _pad_fold2d_fake(input, pad, mode):
    torch._check(input.dim() == 4, lambda: "pad_fold2d: expected a 4-D input")
    n, c, h, w = input.shape
    shape = (n, c, h - pad[2] - pad[3], w - pad[0] - pad[1])
    cl = suggest_memory_format(input) == torch.channels_last
    return input.new_empty(shape).contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)


@torch.library.register_vmap("tconv::pad_fold2d")
def _pad_fold2d_vmap(info, in_dims, input, pad, mode):
    size = info.batch_size
    return unfold_batch(ops.pad_fold2d(fold_batch(input, in_dims[0], size), pad, mode), size), 0


@torch.library.register_fake("tconv::pad_fold2d_frame")
def _pad_fold2d_frame_fake(center, top, bottom, left, right, pad, mode):
    torch._check(center.dim() == 4, lambda: "pad_fold2d_frame: expected a 4-D center")
    cl = suggest_memory_format(center) == torch.channels_last
    return center.new_empty(center.shape).contiguous(
        memory_format=torch.channels_last if cl else torch.contiguous_format)


@torch.library.register_vmap("tconv::pad_fold2d_frame")
def _pad_fold2d_frame_vmap(info, in_dims, center, top, bottom, left, right, pad, mode):
    size = info.batch_size
    pieces = [fold_batch(t, d, size) for t, d in zip((center, top, bottom, left, right), in_dims)]
    return unfold_batch(ops.pad_fold2d_frame(*pieces, pad, mode), size), 0


@torch.library.register_fake("tconv::_conv_transpose2d_padded")
def _conv_transpose2d_padded_fake(input, weight, bias, stride, padding, output_padding, groups, dilation,
                                  padding_mode):
    return _conv_transpose2d_fake(input, weight, bias, stride, padding, output_padding, groups, dilation)


@torch.library.register_fake("tconv::pad_fold2d_frame_")
def _pad_fold2d_frame_inplace_fake(center, top, bottom, left, right, pad, mode):
    return None
