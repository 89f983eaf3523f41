"""CIFAR ResNets (He et al. 2016, 6n+2 layers) and ResNet-18/50 with a CIFAR stem.

Shortcuts that change shape use a 1x1 conv + BN (option B): the zero-padding shortcut (option A) is
not a module, so a dependency graph cannot follow it.
"""

import torch.nn as nn
import torchvision


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth, num_classes=10, in_channels=3):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError("CIFAR ResNet depth must be 6n+2")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        blocks, cin = [], 16
        for i, width in enumerate((16, 32, 64)):
            for j in range(n):
                blocks.append(BasicBlock(cin, width, 2 if (i > 0 and j == 0) else 1))
                cin = width
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.layers(self.relu(self.bn1(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


def cifar_resnet(num_classes, in_channels, image_size, *, depth: int):
    """CIFAR ResNet-``depth`` (3 stages of 16/32/64 channels)."""
    return CifarResNet(depth, num_classes, in_channels)


def _cifar_stem(model: nn.Module, in_channels: int) -> nn.Module:
    """Replace the ImageNet stem (7x7/2 conv + maxpool) with a 3x3/1 conv, as CIFAR ResNets do."""
    model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


def resnet18(num_classes, in_channels, image_size):
    return _cifar_stem(torchvision.models.resnet18(num_classes=num_classes), in_channels)


def resnet50(num_classes, in_channels, image_size):
    return _cifar_stem(torchvision.models.resnet50(num_classes=num_classes), in_channels)
