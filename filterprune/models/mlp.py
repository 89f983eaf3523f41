"""Fully-connected MNIST network: the SynFlow reference code's ``fc`` (L=6 layers of width N=100),
which the seed study (Butler) uses for its MNIST runs."""

import torch.nn as nn


def mlp(num_classes, in_channels, image_size, depth=6, width=100):
    layers, fan_in = [nn.Flatten()], in_channels * image_size * image_size
    for _ in range(depth - 1):
        layers += [nn.Linear(fan_in, width), nn.ReLU(inplace=True)]
        fan_in = width
    layers.append(nn.Linear(fan_in, num_classes))
    net = nn.Sequential(*layers)
    for m in net.modules():  # He init: with PyTorch's default, six ReLU layers barely train in a few epochs
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net
