"""Fake (meta) kernels and autograd formulas of the tconv::upsample_* operators.

Each forward op is linear in its input and its backward op is the adjoint, so the derivative of
the backward op (in grad_output) is the forward op again: double backward needs nothing else.
"""
import torch
from torch._prims_common import suggest_memory_format

ops = torch.ops.tconv
MODES = ("bilinear", "bicubic")


def _forward_op(mode):
    return getattr(ops, f"upsample_{mode}2d")


def _backward_op(mode):
    return getattr(ops, f"upsample_{mode}2d_backward")


def _empty_like_format(like, shape):
    return like.new_empty(shape).contiguous(memory_format=suggest_memory_format(like))


def _register(mode):
    forward, backward = _forward_op(mode), _backward_op(mode)

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

    def _forward_setup(ctx, inputs, output):
        input, _output_size, align_corners, antialias, scale_h, scale_w = inputs
        ctx.input_hw = list(input.shape[2:])
        ctx.params = (align_corners, antialias, scale_h, scale_w)

    def _forward_backward(ctx, grad):
        return backward(grad, ctx.input_hw, *ctx.params), None, None, None, None, None

    def _backward_setup(ctx, inputs, output):
        grad_output, _input_size, align_corners, antialias, scale_h, scale_w = inputs
        ctx.output_hw = list(grad_output.shape[2:])
        ctx.params = (align_corners, antialias, scale_h, scale_w)

    def _backward_backward(ctx, grad):
        # grad_input = A^T grad_output, so its derivative applied to grad is A grad: the forward.
        return forward(grad, ctx.output_hw, *ctx.params), None, None, None, None, None

    torch.library.register_autograd(f"tconv::upsample_{mode}2d", _forward_backward,
                                    setup_context=_forward_setup)
    torch.library.register_autograd(f"tconv::upsample_{mode}2d_backward", _backward_backward,
                                    setup_context=_backward_setup)


for _mode in MODES:
    _register(_mode)
