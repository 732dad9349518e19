"""Writes the examples' PNG figures: a row of titled image panels side by side (Pillow)."""
import torch

try:
    from PIL import Image, ImageDraw
except ImportError as exc:  # Pillow is the optional extra "examples"
    raise SystemExit("the examples write PNGs with Pillow: pip install pillow "
                     "(or pip install -e '.[examples]')") from exc


def to_pil(image, scale=1):
    """A (3, H, W) float tensor in [0, 1] as an RGB PIL image, enlarged ``scale`` times with
    nearest-neighbour so small images (and their pixels) stay visible."""
    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
    pil = Image.fromarray(array.numpy(), mode="RGB")
    return pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST) if scale != 1 else pil


def save_panels(path, rows, scale=1, gap=4, title_height=14):
    """Saves a grid: ``rows`` is a list of rows, each a list of (title, (3, H, W) tensor); all
    panels are drawn at the size of the largest one (smaller ones enlarged with nearest)."""
    pils = [[(title, to_pil(image, scale)) for title, image in row] for row in rows]
    width = max(p.width for row in pils for _, p in row)
    height = max(p.height for row in pils for _, p in row)
    columns = max(len(row) for row in pils)
    canvas = Image.new("RGB", (columns * (width + gap) + gap, len(pils) * (height + title_height + gap) + gap),
                       "white")
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(pils):
        top = gap + r * (height + title_height + gap)
        for c, (title, pil) in enumerate(row):
            left = gap + c * (width + gap)
            draw.text((left, top), title, fill="black")
            canvas.paste(pil.resize((width, height), Image.NEAREST), (left, top + title_height))
    canvas.save(path)
    return path
