"""Bar chart of the benchmark table: tconv's speed-up over PyTorch per case, fwd and fwd+bwd
side by side, written as a PNG beside results.json. matplotlib (Agg) when installed, else a
plainer Pillow drawing; neither installed: a printed note and no chart."""
import math


def _cases(rows):
    """[(label, fwd speed-up or None, fwd+bwd speed-up or None)] in table order."""
    by_case = {}
    for r in rows:
        by_case.setdefault((r["group"], r["case"]), {})[r["pass_"]] = r["speedup"]
    return [(f"{group}: {case}", passes.get("fwd"), passes.get("fwd+bwd")) for (group, case), passes in by_case.items()]


def _with_matplotlib(cases, path, title):
    import matplotlib
    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.32 * len(cases) + 1.2))
    ys = range(len(cases))
    for offset, index, label, color in ((-0.2, 1, "fwd", "tab:blue"), (0.2, 2, "fwd+bwd", "tab:orange")):
        drawn = [(y + offset, c[index]) for y, c in zip(ys, cases) if c[index]]
        # Bars grow from 1x (parity), so slower cases point left instead of looking like short wins.
        ax.barh([y for y, _ in drawn], [v - 1 for _, v in drawn], left=1, height=0.4, label=label, color=color)
    ax.axvline(1.0, color="black", linewidth=0.8)  # parity with PyTorch
    ax.set_xscale("log", base=2)
    ax.set_yticks(list(ys), [c[0] for c in cases], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up over PyTorch (x, log scale; > 1 is faster)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _with_pillow(cases, path, title):
    from PIL import Image, ImageDraw

    label_width, bar_width, row, top = 330, 420, 18, 24
    image = Image.new("RGB", (label_width + bar_width + 20, top + row * len(cases) + 10), "white")
    draw = ImageDraw.Draw(image)
    draw.text((4, 4), title + "  (blue fwd, orange fwd+bwd; log2 scale, line = 1x)", fill="black")
    largest = max(abs(math.log2(v)) for c in cases for v in c[1:] if v) or 1.0
    x_one = label_width + bar_width // 2  # speed-up 1x in the middle: slower to the left, faster to the right
    for i, (label, fwd, bwd) in enumerate(cases):
        y = top + i * row
        draw.text((4, y + 3), label[:52], fill="black")
        for j, (value, color) in enumerate(((fwd, (31, 119, 180)), (bwd, (255, 127, 14)))):
            if value:
                end = x_one + math.log2(value) / largest * (bar_width // 2 - 4)
                draw.rectangle([min(x_one, end), y + 2 + 7 * j, max(x_one, end), y + 8 + 7 * j], fill=color)
    draw.line([x_one, top, x_one, image.height - 6], fill="black")
    image.save(path)


def write_chart(results, path):
    """Writes the chart of ``results`` (the dict table.py saves as JSON: torch, threads, rows) to
    ``path``; returns the path, or None when neither matplotlib nor Pillow is installed."""
    cases = _cases(results["rows"])
    title = f"tconv vs PyTorch {results.get('torch', '')}, {results.get('threads', '?')} threads"
    for draw in (_with_matplotlib, _with_pillow):
        try:
            draw(cases, path, title)
            return path
        except ImportError:
            continue
    print("no chart: install matplotlib or pillow (pip install -e '.[examples]') to get one")
    return None
