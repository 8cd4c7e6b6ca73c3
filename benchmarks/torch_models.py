"""Compact PyTorch models in the reference layouts (module names and computations of
mdistiller's CIFAR ResNet, ResNet-v2 with CIFAR stem, WRN, VGG-BN, TinyImageNet MobileNetV2 and
ImageNet MobileNetV1), written from the references' descriptions.

Their state dicts look like the reference checkpoints' (``tests/test_convert_torch.py`` converts
them), and ``benchmarks/torch_step.py`` times the distillation step with them. NCHW inputs.
torchvision's ImageNet ResNets are not here: the tests build them with torchvision itself.
"""

from __future__ import annotations

from torch import nn
from torch.nn import functional as F

from figkd_jax.models import VGG_CONFIGS


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=bias)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, shortcut_name: str):
        super().__init__()
        self.conv1, self.bn1 = _conv(cin, planes, 3, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv(planes, planes, 3), nn.BatchNorm2d(planes)
        self.shortcut_name = shortcut_name
        if stride != 1 or cin != planes:
            setattr(self, shortcut_name, _projection(cin, planes, stride))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + getattr(self, self.shortcut_name, nn.Identity())(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, shortcut_name: str):
        super().__init__()
        self.conv1, self.bn1 = _conv(cin, planes, 1), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv(planes, planes, 3, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = _conv(planes, 4 * planes, 1), nn.BatchNorm2d(4 * planes)
        self.shortcut_name = shortcut_name
        if stride != 1 or cin != 4 * planes:
            setattr(self, shortcut_name, _projection(cin, 4 * planes, stride))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + getattr(self, self.shortcut_name, nn.Identity())(x))


def _projection(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(_conv(cin, cout, 1, stride), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    """3x3 stem, stages of ``(planes, blocks, stride)``, global average pool, linear ``head``."""

    def __init__(self, block, stem, stages, shortcut_name, head, num_classes):
        super().__init__()
        self.conv1, self.bn1 = _conv(3, stem, 3), nn.BatchNorm2d(stem)
        cin = stem
        for index, (planes, num_blocks, stride) in enumerate(stages, start=1):
            blocks = []
            for i in range(num_blocks):
                blocks.append(block(cin, planes, stride if i == 0 else 1, shortcut_name))
                cin = planes * block.expansion
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
        self.num_stages, self.head = len(stages), head
        setattr(self, head, nn.Linear(cin, num_classes))

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        for index in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{index}")(x)
        return getattr(self, self.head)(x.mean((2, 3)))


class WideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), _conv(cin, cout, 3, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), _conv(cout, cout, 3)
        self.convShortcut = None if cin == cout else _conv(cin, cout, 1, stride)

    def forward(self, x):
        activated = F.relu(self.bn1(x))
        y = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        return (x if self.convShortcut is None else self.convShortcut(activated)) + y


class NetworkBlock(nn.Module):
    def __init__(self, num_layers: int, cin: int, cout: int, stride: int):
        super().__init__()
        self.layer = nn.Sequential(
            *(
                WideBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                for i in range(num_layers)
            )
        )

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int):
        super().__init__()
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = _conv(3, 16, 3)
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1)
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2)
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2)
        self.bn1, self.fc = nn.BatchNorm2d(widths[3]), nn.Linear(widths[3], num_classes)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(F.relu(self.bn1(x)).mean((2, 3)))


class VGG(nn.Module):
    """Blocks ``block{b}``: [conv(bias), BN, ReLU] per width, the block's last ReLU applied
    outside; max-pool after blocks 0-2 (and 3 on 64-pixel inputs)."""

    def __init__(self, config, num_classes: int):
        super().__init__()
        cin = 3
        for b, widths in enumerate(config):
            layers = []
            for width in widths:
                layers += [_conv(cin, width, 3, bias=True), nn.BatchNorm2d(width), nn.ReLU()]
                cin = width
            setattr(self, f"block{b}", nn.Sequential(*layers[:-1]))
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x):
        pool_block3 = x.shape[2] == 64
        for b in range(5):
            x = F.relu(getattr(self, f"block{b}")(x))
            if b < 3 or (b == 3 and pool_block3):
                x = F.max_pool2d(x, 2)
        return self.classifier(x.mean((2, 3)))


class LinearBottleNeck(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        self.residual = nn.Sequential(
            nn.Conv2d(cin, hidden, 1),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1),
            nn.BatchNorm2d(cout),
        )
        self.identity = stride == 1 and cin == cout

    def forward(self, x):
        y = self.residual(x)
        return y + x if self.identity else y


class MobileNetV2TinyImageNet(nn.Module):
    """mdistiller's mv2_tinyimagenet.MobileNetV2: biased convs (PyTorch's default), a 1x1 stem
    padded by 1, ReLU6, stages of (repeats, width, stride), a 1x1 conv classifier."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.pre = nn.Sequential(nn.Conv2d(3, 32, 1, padding=1), nn.BatchNorm2d(32), nn.ReLU6())
        self.stage1 = LinearBottleNeck(32, 16, 1, 1)
        cin = 16
        stages = [(2, 24, 2), (3, 32, 2), (4, 64, 2), (3, 96, 1), (3, 160, 1)]
        for index, (repeats, cout, stride) in enumerate(stages, start=2):
            blocks = [LinearBottleNeck(cin, cout, stride, 6)]
            blocks += [LinearBottleNeck(cout, cout, 1, 6) for _ in range(repeats - 1)]
            setattr(self, f"stage{index}", nn.Sequential(*blocks))
            cin = cout
        self.stage7 = LinearBottleNeck(160, 320, 1, 6)
        self.conv1 = nn.Sequential(nn.Conv2d(320, 1280, 1), nn.BatchNorm2d(1280), nn.ReLU6())
        self.conv2 = nn.Conv2d(1280, num_classes, 1)

    def forward(self, x):
        for stage in range(1, 8):
            x = getattr(self, f"stage{stage}")(self.pre(x) if stage == 1 else x)
        return self.conv2(F.adaptive_avg_pool2d(self.conv1(x), 1)).flatten(1)


class MobileNetV1(nn.Module):
    """mdistiller's imagenet/mobilenetv1.py: ``model`` = Sequential of a conv-BN-ReLU stem and
    13 [depthwise conv, BN, ReLU, pointwise conv, BN, ReLU] blocks; linear ``fc``."""

    def __init__(self, num_classes: int):
        super().__init__()
        layers = [nn.Sequential(_conv(3, 32, 3, 2), nn.BatchNorm2d(32), nn.ReLU())]
        cin = 32
        widths = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
        widths += [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
        for cout, stride in widths:
            layers.append(
                nn.Sequential(
                    nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
                    nn.BatchNorm2d(cin),
                    nn.ReLU(),
                    _conv(cin, cout, 1),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(),
                )
            )
            cin = cout
        self.model = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.model(x).mean((2, 3)))


def _cifar_resnet(depth: int, widths: tuple[int, int, int, int], num_classes: int) -> nn.Module:
    n = (depth - 2) // 6
    stages = [(widths[1], n, 1), (widths[2], n, 2), (widths[3], n, 2)]
    return ResNet(BasicBlock, widths[0], stages, "downsample", "fc", num_classes)


# name -> (num_classes -> model); the names are figkd_jax.models'.
TORCH_MODELS = {
    "resnet8": lambda c: _cifar_resnet(8, (16, 16, 32, 64), c),
    "resnet56": lambda c: _cifar_resnet(56, (16, 16, 32, 64), c),
    "resnet110": lambda c: _cifar_resnet(110, (16, 16, 32, 64), c),
    "resnet8x4": lambda c: _cifar_resnet(8, (32, 64, 128, 256), c),
    "resnet32x4": lambda c: _cifar_resnet(32, (32, 64, 128, 256), c),
    "resnet50": lambda c: ResNet(
        Bottleneck, 64, [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], "shortcut", "linear", c
    ),
    "wrn_16_2": lambda c: WideResNet(16, 2, c),
    "wrn_40_2": lambda c: WideResNet(40, 2, c),
    "vgg13": lambda c: VGG(VGG_CONFIGS[13], c),
    "mobilenetv2_tin": MobileNetV2TinyImageNet,
    "mobilenetv1": MobileNetV1,
}
