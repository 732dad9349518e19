"""What the test files share. A test file imports from here (and uses conftest.py's fixtures and
markers), never from another test file.

- full_gradcheck: gradcheck and gradgradcheck in every autograd mode;
- NaN/Inf: poison, same_specials, specials_equal;
- conv_transpose2d: inputs, the grid, tolerances, gradcheck arguments, the Python reference
  convolution (direct_conv_transpose2d) and the NaN/Inf configurations;
- upsampling: inputs, the grid, tolerances, gradcheck arguments, check_interpolate and the
  references where PyTorch's own kernels are wrong;
- the Gram matrix: the float64 reference, shapes, tolerances, layouts;
- every op at once (all_ops_run: determinism, threads); run_in_python_threads;
- the error cases of docs/errors.md (ERROR_CASES, error_rows)."""
import threading
from pathlib import Path

import torch
import torch.nn.functional as F

import tconv

ops = torch.ops.tconv
ROOT = Path(__file__).resolve().parent.parent

HALF_TYPES = [torch.float16, torch.bfloat16]
ALL_TYPES = [torch.float64, torch.float32] + HALF_TYPES


# ---- Python threads --------------------------------------------------------------------------------

def run_in_python_threads(fn, count):
    """Runs fn(i) for i < count, each in its own Python thread, all at once, and waits for them."""
    threads = [threading.Thread(target=fn, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# ---- gradients -------------------------------------------------------------------------------------

def at_thread_counts(fn, counts=(1, 2)):
    """fn()'s result with torch's thread count set to each of counts in turn (then restored): the
    determinism tests compare them bitwise."""
    threads = torch.get_num_threads()
    try:
        results = []
        for n in counts:
            torch.set_num_threads(n)
            results.append(fn())
        return results
    finally:
        torch.set_num_threads(threads)


def full_gradcheck(fn, args):
    """float64 gradcheck and gradgradcheck in every autograd mode: reverse, forward (jvp),
    batched reverse and batched forward (vmap over the backward / the tangents), and for the
    second order reverse-over-reverse and forward-over-reverse."""
    assert torch.autograd.gradcheck(fn, args, check_forward_ad=True, check_backward_ad=True,
                                    check_batched_grad=True, check_batched_forward_grad=True)
    assert torch.autograd.gradgradcheck(fn, args, check_fwd_over_rev=True, check_rev_over_rev=True,
                                        check_batched_grad=True)


# ---- NaN and Inf ---------------------------------------------------------------------------------------

def poison(x, gen, frac=0.15):
    """x with a fraction frac of its elements replaced by NaN, +Inf or -Inf (drawn from gen)."""
    mask = torch.rand(x.shape, generator=gen) < frac
    vals = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=x.dtype)
    idx = torch.randint(0, 3, x.shape, generator=gen)
    return torch.where(mask, vals[idx], x)


def poison_one(where, gen, tensors, fractions):
    """The dict tensors with tensors[where] poisoned (a fraction fractions[where] of NaN/Inf)."""
    return {name: poison(t, gen, fractions[name]) if name == where else t for name, t in tensors.items()}


def same_specials(got, want, tol=1e-9):
    """Same positions of nan, +inf and -inf; the finite values close."""
    assert torch.equal(torch.isnan(got), torch.isnan(want)), "NaN positions differ"
    assert torch.equal(torch.isposinf(got), torch.isposinf(want)), "+inf positions differ"
    assert torch.equal(torch.isneginf(got), torch.isneginf(want)), "-inf positions differ"
    torch.testing.assert_close(got, want, equal_nan=True, rtol=tol, atol=tol)


def specials_equal(got, want):
    """Same positions of nan, +inf and -inf (the finite values are not compared)."""
    assert torch.equal(torch.isnan(got), torch.isnan(want)), "NaN positions differ"
    assert torch.equal(torch.isposinf(got), torch.isposinf(want)), "+inf positions differ"
    assert torch.equal(torch.isneginf(got), torch.isneginf(want)), "-inf positions differ"


# ---- conv_transpose2d ----------------------------------------------------------------------------------

CONV_TOL = {torch.float64: (1e-10, 1e-10), torch.float32: (2e-4, 2e-4)}


def make_conv(n, cin, cout, hw, k, groups, dtype, bias=True, channels_last=False, transpose_view=False):
    """Input, weight and bias (or None) of a transposed convolution."""
    x = torch.randn(n, cin, *hw, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    if transpose_view:  # a non-contiguous view with the same logical content
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
    w = torch.randn(cin, cout // groups, *k, dtype=dtype)
    b = torch.randn(cout, dtype=dtype) if bias else None
    return x, w, b


# A deliberate grid: every argument, alone and combined.
CONV_GRID = [
    # n, cin, cout, hw, k, stride, padding, output_padding, groups, dilation
    (2, 3, 4, (5, 6), (3, 3), 1, 0, 0, 1, 1),
    (2, 3, 4, (5, 6), (3, 3), 1, 1, 0, 1, 1),
    (2, 4, 6, (5, 6), (3, 3), 2, 1, 1, 1, 1),
    (2, 4, 6, (5, 6), (4, 4), 2, 1, 0, 2, 1),
    (1, 4, 4, (7, 5), (3, 2), (2, 3), (1, 0), (1, 2), 1, 1),
    (1, 4, 4, (7, 5), (3, 3), 1, 2, 1, 1, (2, 3)),
    (2, 6, 6, (4, 4), (3, 3), 3, 1, 2, 3, 2),
    (2, 6, 6, (6, 6), (4, 4), 2, 1, 0, 6, 1),       # depthwise
    (2, 6, 12, (6, 6), (3, 3), 2, 1, 1, 6, 1),      # depthwise, channel multiplier 2
    (2, 8, 4, (4, 4), (2, 2), 2, 0, 0, 1, 1),       # stride == kernel (U-Net)
    (2, 3, 5, (4, 4), (1, 1), 1, 0, 0, 1, 1),       # 1x1
    (2, 3, 5, (4, 4), (1, 1), 3, 0, 2, 1, 1),       # 1x1 with stride: holes between pixels
    (1, 2, 2, (1, 1), (1, 1), 1, 0, 0, 1, 1),       # 1x1 spatial
    (1, 2, 3, (1, 1), (5, 5), 4, 2, 3, 1, 1),
    (2, 3, 3, (3, 4), (8, 8), 4, 2, 0, 1, 1),       # FCN-style k = 2s
    (1, 2, 2, (3, 3), (2, 2), 5, 0, 4, 1, 1),       # stride > kernel: bias-only pixels
    (0, 3, 4, (5, 5), (3, 3), 2, 1, 0, 1, 1),       # empty batch
]

def conv_grid_case(cfg, layout, dtype):
    """Inputs and keyword arguments of one CONV_GRID row in one layout ("contiguous",
    "channels_last", or "noncontiguous": a transposed view)."""
    n, cin, cout, hw, k, s, p, op, g, d = cfg
    x, w, b = make_conv(n, cin, cout, hw, k, g, dtype, channels_last=layout == "channels_last",
                        transpose_view=layout == "noncontiguous")
    return x, w, b, dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)


def draw_conv_geometry(draw, st):
    """A hypothesis draw of per-axis kernel, stride, dilation, output_padding, input size and a
    padding small enough that the output is non-empty: (k, s, d, op, hw, p)."""
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    s = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    op = tuple(draw(st.integers(0, max(s[i], d[i]) - 1)) for i in range(2))
    hw = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    p = []
    for i in range(2):
        full = (hw[i] - 1) * s[i] + d[i] * (k[i] - 1) + op[i] + 1
        p.append(draw(st.integers(0, max(0, (full - 1) // 2))))
    return k, s, d, op, hw, tuple(p)


CONV_GRADCHECK = [
    dict(stride=2, padding=1, output_padding=1, groups=1, dilation=1),
    dict(stride=(1, 2), padding=(0, 1), output_padding=(0, 1), groups=2, dilation=(2, 1)),
    dict(stride=2, padding=1, output_padding=0, groups=4, dilation=1),  # depthwise
]


def direct_conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1,
                            dilation=1):
    """The transposed convolution by its definition, differentiable: per tap (kh, kw), the inputs
    that land inside the output times that tap, summed over input channels (all real terms) and
    added into the output. Only the real terms are ever multiplied (no padded zeros), so its
    autograd gradients put NaN and Inf where the definition puts them; used as the NaN/Inf
    reference of the backward (PyTorch's float64 CPU backward multiplies im2col zeros)."""
    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = map(pair, (stride, padding, output_padding, dilation))
    n, cin, h, wd = x.shape
    cout_g, kh_n, kw_n = w.shape[1:]
    ho = (h - 1) * sh - 2 * ph + dh * (kh_n - 1) + oph + 1
    wo = (wd - 1) * sw - 2 * pw + dw * (kw_n - 1) + opw + 1
    cin_g = cin // groups

    def span(i_len, o_len, s, off):  # inputs [lo, hi) with 0 <= i*s + off < o_len; first output
        lo = max(0, (-off + s - 1) // s)
        hi = max(lo, min(i_len, (o_len - 1 - off) // s + 1))
        return lo, hi, lo * s + off

    y = x.new_zeros(n, cout_g * groups, ho, wo)
    for kh in range(kh_n):
        ih0, ih1, oh0 = span(h, ho, sh, kh * dh - ph)
        for kw in range(kw_n):
            iw0, iw1, ow0 = span(wd, wo, sw, kw * dw - pw)
            if ih1 <= ih0 or iw1 <= iw0:
                continue
            rows = slice(oh0, oh0 + (ih1 - ih0 - 1) * sh + 1, sh)
            cols = slice(ow0, ow0 + (iw1 - iw0 - 1) * sw + 1, sw)
            for grp in range(groups):
                xs = x[:, grp * cin_g:(grp + 1) * cin_g, ih0:ih1, iw0:iw1]
                ws = w[grp * cin_g:(grp + 1) * cin_g, :, kh, kw]
                part = torch.einsum("nihw,ic->nchw", xs, ws)
                idx = (slice(None), slice(grp * cout_g, (grp + 1) * cout_g), rows, cols)
                y[idx] = y[idx] + part  # adding (not multiplying) zeros keeps NaN and Inf as they are
    if b is not None:
        y = y + b[None, :, None, None]
    return y


def conv_grads(fn, x, w, b, go, **kw):
    """[output, grad_input, grad_weight] of fn(x, w, b, **kw) for grad_output go."""
    leaves = [t.detach().clone().requires_grad_() for t in (x, w)]
    out = fn(*leaves, b, **kw)
    return [out.detach()] + list(torch.autograd.grad(out, leaves, go))


CONV_NAN_CFGS = [
    # cin, cout, hw, k, stride, padding, output_padding, groups, dilation
    (3, 4, (5, 6), (3, 3), 1, 1, 0, 1, 1),
    (4, 6, (5, 6), (3, 3), 2, 1, 1, 1, 1),
    (4, 4, (5, 5), (4, 4), 2, 1, 0, 2, 1),
    (4, 4, (4, 4), (2, 2), 2, 0, 0, 1, 1),         # stride == kernel
    (3, 3, (3, 4), (8, 8), 4, 2, 0, 1, 1),         # k = 2s
    (2, 2, (3, 3), (2, 2), 5, 0, 4, 1, 1),         # stride > kernel: holes
    (3, 3, (4, 5), (3, 3), 3, 1, 2, 1, 2),         # dilation with stride
    (6, 6, (5, 5), (4, 4), 2, 1, 0, 6, 1),         # depthwise
    (6, 12, (5, 5), (3, 3), 3, 0, 1, 6, 1),        # depthwise, stride > kernel
]


def conv_nan_case(cfg, where, seed):
    """float64 x, w, b and grad_output for a CONV_NAN_CFGS row, one of them poisoned."""
    cin, cout, hw, k, s, p, op, g, d = cfg
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, cin, *hw, dtype=torch.float64, generator=gen)
    w = torch.randn(cin, cout // g, *k, dtype=torch.float64, generator=gen)
    b = torch.randn(cout, dtype=torch.float64, generator=gen)
    kw = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    go = torch.randn_like(F.conv_transpose2d(x, w, b, **kw))
    t = poison_one(where, gen, dict(input=x, weight=w, bias=b, grad_output=go),
                   dict(input=0.1, weight=0.05, bias=0.3, grad_output=0.03))
    return t["input"], t["weight"], t["bias"], t["grad_output"], kw


# ---- bilinear / bicubic upsampling ---------------------------------------------------------------------

MODES = ["bilinear", "bicubic"]
UPSAMPLE_TOL = {torch.float64: (1e-10, 1e-10), torch.float32: (1e-5, 1e-5)}


def make_image(n, c, hw, dtype=torch.float64, layout="contiguous"):
    """An (n, c, *hw) input with layout's strides."""
    x = torch.randn(n, c, *hw, dtype=dtype)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    elif layout == "noncontiguous":  # same values, transposed strides
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
    elif layout == "sliced":  # a strided view into a bigger tensor
        x = torch.randn(n, c, hw[0] * 2, hw[1] + 3, dtype=dtype)[:, :, ::2, 1:hw[1] + 1]
    return x


def check_interpolate(x, **kw):
    """Forward values, shape, dtype, memory format and the input gradient equal PyTorch's."""
    rtol, atol = UPSAMPLE_TOL[x.dtype]
    leaf = x.detach().clone().requires_grad_()
    ref_leaf = x.detach().clone().requires_grad_()
    ours = tconv.interpolate(leaf, **kw)
    ref = F.interpolate(ref_leaf, **kw)
    assert ours.is_contiguous(memory_format=torch.channels_last) == \
        ref.is_contiguous(memory_format=torch.channels_last)
    ref = pytorch_forward(ref_leaf, kw, ref)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    torch.testing.assert_close(ours, ref, rtol=rtol, atol=atol)
    if ref.numel() == 0:
        return
    go = torch.randn_like(ref)
    (g_ours,) = torch.autograd.grad(ours, leaf, go)
    if pytorch_backward_is_not_its_forwards_gradient(x, ref.shape[2:], kw):
        g_ref = adjoint_of_pytorch_forward(x, go, kw)
    else:
        (g_ref,) = torch.autograd.grad(ref, ref_leaf, go)
    torch.testing.assert_close(g_ours, g_ref, rtol=rtol * 10, atol=atol * 10)


def pytorch_forward(x, kw, out):
    """F.interpolate's result `out` on x, or a correct reference where PyTorch is wrong."""
    if kw.get("antialias") and out.shape[3] == 1:
        return _transposed(F.interpolate, x, kw)
    return out


def _transposed(fn, x, kw):
    """fn on x with H and W swapped. PyTorch's antialiased CPU kernel is wrong for width-1 outputs
    (every output row equals the first: F.interpolate(x (1,1,4,1), size=(3,1), mode='bilinear',
    antialias=True)); height-1 outputs are right, so the reference swaps the axes."""
    swap = lambda v: v[::-1] if isinstance(v, (list, tuple)) else v
    kw = dict(kw, **{k: swap(kw[k]) for k in ("size", "scale_factor") if kw.get(k) is not None})
    return fn(x.transpose(2, 3), **kw).transpose(2, 3)


def pytorch_backward_is_not_its_forwards_gradient(x, out_hw, kw):
    """Two cases where PyTorch's backward and forward disagree when a scale_factor is given but
    an axis keeps its size (F.interpolate's own gradcheck fails there):
    - antialias: the forward copies such an axis, the backward resamples it with the scale;
    - bicubic with both axes unchanged: the forward resamples with the scale, the backward copies.
    tconv's gradient is the true one; compare it with the adjoint of PyTorch's forward."""
    if kw.get("scale_factor") is None or kw.get("recompute_scale_factor"):
        return False
    same = [out_hw[i] == x.shape[2 + i] for i in range(2)]
    if kw.get("antialias"):
        return any(same)
    return kw.get("mode") == "bicubic" and not kw.get("align_corners") and all(same)


def adjoint_of_pytorch_forward(x, go, kw):
    """A^T go, with A read off PyTorch's forward applied to every basis image."""
    n, c, h, w = x.shape
    basis = torch.eye(h * w, dtype=x.dtype).reshape(h * w, 1, h, w)
    a = pytorch_forward(basis, kw, F.interpolate(basis, **kw)).reshape(h * w, -1)
    return (go.reshape(n * c, -1) @ a.T).reshape(x.shape)


# A deliberate grid: up and down, integer and fractional factors, per-axis factors, 1-pixel axes.
UPSAMPLE_GRID = [
    # hw, size / scale_factor arguments
    ((5, 7), dict(scale_factor=2)),
    ((5, 7), dict(scale_factor=4)),
    ((6, 6), dict(scale_factor=1.5)),
    ((7, 5), dict(scale_factor=(2.3, 0.6))),
    ((9, 11), dict(scale_factor=0.5)),
    ((16, 13), dict(scale_factor=0.3)),
    ((5, 5), dict(scale_factor=1.1)),                       # same size, scale used: not a copy for bicubic
    ((5, 7), dict(size=(11, 3))),
    ((5, 7), dict(size=(5, 7))),                            # identity size
    ((1, 1), dict(size=(4, 3))),                            # 1-pixel input
    ((6, 4), dict(size=(1, 1))),                            # 1-pixel output
    ((1, 6), dict(size=(3, 12))),
    ((8, 8), dict(scale_factor=2.7, recompute_scale_factor=True)),
    ((8, 8), dict(scale_factor=0.37, recompute_scale_factor=False)),
    ((3, 4), dict(size=17)),
]

UPSAMPLE_GRADCHECK = [
    dict(scale_factor=2, align_corners=False),
    dict(size=(5, 3), align_corners=True),
    dict(scale_factor=(0.5, 0.7), antialias=True),
    dict(scale_factor=1.6, antialias=True, align_corners=True),
]


def cpu_and_cuda_images(layout, n, c, hw, dtype):
    """The same values on the CPU and on the GPU, both with `layout`'s strides."""
    h, w = hw
    if layout == "sliced":  # a strided view into a bigger tensor, made on each device
        big = torch.randn(n, c, h * 2, w + 3, dtype=dtype)
        view = lambda t: t[:, :, ::2, 1:w + 1]  # noqa: E731
        return view(big), view(big.cuda())
    x = torch.randn(n, c, h, w, dtype=dtype)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    elif layout == "noncontiguous":
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
    return x, x.cuda()  # .cuda() keeps the strides of dense tensors


# ---- the Gram matrix -----------------------------------------------------------------------------------

GRAM_TOL = {torch.float64: (1e-12, 1e-12), torch.float32: (1e-5, 1e-6)}

# (N, C, H, W): C = 1, H*W = 1, C not a multiple of any tile size, large C with small H*W and back.
GRAM_SHAPES = [
    (2, 1, 3, 5),
    (2, 7, 1, 1),
    (1, 1, 1, 1),
    (3, 17, 5, 7),
    (2, 33, 9, 4),
    (1, 100, 13, 11),
    (1, 512, 2, 3),
    (1, 3, 96, 128),
    (2, 64, 31, 33),
]


def gram_reference(x, normalize=True):
    """float64 Gram of (N, C, H, W) / (C, H, W) / (C, L) input, the D2L formula."""
    xd = x.detach().double()
    if xd.dim() == 3:
        xd = xd.flatten(1)
    elif xd.dim() == 4:
        xd = xd.flatten(2)
    g = xd @ xd.mT
    count = xd.shape[-2] * xd.shape[-1]
    return g / count if normalize and count else g


def gram_reference_differentiable(x, normalize=True):
    """The Gram of x in x's dtype, differentiable (the same formula as gram_reference)."""
    xf = x.flatten(1) if x.dim() == 3 else x.flatten(2) if x.dim() == 4 else x
    count = xf.shape[-2] * xf.shape[-1]
    g = xf @ xf.mT
    return g / count if normalize and count else g


def gram_layout(x, layout):
    if layout == "channels_last":
        return x.to(memory_format=torch.channels_last)
    if layout == "noncontiguous":  # same values, H and W swapped in memory
        return x.transpose(-1, -2).contiguous().transpose(-1, -2)
    return x


# ---- every op at once ----------------------------------------------------------------------------------

def all_ops_run(seed=0, device="cpu", poisoned=False):
    """Every op's forward and backward (dense, channels_last, dilated and depthwise conv, both
    upsampling modes, Gram, the 1-D / 3-D composites); with poisoned=True the input holds NaN/Inf
    (the fallback paths)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 8, 20, 18, generator=gen)
    if poisoned:
        x = poison(x, gen, 0.01)
    x, w, b, wd = (t.to(device).requires_grad_() for t in
                   (x, torch.randn(8, 6, 4, 4, generator=gen), torch.randn(6, generator=gen),
                    torch.randn(8, 1, 3, 3, generator=gen)))
    y1 = tconv.conv_transpose2d(x, w, b, stride=2, padding=1)
    y2 = tconv.conv_transpose2d(x.to(memory_format=torch.channels_last), w, b, stride=3, dilation=2)
    y3 = tconv.conv_transpose2d(x, wd, stride=2, groups=8)
    y4 = tconv.interpolate(x, scale_factor=2.5, mode="bilinear")
    y5 = tconv.interpolate(x.to(memory_format=torch.channels_last), size=(9, 31), mode="bicubic",
                           align_corners=True)
    y6 = tconv.interpolate(x, scale_factor=0.3, mode="bicubic", antialias=True)
    y7 = tconv.gram_matrix(torch.cat([x, x], 1))
    # the 1-D / 3-D composites on views of the same input
    w1, w3 = (t.to(device).requires_grad_() for t in
              (torch.randn(8, 4, 16, generator=gen), torch.randn(8, 3, 3, 2, 3, generator=gen)))
    x1, x3 = x.flatten(2), x.unflatten(2, (4, 5))
    y8 = tconv.conv_transpose1d(x1, w1, stride=8, padding=4)
    y9 = tconv.conv_transpose3d(x3, w3, stride=2, padding=1)
    y10 = tconv.conv_transpose3d(x3, w3[:, :, :2, :2, :2], stride=2)
    y11 = tconv.interpolate(x1, scale_factor=2, mode="linear")
    y12 = tconv.interpolate(x3, scale_factor=1.5, mode="trilinear", align_corners=True)
    outs = [y1, y2, y3, y4, y5, y6, y7, y8, y9, y10, y11, y12]
    loss = sum((o * torch.linspace(-1, 1, o.numel(), device=device).reshape(o.shape)).sum() for o in outs)
    grads = torch.autograd.grad(loss, (x, w, b, wd, w1, w3))
    return [o.detach() for o in outs] + list(grads)


def assert_input_weight_grads(got, x, w):
    """The gradients of got.sum() have the shapes of x and w, and are zero when got is empty."""
    gx, gw = torch.autograd.grad(got.sum(), (x, w), allow_unused=True, materialize_grads=True)
    assert gx.shape == x.shape and gw.shape == w.shape
    if got.numel() == 0:
        assert not gx.any() and not gw.any()


# ---- invalid arguments: the cases of docs/errors.md ------------------------------------------------------

def _x(*shape):
    return torch.randn(*(shape or (2, 4, 5, 5)))


def _w(*shape):
    return torch.randn(*(shape or (4, 3, 3, 3)))


# name -> (tconv call, PyTorch counterpart or None where PyTorch has no such op/argument). Each name
# is the `case` of one row of docs/errors.md (scripts/gen_errors_table.py prints the rows).
ERROR_CASES = {
    # conv_transpose2d
    "conv: 5-D input": (lambda: tconv.conv_transpose2d(_x()[None], _w()),
                        lambda: F.conv_transpose2d(_x()[None], _w())),
    "conv: 2-D input": (lambda: tconv.conv_transpose2d(_x(5, 5), _w()),
                        lambda: F.conv_transpose2d(_x(5, 5), _w())),
    "conv: 3-D weight": (lambda: tconv.conv_transpose2d(_x(), _w(4, 3, 3)),
                         lambda: F.conv_transpose2d(_x(), _w(4, 3, 3))),
    "conv: channel mismatch": (lambda: tconv.conv_transpose2d(_x(2, 5, 5, 5), _w()),
                               lambda: F.conv_transpose2d(_x(2, 5, 5, 5), _w())),
    "conv: groups not dividing": (lambda: tconv.conv_transpose2d(_x(), _w(), groups=3),
                                  lambda: F.conv_transpose2d(_x(), _w(), groups=3)),
    "conv: zero groups": (lambda: tconv.conv_transpose2d(_x(), _w(), groups=0),
                          lambda: F.conv_transpose2d(_x(), _w(), groups=0)),
    "conv: zero stride": (lambda: tconv.conv_transpose2d(_x(), _w(), stride=0),
                          lambda: F.conv_transpose2d(_x(), _w(), stride=0)),
    "conv: negative stride": (lambda: tconv.conv_transpose2d(_x(), _w(), stride=(1, -1)),
                              lambda: F.conv_transpose2d(_x(), _w(), stride=(1, -1))),
    "conv: negative padding": (lambda: tconv.conv_transpose2d(_x(), _w(), padding=-1),
                               lambda: F.conv_transpose2d(_x(), _w(), padding=-1)),
    "conv: zero dilation": (lambda: tconv.conv_transpose2d(_x(), _w(), dilation=0),
                            lambda: F.conv_transpose2d(_x(), _w(), dilation=0)),
    "conv: output_padding too large": (
        lambda: tconv.conv_transpose2d(_x(), _w(), stride=2, output_padding=2),
        lambda: F.conv_transpose2d(_x(), _w(), stride=2, output_padding=2)),
    "conv: negative output_padding": (
        lambda: tconv.conv_transpose2d(_x(), _w(), stride=2, output_padding=-1),
        lambda: F.conv_transpose2d(_x(), _w(), stride=2, output_padding=-1)),
    "conv: three strides": (lambda: tconv.conv_transpose2d(_x(), _w(), stride=(1, 2, 3)),
                            lambda: F.conv_transpose2d(_x(), _w(), stride=(1, 2, 3))),
    "conv: weight dtype": (lambda: tconv.conv_transpose2d(_x(), _w().double()),
                           lambda: F.conv_transpose2d(_x(), _w().double())),
    "conv: bias dtype": (lambda: tconv.conv_transpose2d(_x(), _w(), torch.randn(3).double()),
                         lambda: F.conv_transpose2d(_x(), _w(), torch.randn(3).double())),
    "conv: bias size": (lambda: tconv.conv_transpose2d(_x(), _w(), torch.randn(4)),
                        lambda: F.conv_transpose2d(_x(), _w(), torch.randn(4))),
    "conv: output too small": (lambda: tconv.conv_transpose2d(_x(1, 4, 1, 1), _w(), padding=5),
                               lambda: F.conv_transpose2d(_x(1, 4, 1, 1), _w(), padding=5)),
    "conv: empty spatial input": (lambda: tconv.conv_transpose2d(_x(2, 4, 0, 5), _w()),
                                  lambda: F.conv_transpose2d(_x(2, 4, 0, 5), _w())),
    # PyTorch computes integer transposed convolutions on CPU; tconv's kernels are floating only.
    "conv: integer input": (lambda: tconv.conv_transpose2d(_x().long(), _w().long()), None),
    "conv: module output_size unreachable": (
        lambda: tconv.ConvTranspose2d(4, 3, 3, stride=2)(_x(), output_size=(20, 20)),
        lambda: torch.nn.ConvTranspose2d(4, 3, 3, stride=2)(_x(), output_size=(20, 20))),
    "conv: module padding_mode": (lambda: tconv.ConvTranspose2d(4, 3, 3, padding_mode="bogus"),
                                  lambda: torch.nn.ConvTranspose2d(4, 3, 3, padding_mode="bogus")),
    "conv: padding_mode": (lambda: tconv.conv_transpose2d(_x(), _w(), padding_mode="bogus"), None),
    # the output (7x7 at padding 0) is 1x1 at padding 3: reflect needs padding < size (F.pad's error)
    "conv: reflect padding too large": (
        lambda: tconv.conv_transpose2d(_x(), _w(), padding=3, padding_mode="reflect"),
        lambda: F.pad(torch.randn(1, 1, 1, 1), (3, 3, 3, 3), mode="reflect")),
    "conv: module groups not dividing": (lambda: tconv.ConvTranspose2d(4, 3, 3, groups=2),
                                         lambda: torch.nn.ConvTranspose2d(4, 3, 3, groups=2)),
    # interpolate
    "interp: size and scale_factor": (
        lambda: tconv.interpolate(_x(), size=4, scale_factor=2),
        lambda: F.interpolate(_x(), size=4, scale_factor=2, mode="bilinear")),
    "interp: neither size nor scale_factor": (
        lambda: tconv.interpolate(_x(), mode="bicubic"),
        lambda: F.interpolate(_x(), mode="bicubic")),
    "interp: size of wrong length": (
        lambda: tconv.interpolate(_x(), size=(4, 4, 4)),
        lambda: F.interpolate(_x(), size=(4, 4, 4), mode="bilinear")),
    "interp: scale_factor of wrong length": (
        lambda: tconv.interpolate(_x(), scale_factor=(2,)),
        lambda: F.interpolate(_x(), scale_factor=(2,), mode="bilinear")),
    "interp: float size": (lambda: tconv.interpolate(_x(), size=(4.5, 4)),
                           lambda: F.interpolate(_x(), size=(4.5, 4), mode="bilinear")),
    "interp: recompute_scale_factor with size": (
        lambda: tconv.interpolate(_x(), size=4, recompute_scale_factor=True),
        lambda: F.interpolate(_x(), size=4, recompute_scale_factor=True, mode="bilinear")),
    "interp: 3-D input": (lambda: tconv.interpolate(_x(2, 3, 5), scale_factor=2),
                          lambda: F.interpolate(_x(2, 3, 5), scale_factor=2, mode="bilinear")),
    "interp: 5-D input": (lambda: tconv.interpolate(_x(1, 2, 3, 5, 5), scale_factor=2, mode="bicubic"),
                          lambda: F.interpolate(_x(1, 2, 3, 5, 5), scale_factor=2, mode="bicubic")),
    "interp: 3-D antialias": (
        lambda: tconv.interpolate(_x(2, 3, 5), scale_factor=0.5, antialias=True),
        lambda: F.interpolate(_x(2, 3, 5), scale_factor=0.5, mode="bilinear", antialias=True)),
    "interp: zero output size": (lambda: tconv.interpolate(_x(), size=(0, 4)),
                                 lambda: F.interpolate(_x(), size=(0, 4), mode="bilinear")),
    "interp: negative output size": (
        lambda: tconv.interpolate(_x(), size=(-2, 4), mode="bicubic"),
        lambda: F.interpolate(_x(), size=(-2, 4), mode="bicubic")),
    "interp: scale truncating to zero": (
        lambda: tconv.interpolate(_x(), scale_factor=0.1),
        lambda: F.interpolate(_x(), scale_factor=0.1, mode="bilinear")),
    "interp: negative scale": (lambda: tconv.interpolate(_x(), scale_factor=-2.0, mode="bicubic"),
                               lambda: F.interpolate(_x(), scale_factor=-2.0, mode="bicubic")),
    "interp: empty spatial input": (lambda: tconv.interpolate(_x(2, 3, 0, 5), size=4),
                                    lambda: F.interpolate(_x(2, 3, 0, 5), size=4, mode="bilinear")),
    "interp: zero channels": (lambda: tconv.interpolate(_x(2, 0, 5, 5), size=4),
                              lambda: F.interpolate(_x(2, 0, 5, 5), size=4, mode="bilinear")),
    "interp: integer input": (lambda: tconv.interpolate(_x().long(), size=4),
                              lambda: F.interpolate(_x().long(), size=4, mode="bilinear")),
    "interp: unsupported mode": (lambda: tconv.interpolate(_x(), scale_factor=2, mode="nearest"),
                                 None),
    "interp: Upsample unsupported mode": (lambda: tconv.Upsample(scale_factor=2, mode="nearest"),
                                          None),
    # conv_transpose1d / ConvTranspose1d (composites over conv_transpose2d: the same checks)
    "conv1d: 4-D input": (lambda: tconv.conv_transpose1d(_x(), _w(4, 3, 3)),
                          lambda: F.conv_transpose1d(_x(), _w(4, 3, 3))),
    "conv1d: 4-D weight": (lambda: tconv.conv_transpose1d(_x(2, 4, 5), _w()),
                           lambda: F.conv_transpose1d(_x(2, 4, 5), _w())),
    "conv1d: channel mismatch": (lambda: tconv.conv_transpose1d(_x(2, 5, 5), _w(4, 3, 3)),
                                 lambda: F.conv_transpose1d(_x(2, 5, 5), _w(4, 3, 3))),
    "conv1d: two strides": (lambda: tconv.conv_transpose1d(_x(2, 4, 5), _w(4, 3, 3), stride=(1, 2)),
                            lambda: F.conv_transpose1d(_x(2, 4, 5), _w(4, 3, 3), stride=(1, 2))),
    "conv1d: output too small": (lambda: tconv.conv_transpose1d(_x(1, 4, 1), _w(4, 3, 3), padding=5),
                                 lambda: F.conv_transpose1d(_x(1, 4, 1), _w(4, 3, 3), padding=5)),
    "conv1d: empty spatial input": (lambda: tconv.conv_transpose1d(_x(2, 4, 0), _w(4, 3, 3)),
                                    lambda: F.conv_transpose1d(_x(2, 4, 0), _w(4, 3, 3))),
    "conv1d: module output_size unreachable": (
        lambda: tconv.ConvTranspose1d(4, 3, 3, stride=2)(_x(2, 4, 5), output_size=(20,)),
        lambda: torch.nn.ConvTranspose1d(4, 3, 3, stride=2)(_x(2, 4, 5), output_size=(20,))),
    # conv_transpose3d / ConvTranspose3d
    "conv3d: 6-D input": (lambda: tconv.conv_transpose3d(_x(1, 2, 4, 3, 3, 3), _w(4, 3, 3, 3, 3)),
                          lambda: F.conv_transpose3d(_x(1, 2, 4, 3, 3, 3), _w(4, 3, 3, 3, 3))),
    "conv3d: 4-D weight": (lambda: tconv.conv_transpose3d(_x(2, 4, 3, 3, 3), _w()),
                           lambda: F.conv_transpose3d(_x(2, 4, 3, 3, 3), _w())),
    "conv3d: channel mismatch": (lambda: tconv.conv_transpose3d(_x(2, 5, 3, 3, 3), _w(4, 3, 3, 3, 3)),
                                 lambda: F.conv_transpose3d(_x(2, 5, 3, 3, 3), _w(4, 3, 3, 3, 3))),
    "conv3d: groups not dividing": (
        lambda: tconv.conv_transpose3d(_x(2, 4, 3, 3, 3), _w(4, 3, 3, 3, 3), groups=3),
        lambda: F.conv_transpose3d(_x(2, 4, 3, 3, 3), _w(4, 3, 3, 3, 3), groups=3)),
    "conv3d: two strides": (lambda: tconv.conv_transpose3d(_x(2, 4, 3, 3, 3), _w(4, 3, 3, 3, 3), stride=(1, 2)),
                            lambda: F.conv_transpose3d(_x(2, 4, 3, 3, 3), _w(4, 3, 3, 3, 3), stride=(1, 2))),
    "conv3d: zero stride": (lambda: tconv.conv_transpose3d(_x(2, 4, 3, 3, 3), _w(4, 3, 3, 3, 3), stride=0),
                            lambda: F.conv_transpose3d(_x(2, 4, 3, 3, 3), _w(4, 3, 3, 3, 3), stride=0)),
    "conv3d: negative padding": (
        lambda: tconv.conv_transpose3d(_x(2, 4, 3, 3, 3), _w(4, 3, 3, 3, 3), padding=(0, -1, 0)),
        lambda: F.conv_transpose3d(_x(2, 4, 3, 3, 3), _w(4, 3, 3, 3, 3), padding=(0, -1, 0))),
    "conv3d: output_padding too large": (
        lambda: tconv.conv_transpose3d(_x(2, 4, 3, 3, 3), _w(4, 3, 3, 3, 3), stride=2, output_padding=(2, 0, 0)),
        lambda: F.conv_transpose3d(_x(2, 4, 3, 3, 3), _w(4, 3, 3, 3, 3), stride=2, output_padding=(2, 0, 0))),
    "conv3d: weight dtype": (lambda: tconv.conv_transpose3d(_x(2, 4, 3, 3, 3), _w(4, 3, 3, 3, 3).double()),
                             lambda: F.conv_transpose3d(_x(2, 4, 3, 3, 3), _w(4, 3, 3, 3, 3).double())),
    "conv3d: bias size": (lambda: tconv.conv_transpose3d(_x(2, 4, 3, 3, 3), _w(4, 3, 3, 3, 3), torch.randn(4)),
                          lambda: F.conv_transpose3d(_x(2, 4, 3, 3, 3), _w(4, 3, 3, 3, 3), torch.randn(4))),
    "conv3d: output too small": (
        lambda: tconv.conv_transpose3d(_x(1, 4, 1, 1, 1), _w(4, 3, 3, 3, 3), padding=5),
        lambda: F.conv_transpose3d(_x(1, 4, 1, 1, 1), _w(4, 3, 3, 3, 3), padding=5)),
    "conv3d: empty spatial input": (lambda: tconv.conv_transpose3d(_x(2, 4, 0, 3, 3), _w(4, 3, 3, 3, 3)),
                                    lambda: F.conv_transpose3d(_x(2, 4, 0, 3, 3), _w(4, 3, 3, 3, 3))),
    # PyTorch computes integer transposed convolutions on CPU; tconv's kernels are floating only.
    "conv3d: integer input": (
        lambda: tconv.conv_transpose3d(_x(2, 4, 3, 3, 3).long(), _w(4, 3, 3, 3, 3).long()), None),
    "conv3d: module output_size unreachable": (
        lambda: tconv.ConvTranspose3d(4, 3, 3, stride=2)(_x(2, 4, 3, 3, 3), output_size=(20, 20, 20)),
        lambda: torch.nn.ConvTranspose3d(4, 3, 3, stride=2)(_x(2, 4, 3, 3, 3), output_size=(20, 20, 20))),
    "conv3d: module padding_mode": (lambda: tconv.ConvTranspose3d(4, 3, 3, padding_mode="bogus"),
                                    lambda: torch.nn.ConvTranspose3d(4, 3, 3, padding_mode="bogus")),
    "conv1d: module padding_mode": (lambda: tconv.ConvTranspose1d(4, 3, 3, padding_mode="bogus"),
                                    lambda: torch.nn.ConvTranspose1d(4, 3, 3, padding_mode="bogus")),
    # the 1-D output (7 at padding 0) is 1 at padding 3: reflect needs padding < size (F.pad's error)
    "conv1d: reflect padding too large": (
        lambda: tconv.conv_transpose1d(_x(2, 4, 5), _w(4, 3, 3), padding=3, padding_mode="reflect"),
        lambda: F.pad(torch.randn(1, 1, 1, 1), (3, 3, 0, 0), mode="reflect")),
    "conv3d: reflect padding too large": (
        lambda: tconv.conv_transpose3d(_x(2, 4, 3, 3, 3), _w(4, 3, 3, 3, 3), padding=2, padding_mode="reflect"),
        lambda: F.pad(torch.randn(1, 1, 1, 1, 1), (2, 2, 2, 2, 2, 2), mode="reflect")),
    # interpolate(mode='linear' / 'trilinear')
    "linear: 4-D input": (lambda: tconv.interpolate(_x(), scale_factor=2, mode="linear"),
                          lambda: F.interpolate(_x(), scale_factor=2, mode="linear")),
    "linear: size of wrong length": (lambda: tconv.interpolate(_x(2, 3, 5), size=(4, 4), mode="linear"),
                                     lambda: F.interpolate(_x(2, 3, 5), size=(4, 4), mode="linear")),
    "linear: zero output size": (lambda: tconv.interpolate(_x(2, 3, 5), size=0, mode="linear"),
                                 lambda: F.interpolate(_x(2, 3, 5), size=0, mode="linear")),
    "linear: empty input": (lambda: tconv.interpolate(_x(2, 3, 0), size=4, mode="linear"),
                            lambda: F.interpolate(_x(2, 3, 0), size=4, mode="linear")),
    "linear: zero channels": (lambda: tconv.interpolate(_x(2, 0, 5), size=4, mode="linear"),
                              lambda: F.interpolate(_x(2, 0, 5), size=4, mode="linear")),
    "linear: integer input": (lambda: tconv.interpolate(_x(2, 3, 5).long(), size=4, mode="linear"),
                              lambda: F.interpolate(_x(2, 3, 5).long(), size=4, mode="linear")),
    "linear: antialias": (lambda: tconv.interpolate(_x(2, 3, 5), scale_factor=0.5, mode="linear", antialias=True),
                          lambda: F.interpolate(_x(2, 3, 5), scale_factor=0.5, mode="linear", antialias=True)),
    "trilinear: 4-D input": (lambda: tconv.interpolate(_x(), scale_factor=2, mode="trilinear"),
                             lambda: F.interpolate(_x(), scale_factor=2, mode="trilinear")),
    "trilinear: scale_factor of wrong length": (
        lambda: tconv.interpolate(_x(1, 2, 3, 3, 3), scale_factor=(2, 2), mode="trilinear"),
        lambda: F.interpolate(_x(1, 2, 3, 3, 3), scale_factor=(2, 2), mode="trilinear")),
    "trilinear: zero output size": (
        lambda: tconv.interpolate(_x(1, 2, 3, 3, 3), size=(0, 2, 2), mode="trilinear"),
        lambda: F.interpolate(_x(1, 2, 3, 3, 3), size=(0, 2, 2), mode="trilinear")),
    "trilinear: zero channels": (lambda: tconv.interpolate(_x(1, 0, 3, 3, 3), size=4, mode="trilinear"),
                                 lambda: F.interpolate(_x(1, 0, 3, 3, 3), size=4, mode="trilinear")),
    "trilinear: integer input": (
        lambda: tconv.interpolate(_x(1, 2, 3, 3, 3).long(), size=4, mode="trilinear"),
        lambda: F.interpolate(_x(1, 2, 3, 3, 3).long(), size=4, mode="trilinear")),
    "trilinear: antialias": (
        lambda: tconv.interpolate(_x(1, 2, 3, 3, 3), scale_factor=0.5, mode="trilinear", antialias=True),
        lambda: F.interpolate(_x(1, 2, 3, 3, 3), scale_factor=0.5, mode="trilinear", antialias=True)),
    # gram_matrix / style_loss / GramMatrix
    "gram: 1-D input": (lambda: tconv.gram_matrix(torch.randn(5)), None),
    "gram: 5-D input": (lambda: tconv.gram_matrix(torch.randn(1, 2, 3, 4, 5)), None),
    "gram: integer input": (lambda: tconv.gram_matrix(torch.ones(2, 3, 4, 4, dtype=torch.int64)), None),
    "gram: complex input": (lambda: tconv.gram_matrix(torch.ones(2, 3, 4, 4, dtype=torch.complex64)),
                            None),
    "gram: op features not (N, C, L)": (lambda: ops.gram_matrix(torch.randn(3, 5), True), None),
    "gram: backward grad_gram shape": (
        lambda: ops.gram_matrix_backward(torch.randn(2, 3, 4), torch.randn(2, 3, 5), True), None),
    "gram: backward grad_gram dtype": (
        lambda: ops.gram_matrix_backward(torch.randn(2, 3, 3, dtype=torch.float64),
                                         torch.randn(2, 3, 5), True), None),
    "gram: style_loss target shape": (
        lambda: tconv.style_loss(torch.randn(1, 4, 3, 3), torch.randn(1, 5, 5)),
        lambda: gram_reference_differentiable(torch.randn(1, 4, 3, 3), False) - torch.randn(1, 5, 5)),
    # init
    "init: bilinear_ on a 3-D weight": (lambda: tconv.init.bilinear_(torch.empty(3, 3, 4)), None),
}

EXCEPTIONS = {"RuntimeError": RuntimeError, "ValueError": ValueError, "TypeError": TypeError,
              "NotImplementedError": NotImplementedError, "IndexError": IndexError}


def error_rows():
    """(case, op, argument, exception name, message excerpt) of each row of docs/errors.md (read by the
    test files that use them: importing this module reads no file)."""
    rows = []
    for line in (ROOT / "docs" / "errors.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) != 5 or cells[0] in ("case", "") or set(cells[0]) <= set("-: "):
            continue
        rows.append(tuple(c.strip("`") for c in cells))
    return rows


def check_compile_and_export(layer, x):
    """A module gives the same output and gradients (input and weight) compiled (aot_eager,
    fullgraph) as in eager mode, and the same output after torch.export."""
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), layer(x))
    g1 = torch.autograd.grad(compiled(x).square().sum(), (x, layer.weight))
    g2 = torch.autograd.grad(layer(x).square().sum(), (x, layer.weight))
    for a, c in zip(g1, g2):
        torch.testing.assert_close(a, c)
    ep = torch.export.export(layer, (x.detach(),))
    torch.testing.assert_close(ep.module()(x.detach()), layer(x.detach()))


def check_same_outputs_and_grads(ref, ours, x):
    """Two models (PyTorch's layers and tconv's) give the same output on x and the same gradients
    of sum(output^2) for every parameter."""
    out_ref, out = ref(x), ours(x)
    torch.testing.assert_close(out, out_ref)
    out_ref.square().sum().backward()
    out.square().sum().backward()
    for (name, p_ref), (_, p) in zip(ref.named_parameters(), ours.named_parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, msg=name)
