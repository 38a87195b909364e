"""Registry of CNN backbones. Each maps images [B, 3, 32, 32] to features [B, d] and exposes d as `num_features`."""
import torch
from torch import nn

from study.registry import Registry

BACKBONES = Registry("backbone")
register_backbone = BACKBONES.register


def list_backbones():
    return BACKBONES.names()


def create_backbone(name: str, **knobs) -> nn.Module:
    factory = BACKBONES.get(name)
    BACKBONES.check_knobs(name, knobs)
    return factory(**knobs)


def conv_bn(c_in, c_out, kernel=3):
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out))


class ResNet12Block(nn.Module):
    """Three 3x3 conv-BN layers with a 1x1 projection shortcut, then 2x2 max-pool (halves the resolution)."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(c_in, c_out), nn.LeakyReLU(0.1),
            conv_bn(c_out, c_out), nn.LeakyReLU(0.1),
            conv_bn(c_out, c_out),
        )
        self.shortcut = conv_bn(c_in, c_out, kernel=1)
        self.out = nn.Sequential(nn.LeakyReLU(0.1), nn.MaxPool2d(2))

    def forward(self, x):
        return self.out(self.body(x) + self.shortcut(x))


class FeatureExtractor(nn.Module):
    """Stages then global average pooling, so any resolution yields [B, num_features]."""

    def __init__(self, stages: nn.Module, num_features: int):
        super().__init__()
        self.stages, self.num_features = stages, num_features

    def forward(self, x):
        return self.stages(x).mean(dim=(2, 3))


@register_backbone("resnet12")
def resnet12(widths=(64, 160, 320, 640)):
    """ResNet-12 as in few-shot learning work: 4 residual blocks, 32 -> 16 -> 8 -> 4 -> 2 pixels; d = 640."""
    blocks, c_in = [], 3
    for width in widths:
        blocks.append(ResNet12Block(c_in, width))
        c_in = width
    return FeatureExtractor(nn.Sequential(*blocks), c_in)


@register_backbone("tinyvgg")
def tinyvgg(width: int = 64):
    """Two conv-conv-pool blocks (width, 2 * width channels), 32 -> 16 -> 8 pixels; d = 2 * width."""
    layers, c_in = [], 3
    for c_out in (width, 2 * width):
        layers += [conv_bn(c_in, c_out), nn.ReLU(inplace=True), conv_bn(c_out, c_out), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2)]
        c_in = c_out
    return FeatureExtractor(nn.Sequential(*layers), c_in)


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            conv_bn(c_out, c_out),
        )
        needs_projection = stride != 1 or c_in != c_out
        self.shortcut = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                         if needs_projection else nn.Identity())

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


@register_backbone("resnet18")
def resnet18(width: int = 64):
    """ResNet-18, CIFAR variant (3x3 stem, no stem pool): 32 -> 32 -> 16 -> 8 -> 4 pixels; d = 8 * width."""
    layers, c_in = [conv_bn(3, width), nn.ReLU(inplace=True)], width
    for stage, c_out in enumerate((width, 2 * width, 4 * width, 8 * width)):
        stride = 1 if stage == 0 else 2
        layers += [BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)]
        c_in = c_out
    return FeatureExtractor(nn.Sequential(*layers), c_in)
