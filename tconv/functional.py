"""tconv's functional API: PyTorch's signatures, tconv's kernels (torch.ops.tconv.*)."""
import torch

try:
    import numpy as np
except ImportError:  # numpy is optional for sizes given as numpy integers
    np = None

from . import _C
from ._pair import ntuple, pair


PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _conv_transpose_nd(name, dims, op, input, weight, bias, stride, padding, output_padding,
                       groups, dilation):
    """The 1-D / 2-D / 3-D wrappers: unbatched input gets a batch of one, as PyTorch's does."""
    if input.dim() not in (dims + 1, dims + 2):
        raise RuntimeError(f"Expected {dims + 1}D (unbatched) or {dims + 2}D (batched) input to {name}, "
                           f"but got input of size: {list(input.shape)}")
    unbatched = input.dim() == dims + 1
    out = op(input.unsqueeze(0) if unbatched else input, weight, bias, ntuple(stride, dims, "stride"),
             ntuple(padding, dims, "padding"), ntuple(output_padding, dims, "output_padding"), groups,
             ntuple(dilation, dims, "dilation"))
    return out.squeeze(0) if unbatched else out


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, padding_mode="zeros"):
    """Drop-in for ``torch.nn.functional.conv_transpose2d`` (batched 4-D or unbatched 3-D input).

    ``padding_mode`` (not in PyTorch, whose ConvTranspose2d accepts only 'zeros'): for 'reflect',
    'replicate' or 'circular' the result is the adjoint of ``y -> conv2d(F.pad(y, padding,
    mode=padding_mode), weight, stride=stride, dilation=dilation, groups=groups)`` evaluated at
    ``input`` (exactly the input-gradient of PyTorch's padded conv2d at grad_output = input), plus
    the bias; the output size is the one of 'zeros' with the same arguments (output_padding
    included). Computed as the transposed convolution with padding 0 (the full output) whose
    border strips are then added, in a fixed order, onto the output: wrapped around (circular),
    mirrored without the edge (reflect), or onto the edge row/column (replicate). Paddings F.pad
    rejects for the output's size raise F.pad's error."""
    if padding_mode != "zeros":
        return _conv_transpose2d_padded(input, weight, bias, stride, padding, output_padding, groups,
                                        dilation, padding_mode)
    return _conv_transpose_nd("conv_transpose2d", 2, torch.ops.tconv.conv_transpose2d, input, weight, bias,
                              stride, padding, output_padding, groups, dilation)


def _full_rows(x, w, stride, dilation, groups, dim, lo, count, pad_other, output_padding_other, other_size):
    """Rows [lo, lo + count) along dim (2: H, 3: W) of the padding-0 transposed convolution's output
    (the other axis with padding pad_other and its output_padding), from the input rows and kernel
    taps that reach them only: a thin strip of the frame, a small fraction of the convolution.
    other_size: the strip's size along the other axis. Columns are computed as rows of the transposed
    problem (the kernels are faster on a 1 x W strip than on an H x 1 one)."""
    if dim == 3:
        return _full_rows(x.transpose(2, 3), w.transpose(2, 3), stride[::-1], dilation[::-1], groups, 2, lo, count,
                          pad_other, output_padding_other, other_size).transpose(2, 3)
    other = 5 - dim
    n_in, k, s, d = x.size(dim), w.size(dim), stride[dim - 2], dilation[dim - 2]
    i0, i1 = max(0, -(-(lo - d * (k - 1)) // s)), min(n_in, (lo + count - 1) // s + 1)
    t0, t1 = max(0, -(-(lo - (n_in - 1) * s) // d)), min(k, (lo + count - 1) // d + 1)
    strides, paddings, output_paddings = [0, 0], [0, 0], [0, 0]
    strides[dim - 2], strides[other - 2] = s, stride[other - 2]
    paddings[other - 2], output_paddings[other - 2] = pad_other, output_padding_other
    if count == 0 or i0 >= i1 or t0 >= t1:  # no term reaches these rows
        shape = [x.size(0), w.size(1) * groups, 0, 0]
        shape[dim], shape[other] = count, other_size
        return x.new_zeros(shape)
    part = torch.ops.tconv.conv_transpose2d(x.narrow(dim, i0, i1 - i0), w.narrow(dim, t0, t1 - t0), None, strides,
                                            paddings, output_paddings, groups, dilation)
    at = i0 * s + t0 * d  # the full output's row of part's first row
    if at != lo or part.size(dim) != count:  # zeros before / after, or rows past the strip cropped
        pads = [0, 0, 0, 0]
        pads[2 * (3 - dim)], pads[2 * (3 - dim) + 1] = at - lo, lo + count - at - part.size(dim)
        part = torch.nn.functional.pad(part, pads)
    return part


def _check_padding_mode(padding_mode):
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, but got padding_mode='{padding_mode}'")


def _conv_transpose2d_padded(input, weight, bias, stride, padding, output_padding, groups, dilation,
                             padding_mode):
    """padding_mode != 'zeros': the adjoint of F.pad(mode) (tconv::pad_fold2d*, csrc/cpu/pad_fold2d.cpp,
    csrc/cuda/pad_fold2d.cu: one pass that sums the border onto the interior) applied to the
    transposed convolution with padding 0 (the full output). Two forms of the full output:
    - the full output itself (padding 0, no bias), then pad_fold2d, then the bias: when something
      is differentiated (its backward is F.pad(grad, mode) then the padding-0 convolution's
      backward, i.e. conv2d(F.pad(grad, mode), w), the definition itself; the strips' backward
      would add a zero-filled input-sized gradient per strip), and when the padding-0 convolution
      costs what the zeros one does (`_full_costs_no_more`: strided layers);
    - else (stride 1 without gradients) the zeros-mode output (its interior, with the bias) and the
      four strips of its frame, each from the few input rows and kernel taps that reach it
      (`_full_rows`), folded by pad_fold2d_frame."""
    _check_padding_mode(padding_mode)
    if input.dim() == 3 and weight.dim() == 4:
        return _conv_transpose2d_padded(input.unsqueeze(0), weight, bias, stride, padding, output_padding,
                                        groups, dilation, padding_mode).squeeze(0)
    args = (stride, padding, output_padding, groups, dilation)
    if input.dim() != 4 or weight.dim() != 4:
        return conv_transpose2d(input, weight, bias, *args)  # the zeros op's error
    (ph, pw), (sh, sw) = pair(padding, "padding"), pair(stride, "stride")
    (oph, opw), (dh, dw) = pair(output_padding, "output_padding"), pair(dilation, "dilation")
    h, w = input.shape[-2:]
    kh, kw = weight.shape[-2:]
    hout = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    wout = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    if (ph == 0 and pw == 0) or ph < 0 or pw < 0 or hout <= 0 or wout <= 0:
        return conv_transpose2d(input, weight, bias, *args)  # the zeros result, or its error
    # F.pad's own checks (and error) for this padding of an output of this size.
    torch.nn.functional.pad(torch.empty(1, 1, hout, wout, device="meta"), (pw, pw, ph, ph), mode=padding_mode)
    st, dl, pad = [sh, sw], [dh, dw], [pw, pw, ph, ph]
    ops = torch.ops.tconv
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (input, weight, bias))
    if not grad and _folds_in_tiles(input, weight, bias):
        # One call, the frame folded inside the direct tiles (Note [folded frame]).
        return ops._conv_transpose2d_padded(input, weight, bias, st, [ph, pw], [oph, opw], groups, dl, padding_mode)
    if grad or _full_costs_no_more(hout, wout, ph, pw, sh, sw):
        full = ops.conv_transpose2d(input, weight, None, st, [0, 0], [oph, opw], groups, dl)
        out = ops.pad_fold2d(full, pad, padding_mode)
        if bias is None:
            return out
        if grad or torch._C._functorch.is_functorch_wrapped_tensor(bias):
            return out + bias.view(-1, 1, 1)
        return out.add_(bias.view(-1, 1, 1))  # out is fresh: no second output-sized tensor
    center = ops.conv_transpose2d(input, weight, bias, st, [ph, pw], [oph, opw], groups, dl)
    top = _full_rows(input, weight, st, dl, groups, 2, 0, ph, 0, opw, wout + 2 * pw)
    bottom = _full_rows(input, weight, st, dl, groups, 2, ph + hout, ph, 0, opw, wout + 2 * pw)
    left = _full_rows(input, weight, st, dl, groups, 3, 0, pw, ph, oph, hout)
    right = _full_rows(input, weight, st, dl, groups, 3, pw + wout, pw, ph, oph, hout)
    if _plain_eager(center, input, weight, bias):
        ops.pad_fold2d_frame_(center, top, bottom, left, right, pad, padding_mode)  # no output-sized copy
        return center
    return ops.pad_fold2d_frame(center, top, bottom, left, right, pad, padding_mode)


def _eager_mode():
    """Eager mode outside compilation, forward AD and dispatch modes (which take the functional,
    differentiable ops)."""
    return (not torch.compiler.is_compiling() and torch.autograd.forward_ad._current_level < 0
            and torch.utils._python_dispatch._get_current_dispatch_mode() is None)


def _plain_eager(out, *tensors):
    """Whether `out` (a fresh op output) may be folded in place: a plain float32/float64 tensor in
    eager mode, outside torch.func transforms, forward AD, dispatch modes and compilation (which
    take the functional op)."""
    if not _eager_mode() or out.dtype not in (torch.float32, torch.float64) or type(out) is not torch.Tensor:
        return False
    if torch._C._functorch.is_functorch_wrapped_tensor(out) or any(
            t is not None and torch._C._functorch.is_functorch_wrapped_tensor(t) for t in tensors):
        return False
    memory_format = torch.channels_last if out.is_contiguous(memory_format=torch.channels_last) and \
        not out.is_contiguous() else torch.contiguous_format
    return out.is_contiguous(memory_format=memory_format)


def _folds_in_tiles(input, weight, bias):
    """Whether tconv::_conv_transpose2d_padded folds padding_mode's frame inside its kernels (into
    Winograd's output or the direct tiles' sums): a plain eager CPU float32 call on the AVX-512
    or AVX2 path with whole 16-channel vectors of outputs per group (the forward's use_winograd and
    use_direct_tiles, csrc/cpu/direct_tiles.h; other shapes the op computes as the definition,
    slower than the strips below)."""
    if input.device.type != "cpu" or input.dtype != torch.float32 or not _eager_mode():
        return False
    if any(t is not None and (type(t) is not torch.Tensor or torch._C._functorch.is_functorch_wrapped_tensor(t))
           for t in (input, weight, bias)):
        return False
    return _C._cpu_capability() in ("avx512", "avx2") and weight.shape[1] % 16 == 0


def _full_costs_no_more(hout, wout, ph, pw, sh, sw):
    """Whether the padding-0 convolution costs what the zeros one does: its output cells (o + p =
    cell * s + phase, csrc/common/conv_transpose2d_args.h) are no more than 2% more. True for the
    stride-2 k4 p1 layers (both 17 cells a side for 32 outputs); a stride-1 layer computes 2 p
    more rows and columns."""
    def cells(n, p, s):
        return (n - 1 + p) // s - p // s + 1
    zeros = cells(hout, ph, sh) * cells(wout, pw, sw)
    full = cells(hout + 2 * ph, 0, sh) * cells(wout + 2 * pw, 0, sw)
    return full <= 1.02 * zeros


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, padding_mode="zeros"):
    """Drop-in for ``torch.nn.functional.conv_transpose1d`` (batched 3-D or unbatched 2-D input):
    tconv's 2-D kernels on (N, C, 1, L) (csrc/conv_transpose_nd.cpp). ``padding_mode`` 'reflect',
    'replicate' or 'circular' as in :func:`conv_transpose2d`: the adjoint of the padded conv1d,
    computed as the 2-D one on (N, C, 1, L)."""
    if padding_mode != "zeros":
        _check_padding_mode(padding_mode)
        if input.dim() not in (2, 3) or weight.dim() != 3:
            return conv_transpose1d(input, weight, bias, stride, padding, output_padding, groups, dilation)
        one = lambda v, name: [1 if name != "padding" and name != "output_padding" else 0] + ntuple(v, 1, name)
        out = _conv_transpose2d_padded(input.unsqueeze(-2), weight.unsqueeze(-2), bias, one(stride, "stride"),
                                       one(padding, "padding"), one(output_padding, "output_padding"), groups,
                                       one(dilation, "dilation"), padding_mode)
        return out.squeeze(-2)
    return _conv_transpose_nd("conv_transpose1d", 1, torch.ops.tconv.conv_transpose1d, input, weight,
                              bias, stride, padding, output_padding, groups, dilation)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, padding_mode="zeros"):
    """Drop-in for ``torch.nn.functional.conv_transpose3d`` (batched 5-D or unbatched 4-D input,
    contiguous or channels_last_3d): one 2-D transposed convolution of the depth slices with the
    depth taps as extra output channels, then a fixed-order sum along depth
    (csrc/conv_transpose_nd.cpp). ``padding_mode`` 'reflect', 'replicate' or 'circular' as in
    :func:`conv_transpose2d`: the adjoint of the padded conv3d, the transposed convolution with
    padding 0 folded per axis by tconv::pad_fold2d (F.pad's 3-D padding is its three 1-D paddings
    in turn, so its adjoint is their three folds)."""
    if padding_mode != "zeros":
        return _conv_transpose3d_padded(input, weight, bias, stride, padding, output_padding, groups, dilation,
                                        padding_mode)
    return _conv_transpose_nd("conv_transpose3d", 3, torch.ops.tconv.conv_transpose3d, input, weight,
                              bias, stride, padding, output_padding, groups, dilation)


def _conv_transpose3d_padded(input, weight, bias, stride, padding, output_padding, groups, dilation, padding_mode):
    _check_padding_mode(padding_mode)
    args = (stride, padding, output_padding, groups, dilation)
    if input.dim() == 4 and weight.dim() == 5:
        return _conv_transpose3d_padded(input.unsqueeze(0), weight, bias, *args, padding_mode).squeeze(0)
    if input.dim() != 5 or weight.dim() != 5:
        return conv_transpose3d(input, weight, bias, *args)  # the zeros op's error
    p = ntuple(padding, 3, "padding")
    s, op, d = ntuple(stride, 3, "stride"), ntuple(output_padding, 3, "output_padding"), ntuple(dilation, 3, "dilation")
    out_size = [(n - 1) * s[i] - 2 * p[i] + d[i] * (weight.shape[2 + i] - 1) + op[i] + 1
                for i, n in enumerate(input.shape[2:])]
    if all(v == 0 for v in p) or min(p) < 0 or min(out_size) <= 0:
        return conv_transpose3d(input, weight, bias, *args)  # the zeros result, or its error
    # F.pad's own checks (and error) for this padding of an output of this size.
    torch.nn.functional.pad(torch.empty(1, 1, *out_size, device="meta"), (p[2], p[2], p[1], p[1], p[0], p[0]),
                            mode=padding_mode)
    full = conv_transpose3d(input, weight, None, s, 0, op, groups, d)
    n, c, dp, hp, wp = full.shape
    fold = torch.ops.tconv.pad_fold2d
    out = fold(full.reshape(n, c * dp, hp, wp), [p[2], p[2], p[1], p[1]], padding_mode)  # H and W
    out = fold(out.reshape(n, c, dp, out_size[1] * out_size[2]), [0, 0, p[0], p[0]], padding_mode)  # D
    out = out.reshape(n, c, *out_size)
    if input.is_contiguous(memory_format=torch.channels_last_3d) and not input.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last_3d)  # the zeros op's layout
    return out if bias is None else out + bias.view(-1, 1, 1, 1)


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


# ---- fused resize-convolution ------------------------------------------------------------------------

_NEAREST_MODES = ("nearest", "nearest-exact")  # the same source rows for an integer factor


def _integer_factors(scale_factor):
    """(s_h, s_w) as positive ints when scale_factor is an integer (or a pair of integers, float
    or int), else None."""
    if scale_factor is None:
        return None
    factors = list(scale_factor) if isinstance(scale_factor, (list, tuple)) else [scale_factor] * 2
    if len(factors) != 2:
        return None
    out = []
    for f in factors:
        if isinstance(f, bool):
            return None
        try:
            f = float(f)
        except (TypeError, ValueError):
            return None
        if not f.is_integer() or f < 1:
            return None
        out.append(int(f))
    return out


def _conv_paddings(padding, kernel_size):
    """Per axis (left, right) zero padding of a stride-1, dilation-1 conv2d: int, pair, 'valid'
    or 'same' (PyTorch's split: the extra row of an even kernel goes right/bottom)."""
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0), (0, 0)]
        if padding == "same":
            return [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_size]
        return None
    p = pair(padding, "padding")
    if len(p) != 2 or min(p) < 0:
        return None
    return [(p[0], p[0]), (p[1], p[1])]


def fold_upsample_weight(weight, scale_factor, groups=1):
    """The transposed-convolution weight equal to nearest upsampling by ``scale_factor`` (ints
    s_h, s_w) followed by a conv2d with ``weight`` (Cout, Cin/groups, kh, kw), for exporting the
    pair as one stride-s transposed convolution (``tconv.upsample_conv2d`` itself mixes channels
    first, which needs fewer multiply-adds): shape
    (Cin, Cout/groups, kh + s_h - 1, kw + s_w - 1). Per axis, with v the flipped kernel,
    W[kk] = v[kk - s + 1] + ... + v[kk] (a box sum of length s; zero outside v), built from torch
    ops on ``weight`` so gradients of every order reach it. 16-bit weights are folded in float32
    and rounded once."""
    sh, sw = _integer_factors(scale_factor)
    dtype = weight.dtype
    v = weight.flip((2, 3))
    if dtype in (torch.float16, torch.bfloat16):
        v = v.float()
    for dim, s in ((2, sh), (3, sw)):
        if s > 1:
            k = v.shape[dim]
            pads = [0, 0, 0, 0]
            pads[2 * (3 - dim)] = pads[2 * (3 - dim) + 1] = s - 1
            padded = torch.nn.functional.pad(v, pads)
            acc = padded.narrow(dim, 0, k + s - 1)
            for a in range(1, s):  # fixed order: deterministic
                acc = acc + padded.narrow(dim, a, k + s - 1)
            v = acc
    v = v.to(dtype)
    cout, cin_g, kh, kw = v.shape
    return (v.reshape(groups, cout // groups, cin_g, kh, kw).transpose(1, 2)
             .reshape(groups * cin_g, cout // groups, kh, kw))


_MIXED_MODES = ("bilinear", "bicubic")  # with align_corners False, PyTorch's default


def _fused_plan(input, weight, bias, scale_factor, mode, stride, padding, dilation, groups, padding_mode):
    """(factors, per-axis (left, right) paddings, the upsampling's mode for tconv::upsample_taps2d)
    when the pair is fused, else None (the pair runs, and raises its own errors)."""
    if mode not in _NEAREST_MODES + _MIXED_MODES or padding_mode != "zeros" or input.dim() not in (3, 4):
        return None
    if weight.dim() != 4 or not isinstance(groups, int) or groups < 1 or weight.shape[0] % groups:
        return None
    if input.shape[-3] != weight.shape[1] * groups:
        return None
    if weight.dtype != input.dtype or weight.device != input.device or not input.is_floating_point():
        return None
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != weight.shape[0] or bias.dtype != weight.dtype):
        return None
    if pair(stride, "stride") != [1, 1] or pair(dilation, "dilation") != [1, 1]:
        return None
    factors = _integer_factors(scale_factor)
    pads = _conv_paddings(padding, weight.shape[2:])
    if factors is None or pads is None:
        return None
    for size, s, k, (pl, pr) in zip(input.shape[-2:], factors, weight.shape[2:], pads):
        if size * s + pl + pr - k + 1 < 1:
            return None  # the pair raises PyTorch's error
    return factors, pads, "nearest" if mode in _NEAREST_MODES else mode


def _eager_cpu_float(*tensors):
    """Whether a call on ``tensors`` may take a CPU float32/float64 kernel with its own C++ autograd
    and no batching rule or autocast kernel: plain CPU float32/float64 tensors in eager mode,
    outside torch.func transforms, forward AD, dispatch modes, compilation and CPU autocast (whose
    lower precision the composite's convolution takes, as conv2d does)."""
    tensors = [t for t in tensors if t is not None]
    if not _eager_mode() or torch.is_autocast_enabled("cpu"):
        return False
    # A module's weight and bias are nn.Parameters: plain tensors too.
    return not any(type(t) not in (torch.Tensor, torch.nn.Parameter) or t.device.type != "cpu"
                   or t.dtype not in (torch.float32, torch.float64) or torch._C._functorch.is_functorch_wrapped_tensor(t)
                   for t in tensors)


def _mixed_taps_conv(input, weight, bias, factors, pads, mode, groups):
    """conv2d(interpolate(x, factors, mode), w, b, pads) with the channel mixing first (Note [mix
    first], csrc/common/upsample_taps.h): one GEMM gives every kernel tap's W_a x at the input's
    resolution, then tconv::upsample_taps2d upsamples, shifts and sums them. s^2 times fewer
    multiply-adds than the pair, and no upsampled input."""
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    n, cin, h, w = x.shape
    cout, cin_g, kh, kw = weight.shape
    kk, cout_g = kh * kw, cout // groups
    (pt, pb), (pl, pr) = pads
    if groups == 1 and _eager_cpu_float(x, weight, bias):
        # The taps of a few input rows at a time, never all of them; its backward likewise holds one
        # band of the taps' gradient (Note [banded backward], csrc/cpu/upsample_taps2d.cpp).
        out = torch.ops.tconv._upsample_conv2d_mixed(x, weight, bias, list(factors), [pt, pb, pl, pr], mode)
        return out.squeeze(0) if unbatched else out
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    if not channels_last:
        x = x.contiguous()  # the taps in planes; a channels_last input gives pixel-major taps
    # Every tap's W_a x at once: a 1x1 transposed convolution (tconv's deterministic GEMM blocks,
    # with its derivatives in every autograd mode) with output channels (group, tap, channel).
    w_taps = weight.reshape(groups, cout_g, cin_g, kk).permute(0, 2, 3, 1).reshape(cin, kk * cout_g, 1, 1)
    t = conv_transpose2d(x, w_taps, None, 1, 0, 0, groups)
    if groups == 1:
        taps = t.view(n, kk, cout, h, w)
    else:
        taps = t.view(n, groups, kk, cout_g, h, w).transpose(1, 2).reshape(n, kk, cout, h, w)
    if bias is not None and bias.dtype != taps.dtype:
        bias = bias.to(taps.dtype)  # autocast: the convolution ran in its lower precision, as conv2d's bias does
    out = torch.ops.tconv.upsample_taps2d(taps, bias, [kh, kw], list(factors), [pt, pb, pl, pr], mode,
                                          channels_last)  # the pair's layout
    return out.squeeze(0) if unbatched else out


def _upsample_then_conv(input, weight, bias, scale_factor, mode, stride, padding, dilation, groups,
                        padding_mode):
    """The unfused pair: upsample (tconv's kernels for bilinear/bicubic), then conv2d."""
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    if mode in _INTERPOLATE_MODES:
        x = interpolate(x, scale_factor=scale_factor, mode=mode, align_corners=False)
    else:
        x = torch.nn.functional.interpolate(x, scale_factor=scale_factor, mode=mode)
    if padding_mode != "zeros":
        if isinstance(padding, str):
            raise ValueError(f"padding={padding!r} with padding_mode={padding_mode!r} is not supported here")
        ph, pw = pair(padding, "padding")
        x = torch.nn.functional.pad(x, (pw, pw, ph, ph), mode=padding_mode)
        padding = 0
    out = torch.nn.functional.conv2d(x, weight, bias, stride, padding, dilation, groups)
    return out.squeeze(0) if unbatched else out


def upsample_conv2d(input, weight, bias=None, scale_factor=2, mode="nearest", stride=1, padding=0,
                    dilation=1, groups=1, padding_mode="zeros"):
    """``F.conv2d(F.interpolate(input, scale_factor=scale_factor, mode=mode), weight, bias, stride,
    padding, dilation, groups)`` (``padding_mode`` as in ``nn.Conv2d``), fused where exact.

    Fused: mode 'nearest' (or 'nearest-exact': the same rows for an integer factor), 'bilinear' or
    'bicubic' (align_corners=False, ``F.interpolate``'s default), an integer scale factor per axis
    (int, integral float, or a pair), stride 1, dilation 1, padding an int, a pair, 'same' or
    'valid', groups, padding_mode 'zeros', 3-D (unbatched image) or 4-D input, every floating
    dtype and layout. The channel mixing runs first (Note [mix first], csrc/common/
    upsample_taps.h): upsampling acts on each channel alone, so it commutes with the convolution's
    channel mixing, and the pair equals sum_a shift_a(Up(W_a x)) over the kernel taps a, W_a the
    tap's (Cout x Cin) matrix and shift_a reading the upsampled plane at the tap's offset (zero
    outside it: the conv's padding). One GEMM computes every W_a x at the input's resolution,
    1 / s^2 of the pair's multiply-adds (a 1x1 ``tconv.conv_transpose2d``), and
    ``tconv::upsample_taps2d`` upsamples, shifts and sums them, clamping source indices at the
    border as PyTorch's interpolate does: exact at every edge, for any k, p, s. A CPU
    float32/float64 call in eager mode (groups 1) takes one kernel, ``tconv::_upsample_conv2d_mixed``,
    which does both a few input rows at a time, so neither the upsampled input nor the taps are
    ever made, and whose backward holds one band of the taps' gradient at a time. Elsewhere
    (16-bit types, groups, torch.func, forward AD, compile, autocast) the taps (kh kw Cout /
    (s^2 Cin) of the upsampled input's size) live between the two ops. Results equal the pair's to float
    rounding. (:func:`fold_upsample_weight` gives the nearest pair as one stride-s transposed
    convolution instead: 16/36 of the pair's multiply-adds for k=3, s=2, against 9/36 here.)

    Anything else runs the pair itself, unfused: a non-integer factor, align_corners, other
    strides or dilations, padding_mode other than 'zeros', or arguments the pair rejects (it then
    raises PyTorch's error). Note that 3-D input is one (C, H, W) image here, upsampled in both
    axes, while ``F.interpolate`` reads 3-D input as (N, C, L) and resizes one axis."""
    plan = _fused_plan(input, weight, bias, scale_factor, mode, stride, padding, dilation, groups, padding_mode)
    if plan is None:
        return _upsample_then_conv(input, weight, bias, scale_factor, mode, stride, padding, dilation, groups,
                                   padding_mode)
    return _mixed_taps_conv(input, weight, bias, *plan, groups)
