"""Timing and table plumbing shared by every benchmark case module.

A case builds its inputs once and names two callables over them: tconv's op (`Case.tconv`) and
PyTorch's (`Case.reference`), plus optionally a peer such as OpenCV. Each pass (fwd, fwd+bwd) times both sides
interleaved, call by call, so machine noise hits them alike, and reports medians and the ratio.
A memory-bound case can also time, in the same interleaved loop, a copy of the bytes it moves:
its "x floor" is then measured against the copy rate of the same seconds (this machine's memory
bandwidth moves by up to 2x from one minute to the next, so a floor taken in another row of the
table is not the one the case ran against).

The backward of an upsampling reads grad_output, many times the size of what it writes. Its
"bwd" row also times a plain read of grad_output (a max over it: no writes, nothing computed that
a memory read does not hide) in the same loop. PyTorch's time over that read is the "max speedup"
column: what a kernel that did nothing but read its input once would gain over PyTorch, the
ceiling of any speedup target for that row on this machine.
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
    tconv: Callable               # *inputs -> Tensor: tconv's op
    reference: Callable           # *inputs -> Tensor: PyTorch's op it is timed and checked against
    flops: float = 0.0            # forward FLOPs (0: not a FLOP-bound op)
    bytes_moved: float = 0.0      # forward minimum bytes moved, read + written (0: not reported)
    backward: bool = True         # time fwd+bwd too
    backward_alone: bool = False  # also time the backward by itself (a "bwd" row, with GB/s)
    copy_floor: bool = False      # fwd and bwd rows also time a copy of `bytes_moved` (floor_ms, x_floor)
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


def time_interleaved(fns, min_time=0.4, max_reps=200, min_reps=5, warmups=3):
    """Median seconds of each of fns, called in turn (the order reversed every round), call by
    call, after `warmups` calls each.
    Three, not one: glibc raises its mmap threshold as large blocks are freed, so a function that
    allocates several large temporaries page-faults on its first few calls and runs from reused
    heap memory after (an upsample_conv2d forward+backward: 100-127 ms for its first calls, 37 ms
    from the sixth; benchmarks/NOTES.md, session 11)."""
    for _ in range(warmups):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    pairs = list(zip(fns, times))
    start = time.perf_counter()
    while len(times[0]) < max_reps and (len(times[0]) < min_reps
                                        or time.perf_counter() - start < len(fns) * min_time):
        for fn, ts in pairs:
            t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
        # Rounds alternate in order (A B, then B A): a call right after a heavy one (PyTorch's
        # pair streams tens of MB through the caches) runs slower, and a fixed order would put
        # that cost on the same side every time (NOTES, session 20: position bias).
        pairs.reverse()
    return [statistics.median(ts) for ts in times]


def _copy_of_bytes(nbytes, device):
    """Copies nbytes / 2 bytes (read) into a buffer allocated once (written): the copy rate. The
    buffer is warm, like tconv's outputs from its output cache (a fresh 4 KiB-page buffer would add
    its page faults)."""
    src = torch.randn(int(nbytes // 8), device=device)
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)


def _timed_row(case, pass_, sides, sync, min_time, device, floor=True, read=None):
    """Times (torch, tconv) interleaved, with the case's copy floor as a further call if it has one
    and the pass moves the case's bytes (`floor`: fwd and bwd, not fwd+bwd), and `read` (a plain
    read of the pass's input) as the last."""
    floor = floor and case.copy_floor
    fns = [sync(sides[0]), sync(sides[1])]
    if floor:
        fns.append(sync(_copy_of_bytes(case.bytes_moved, device)))
    if read is not None:
        fns.append(sync(read))
    times = time_interleaved(fns, min_time)
    row = dict(group=case.group, case=case.name, dense=case.dense, pass_=pass_, torch_ms=times[0] * 1e3,
               tconv_ms=times[1] * 1e3, speedup=times[0] / times[1])
    if floor:
        row["floor_ms"] = times[2] * 1e3
        row["x_floor"] = times[1] / times[2]
    if read is not None:
        row["read_ms"] = times[-1] * 1e3
        row["max_speedup"] = times[0] / times[-1]
    return row


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
        ref = case.reference(*inputs)
        out = case.tconv(*inputs)
        err = _max_rel_err(out, ref)
        row = _timed_row(case, "fwd", (lambda: case.reference(*inputs), lambda: case.tconv(*inputs)), sync,
                         min_time, device)
        t_tconv = row["tconv_ms"] / 1e3
        row.update(rel_err=err, ok=bool(err <= case.rtol or torch.allclose(out, ref, case.rtol, case.atol)))
        if case.flops:
            row["gflops"] = case.flops / t_tconv / 1e9
        if case.bytes_moved:
            row["gbps"] = case.bytes_moved / t_tconv / 1e9
        if case.peer is not None and device == "cpu":  # peers run on the CPU only
            prepared = case.peer.prepare(inputs)
            row["peer"] = case.peer.name
            row["peer_ms"] = time_interleaved([lambda: case.peer.run(prepared)], min_time)[0] * 1e3
        rows.append(row)
    if case.backward:
        inputs = _to_device(case.make_inputs(True), device)
        grad_out = torch.randn_like(case.reference(*inputs))
        ref = _grads(case.reference, inputs, grad_out)
        got = _grads(case.tconv, inputs, grad_out)
        err = max(_max_rel_err(a, b) for a, b in zip(got, ref))
        row = _timed_row(case, "fwd+bwd", (lambda: _grads(case.reference, inputs, grad_out),
                                           lambda: _grads(case.tconv, inputs, grad_out)),
                         sync, min_time, device, floor=False)
        row.update(rel_err=err, ok=bool(err <= 10 * case.rtol))
        if case.flops:
            row["gflops"] = 3 * case.flops / (row["tconv_ms"] / 1e3) / 1e9
        rows.append(row)
        if case.backward_alone:
            rows.append(_backward_row(case, inputs, grad_out, sync, min_time, device))
    return rows


def _backward_row(case, inputs, grad_out, sync, min_time, device):
    """The backward alone: one forward graph per side, its backward timed again and again."""
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    outs = case.reference(*inputs), case.tconv(*inputs)
    back = [lambda o=o: torch.autograd.grad(o, leaves, grad_out, retain_graph=True) for o in outs]
    # A max over grad_output reads it at the machine's read rate (as fast as an AVX-512 load loop
    # here) and writes nothing: a lower bound on any backward, which must read all of grad_output.
    read = (lambda: grad_out.amax()) if case.copy_floor else None
    row = _timed_row(case, "bwd", back, sync, min_time, device, read=read)
    err = max(_max_rel_err(a, b) for a, b in zip(back[1](), back[0]()))
    row.update(rel_err=err, ok=bool(err <= 10 * case.rtol))
    if case.bytes_moved:  # the backward moves the forward's bytes, reversed
        row["gbps"] = case.bytes_moved / (row["tconv_ms"] / 1e3) / 1e9
    return row


def format_table(rows):
    head = ["op", "case", "pass", "torch ms", "tconv ms", "speedup", "kernel vs kernel", "warm heap", "GFLOP/s",
            "GB/s", "x floor", "max speedup", "peer ms", "check"]
    lines = [head]
    for r in rows:
        peer = f"{r['peer_ms']:.2f} ({r['peer']})" if "peer_ms" in r else ""
        lines.append([r["group"], r["case"], r["pass_"], f"{r['torch_ms']:.2f}", f"{r['tconv_ms']:.2f}",
                      f"{r['speedup']:.2f}x",
                      f"{r['kernel_speedup']:.2f}x" if "kernel_speedup" in r else "",
                      f"{r['warm_speedup']:.2f}x" if "warm_speedup" in r else "",
                      f"{r['gflops']:.1f}" if "gflops" in r else "",
                      f"{r['gbps']:.1f}" if "gbps" in r else "",
                      f"{r['x_floor']:.2f}" if "x_floor" in r else "",
                      f"{r['max_speedup']:.2f}x" if "max_speedup" in r else "", peer,
                      "ok" if r["ok"] else f"FAIL {r['rel_err']:.1e}"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    fmt = lambda line: "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |"
    out = [fmt(lines[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(line) for line in lines[1:]]
    return "\n".join(out)


def geomean(values):
    values = list(values)
    return statistics.geometric_mean(values) if values else float("nan")
