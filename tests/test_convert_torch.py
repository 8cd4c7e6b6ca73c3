"""PyTorch teacher import: logits of converted checkpoints equal PyTorch's, layouts, errors.

The references: torchvision's own ResNet-34/50 (``torchvision.models``, randomly initialised:
the modules of the files torchvision downloads, computed by torchvision), and for the models
torchvision does not have (mdistiller's CIFAR zoo, TinyImageNet MobileNetV2 and ImageNet
MobileNetV1) the compact re-implementations of ``benchmarks/torch_models.py``, written from the
references' descriptions: what a reference checkpoint's state dict looks like.
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from benchmarks.torch_models import TORCH_MODELS  # noqa: E402
from figkd_jax import models  # noqa: E402
from figkd_jax.tools import convert_torch  # noqa: E402
from figkd_jax.trainer import checkpoints, run_setup  # noqa: E402
from tests import tolerances  # noqa: E402
from tests.test_models import PROTOCOL_PARAM_COUNTS  # noqa: E402
from tests.torch_references import (  # noqa: E402
    torch_logits,
    torchvision_references,
    with_realistic_batch_norms,
)

# The teachers' input size: with it the stem's stride and padding, the max-pool's and the last
# stage's 7x7 pooling all act as in ImageNet training (about 9 s per model on 2 CPU cores).
IMAGENET_SIZE = 224


def _random_torch_model(name: str, num_classes: int, seed: int = 0) -> nn.Module:
    """``benchmarks/torch_models.py``'s ``name``, random, with realistic BN statistics."""
    torch.manual_seed(seed)
    return with_realistic_batch_norms(TORCH_MODELS[name](num_classes), image_size=32)


@pytest.fixture(scope="module")
def torchvision_models(tmp_path_factory):
    """Directory of tests/torch_references.py's files for torchvision's ImageNet ResNets."""
    out = tmp_path_factory.mktemp("torchvision")
    torchvision_references(out, "resnet18", "resnet34", "resnet50", image_size=IMAGENET_SIZE)
    return out


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
        ("mobilenetv2_tin", "model"),
        # mdistiller's ImageNet MobileNetV1, on 32-pixel inputs to keep XLA:CPU quick.
        ("mobilenetv1", "model"),
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
    expected = torch_logits(torch_model, images)
    # Op by op: XLA compiles each distinct op once for all models, faster on CPU than compiling
    # each deep network whole.
    actual = np.asarray(model.apply(variables, images, train=False))
    # The logits spread over the classes and depend on the input (so that every layer matters)
    # by far more than the tolerance.
    assert np.std(expected) > 0.1 and np.max(np.abs(expected[0] - expected[1])) > 0.1
    scale = float(np.max(np.abs(expected)))
    atol = max(1e-4, tolerances.DEEP_FORWARD_SCALE_TOLERANCE * scale)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=atol)


def test_mobilenetv2_tin_transcription_has_the_zoo_parameter_count():
    # docs/protocol.md's count of the reference at TinyImageNet's 200 classes; the Flax model's
    # is checked in tests/test_models.py.
    count = sum(p.numel() for p in TORCH_MODELS["mobilenetv2_tin"](200).parameters())
    assert count == 2_497_480
    flax_model = models.create("mobilenetv2_tin", num_classes=200)
    shapes = jax.eval_shape(
        lambda: flax_model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)
    )
    assert models.count_params(shapes["params"]) == count


def test_mobilenetv1_transcription_has_the_reference_parameter_count():
    # mdistiller's models/imagenet/mobilenetv1.py, as the issue counts it.
    assert sum(p.numel() for p in TORCH_MODELS["mobilenetv1"](1000).parameters()) == 4_231_976


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_torchvision_resnets_have_the_zoo_parameter_counts(torchvision_models, name):
    theirs = json.loads((torchvision_models / f"{name}.json").read_text())["num_parameters"]
    flax_model = models.create(f"{name}_imagenet", num_classes=1000)
    shapes = jax.eval_shape(
        lambda: flax_model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    assert models.count_params(shapes["params"]) == theirs
    assert theirs == PROTOCOL_PARAM_COUNTS[f"{name}_imagenet"]  # docs/protocol.md's count


@pytest.mark.parametrize("name", ["resnet34", "resnet50"])
def test_torchvision_teachers_convert_to_equal_logits(torchvision_models, tmp_path, name):
    """A randomly initialised torchvision ResNet saved as torchvision's downloads are (a bare
    state dict), converted with the command a user runs, gives torchvision's logits."""
    pth = str(torchvision_models / f"{name}.pth")
    out = str(tmp_path / "teacher")

    convert_torch.main(
        [pth, "--model", f"{name}_imagenet", "--dataset", "imagenet2012", "--out", out]
    )

    meta, model, variables = _restore(out)
    assert meta["num_classes"] == 1000 and meta["dataset"] == "imagenet2012"
    # Every state-dict entry but the BN step counters is one Flax leaf, and nothing else is.
    state_dict = convert_torch.load_torch_state_dict(pth)
    mapped = {convert_torch.flax_path(k, np.ndim(v)) for k, v in state_dict.items()}
    assert mapped - {None} == set(traverse_util.flatten_dict(variables))
    images = np.load(torchvision_models / "images.npy")
    expected = np.load(torchvision_models / f"{name}-logits.npy")
    actual = np.asarray(model.apply(variables, images, train=False))
    # Logits that spread over the classes and depend on the input by far more than the
    # tolerance (std 0.6-0.8, max 2-3 here), so that every layer matters.
    assert np.std(expected) > 0.1 and np.max(np.abs(expected[0] - expected[1])) > 0.1
    atol = tolerances.DEEP_FORWARD_SCALE_TOLERANCE * float(np.max(np.abs(expected)))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=atol)


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
        torch_logits(torch_model, images),
        rtol=0,
        atol=1e-4,
    )
    assert checkpoints.read_meta(out)[1]["dataset"] == "cifar100"


def test_reads_and_writes_cloud_storage(gcs, tmp_path):
    """A .pth in a gs:// bucket (the local emulator of tests/gcs_emulator.py) converted into a
    checkpoint directory in the bucket."""
    from figkd_jax.io import storage
    from tests.gcs_emulator import local_gs_paths

    bucket = gcs.create_bucket("figkd-convert")
    torch_model = _random_torch_model("resnet8", num_classes=10)
    pth = f"{bucket}/pytorch/r8.pth"
    storage.write_bytes(
        pth, (storage.path(_save(torch_model, tmp_path / "r8.pth", "bare"))).read_bytes()
    )
    out = f"{bucket}/teachers/r8"
    convert_torch.main([pth, "--model", "resnet8", "--out", out])

    meta, model, variables = _restore(out)
    assert meta["source"] == pth and meta["num_classes"] == 10
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(
        model.apply(variables, images, train=False),
        torch_logits(torch_model, images),
        rtol=0,
        atol=1e-4,  # as in the tests above
    )
    assert local_gs_paths(str(tmp_path)) == []
