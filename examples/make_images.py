"""Draws the two small images the style-transfer example uses by default and saves them as
examples/images/content.png (a house in a landscape) and examples/images/style.png (swirling
colour bands). Procedural, so the repository ships no third-party pictures.

    python examples/make_images.py [--size 128]
"""
import argparse
import math
import os

import _use_checkout  # noqa: F401
import torch

from _figures import to_pil

IMAGES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "images")


def _grid(size):
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return x, y


def _paint(image, mask, rgb):
    image[:, mask] = torch.tensor(rgb).unsqueeze(1)


def content_image(size):
    """Sky, sun, two hills and a house with a roof and a door: large shapes and clear edges."""
    x, y = _grid(size)
    image = torch.stack([0.35 + 0.4 * y, 0.6 + 0.3 * y, torch.full_like(y, 0.95)])  # sky, lighter downwards
    _paint(image, (x - 0.8) ** 2 + (y - 0.2) ** 2 < 0.01, (1.0, 0.85, 0.2))
    _paint(image, y > 0.62 + 0.08 * torch.sin(2 * math.pi * (x * 0.9 + 0.2)), (0.3, 0.6, 0.25))
    _paint(image, y > 0.78 + 0.05 * torch.sin(2 * math.pi * (x * 1.4 + 0.6)), (0.2, 0.45, 0.2))
    _paint(image, (x > 0.22) & (x < 0.52) & (y > 0.5) & (y < 0.8), (0.8, 0.25, 0.2))
    _paint(image, (y < 0.5) & (y > 0.3 + (x - 0.37).abs() * 1.2), (0.45, 0.25, 0.15))
    _paint(image, (x > 0.33) & (x < 0.41) & (y > 0.64) & (y < 0.8), (0.25, 0.15, 0.1))
    _paint(image, (x > 0.25) & (x < 0.31) & (y > 0.56) & (y < 0.63), (0.95, 0.95, 0.7))
    return image


def style_image(size):
    """Swirling rainbow bands crossed by fine diagonal strokes: colour and texture, no objects."""
    x, y = _grid(size)
    dx, dy = x - 0.5, y - 0.5
    radius, angle = torch.sqrt(dx ** 2 + dy ** 2), torch.atan2(dy, dx)
    field = 14 * radius + 3 * torch.sin(3 * angle + 8 * radius) + 0.6 * torch.sin(60 * (x + y))
    return torch.stack([0.5 + 0.5 * torch.sin(field + phase) for phase in (0.0, 2.1, 4.2)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="side of both images (default 128)")
    parser.add_argument("--out", default=IMAGES_DIR, help="folder for content.png and style.png")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for name, draw in (("content.png", content_image), ("style.png", style_image)):
        path = os.path.join(args.out, name)
        to_pil(draw(args.size)).save(path, optimize=True)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
