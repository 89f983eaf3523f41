"""CIFAR-style VGG: 3x3 convs, five 2x2 pools, one Linear classifier on the 512-d feature.

``vgg11..19`` carry BatchNorm (what "VGG16 on CIFAR" means in the pruning literature);
``vgg16-lottery`` is the seed studies' VGG16 (conv with bias, no BN, reference init) whose dense cost is
313,478,154 FLOPs in their convention. Pools use ceil_mode so 28x28 inputs also reach 1x1.
"""

import torch.nn as nn

CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ],
}


class VGG(nn.Module):
    def __init__(self, cfg, num_classes=10, in_channels=3, batch_norm=True):
        super().__init__()
        layers, c = [], in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
                continue
            layers.append(nn.Conv2d(c, v, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            c = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def vgg_bn(num_classes, in_channels, image_size, *, cfg: str):
    """CIFAR VGG ``cfg`` (a key of ``CFGS``) with BatchNorm."""
    return VGG(CFGS[cfg], num_classes, in_channels, batch_norm=True)


class LotteryVGG(VGG):
    """The SNIP/GraSP/SynFlow/IMP studies' VGG (ganguli-lab/Synaptic-Flow, ``Models/lottery_vgg.py``):
    conv with bias and ReLU, no BN, four 2x2 max pools, then the final 2x2 map *averaged* (their
    ``AvgPool2d(2)``; here an adaptive average, the same at 32x32), one Linear; every conv and the Linear
    initialised Kaiming-normal fan-in with zero bias, as the reference does."""

    def __init__(self, cfg, num_classes=10, in_channels=3):
        super().__init__(cfg[:-1] if cfg[-1] == "M" else cfg, num_classes, in_channels, batch_norm=False)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)


def vgg16_lottery(num_classes, in_channels, image_size):
    return LotteryVGG(CFGS["vgg16"], num_classes, in_channels)
