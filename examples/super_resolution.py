"""4x super-resolution against bicubic upsampling, on generated images.

Each high-resolution image is shrunk 4x with tconv.interpolate(mode='bicubic', antialias=True).
The baseline brings it back with tconv.interpolate(mode='bicubic'); the network learns what
bicubic misses: a few convolutions at low resolution and a tconv.ConvTranspose2d (stride 4)
produce a residual that is added to the bicubic image. The transposed convolution starts at zero,
so training starts exactly at bicubic and can only improve on it. Prints the PSNR of both on
held-out images and saves ground truth / 1/4 input / bicubic / network side by side as a PNG.

    python examples/super_resolution.py               # about three CPU minutes
    python examples/super_resolution.py --steps 200   # quicker
"""
import math
import os
import time

import _use_checkout  # noqa: F401  (must precede `import tconv`)
import torch
from torch import nn

import tconv
from _cli import training_args
from _figures import save_panels
from _progress import progress
from _synthetic import shape_scenes

SCALE = 4


def downscale(images):
    """The low-resolution input: bicubic with antialiasing, like an image resized for the web."""
    size = images.shape[-1] // SCALE
    return tconv.interpolate(images, size=(size, size), mode="bicubic", antialias=True).clamp(0, 1)


def bicubic_upscale(images):
    return tconv.interpolate(images, scale_factor=SCALE, mode="bicubic")


class ResidualUpscaler(nn.Module):
    """bicubic(x) + ConvTranspose2d(convs(x)): the convolutions run at the low resolution (cheap), the
    transposed convolution (kernel 2*SCALE, stride SCALE) spreads their features to the 4x grid."""

    def __init__(self, width=48, depth=4):
        super().__init__()
        layers, cin = [], 3
        for _ in range(depth):
            layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU()]
            cin = width
        self.features = nn.Sequential(*layers)
        self.to_residual = tconv.ConvTranspose2d(width, 3, kernel_size=2 * SCALE, stride=SCALE, padding=SCALE // 2)
        nn.init.zeros_(self.to_residual.weight)  # start as plain bicubic
        nn.init.zeros_(self.to_residual.bias)

    def forward(self, low_res):
        return bicubic_upscale(low_res) + self.to_residual(self.features(low_res))


def psnr(output, target):
    """Mean over images of 10 log10(1 / MSE), pixel values clamped to [0, 1]."""
    mse = (output.clamp(0, 1) - target).square().flatten(1).mean(1)
    return (10 * torch.log10(1 / mse.clamp_min(1e-10))).mean().item()


def parse_args(argv):
    return training_args(__doc__, argv, size=64, multiple=SCALE, reason="the upscaling factor", train=1024, test=64,
                         items="images", length=("--steps", 800, "training steps"), batch=32, lr=1e-3,
                         figure="super_resolution.png")


def main(argv=None):
    args = parse_args(argv)
    generator = args.generator
    train_high, _ = shape_scenes(args.train, args.size, generator)
    test_high, _ = shape_scenes(args.test, args.size, generator)
    train_low, test_low = downscale(train_high), downscale(test_high)

    model = ResidualUpscaler()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    losses = []
    start = time.perf_counter()
    bar = progress(range(args.steps), desc="training", disable=args.quiet)
    for _ in bar:
        index = torch.randint(0, args.train, (args.batch,), generator=generator)
        loss = (model(train_low[index]) - train_high[index]).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix_str(f"mse {loss.item():.5f}")

    with torch.no_grad():
        model.eval()
        bicubic, network = bicubic_upscale(test_low), model(test_low)
    psnr_bicubic, psnr_network = psnr(bicubic, test_high), psnr(network, test_high)
    print(f"{args.steps} steps in {time.perf_counter() - start:.0f} s; PSNR on {args.test} held-out "
          f"{args.size}x{args.size} images: bicubic {psnr_bicubic:.2f} dB, network {psnr_network:.2f} dB "
          f"({psnr_network - psnr_bicubic:+.2f} dB)")

    os.makedirs(args.out, exist_ok=True)
    rows = [[("ground truth", test_high[i]), ("1/4 input", test_low[i]),
             (f"bicubic {psnr(bicubic[i:i + 1], test_high[i:i + 1]):.1f} dB", bicubic[i]),
             (f"network {psnr(network[i:i + 1], test_high[i:i + 1]):.1f} dB", network[i])] for i in range(3)]
    path = save_panels(os.path.join(args.out, "super_resolution.png"), rows, scale=max(1, 128 // args.size))
    print(f"wrote {path}")
    return dict(losses=losses, psnr_bicubic=psnr_bicubic, psnr_network=psnr_network, figure=path)


if __name__ == "__main__":
    main()
