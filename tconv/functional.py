"""tconv's functional API: PyTorch's signatures, tconv's kernels (torch.ops.tconv.*)."""
import torch

from ._pair import pair


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Drop-in for ``torch.nn.functional.conv_transpose2d`` (batched 4-D or unbatched 3-D input)."""
    if input.dim() not in (3, 4):
        raise RuntimeError("Expected 3D (unbatched) or 4D (batched) input to conv_transpose2d, "
                           f"but got input of size: {list(input.shape)}")
    unbatched = input.dim() == 3
    out = torch.ops.tconv.conv_transpose2d(
        input.unsqueeze(0) if unbatched else input, weight, bias, pair(stride, "stride"),
        pair(padding, "padding"), pair(output_padding, "output_padding"), groups,
        pair(dilation, "dilation"))
    return out.squeeze(0) if unbatched else out


def gram_matrix(input, normalize=True):
    """Gram matrix of feature maps, the style representation of neural style transfer (D2L 13.12).

    ``input`` is read by its number of dimensions:

    * 4-D ``(N, C, H, W)``: a batch of feature maps -> ``(N, C, C)``
    * 3-D ``(C, H, W)``: one feature map -> ``(C, C)``. 3-D is always an unbatched image, as for
      every image op in PyTorch; a batch of feature matrices ``(N, C, L)`` goes in as
      ``input.unsqueeze(-1)`` (a free view, ``(N, C, L, 1)``).
    * 2-D ``(C, L)``: one feature matrix -> ``(C, C)``

    With ``X`` the ``(C, H*W)`` reshape of one map, ``G = X X^T / (C*H*W)`` when ``normalize``
    (the D2L convention), else the raw ``X X^T``. Only one triangle is computed, so ``G`` is exactly
    symmetric; float16 / bfloat16 accumulate and scale in float32 before rounding. An empty map
    (``H*W == 0``) has an all-zero Gram.
    """
    if input.dim() not in (2, 3, 4):
        raise RuntimeError("gram_matrix: expected 2-D (C, L), 3-D (C, H, W) or 4-D (N, C, H, W) "
                           f"input, but got input of size: {list(input.shape)}")
    if input.dim() == 4:
        return torch.ops.tconv.gram_matrix(input.flatten(2), normalize)
    features = input.flatten(1) if input.dim() == 3 else input
    return torch.ops.tconv.gram_matrix(features.unsqueeze(0), normalize).squeeze(0)


def style_loss(input, target_gram, normalize=True):
    """The D2L style loss: mean squared difference between ``gram_matrix(input, normalize)`` and
    ``target_gram`` (the style image's Gram, a constant: it is detached as in D2L)."""
    return torch.square(gram_matrix(input, normalize) - target_gram.detach()).mean()
