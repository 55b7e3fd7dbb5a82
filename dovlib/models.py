"""Models: CIFAR-style ResNet-18/34, VGG-16/19 (batch norm), the BadNets MNIST CNN, and a U-Net.

All classifiers take float images in [0, 1] and normalise inside (``Normalize`` module), so attacks and
watermarks always work in pixel space. ``width`` scales every layer (64 = the standard models; the smoke
profile uses 8 so that CPU runs take seconds).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Normalize", "ResNet", "resnet18", "resnet34", "VGG", "vgg16", "vgg19", "BadNetsCNN", "UNet",
           "ARCHS", "build_model", "min_train_batch", "check_train_batch"]


class Normalize(nn.Module):
    """Per-channel standardisation inside the model (inputs stay in [0, 1])."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        if not x.is_floating_point():  # uint8 images would give silent nonsense (values 0-255 standardised)
            raise TypeError(f"models take float images in [0, 1]; got {x.dtype} (convert uint8 images with "
                            "dovlib.train.to_float)")
        if x.ndim != 4 or x.shape[1] != self.mean.shape[1]:  # (N, 1, H, W) would broadcast to 3 channels silently
            raise ValueError(f"this model was built for in_channels={self.mean.shape[1]} images (N, C, H, W); got "
                             f"shape {tuple(x.shape)}")
        return (x - self.mean) / self.std


def _normalize_for(channels: int) -> Normalize:
    return Normalize([0.5] * channels, [0.25] * channels)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with the CIFAR stem (3x3 conv, no max-pool), as in most backdoor/watermark papers."""

    def __init__(self, blocks, num_classes=10, in_channels=3, width=64):
        super().__init__()
        self.normalize = _normalize_for(in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, cin = [], width
        for i, n in enumerate(blocks):
            cout = width * 2 ** i
            strides = [1 if i == 0 else 2] + [1] * (n - 1)
            for s in strides:
                layers.append(BasicBlock(cin, cout, s))
                cin = cout
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
            layers = []
        self.linear = nn.Linear(cin, num_classes)

    def features(self, x):
        """Activations of the last convolutional stage (N, C, h, w); used by pruning defences."""
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        for i in range(1, 5):
            out = getattr(self, f"layer{i}")(out)
        return out

    def last_conv(self) -> nn.Conv2d:
        return self.layer4[-1].conv2

    def feature_layer(self) -> nn.Module:
        """The module whose output is the last convolutional feature map (pruning defences mask its channels)."""
        return self.layer4

    def forward(self, x):
        out = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.linear(out)


def resnet18(num_classes=10, in_channels=3, width=64):
    return ResNet([2, 2, 2, 2], num_classes, in_channels, width)


def resnet34(num_classes=10, in_channels=3, width=64):
    return ResNet([3, 4, 6, 3], num_classes, in_channels, width)


VGG_CFG = {
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG with batch norm; pooling adapts so 28, 32 and 64 px inputs all work."""

    def __init__(self, depth=16, num_classes=10, in_channels=3, width=64):
        super().__init__()
        self.normalize = _normalize_for(in_channels)
        layers, cin = [], in_channels
        for v in VGG_CFG[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                cout = v * width // 64
                layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
                cin = cout
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)

    def features(self, x):
        return self.body(self.normalize(x))

    def last_conv(self) -> nn.Conv2d:
        return [m for m in self.body if isinstance(m, nn.Conv2d)][-1]

    def feature_layer(self) -> nn.Module:
        """The ReLU after the last conv (and its batch norm): its activation map, before the final max-pooling, which
        fine-pruning ranks channels on (masking it silences the channel after the pooling too)."""
        return [m for m in self.body if isinstance(m, nn.ReLU)][-1]

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def vgg16(num_classes=10, in_channels=3, width=64):
    return VGG(16, num_classes, in_channels, width)


def vgg19(num_classes=10, in_channels=3, width=64):
    return VGG(19, num_classes, in_channels, width)


class BadNetsCNN(nn.Module):
    """The MNIST network of BadNets (Gu et al., 2017): two 5x5 conv + avg-pool stages, two dense layers.
    ``width`` scales the channels, 16 * width / 64 and 32 * width / 64 (the original's 16 and 32 at the default 64),
    but never below 4 and 8: every width up to 16 builds the same network (smoke's 8 and the CPU runs' 16 included),
    though records name the width given."""

    def __init__(self, num_classes=10, in_channels=1, width=64, image_size=28):
        super().__init__()
        from .params import check_int

        # two 5x5 convs and two 2x2 pools leave ((s - 4) // 2 - 4) // 2 pixels a side: at least 1 needs s >= 16
        image_size = check_int("image_size (badnets_cnn)", image_size, 16)
        c1, c2 = max(4, 16 * width // 64), max(8, 32 * width // 64)
        self.normalize = _normalize_for(in_channels)
        self.conv1 = nn.Conv2d(in_channels, c1, 5)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.image_size = image_size
        side = ((image_size - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(c2 * side * side, 512)
        self.fc2 = nn.Linear(512, num_classes)

    def features(self, x):
        x = F.avg_pool2d(F.relu(self.conv1(self.normalize(x))), 2)
        return F.relu(self.conv2(x))

    def last_conv(self) -> nn.Conv2d:
        return self.conv2

    def feature_layer(self) -> nn.Module:
        return self.conv2

    def forward(self, x):
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):  # fc1 is sized for one input size
            raise ValueError(f"badnets_cnn was built for {self.image_size}x{self.image_size} images (image_size="
                             f"{self.image_size}); got {tuple(x.shape[-2:])}: build it with image_size="
                             f"{x.shape[-1]} (square images of at least 16 pixels)")
        x = F.avg_pool2d(self.features(x), 2).flatten(1)
        return self.fc2(F.relu(self.fc1(x)))


ARCHS = {"resnet18": resnet18, "resnet34": resnet34, "vgg16": vgg16, "vgg19": vgg19, "badnets_cnn": BadNetsCNN}


def build_model(arch: str, num_classes: int = 10, in_channels: int = 3, width: int = 64,
                image_size: int | None = None) -> nn.Module:
    """Build a classifier by name (one of ``ARCHS``). ``image_size`` matters only for ``badnets_cnn``, whose dense
    layer is sized for it (default 28, MNIST's); the ResNets and VGGs pool globally and take any size."""
    from .params import check_int

    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {sorted(ARCHS)}; got {arch!r}")
    num_classes = check_int("num_classes", num_classes, 1)
    in_channels = check_int("in_channels", in_channels, 1)
    width = check_int("width", width, 1)
    if arch == "badnets_cnn":
        image_size = check_int("image_size (badnets_cnn)", 28 if image_size is None else image_size, 16)
        return BadNetsCNN(num_classes, in_channels, width, image_size)
    return ARCHS[arch](num_classes=num_classes, in_channels=in_channels, width=width)


def min_train_batch(arch: str, image_shape, num_classes: int = 10) -> int:
    """The smallest training batch ``arch`` can take on images of ``image_shape`` ((C, H, W) or (H, W)): 2 where one
    image gives one of its BatchNorm layers a single value per channel (a 1x1 map: a VGG on images of 16 pixels or
    fewer, a ResNet on 8 or fewer), which BatchNorm cannot normalise in training; else 1 (a batch of one image then
    trains, :func:`dovlib.train.fit` joins a last batch of one to the batch before it either way). Found with one
    forward pass of a width-1 copy of ``arch`` in eval mode, so it holds for any width."""
    from .params import check_int

    shape = tuple(image_shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"image_shape must be (C, H, W) or (H, W); got {shape}")
    channels, h, w = shape if len(shape) == 3 else (3 if arch != "badnets_cnn" else 1, *shape)
    channels, h, w = check_int("channels", channels, 1), check_int("height", h, 1), check_int("width", w, 1)
    model = build_model(arch, num_classes, channels, width=1, image_size=h if arch == "badnets_cnn" else None).eval()
    seen = []
    hooks = [m.register_forward_pre_hook(lambda _, inp: seen.append(inp[0][0, 0].numel()))
             for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, channels, h, w))
    finally:
        for handle in hooks:
            handle.remove()
    return 2 if seen and min(seen) == 1 else 1


def check_train_batch(name: str, value, arch: str, image_shape) -> int:
    """``value`` as a training batch size for ``arch`` on images of ``image_shape``: an integer >= 1, or >= 2 where
    :func:`min_train_batch` says one image a batch cannot train. Refused naming ``name``, the range and why, before
    any training (``fit`` itself would fail only at its first step, naming its own ``batch_size``)."""
    from .params import check_int

    low = min_train_batch(arch, image_shape)
    try:
        return check_int(name, value, low)
    except ValueError as exc:
        if low == 1:
            raise
        h, w = tuple(image_shape)[-2:]
        raise ValueError(f"{exc} ({arch} on {h}x{w} images: one image gives a BatchNorm layer a 1x1 map, a single "
                         f"value per channel, which it cannot train on)") from None


class _DoubleConv(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """U-Net (Ronneberger et al., 2015) with configurable ``depth`` (down-sampling steps) and ``width`` (channels
    of the first stage). Any input size works: inputs are reflect-padded to a multiple of 2**depth and the
    output cropped back, so 28, 32 and 64 px images all pass. Output: ``out_channels`` unbounded maps."""

    def __init__(self, in_channels=3, out_channels=3, depth=3, width=32):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"depth and width must be >= 1; got depth={depth}, width={width}")
        self.depth = depth
        chans = [width * 2 ** i for i in range(depth + 1)]
        self.inc = _DoubleConv(in_channels, chans[0])
        self.downs = nn.ModuleList(_DoubleConv(chans[i], chans[i + 1]) for i in range(depth))
        self.ups = nn.ModuleList(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2)
                                 for i in reversed(range(depth)))
        self.up_convs = nn.ModuleList(_DoubleConv(2 * chans[i], chans[i]) for i in reversed(range(depth)))
        self.outc = nn.Conv2d(chans[0], out_channels, 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        m = 2 ** self.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        out = skips.pop()
        for up, conv in zip(self.ups, self.up_convs):
            out = conv(torch.cat([skips.pop(), up(out)], dim=1))
        return self.outc(out)[..., :h, :w]
