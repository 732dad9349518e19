"""Procedural images for the examples (no dataset downloads): textured backgrounds with circles,
rectangles and triangles on them, plus the per-pixel class of every pixel."""
import math

import torch

CLASS_NAMES = ["background", "circle", "rectangle", "triangle"]


def _rand(generator, *shape, low=0.0, high=1.0):
    return low + (high - low) * torch.rand(*shape, generator=generator)


def textured_background(size, generator):
    """(3, size, size) in [0, 1]: a colour plus two oriented sine gratings and pixel noise, so the
    background is never a flat colour the network could threshold away."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                          indexing="ij")
    image = _rand(generator, 3, 1, 1, low=0.2, high=0.8).expand(3, size, size).clone()
    for _ in range(2):
        angle = _rand(generator, 1).item() * math.pi
        period = _rand(generator, 1, low=4.0, high=16.0).item()
        phase = (x * math.cos(angle) + y * math.sin(angle)) * (2 * math.pi / period)
        image += _rand(generator, 3, 1, 1, low=-0.15, high=0.15) * torch.sin(phase)
    image += 0.04 * torch.randn(3, size, size, generator=generator)
    return image.clamp(0, 1)


def _shape_mask(kind, size, generator):
    """Boolean (size, size) mask of one shape of class ``kind`` (1 circle, 2 rectangle, 3 triangle)."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32) + 0.5,
                          torch.arange(size, dtype=torch.float32) + 0.5, indexing="ij")
    radius = _rand(generator, 1, low=0.18, high=0.34).item() * size
    cx, cy = (_rand(generator, 2, low=radius, high=size - radius) if radius < size / 2
              else torch.full((2,), size / 2)).tolist()
    if kind == 1:
        return (x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2
    if kind == 2:
        aspect = _rand(generator, 1, low=0.5, high=1.0).item()
        half_w, half_h = (radius, radius * aspect) if _rand(generator, 1).item() < 0.5 else (radius * aspect, radius)
        return ((x - cx).abs() <= half_w) & ((y - cy).abs() <= half_h)
    # Triangle: three vertices on the circle around the centre, roughly 120 degrees apart.
    start = _rand(generator, 1).item() * 2 * math.pi
    angles = [start + k * 2 * math.pi / 3 + _rand(generator, 1, low=-0.3, high=0.3).item() for k in range(3)]
    vx = [cx + radius * 1.2 * math.cos(a) for a in angles]
    vy = [cy + radius * 1.2 * math.sin(a) for a in angles]
    # Inside when on the same side of all three edges (vertices are counter-clockwise in angle order).
    inside = torch.ones(size, size, dtype=torch.bool)
    for i in range(3):
        j = (i + 1) % 3
        inside &= (vx[j] - vx[i]) * (y - vy[i]) - (vy[j] - vy[i]) * (x - vx[i]) >= 0
    return inside


def shape_scenes(count, size, generator, max_shapes=3):
    """``count`` scenes: images (count, 3, size, size) float in [0, 1] and labels (count, size, size)
    int64 with the class index of ``CLASS_NAMES`` per pixel (later shapes cover earlier ones)."""
    images = torch.empty(count, 3, size, size)
    labels = torch.zeros(count, size, size, dtype=torch.long)
    for n in range(count):
        image = textured_background(size, generator)
        for _ in range(int(torch.randint(1, max_shapes + 1, (1,), generator=generator))):
            kind = int(torch.randint(1, len(CLASS_NAMES), (1,), generator=generator))
            mask = _shape_mask(kind, size, generator)
            # A flat random colour with faint noise: the shape's outline, not its colour, gives its class.
            fill = _rand(generator, 3, 1, 1) + 0.03 * torch.randn(3, size, size, generator=generator)
            image = torch.where(mask, fill.clamp(0, 1), image)
            labels[n][mask] = kind
        images[n] = image
    return images, labels
