"""Helpers of the ops' batching rules (torch.library.register_vmap): the vmapped dimension is
moved to the front and folded into the batch (N) or, where the per-sample tensors differ in
weight, into the groups of a grouped convolution. One kernel call per vmap, never a per-sample
loop."""


def front(tensor, dim, size):
    """``tensor`` with its vmapped dimension first; an unbatched one (dim None) expanded to it."""
    if dim is None:
        return tensor.expand(size, *tensor.shape)
    return tensor.movedim(dim, 0)


def fold_batch(tensor, dim, size):
    """(B, N, ...) -> (B*N, ...): the vmapped dimension folded into the op's batch."""
    return front(tensor, dim, size).flatten(0, 1)


def unfold_batch(tensor, size):
    """(B*N, ...) -> (B, N, ...), with the vmapped dimension at 0."""
    return tensor.unflatten(0, (size, -1))


def fold_channels(tensor, dim, size):
    """(B, N, C, H, W) -> (N, B*C, H, W): per-sample channels as groups of one tensor."""
    return front(tensor, dim, size).movedim(0, 1).flatten(1, 2)


def unfold_channels(tensor, size):
    """(N, B*C, H, W) -> (B, N, C, H, W)."""
    return tensor.unflatten(1, (size, -1)).movedim(1, 0)
