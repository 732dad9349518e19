"""Fully convolutional network for semantic segmentation (D2L 13.11) on generated shape scenes.

A small conv+BN+ReLU backbone brings the image down to 1/32 resolution, a 1x1 convolution gives
per-class scores, and a tconv.ConvTranspose2d(kernel 64, padding 16, stride 32) initialised with
tconv.init.bilinear_ brings the scores back to the input size. Trains on circles, rectangles and
triangles over textured backgrounds, prints pixel accuracy and mean IoU on held-out scenes after
every epoch (beside the majority-class baseline) and saves input / truth / prediction as a PNG.

    python examples/fcn.py                      # a few CPU minutes
    python examples/fcn.py --epochs 2 --size 64 # quicker
"""
import os
import time

import _use_checkout  # noqa: F401  (must precede `import tconv`)
import torch
from torch import nn

import tconv
from _cli import training_args
from _figures import save_panels
from _progress import progress
from _synthetic import CLASS_NAMES, shape_scenes

# One colour per class for the label maps: background black, circle red, rectangle green, triangle blue.
PALETTE = torch.tensor([[0.0, 0.0, 0.0], [0.9, 0.2, 0.2], [0.2, 0.8, 0.2], [0.25, 0.4, 1.0]])


def conv_bn_relu(cin, cout, stride):
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class FCN(nn.Module):
    """Backbone to 1/32 (five stride-2 stages), 1x1 classifier, bilinear-initialised x32 transposed conv."""

    def __init__(self, num_classes, widths=(16, 32, 64, 96, 128)):
        super().__init__()
        layers, cin = [], 3
        for width in widths:
            layers += conv_bn_relu(cin, width, stride=2) + conv_bn_relu(width, width, stride=1)
            cin = width
        self.backbone = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(cin, num_classes, kernel_size=1)
        self.upsample = tconv.ConvTranspose2d(num_classes, num_classes, kernel_size=64, padding=16, stride=32)
        tconv.init.bilinear_(self.upsample.weight)
        nn.init.zeros_(self.upsample.bias)

    def forward(self, x):
        return self.upsample(self.classifier(self.backbone(x)))


def segmentation_scores(prediction, truth, num_classes):
    """Pixel accuracy and mean IoU over the classes present in truth or prediction."""
    accuracy = (prediction == truth).float().mean().item()
    ious = []
    for c in range(num_classes):
        union = ((prediction == c) | (truth == c)).sum().item()
        if union:
            ious.append(((prediction == c) & (truth == c)).sum().item() / union)
    return accuracy, sum(ious) / len(ious)


def colorize(labels):
    return PALETTE[labels].permute(2, 0, 1)


@torch.no_grad()
def predict(model, images, batch_size):
    model.eval()
    return torch.cat([model(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


def parse_args(argv):
    return training_args(__doc__, argv, size=96, multiple=32, reason="the network downsamples by 32", train=640,
                         test=128, items="scenes", length=("--epochs", 25, "passes over the training scenes"),
                         batch=32, lr=1e-2, figure="fcn.png")


def main(argv=None):
    args = parse_args(argv)
    generator = args.generator
    num_classes = len(CLASS_NAMES)
    train_images, train_labels = shape_scenes(args.train, args.size, generator)
    test_images, test_labels = shape_scenes(args.test, args.size, generator)
    # Predicting the most common class everywhere: what the network has to beat.
    majority = torch.bincount(train_labels.flatten(), minlength=num_classes).argmax()
    baseline_accuracy, baseline_iou = segmentation_scores(torch.full_like(test_labels, majority), test_labels,
                                                          num_classes)
    print(f"majority-class baseline ({CLASS_NAMES[majority]} everywhere): pixel accuracy {baseline_accuracy:.3f}, "
          f"mean IoU {baseline_iou:.3f}")

    model = FCN(num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    epoch_losses, history = [], []
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(args.train, generator=generator)
        batches = [order[i:i + args.batch] for i in range(0, args.train, args.batch)]
        bar = progress(batches, desc=f"epoch {epoch}", disable=args.quiet)
        total = 0.0
        for index in bar:
            loss = loss_fn(model(train_images[index]), train_labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
            bar.set_postfix_str(f"loss {loss.item():.3f}")
        epoch_losses.append(total / args.train)
        accuracy, mean_iou = segmentation_scores(predict(model, test_images, args.batch), test_labels, num_classes)
        history.append(dict(epoch=epoch, loss=epoch_losses[-1], accuracy=accuracy, mean_iou=mean_iou))
        print(f"epoch {epoch}: train loss {epoch_losses[-1]:.3f}, test pixel accuracy {accuracy:.3f}, "
              f"mean IoU {mean_iou:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)

    os.makedirs(args.out, exist_ok=True)
    shown = predict(model, test_images[:4], args.batch)
    rows = [[("input", test_images[i]), ("truth", colorize(test_labels[i])), ("prediction", colorize(shown[i]))]
            for i in range(len(shown))]
    path = save_panels(os.path.join(args.out, "fcn.png"), rows, scale=max(1, 128 // args.size))
    print(f"wrote {path}")
    return dict(epoch_losses=epoch_losses, history=history, baseline_accuracy=baseline_accuracy,
                baseline_mean_iou=baseline_iou, figure=path)


if __name__ == "__main__":
    main()
