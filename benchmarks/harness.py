"""Timing and table plumbing shared by every benchmark case module.

A case builds its inputs once and names two callables over them: tconv's op and PyTorch's
reference (plus optionally a peer such as OpenCV). Each pass (fwd, fwd+bwd) times both sides
interleaved, call by call, so machine noise hits them alike, and reports medians and the ratio.
"""
import dataclasses
import statistics
import time
from typing import Callable, Optional

import torch


@dataclasses.dataclass
class Peer:
    """A non-PyTorch implementation users reach for (OpenCV, a BLAS SYRK): forward only."""
    name: str
    prepare: Callable  # inputs -> peer's own data (e.g. an HWC numpy array), not timed
    run: Callable      # prepared -> result


@dataclasses.dataclass
class Case:
    group: str                    # operator family: "conv_transpose2d", "upsample", "gram"
    name: str
    make_inputs: Callable         # (requires_grad: bool) -> tuple of tensors / args
    tconv: Callable               # *inputs -> Tensor
    torch: Callable               # *inputs -> Tensor
    flops: float = 0.0            # forward FLOPs (0: not a FLOP-bound op)
    bytes: float = 0.0            # forward minimum bytes moved (0: not reported)
    backward: bool = True         # time fwd+bwd too
    backward_alone: bool = False  # also time the backward by itself (a "bwd" row, with GB/s)
    peer: Optional[Peer] = None
    dense: bool = True            # counted in the "dense cases" geomean (depthwise is not)
    devices: tuple = ("cpu", "cuda")  # where the case runs (shapes sized for one device)
    rtol: float = 1e-4
    atol: float = 1e-4


def _grads(fn, inputs, grad_out):
    out = fn(*inputs)
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    return [out] + list(torch.autograd.grad(out, leaves, grad_out))


def _max_rel_err(a, b):
    scale = b.abs().max().item() or 1.0
    return (a.double() - b.double()).abs().max().item() / scale


def time_pair(fn_a, fn_b, min_time=0.4, max_reps=200, min_reps=5):
    """Median seconds of fn_a and fn_b, called alternately after one warm-up each."""
    fn_a(), fn_b()
    ta, tb = [], []
    start = time.perf_counter()
    while len(ta) < max_reps and (len(ta) < min_reps or time.perf_counter() - start < 2 * min_time):
        t0 = time.perf_counter(); fn_a(); t1 = time.perf_counter(); fn_b(); t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    return statistics.median(ta), statistics.median(tb)


def time_one(fn, min_time=0.4, max_reps=200, min_reps=5):
    fn()
    ts = []
    start = time.perf_counter()
    while len(ts) < max_reps and (len(ts) < min_reps or time.perf_counter() - start < min_time):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _to_device(inputs, device):
    """The case's CPU inputs on `device`, leaves again (requires_grad kept)."""
    if device == "cpu":
        return inputs
    return tuple(t.detach().to(device).requires_grad_(t.requires_grad) if isinstance(t, torch.Tensor) else t
                 for t in inputs)


def _synced(fn, device):
    """fn, waiting for the GPU to finish, so that wall-clock timings measure the kernels."""
    if device == "cpu":
        return fn

    def call():
        out = fn()
        torch.cuda.synchronize()
        return out
    return call


def run_case(case: Case, min_time=0.4, device="cpu"):
    """Rows (dicts) for the case: fwd, and fwd+bwd when the case has a backward."""
    rows = []
    sync = lambda fn: _synced(fn, device)  # noqa: E731
    with torch.no_grad():
        inputs = _to_device(case.make_inputs(False), device)
        ref = case.torch(*inputs)
        out = case.tconv(*inputs)
        err = _max_rel_err(out, ref)
        t_torch, t_tconv = time_pair(sync(lambda: case.torch(*inputs)), sync(lambda: case.tconv(*inputs)), min_time)
        row = dict(group=case.group, case=case.name, dense=case.dense, pass_="fwd", torch_ms=t_torch * 1e3,
                   tconv_ms=t_tconv * 1e3, speedup=t_torch / t_tconv, rel_err=err,
                   ok=bool(err <= case.rtol or torch.allclose(out, ref, case.rtol, case.atol)))
        if case.flops:
            row["gflops"] = case.flops / t_tconv / 1e9
        if case.bytes:
            row["gbps"] = case.bytes / t_tconv / 1e9
        if case.peer is not None and device == "cpu":  # peers run on the CPU only
            prepared = case.peer.prepare(inputs)
            row["peer"] = case.peer.name
            row["peer_ms"] = time_one(lambda: case.peer.run(prepared), min_time) * 1e3
        rows.append(row)
    if case.backward:
        inputs = _to_device(case.make_inputs(True), device)
        grad_out = torch.randn_like(case.torch(*inputs))
        ref = _grads(case.torch, inputs, grad_out)
        got = _grads(case.tconv, inputs, grad_out)
        err = max(_max_rel_err(a, b) for a, b in zip(got, ref))
        t_torch, t_tconv = time_pair(sync(lambda: _grads(case.torch, inputs, grad_out)),
                                     sync(lambda: _grads(case.tconv, inputs, grad_out)), min_time)
        row = dict(group=case.group, case=case.name, dense=case.dense, pass_="fwd+bwd", torch_ms=t_torch * 1e3,
                   tconv_ms=t_tconv * 1e3, speedup=t_torch / t_tconv, rel_err=err,
                   ok=bool(err <= 10 * case.rtol))
        if case.flops:
            row["gflops"] = 3 * case.flops / t_tconv / 1e9
        rows.append(row)
        if case.backward_alone:
            rows.append(_backward_row(case, inputs, grad_out, sync, min_time))
    return rows


def _backward_row(case, inputs, grad_out, sync, min_time):
    """The backward alone: one forward graph per side, its backward timed again and again."""
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    outs = case.torch(*inputs), case.tconv(*inputs)
    back = [lambda o=o: torch.autograd.grad(o, leaves, grad_out, retain_graph=True) for o in outs]
    t_torch, t_tconv = time_pair(sync(back[0]), sync(back[1]), min_time)
    err = max(_max_rel_err(a, b) for a, b in zip(back[1](), back[0]()))
    row = dict(group=case.group, case=case.name, dense=case.dense, pass_="bwd", torch_ms=t_torch * 1e3,
               tconv_ms=t_tconv * 1e3, speedup=t_torch / t_tconv, rel_err=err, ok=bool(err <= 10 * case.rtol))
    if case.bytes:
        row["gbps"] = case.bytes / t_tconv / 1e9  # the backward moves the forward's bytes, reversed
    return row


def format_table(rows):
    head = ["op", "case", "pass", "torch ms", "tconv ms", "speedup", "GFLOP/s", "GB/s",
            "peer ms", "check"]
    lines = [head]
    for r in rows:
        peer = f"{r['peer_ms']:.2f} ({r['peer']})" if "peer_ms" in r else ""
        lines.append([r["group"], r["case"], r["pass_"], f"{r['torch_ms']:.2f}", f"{r['tconv_ms']:.2f}",
                      f"{r['speedup']:.2f}x", f"{r['gflops']:.1f}" if "gflops" in r else "",
                      f"{r['gbps']:.1f}" if "gbps" in r else "", peer,
                      "ok" if r["ok"] else f"FAIL {r['rel_err']:.1e}"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    fmt = lambda line: "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |"
    out = [fmt(lines[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(line) for line in lines[1:]]
    return "\n".join(out)


def geomean(values):
    values = list(values)
    return statistics.geometric_mean(values) if values else float("nan")
