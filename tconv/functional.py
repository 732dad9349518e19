"""tconv's functional API: PyTorch's signatures, tconv's kernels (torch.ops.tconv.*)."""
import torch

try:
    import numpy as np
except ImportError:  # numpy is optional for sizes given as numpy integers
    np = None

from ._pair import ntuple, pair


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


def _conv_transpose_nd(name, dims, op, input, weight, bias, stride, padding, output_padding,
                       groups, dilation):
    """The 1-D / 3-D wrappers: unbatched input gets a batch of one, as PyTorch's does."""
    if input.dim() not in (dims + 1, dims + 2):
        raise RuntimeError(f"Expected {dims + 1}D (unbatched) or {dims + 2}D (batched) input to {name}, "
                           f"but got input of size: {list(input.shape)}")
    unbatched = input.dim() == dims + 1
    out = op(input.unsqueeze(0) if unbatched else input, weight, bias, ntuple(stride, dims, "stride"),
             ntuple(padding, dims, "padding"), ntuple(output_padding, dims, "output_padding"), groups,
             ntuple(dilation, dims, "dilation"))
    return out.squeeze(0) if unbatched else out


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Drop-in for ``torch.nn.functional.conv_transpose1d`` (batched 3-D or unbatched 2-D input):
    tconv's 2-D kernels on (N, C, 1, L) (csrc/conv_transpose_nd.cpp)."""
    return _conv_transpose_nd("conv_transpose1d", 1, torch.ops.tconv.conv_transpose1d, input, weight,
                              bias, stride, padding, output_padding, groups, dilation)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Drop-in for ``torch.nn.functional.conv_transpose3d`` (batched 5-D or unbatched 4-D input,
    contiguous or channels_last_3d): one 2-D transposed convolution of the depth slices with the
    depth taps as extra output channels, then a fixed-order sum along depth
    (csrc/conv_transpose_nd.cpp)."""
    return _conv_transpose_nd("conv_transpose3d", 3, torch.ops.tconv.conv_transpose3d, input, weight,
                              bias, stride, padding, output_padding, groups, dilation)


_INTERPOLATE_MODES = ("bilinear", "bicubic", "linear", "trilinear")
# The input rank each mode takes (F.interpolate's rule).
_MODE_DIMS = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5}


def _is_integer(x):
    """PyTorch's check for sizes: int, SymInt, numpy integer, or an integer tensor."""
    if isinstance(x, (int, torch.SymInt)):
        return True
    if np is not None and isinstance(x, np.integer):
        return True
    return isinstance(x, torch.Tensor) and not x.is_floating_point()


def _output_size_and_scales(input, size, scale_factor, recompute_scale_factor):
    """PyTorch's interpolate rules: the output size, and the scale factors the kernel must use
    in its source-index computation (None when derived from the sizes)."""
    dim = input.dim() - 2
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        if isinstance(size, (list, tuple)):
            if len(size) != dim:
                raise ValueError(
                    "Input and output must have the same number of spatial dimensions, but got "
                    f"input with spatial dimensions of {list(input.shape[2:])} and output size of "
                    f"{size}. Please provide input tensor in (N, C, H, W) format and output size in "
                    "(H, W) format.")
            if not all(_is_integer(s) for s in size):
                raise TypeError("expected size to be one of int or Tuple[int] or Tuple[int, int], "
                                f"but got size with types {[type(s) for s in size]}")
            output_size = [int(s) for s in size]
        else:
            output_size = [int(size)] * dim
        scales = None
    elif scale_factor is not None:
        if isinstance(scale_factor, (list, tuple)):
            if len(scale_factor) != dim:
                raise ValueError(
                    "Input and scale_factor must have the same number of spatial dimensions, but "
                    f"got input with spatial dimensions of {list(input.shape[2:])} and scale_factor "
                    f"of shape {scale_factor}. Please provide input tensor in (N, C, H, W) format "
                    "and scale_factor in (s_h, s_w) format.")
            scales = [float(s) for s in scale_factor]
        else:
            scales = [float(scale_factor)] * dim
        # Truncation like PyTorch (int(in * scale) in double precision).
        output_size = [int(input.shape[i + 2] * scales[i]) for i in range(dim)]
    else:
        raise ValueError("either size or scale_factor should be defined")
    if recompute_scale_factor and size is not None:
        raise ValueError("recompute_scale_factor is not meaningful with an explicit size.")
    if recompute_scale_factor:
        scales = None  # the kernel derives the scale from the (integer) sizes
    return output_size, scales


def interpolate(input, size=None, scale_factor=None, mode="bilinear", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """``torch.nn.functional.interpolate`` for modes 'bilinear' and 'bicubic' (A = -0.75) on 4-D
    (N, C, H, W) input, 'linear' on 3-D (N, C, L) and 'trilinear' on 5-D (N, C, D, H, W), with
    tconv's kernels. Same arguments and rules as PyTorch: size or scale_factor (a number or one per
    spatial axis), the given scale_factor used in the source-index computation unless
    recompute_scale_factor=True, align_corners, and antialias=True (PyTorch's filter, meaningful
    when downsampling; 4-D only). The output keeps the input's memory format."""
    if mode not in _INTERPOLATE_MODES:
        raise ValueError("tconv.interpolate supports mode 'bilinear', 'bicubic', 'linear' or "
                         f"'trilinear', got mode={mode!r} (use torch.nn.functional.interpolate for "
                         "the others)")
    if align_corners is None:
        align_corners = False
    output_size, scales = _output_size_and_scales(input, size, scale_factor, recompute_scale_factor)
    if antialias and input.dim() != 4:
        raise ValueError("Anti-alias option is restricted to bilinear, bicubic, and lanczos modes "
                         "and requires a 4-D tensor as input")
    if input.dim() != _MODE_DIMS[mode]:
        raise NotImplementedError(f"Got {input.dim()}D input, but {mode} mode needs "
                                  f"{_MODE_DIMS[mode]}D input")
    if mode == "linear":
        return torch.ops.tconv.upsample_linear1d(input, output_size, bool(align_corners),
                                                 scales[0] if scales is not None else None)
    if mode == "trilinear":
        return torch.ops.tconv.upsample_trilinear3d(input, output_size, bool(align_corners),
                                                    *(scales if scales is not None else (None,) * 3))
    op = torch.ops.tconv.upsample_bilinear2d if mode == "bilinear" else torch.ops.tconv.upsample_bicubic2d
    scale_h, scale_w = scales if scales is not None else (None, None)
    return op(input, output_size, bool(align_corners), bool(antialias), scale_h, scale_w)

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
