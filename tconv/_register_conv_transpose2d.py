"""Fake (meta) kernels and autograd formulas of the tconv::conv_transpose2d* operators.

The three backward ops are linear in each argument and adjoint to the forward, so each one's
derivative is again one of the four ops: double backward (gradgradcheck) needs nothing else.
"""
import torch
from torch._prims_common import suggest_memory_format

ops = torch.ops.tconv


def _out_size(size, kernel, stride, padding, output_padding, dilation):
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def _output_padding_for(out_hw, in_hw, kernel_hw, stride, padding, dilation):
    """The output_padding that makes conv_transpose2d of an in_hw input exactly out_hw."""
    return [out_hw[d] - _out_size(in_hw[d], kernel_hw[d], stride[d], padding[d], 0, dilation[d])
            for d in range(2)]


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


# ---- autograd ---------------------------------------------------------------------------------------

def _forward_setup(ctx, inputs, output):
    input, weight, bias, stride, padding, _output_padding, groups, dilation = inputs
    ctx.save_for_backward(input, weight)
    ctx.conv = (stride, padding, groups, dilation)
    ctx.has_bias = bias is not None


def _forward_backward(ctx, grad):
    input, weight = ctx.saved_tensors
    stride, padding, groups, dilation = ctx.conv
    grad_input = grad_weight = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_input = ops.conv_transpose2d_backward_input(
            grad, weight, stride, padding, groups, dilation, list(input.shape[2:]))
    if ctx.needs_input_grad[1]:
        grad_weight = ops.conv_transpose2d_backward_weight(
            grad, input, list(weight.shape[2:]), stride, padding, groups, dilation)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_bias = ops.conv_transpose2d_backward_bias(grad)
    return grad_input, grad_weight, grad_bias, None, None, None, None, None


def _backward_input_setup(ctx, inputs, output):
    grad_output, weight, stride, padding, groups, dilation, _input_hw = inputs
    ctx.save_for_backward(grad_output, weight)
    ctx.conv = (stride, padding, groups, dilation)


def _backward_input_backward(ctx, grad):
    # grad_input = C(grad_output, weight), the adjoint of the forward in its first argument.
    grad_output, weight = ctx.saved_tensors
    stride, padding, groups, dilation = ctx.conv
    d_grad_output = d_weight = None
    if ctx.needs_input_grad[0]:
        op = _output_padding_for(grad_output.shape[2:], grad.shape[2:], weight.shape[2:],
                                 stride, padding, dilation)
        d_grad_output = ops.conv_transpose2d(grad, weight, None, stride, padding, op, groups, dilation)
    if ctx.needs_input_grad[1]:
        d_weight = ops.conv_transpose2d_backward_weight(
            grad_output, grad, list(weight.shape[2:]), stride, padding, groups, dilation)
    return d_grad_output, d_weight, None, None, None, None, None


def _backward_weight_setup(ctx, inputs, output):
    grad_output, input, _kernel_hw, stride, padding, groups, dilation = inputs
    ctx.save_for_backward(grad_output, input)
    ctx.conv = (stride, padding, groups, dilation)


def _backward_weight_backward(ctx, grad):
    # grad_weight = W(grad_output, input): <grad, W(g, x)> = <g, T(x, grad)> = <C(g, grad), x>.
    grad_output, input = ctx.saved_tensors
    stride, padding, groups, dilation = ctx.conv
    d_grad_output = d_input = None
    if ctx.needs_input_grad[0]:
        op = _output_padding_for(grad_output.shape[2:], input.shape[2:], grad.shape[2:],
                                 stride, padding, dilation)
        d_grad_output = ops.conv_transpose2d(input, grad, None, stride, padding, op, groups, dilation)
    if ctx.needs_input_grad[1]:
        d_input = ops.conv_transpose2d_backward_input(
            grad_output, grad, stride, padding, groups, dilation, list(input.shape[2:]))
    return d_grad_output, d_input, None, None, None, None, None


def _backward_bias_setup(ctx, inputs, output):
    ctx.grad_output_shape = inputs[0].shape


def _backward_bias_backward(ctx, grad):
    return grad[None, :, None, None].expand(ctx.grad_output_shape)


torch.library.register_autograd("tconv::conv_transpose2d", _forward_backward,
                                setup_context=_forward_setup)
torch.library.register_autograd("tconv::conv_transpose2d_backward_input", _backward_input_backward,
                                setup_context=_backward_input_setup)
torch.library.register_autograd("tconv::conv_transpose2d_backward_weight", _backward_weight_backward,
                                setup_context=_backward_weight_setup)
torch.library.register_autograd("tconv::conv_transpose2d_backward_bias", _backward_bias_backward,
                                setup_context=_backward_bias_setup)
