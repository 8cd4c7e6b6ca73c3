"""PyTorch teacher import: logits of converted checkpoints equal PyTorch's, layouts, errors.

The PyTorch models here are compact re-implementations written from the references'
descriptions (module names and computations of mdistiller's CIFAR ResNet, ResNet-v2 with CIFAR
stem, WRN and VGG-BN); they are what a reference checkpoint's state dict looks like.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from figkd_jax import checkpoints, convert_torch, models, run_setup  # noqa: E402


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


def _cifar_resnet(depth: int, widths: tuple[int, int, int, int], num_classes: int) -> nn.Module:
    n = (depth - 2) // 6
    stages = [(widths[1], n, 1), (widths[2], n, 2), (widths[3], n, 2)]
    return ResNet(BasicBlock, widths[0], stages, "downsample", "fc", num_classes)


TORCH_MODELS = {
    "resnet8": lambda c: _cifar_resnet(8, (16, 16, 32, 64), c),
    "resnet56": lambda c: _cifar_resnet(56, (16, 16, 32, 64), c),
    "resnet110": lambda c: _cifar_resnet(110, (16, 16, 32, 64), c),
    "resnet32x4": lambda c: _cifar_resnet(32, (32, 64, 128, 256), c),
    "resnet50": lambda c: ResNet(
        Bottleneck, 64, [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], "shortcut", "linear", c
    ),
    "wrn_40_2": lambda c: WideResNet(40, 2, c),
    "vgg13": lambda c: VGG(models.VGG_CONFIGS[13], c),
}


def _random_torch_model(name: str, num_classes: int, seed: int = 0) -> nn.Module:
    """A reference-layout model in eval mode with random weights and realistic BN statistics.

    The statistics are those of one training-mode pass over random images, then perturbed: like
    a trained network's, they centre and scale every channel, so that the logits depend on the
    input through every layer (with arbitrary statistics a deep random network's logits are
    nearly constant and a comparison would barely test the convolutions).
    """
    torch.manual_seed(seed)
    model = TORCH_MODELS[name](num_classes)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in norms:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.1)
            bn.momentum = None  # Running statistics = those of the (single) pass.
        model.train()(torch.randn(4, 3, 32, 32))
        for bn in norms:
            bn.running_mean.add_(0.1 * bn.running_var.sqrt() * torch.randn_like(bn.running_mean))
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.8, 1.25))
    return model.eval()


def _torch_logits(model: nn.Module, images_nhwc: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(images_nhwc).permute(0, 3, 1, 2)).numpy()


def _restore(directory: str):
    """(meta, Flax model, variables) of a checkpoint directory, as the trainer restores it."""
    step, meta = checkpoints.read_meta(directory)
    model = models.create(meta["model"], num_classes=meta["num_classes"])
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    return meta, model, checkpoints.restore_variables(directory, step, checkpoints.abstract(shapes))


def _save(model: nn.Module, path, layout: str) -> str:
    """Saves ``model``'s state dict as mdistiller does ("model"), bare, or DataParallel-bare."""
    state_dict = model.state_dict()
    if layout == "model":
        torch.save({"model": state_dict, "epoch": 240, "best_acc": torch.tensor(79.4)}, path)
    elif layout == "bare":
        torch.save(state_dict, path)
    else:
        torch.save({f"module.{k}": v for k, v in state_dict.items()}, path)
    return str(path)


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("resnet56", "model"),
        ("resnet110", "bare"),
        ("resnet32x4", "module"),
        ("wrn_40_2", "model"),
        ("vgg13", "bare"),
        ("resnet50", "model"),
    ],
)
def test_converted_teacher_reproduces_pytorch_logits(tmp_path, name, layout):
    torch_model = _random_torch_model(name, num_classes=100)
    pth = _save(torch_model, tmp_path / f"{name}.pth", layout)
    out = str(tmp_path / "teacher")

    convert_torch.main([pth, "--model", name, "--out", out])

    meta, model, variables = _restore(out)
    assert meta["model"] == name and meta["num_classes"] == 100  # Inferred from the classifier.
    assert meta["source"].endswith(f"{name}.pth")
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    expected = _torch_logits(torch_model, images)
    # Op by op: XLA compiles each distinct op once for all models, faster on CPU than compiling
    # each deep network whole.
    actual = np.asarray(model.apply(variables, images, train=False))
    # The logits spread over the classes and depend on the input (so that every layer matters)
    # by far more than the tolerance.
    assert np.std(expected) > 0.1 and np.max(np.abs(expected[0] - expected[1])) > 0.1
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)


def test_layouts_load_the_same_state_dict(tmp_path):
    torch_model = _random_torch_model("resnet8", num_classes=10)
    loaded = {
        layout: convert_torch.load_torch_state_dict(_save(torch_model, tmp_path / layout, layout))
        for layout in ("model", "bare", "module")
    }
    reference = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    for state_dict in loaded.values():
        assert state_dict.keys() == reference.keys()
        for key, value in reference.items():
            np.testing.assert_array_equal(state_dict[key], value)


def test_flax_path_rule():
    assert convert_torch.flax_path("layer2.0.downsample.1.running_var", 1) == (
        "batch_stats",
        "layer2_0",
        "downsample_1",
        "var",
    )
    assert convert_torch.flax_path("blocks.3.0.conv.3.weight", 4) == (
        "params",
        "blocks_3_0",
        "conv_3",
        "kernel",
    )
    assert convert_torch.flax_path("block1.layer.0.bn1.weight", 1) == (
        "params",
        "block1",
        "layer_0",
        "bn1",
        "scale",
    )
    assert convert_torch.flax_path("fc.weight", 2) == ("params", "fc", "kernel")
    assert convert_torch.flax_path("bn1.num_batches_tracked", 0) is None


@pytest.mark.parametrize(
    ("wrong_model", "extra_args", "message"),
    [
        ("resnet14", [], "Flax leaves not filled: batch_stats/layer1_1/bn1/mean"),
        ("resnet8x4", [], "shape mismatches: conv1.weight (16, 3, 3, 3) -> params/conv1/kernel"),
        ("wrn_16_1", [], "PyTorch keys without a Flax counterpart: layer1.0.conv1.weight"),
        ("resnet8", ["--num_classes", "100"], "shape mismatches: fc.weight (10, 64)"),
    ],
)
def test_wrong_model_is_a_one_line_error(tmp_path, capsys, wrong_model, extra_args, message):
    pth = _save(_random_torch_model("resnet8", num_classes=10), tmp_path / "r8.pth", "model")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        convert_torch.main([pth, "--model", wrong_model, "--out", str(out), *extra_args])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert f"is not a {wrong_model}" in error and message in error, error
    assert not out.exists()  # Nothing written.


def test_missing_torch_is_an_actionable_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="pip install torch"):
        convert_torch.load_torch_state_dict(str(tmp_path / "any.pth"))


def test_refuses_a_non_state_dict(tmp_path):
    path = tmp_path / "optimizer_only.pth"
    torch.save({"epoch": 3, "optimizer": {"lr": torch.tensor(0.1)}}, path)
    with pytest.raises(ValueError, match="neither a state dict nor"):
        convert_torch.load_torch_state_dict(str(path))


def test_dataset_option_checks_classes_and_the_trainer_loads_the_teacher(tmp_path, capsys):
    from tests.train_worker import digits_config

    torch_model = _random_torch_model("resnet8", num_classes=100)
    pth = _save(torch_model, tmp_path / "r8.pth", "model")
    with pytest.raises(SystemExit):
        convert_torch.main(
            [pth, "--model", "resnet8", "--dataset", "digits", "--out", str(tmp_path / "x")]
        )
    assert "--dataset digits has 10 classes, but the checkpoint's classifier has 100" in (
        capsys.readouterr().err
    )
    out = str(tmp_path / "teacher")
    convert_torch.main([pth, "--model", "resnet8", "--dataset", "cifar100", "--out", out])

    config = digits_config()
    config.dataset.name = "cifar100"
    config.method.name = "kd"
    config.teacher.model = "resnet8"
    config.teacher.checkpoint = out
    teacher = run_setup.load_teacher(run_setup.build_run(config))
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(
        teacher.model.apply(teacher.variables, images, train=False),
        _torch_logits(torch_model, images),
        rtol=0,
        atol=1e-4,
    )
    assert checkpoints.read_meta(out)[1]["dataset"] == "cifar100"
