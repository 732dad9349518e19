"""Fake (meta) kernels and autograd formulas of the tconv::gram_matrix* operators.

For G = s X X^T the backward is B(dG, X) = s (dG + dG^T) X (tconv::gram_matrix_backward). B is
linear in each argument, with
    d/dX  <H, B(dG, X)> = B(dG, H)                 (s (dG + dG^T) is symmetric)
    d/ddG <H, B(dG, X)> = s (H X^T + X H^T)
so double backward (gradgradcheck) needs the backward op again and two matmuls.
"""
import torch

ops = torch.ops.tconv


def gram_scale(features, normalize):
    """s of the ops: 1 / (C * L) when normalizing a non-empty (N, C, L), else 1."""
    count = features.shape[1] * features.shape[2]
    return 1.0 / count if normalize and count > 0 else 1.0


# ---- fake kernels ---------------------------------------------------------------------------------

@torch.library.register_fake("tconv::gram_matrix")
def _gram_matrix_fake(features, normalize):
    torch._check(features.dim() == 3, lambda: "gram_matrix: expected features of shape (N, C, L)")
    n, c, _ = features.shape
    return features.new_empty((n, c, c))


@torch.library.register_fake("tconv::gram_matrix_backward")
def _gram_matrix_backward_fake(grad_gram, features, normalize):
    return features.new_empty(features.shape)  # contiguous


# ---- autograd ---------------------------------------------------------------------------------------

def _forward_setup(ctx, inputs, output):
    features, normalize = inputs
    ctx.save_for_backward(features)
    ctx.normalize = normalize


def _forward_backward(ctx, grad):
    (features,) = ctx.saved_tensors
    return ops.gram_matrix_backward(grad, features, ctx.normalize), None


def _backward_setup(ctx, inputs, output):
    grad_gram, features, normalize = inputs
    ctx.save_for_backward(grad_gram, features)
    ctx.normalize = normalize


def _backward_backward(ctx, grad):
    grad_gram, features = ctx.saved_tensors
    d_grad_gram = d_features = None
    if ctx.needs_input_grad[0]:
        cross = torch.matmul(grad, features.mT)
        d_grad_gram = (cross + cross.mT) * gram_scale(features, ctx.normalize)
    if ctx.needs_input_grad[1]:
        d_features = ops.gram_matrix_backward(grad_gram, grad, ctx.normalize)
    return d_grad_gram, d_features, None


torch.library.register_autograd("tconv::gram_matrix", _forward_backward, setup_context=_forward_setup)
torch.library.register_autograd("tconv::gram_matrix_backward", _backward_backward,
                                setup_context=_backward_setup)
