"""Neural style transfer (D2L 13.12) with tconv's Gram matrix and style loss.

A VGG-19 feature extractor (the convolutional part of torchvision's vgg19, same `features.N`
indices, so its state_dict loads) gives content features at block5_conv2 and style features at
block1_conv1 ... block5_conv1. The synthesised image starts as the content image and is optimised
with Adam on content loss + style loss (tconv.style_loss of tconv.gram_matrix) + total variation.
Saves content / style / result as a PNG.

Pretrained weights: pass a torchvision VGG-19 state_dict file with --weights (for example one
saved with `torch.save(torchvision.models.vgg19(weights="IMAGENET1K_V1").state_dict(), "vgg19.pth")`
on a machine with network access). Without it the features come from random weights: the loop
still runs and the colours move towards the style, but it is not real style transfer.

    python examples/style_transfer.py --weights vgg19.pth
    python examples/style_transfer.py --content a.jpg --style b.jpg --size 128 --steps 200
"""
import argparse
import os
import time
import warnings

import _use_checkout  # noqa: F401  (must precede `import tconv`)
import torch
from torch import nn

import tconv
from _figures import save_panels
from _progress import progress

try:
    from PIL import Image
except ImportError as exc:
    raise SystemExit("style_transfer.py reads images with Pillow: pip install pillow") from exc

IMAGES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "images")
# torchvision's VGG-19 ("E") configuration: channels per conv, "M" for a 2x2 max-pool.
VGG19_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                512, 512, 512, 512, "M"]
CONTENT_LAYERS = ["block5_conv2"]
STYLE_LAYERS = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"]
# ImageNet statistics the pretrained VGG expects its input normalised with.
RGB_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
RGB_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def vgg19_layer_names():
    """{'block1_conv1': index of its ReLU in features, ...}: Keras-style names, where a conv
    layer's output is taken after its activation (as in Gatys et al.'s relu1_1 ...)."""
    names, block, conv, index = {}, 1, 1, 0
    for item in VGG19_CONFIG:
        if item == "M":
            block, conv, index = block + 1, 1, index + 1
        else:
            names[f"block{block}_conv{conv}"] = index + 1
            conv, index = conv + 1, index + 2
    return names


class VGG19Features(nn.Module):
    """torchvision's vgg19().features layer for layer; forward returns the named activations."""

    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for item in VGG19_CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, item, 3, padding=1), nn.ReLU()]
                cin = item
        self.features = nn.Sequential(*layers)
        self.layer_index = vgg19_layer_names()
        for module in self.features:  # torchvision's initialisation, for the random-weights fallback
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x, names):
        wanted = {self.layer_index[name]: name for name in names}
        out = {}
        for index, module in enumerate(self.features[:max(wanted) + 1]):
            x = module(x)
            if index in wanted:
                out[wanted[index]] = x
        return out


def load_vgg19_weights(model, path):
    """Loads the `features.*` tensors of a torchvision VGG-19 state_dict (a bare features
    state_dict with keys '0.weight' ... works too); the classifier's tensors are ignored."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")} or state
    model.features.load_state_dict(features)


def read_image(path, size):
    """(1, 3, size, W) in [0, 1], W keeping the aspect ratio."""
    image = Image.open(path).convert("RGB")
    width = max(1, round(image.width * size / image.height))
    image = image.resize((width, size), Image.BICUBIC)
    return torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(size, width, 3) \
        .permute(2, 0, 1).unsqueeze(0).float() / 255


def total_variation(image):
    """D2L's TV loss: mean absolute difference of neighbouring pixels, to keep the result smooth."""
    return 0.5 * ((image[..., 1:, :] - image[..., :-1, :]).abs().mean()
                  + (image[..., :, 1:] - image[..., :, :-1]).abs().mean())


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--content", default=os.path.join(IMAGES_DIR, "content.png"), help="content image file")
    parser.add_argument("--style", default=os.path.join(IMAGES_DIR, "style.png"), help="style image file")
    parser.add_argument("--weights", help="torchvision VGG-19 state_dict (.pth); random weights without it")
    parser.add_argument("--size", type=int, default=128, help="image height in pixels (default 128)")
    parser.add_argument("--steps", type=int, default=150, help="Adam steps on the image (default 150)")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    parser.add_argument("--content-weight", type=float, default=1.0)
    parser.add_argument("--style-weight", type=float,
                        help="D2L's 1e4 with --weights; with random weights (whose activations are far "
                             "smaller) the default makes the weighted style loss 10x the TV loss at the start")
    parser.add_argument("--tv-weight", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("examples", "out"), help="folder for style_transfer.png")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    model = VGG19Features().eval()
    if args.weights:
        load_vgg19_weights(model, args.weights)
    else:
        warnings.warn("no --weights given: VGG-19 has RANDOM weights, so the result is not real style "
                      "transfer (pass a torchvision VGG-19 state_dict file to get one)", stacklevel=1)
    model.requires_grad_(False)

    content = read_image(args.content, args.size)
    style = read_image(args.style, args.size)
    style = tconv.interpolate(style, size=content.shape[-2:], mode="bicubic", antialias=True)  # D2L: same shape
    normalize = lambda image: (image - RGB_MEAN) / RGB_STD
    with torch.no_grad():
        content_targets = model(normalize(content), CONTENT_LAYERS)
        style_grams = {name: tconv.gram_matrix(y) for name, y in model(normalize(style), STYLE_LAYERS).items()}

    # Optimise the image in normalised space (as D2L), starting from the content image.
    synthesized = normalize(content).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([synthesized], lr=args.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, args.steps // 4), gamma=0.7)
    style_weight = args.style_weight or (1e4 if args.weights else None)
    if style_weight is None:
        with torch.no_grad():
            initial_style = sum(tconv.style_loss(y, style_grams[n])
                                for n, y in model(synthesized, STYLE_LAYERS).items())
            style_weight = 10 * args.tv_weight * total_variation(synthesized).item() / initial_style.item()
        print(f"random weights: style weight {style_weight:.3g}")
    losses = []
    start = time.perf_counter()
    bar = progress(range(args.steps), desc="optimising", disable=args.quiet)
    for _ in bar:
        features = model(synthesized, CONTENT_LAYERS + STYLE_LAYERS)
        content_loss = sum(torch.square(features[n] - content_targets[n]).mean() for n in CONTENT_LAYERS)
        style_loss = sum(tconv.style_loss(features[n], style_grams[n]) for n in STYLE_LAYERS)
        tv_loss = total_variation(synthesized)
        loss = args.content_weight * content_loss + style_weight * style_loss + args.tv_weight * tv_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        bar.set_postfix_str(f"content {content_loss.item():.3g} style {style_loss.item():.3g} tv {tv_loss.item():.3g}")
    print(f"{args.steps} steps in {time.perf_counter() - start:.0f} s: loss {losses[0]:.4g} -> {losses[-1]:.4g}")

    result = (synthesized.detach() * RGB_STD + RGB_MEAN).clamp(0, 1)
    os.makedirs(args.out, exist_ok=True)
    path = save_panels(os.path.join(args.out, "style_transfer.png"),
                       [[("content", content[0]), ("style", style[0]), ("result", result[0])]],
                       scale=max(1, 128 // args.size))
    print(f"wrote {path}")
    return dict(losses=losses, figure=path)


if __name__ == "__main__":
    main()
