"""Every autograd mode of every op against the same mode of PyTorch's own ops: forward-mode AD
(torch.autograd.forward_ad), torch.func's jvp, grad, vjp, jacrev, jacfwd, hessian, vmap (with real
batching rules: PyTorch's per-sample fallback warning is an error here) and vmap of grad
(per-sample gradients); gradcheck in every mode for the backward ops themselves."""
import warnings

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vjp, vmap

import tconv
from _support import full_gradcheck, gram_reference_differentiable

ops = torch.ops.tconv
D = torch.float64


# name -> (tconv function, PyTorch function, argument shapes). Every function takes tensors only.
CONV = dict(stride=2, padding=1, output_padding=1, dilation=1)
CONV_GROUPED = dict(stride=(1, 2), padding=(0, 1), output_padding=(0, 1), groups=2, dilation=(2, 1))
CONV1D = dict(stride=2, padding=1, output_padding=1, groups=2)
CONV3D = dict(stride=(2, 1, 2), padding=(1, 0, 1), output_padding=(1, 0, 0))
CASES = {
    "conv": (lambda x, w, b: tconv.conv_transpose2d(x, w, b, **CONV),
             lambda x, w, b: F.conv_transpose2d(x, w, b, **CONV),
             [(2, 3, 4, 3), (3, 2, 3, 3), (2,)]),
    "conv_grouped": (lambda x, w, b: tconv.conv_transpose2d(x, w, b, **CONV_GROUPED),
                     lambda x, w, b: F.conv_transpose2d(x, w, b, **CONV_GROUPED),
                     [(2, 4, 3, 4), (4, 3, 2, 3), (6,)]),
    "conv_depthwise": (lambda x, w: tconv.conv_transpose2d(x, w, None, stride=2, padding=1, groups=3),
                       lambda x, w: F.conv_transpose2d(x, w, None, stride=2, padding=1, groups=3),
                       [(2, 3, 3, 4), (3, 1, 4, 4)]),
    "bilinear": (lambda x: tconv.interpolate(x, scale_factor=2, mode="bilinear"),
                 lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
                 [(2, 3, 4, 5)]),
    "bilinear_align_corners": (lambda x: tconv.interpolate(x, size=(5, 7), mode="bilinear", align_corners=True),
                               lambda x: F.interpolate(x, size=(5, 7), mode="bilinear", align_corners=True),
                               [(2, 3, 4, 5)]),
    "bicubic": (lambda x: tconv.interpolate(x, scale_factor=1.5, mode="bicubic"),
                lambda x: F.interpolate(x, scale_factor=1.5, mode="bicubic"),
                [(2, 3, 4, 5)]),
    "bilinear_antialias": (lambda x: tconv.interpolate(x, size=(3, 2), mode="bilinear", antialias=True),
                           lambda x: F.interpolate(x, size=(3, 2), mode="bilinear", antialias=True),
                           [(2, 3, 6, 5)]),
    "bicubic_antialias": (lambda x: tconv.interpolate(x, size=(3, 2), mode="bicubic", antialias=True),
                          lambda x: F.interpolate(x, size=(3, 2), mode="bicubic", antialias=True),
                          [(2, 3, 6, 5)]),
    # the 1-D / 3-D composites (their modes come from the 2-D ops they call)
    "conv1d": (lambda x, w, b: tconv.conv_transpose1d(x, w, b, **CONV1D),
               lambda x, w, b: F.conv_transpose1d(x, w, b, **CONV1D),
               [(2, 4, 3), (4, 2, 3), (4,)]),
    "conv3d": (lambda x, w, b: tconv.conv_transpose3d(x, w, b, **CONV3D),
               lambda x, w, b: F.conv_transpose3d(x, w, b, **CONV3D),
               [(1, 2, 2, 3, 2), (2, 2, 2, 2, 3), (2,)]),
    "conv3d_k2s2": (lambda x, w, b: tconv.conv_transpose3d(x, w, b, stride=2),
                    lambda x, w, b: F.conv_transpose3d(x, w, b, stride=2),
                    [(1, 2, 2, 2, 2), (2, 2, 2, 2, 2), (2,)]),
    "linear": (lambda x: tconv.interpolate(x, scale_factor=1.7, mode="linear"),
               lambda x: F.interpolate(x, scale_factor=1.7, mode="linear"),
               [(2, 3, 5)]),
    "linear_align_corners": (lambda x: tconv.interpolate(x, size=7, mode="linear", align_corners=True),
                             lambda x: F.interpolate(x, size=7, mode="linear", align_corners=True),
                             [(2, 3, 5)]),
    "trilinear": (lambda x: tconv.interpolate(x, scale_factor=(1.5, 2, 0.7), mode="trilinear"),
                  lambda x: F.interpolate(x, scale_factor=(1.5, 2, 0.7), mode="trilinear"),
                  [(1, 2, 3, 2, 4)]),
    "trilinear_align_corners": (
        lambda x: tconv.interpolate(x, size=(3, 4, 2), mode="trilinear", align_corners=True),
        lambda x: F.interpolate(x, size=(3, 4, 2), mode="trilinear", align_corners=True),
        [(1, 2, 3, 2, 4)]),
    "gram": (lambda x: tconv.gram_matrix(x), gram_reference_differentiable, [(2, 3, 4, 5)]),
    "gram_raw": (lambda x: tconv.gram_matrix(x, normalize=False),
                 lambda x: gram_reference_differentiable(x, normalize=False), [(2, 3, 4, 5)]),
}


def _fold_matrix(n, before, after, mode, dtype=D):
    """(n, before + n + after): the adjoint of F.pad(mode) along one axis, as a 0/1 matrix."""
    return F.pad(torch.eye(n, dtype=dtype).view(1, n, n), (before, after), mode=mode)[0]


def _conv_padding_mode_reference(mode, **kw):
    """PyTorch's adjoint of conv2d(F.pad(y, mode), w): the padding-0 transposed convolution, then
    the fold of both axes as matrix products (every torch.func transform takes them)."""
    def ref(x, w, b):
        full = F.conv_transpose2d(x, w, None, kw["stride"], 0, kw["output_padding"], kw.get("groups", 1),
                                  kw["dilation"])
        p = kw["padding"]
        ho, wo = full.shape[-2] - 2 * p, full.shape[-1] - 2 * p
        out = _fold_matrix(ho, p, p, mode) @ full @ _fold_matrix(wo, p, p, mode).mT
        return out + b.view(-1, 1, 1)
    return ref


for _mode in ("reflect", "replicate", "circular"):
    CASES[f"conv_{_mode}"] = (
        lambda x, w, b, m=_mode: tconv.conv_transpose2d(x, w, b, padding_mode=m, **CONV),
        _conv_padding_mode_reference(_mode, **CONV), [(2, 3, 4, 3), (3, 2, 3, 3), (2,)])
NAMES = list(CASES)


def _case(name):
    ours, theirs, shapes = CASES[name]
    args = tuple(torch.randn(s, dtype=D) for s in shapes)
    return ours, theirs, args


def _same(got, want):
    if isinstance(want, (tuple, list)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _same(g, w)
    else:
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.fixture(autouse=True)
def _no_vmap_fallback():
    """PyTorch warns when vmap has to run an op once per sample: every tconv op has a rule."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*performance drop.*")
        yield


def _loss(fn):
    return lambda *a: (fn(*a) ** 2).sum()


@pytest.mark.parametrize("name", NAMES)
def test_forward_ad(name):
    ours, theirs, args = _case(name)
    tangents = tuple(torch.randn_like(a) for a in args)
    results = []
    for fn in (ours, theirs):
        with fwAD.dual_level():
            out = fn(*(fwAD.make_dual(a, t) for a, t in zip(args, tangents)))
            results.append(fwAD.unpack_dual(out))
    _same(results[0].primal, results[1].primal)
    assert results[0].tangent is not None
    _same(results[0].tangent, results[1].tangent)


@pytest.mark.parametrize("name", NAMES)
def test_forward_ad_of_one_argument_at_a_time(name):
    """A tangent on one argument only: the other terms are absent, not zero tensors or errors."""
    ours, theirs, args = _case(name)
    for i in range(len(args)):
        tangent = torch.randn_like(args[i])
        results = []
        for fn in (ours, theirs):
            f = lambda a: fn(*args[:i], a, *args[i + 1:])
            results.append(jvp(f, (args[i],), (tangent,))[1])
        _same(*results)


@pytest.mark.parametrize("name", NAMES)
def test_jvp_grad_vjp(name):
    ours, theirs, args = _case(name)
    tangents = tuple(torch.randn_like(a) for a in args)
    argnums = tuple(range(len(args)))
    _same(jvp(ours, args, tangents), jvp(theirs, args, tangents))
    _same(grad(_loss(ours), argnums=argnums)(*args), grad(_loss(theirs), argnums=argnums)(*args))
    out, fn = vjp(ours, *args)
    ref, ref_fn = vjp(theirs, *args)
    cotangent = torch.randn_like(ref)
    _same(out, ref)
    _same(fn(cotangent), ref_fn(cotangent))


@pytest.mark.parametrize("name", NAMES)
def test_jacobians_and_hessian(name):
    ours, theirs, args = _case(name)
    argnums = tuple(range(len(args)))
    _same(jacrev(ours, argnums=argnums)(*args), jacrev(theirs, argnums=argnums)(*args))
    _same(jacfwd(ours, argnums=argnums)(*args), jacfwd(theirs, argnums=argnums)(*args))
    _same(hessian(_loss(ours))(*args), hessian(_loss(theirs))(*args))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("in_dim", [0, 2])
def test_vmap_every_argument(name, in_dim):
    """Each argument vmapped alone, then all together, at dimension in_dim."""
    ours, theirs, args = _case(name)
    size = 3
    batched = tuple(torch.randn(*a.shape[:in_dim], size, *a.shape[in_dim:], dtype=D) if a.dim() >= in_dim
                    else torch.randn(size, *a.shape, dtype=D) for a in args)
    dims = tuple(in_dim if a.dim() >= in_dim else 0 for a in args)
    for i in range(len(args)):
        call = args[:i] + (batched[i],) + args[i + 1:]
        in_dims = tuple(dims[j] if j == i else None for j in range(len(args)))
        _same(vmap(ours, in_dims=in_dims)(*call), vmap(theirs, in_dims=in_dims)(*call))
    _same(vmap(ours, in_dims=dims)(*batched), vmap(theirs, in_dims=dims)(*batched))


@pytest.mark.parametrize("name", NAMES)
def test_per_sample_gradients(name):
    """vmap(grad): each sample's gradient for every argument, the first one split into samples."""
    ours, theirs, args = _case(name)
    samples = args[0].unsqueeze(1)  # (N, 1, ...): one sample per vmap step
    argnums = tuple(range(len(args)))
    in_dims = (0,) + (None,) * (len(args) - 1)
    got = vmap(grad(_loss(ours), argnums=argnums), in_dims=in_dims)(samples, *args[1:])
    want = vmap(grad(_loss(theirs), argnums=argnums), in_dims=in_dims)(samples, *args[1:])
    _same(got, want)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_every_mode(name):
    ours, _, args = _case(name)
    full_gradcheck(ours, tuple(a.requires_grad_() for a in args))


# ---- the backward ops, differentiated themselves -------------------------------------------------

def _backward_op_cases():
    x, w = torch.randn(2, 4, 3, 4, dtype=D), torch.randn(4, 3, 3, 3, dtype=D)
    conv = dict(stride=[2, 1], padding=[1, 0], groups=2, dilation=[1, 2])
    gy = torch.randn_like(F.conv_transpose2d(x, w, None, conv["stride"], conv["padding"], 0, 2, conv["dilation"]))
    s, p, g, d = conv["stride"], conv["padding"], conv["groups"], conv["dilation"]
    yield "conv_backward_input", lambda gy, w: ops.conv_transpose2d_backward_input(gy, w, s, p, g, d, [3, 4]), (gy, w)
    yield "conv_backward_weight", lambda gy, x: ops.conv_transpose2d_backward_weight(gy, x, [3, 3], s, p, g, d), (gy, x)
    yield "conv_backward_bias", ops.conv_transpose2d_backward_bias, (gy,)
    for mode in ("bilinear", "bicubic"):
        op = getattr(ops, f"upsample_{mode}2d_backward")
        yield f"{mode}_backward", lambda go, op=op: op(go, [4, 5], False, False, None, None), (torch.randn(2, 3, 7, 9, dtype=D),)
        yield f"{mode}_backward_antialias", lambda go, op=op: op(go, [6, 5], True, True, 0.5, 0.5), (torch.randn(2, 3, 3, 2, dtype=D),)
    yield "gram_backward", lambda gg, x: ops.gram_matrix_backward(gg, x, True), (torch.randn(2, 3, 3, dtype=D), torch.randn(2, 3, 7, dtype=D))


BACKWARD_OPS = list(_backward_op_cases())


@pytest.mark.parametrize("name,fn,args", BACKWARD_OPS, ids=[c[0] for c in BACKWARD_OPS])
def test_backward_ops_gradcheck_every_mode(name, fn, args):
    full_gradcheck(fn, tuple(a.clone().requires_grad_() for a in args))


@pytest.mark.parametrize("name,fn,args", BACKWARD_OPS, ids=[c[0] for c in BACKWARD_OPS])
def test_backward_ops_vmap_each_argument(name, fn, args):
    """The backward ops' batching rules (used by batched gradcheck and per-sample gradients),
    against the ops applied sample by sample."""
    size = 3
    for i in range(len(args)):
        stack = torch.randn(size, *args[i].shape, dtype=D)
        got = vmap(lambda a: fn(*args[:i], a, *args[i + 1:]))(stack)
        want = torch.stack([fn(*args[:i], a, *args[i + 1:]) for a in stack])
        _same(got, want)
    stacks = [torch.randn(size, *a.shape, dtype=D) for a in args]
    got = vmap(fn)(*stacks)
    want = torch.stack([fn(*(s[k] for s in stacks)) for k in range(size)])
    _same(got, want)


def test_no_grad_and_detached_calls_build_no_graph():
    x = torch.randn(1, 2, 3, 3, requires_grad=True)
    with torch.no_grad():
        assert tconv.interpolate(x, scale_factor=2).grad_fn is None
    assert tconv.interpolate(x.detach(), scale_factor=2).grad_fn is None
    assert tconv.interpolate(x, scale_factor=2).grad_fn is not None


def test_forward_ad_under_no_grad():
    """Forward mode does not depend on grad mode (like PyTorch's ops)."""
    x, t = torch.randn(1, 2, 3, 3, dtype=D), torch.randn(1, 2, 3, 3, dtype=D)
    with torch.no_grad(), fwAD.dual_level():
        got = fwAD.unpack_dual(tconv.gram_matrix(fwAD.make_dual(x, t))).tangent
        want = fwAD.unpack_dual(gram_reference_differentiable(fwAD.make_dual(x, t))).tangent
    _same(got, want)


def test_gram_tangent_is_exactly_symmetric():
    x, t = torch.randn(2, 6, 5, 5), torch.randn(2, 6, 5, 5)
    tangent = jvp(tconv.gram_matrix, (x,), (t,))[1]
    assert torch.equal(tangent, tangent.mT)


def test_in_place_change_of_a_saved_input_is_detected():
    x = torch.randn(1, 2, 3, 3, requires_grad=True)
    y = x * 1
    g = tconv.gram_matrix(y)
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        g.sum().backward()


def test_graph_freed_after_backward():
    x = torch.randn(1, 2, 3, 3, requires_grad=True)
    g = tconv.gram_matrix(x)
    g.sum().backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        g.sum().backward()
