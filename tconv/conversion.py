"""``tconv.convert``: a model's ``torch.nn`` layers swapped for tconv's, with a report of what stayed.

Each replaced layer keeps its object: its class is switched to the tconv subclass of the same
``torch.nn`` class (tconv's layer classes add no state), so parameters, buffers, hooks, the
training flag, any extra attributes and the state_dict keys are the layer's own. ``inplace=False``
(the default) converts a ``copy.deepcopy`` of the model; ``inplace=True`` the model itself (the
same Parameter objects, and every other reference to a converted layer sees tconv's class).
"""
import copy
import dataclasses
import logging
from typing import List, Tuple

from torch import nn

from . import functional as F
from . import modules

logger = logging.getLogger("tconv.convert")


def _conv_transpose_reason(m):
    # 'reflect', 'replicate', 'circular': PyTorch's forward raises, tconv's computes them.
    if m.padding_mode not in F.PADDING_MODES:
        return f"padding_mode={m.padding_mode!r} is not one of tconv's {F.PADDING_MODES}"
    return None


def _upsample_reason(m):
    if m.mode not in F._INTERPOLATE_MODES:
        return f"mode={m.mode!r} is not one of tconv's ({', '.join(F._INTERPOLATE_MODES)})"
    return None


# torch.nn class -> (tconv class, check(layer) -> None, or why the layer stays PyTorch's).
# Exact types only: a user subclass may have its own forward. Adding a class is one line.
REPLACEMENTS = {
    nn.ConvTranspose1d: (modules.ConvTranspose1d, _conv_transpose_reason),
    nn.ConvTranspose2d: (modules.ConvTranspose2d, _conv_transpose_reason),
    nn.ConvTranspose3d: (modules.ConvTranspose3d, _conv_transpose_reason),
    nn.Upsample: (modules.Upsample, _upsample_reason),
    nn.UpsamplingBilinear2d: (modules.UpsamplingBilinear2d, _upsample_reason),
}


@dataclasses.dataclass
class ConversionReport:
    """What ``tconv.convert`` did. Names are those of ``model.named_modules()``.

    - ``converted``: (name, torch.nn class name, tconv class name) per replaced layer;
    - ``fused``: (upsample name, conv name) per pair fused into ``tconv.UpsampleConv2d`` (``fuse=True``);
    - ``skipped``: (name, class name, reason) per layer of a replaceable kind that stays PyTorch's
      (an unsupported setting, a subclass, a pair that could not be fused)."""
    converted: List[Tuple[str, str, str]] = dataclasses.field(default_factory=list)
    fused: List[Tuple[str, str]] = dataclasses.field(default_factory=list)
    skipped: List[Tuple[str, str, str]] = dataclasses.field(default_factory=list)

    def __str__(self):
        lines = [f"tconv.convert: {len(self.converted)} converted, {len(self.fused)} fused, "
                 f"{len(self.skipped)} left to PyTorch"]
        lines += [f"  converted {name or '(root)'}: {old} -> {new}" for name, old, new in self.converted]
        lines += [f"  fused {up} + {conv} -> tconv.UpsampleConv2d" for up, conv in self.fused]
        lines += [f"  kept {name or '(root)'} ({cls}): {why}" for name, cls, why in self.skipped]
        return "\n".join(lines)


_TCONV_CLASSES = tuple(new for new, _ in REPLACEMENTS.values()) + (modules.UpsampleConv2d,)
_NEAREST_UPSAMPLES = (nn.Upsample, nn.UpsamplingNearest2d)


def _has_hooks(m):
    return any(getattr(m, attr, None) for attr in ("_forward_hooks", "_forward_pre_hooks",
                                                      "_backward_hooks", "_backward_pre_hooks"))


def _fusion_reason(up, conv, uses):
    """None when (up, conv) fuse exactly, else why not."""
    if up.size is not None or F._integer_factors(up.scale_factor) is None:
        return "not fused: the upsampling is not by an integer scale_factor"
    if conv.stride != (1, 1) or conv.dilation != (1, 1):
        return "not fused: the conv's stride or dilation is not 1"
    if conv.padding_mode != "zeros":
        return f"not fused: the conv's padding_mode is {conv.padding_mode!r}"
    if _has_hooks(up) or _has_hooks(conv):
        return "not fused: the upsample or the conv has hooks"
    if uses[id(up)] > 1 or uses[id(conv)] > 1:
        return "not fused: the upsample or the conv is used at more than one place"
    return None


def _fuse(model, report):
    """Upsample (nearest, or bilinear / bicubic without align_corners) -> Conv2d pairs of every
    nn.Sequential, fused in place: the conv becomes a
    tconv.UpsampleConv2d (same object, keys and parameters), the upsample's slot an nn.Identity."""
    names = {id(m): name for name, m in model.named_modules()}
    uses = {}
    for _, m in model.named_modules(remove_duplicate=False):
        uses[id(m)] = uses.get(id(m), 0) + 1
    for seq in list(model.modules()):
        if type(seq) is not nn.Sequential:
            continue
        keys = list(seq._modules)
        for key, next_key in zip(keys, keys[1:]):
            up, conv = seq._modules[key], seq._modules[next_key]
            if type(up) not in _NEAREST_UPSAMPLES or type(conv) is not nn.Conv2d:
                continue
            if not (up.mode in F._NEAREST_MODES or (up.mode in F._MIXED_MODES and not up.align_corners)):
                continue
            reason = _fusion_reason(up, conv, uses)
            if reason is not None:
                report.skipped.append((names[id(up)], type(up).__name__, reason))
                continue
            conv.__class__ = modules.UpsampleConv2d
            conv.scale_factor = up.scale_factor
            conv.mode = up.mode
            seq._modules[key] = nn.Identity().train(up.training)
            report.fused.append((names[id(up)], names[id(conv)]))


def convert(module, inplace=False, fuse=False, report=False):
    """``module`` with its torch.nn layers replaced by tconv's: ``nn.ConvTranspose1d/2d/3d`` ->
    ``tconv.ConvTranspose1d/2d/3d``, ``nn.Upsample`` with
    mode 'bilinear', 'bicubic', 'linear' or 'trilinear' -> ``tconv.Upsample``, ``nn.UpsamplingBilinear2d`` -> ``tconv.UpsamplingBilinear2d`` (the table
    ``tconv.conversion.REPLACEMENTS``; exact classes only). Every other layer is left alone. Layers of
    those kinds that tconv does not run (``nn.Upsample`` with mode 'nearest', a ConvTranspose2d
    with an unknown padding_mode, a user subclass) stay PyTorch's and are listed in the report. A
    ConvTranspose1d/2d/3d whose padding_mode was set to 'reflect', 'replicate' or 'circular' after
    construction (PyTorch's forward raises) is converted: tconv computes those modes.

    Each replaced layer keeps its parameters (the same Parameter objects when ``inplace``, the
    deep copy's otherwise), buffers, hooks, training flag and state_dict keys: the converted model
    loads the original's state_dict and back, and computes the same outputs and gradients (to
    float rounding).

    ``fuse=True`` also fuses each ``nn.Upsample(scale_factor=integer, mode='nearest')`` (or
    ``nn.UpsamplingNearest2d``, or mode 'bilinear' / 'bicubic' with align_corners False) directly
    followed by an ``nn.Conv2d`` with stride 1 and dilation 1 in an ``nn.Sequential`` into
    ``tconv.UpsampleConv2d`` (no upsampled intermediate). The Sequential keeps its length and indices: the upsample's slot
    becomes an ``nn.Identity`` and the conv's slot holds the fused layer, with the conv's
    parameters, so the state_dict keys are unchanged (the upsample has no state). Pairs with hooks
    or a layer used at more than one place are not fused. The fused layer reads 3-D input as one
    (C, H, W) image; ``nn.Upsample`` reads it as (N, C, L) and resizes one axis, so fuse models fed
    4-D batches.

    Returns the converted model, or ``(model, ConversionReport)`` with ``report=True``. The report
    is also logged at INFO level to the ``tconv.convert`` logger."""
    model = module if inplace else copy.deepcopy(module)
    result = ConversionReport()
    if fuse:
        _fuse(model, result)
    for name, m in model.named_modules():
        if isinstance(m, _TCONV_CLASSES):
            continue
        entry = REPLACEMENTS.get(type(m))
        if entry is None:
            bases = [base for base in REPLACEMENTS if isinstance(m, base)]
            if bases:
                reason = (_upsample_reason(m) if isinstance(m, nn.Upsample) else None) or (
                    f"a subclass of nn.{bases[0].__name__} (its forward may differ)")
                if not any(n == name for n, _, _ in result.skipped):
                    result.skipped.append((name, type(m).__name__, reason))
            continue
        new_class, check = entry
        reason = check(m)
        if reason is not None:
            if not any(n == name for n, _, _ in result.skipped):
                result.skipped.append((name, type(m).__name__, reason))
            continue
        old = type(m).__name__
        m.__class__ = new_class
        result.converted.append((name, f"nn.{old}", f"tconv.{new_class.__name__}"))
    logger.info("%s", result)
    return (model, result) if report else model
