"""The command line the training examples share (fcn.py, super_resolution.py)."""
import argparse
import os

import torch


def training_args(doc, argv, *, size, multiple, reason, train, test, items, batch, lr, length, figure):
    """Parses --size (a multiple of `multiple`, for `reason`), --train, --test, --batch, --lr,
    --seed, --out, --quiet and the example's own length option, length = (flag, default, help);
    seeds torch and adds args.generator, seeded the same, for the synthetic data."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=size, help=f"image side, a multiple of {multiple} (default {size})")
    parser.add_argument("--train", type=int, default=train, help=f"training {items} (default {train})")
    parser.add_argument("--test", type=int, default=test, help=f"held-out {items} (default {test})")
    flag, default, what = length
    parser.add_argument(flag, type=int, default=default, help=f"{what} (default {default})")
    parser.add_argument("--batch", type=int, default=batch, help=f"batch size (default {batch})")
    parser.add_argument("--lr", type=float, default=lr, help=f"Adam learning rate (default {lr:g})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("examples", "out"), help=f"folder for {figure}")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.size % multiple:
        parser.error(f"--size must be a multiple of {multiple} ({reason}), got {args.size}")
    torch.manual_seed(args.seed)
    args.generator = torch.Generator().manual_seed(args.seed)
    return args
