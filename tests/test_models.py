"""Model zoo: parameter counts and layouts equal to the PyTorch references, shapes, BatchNorm
semantics, mixed precision and the registry. Shape-level checks run under ``jax.eval_shape``;
real computation only on resnet8 and single BatchNorm layers."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from figkd_jax import models
from figkd_jax.models import layers

# docs/protocol.md, "Reference architectures": sum(p.numel() for p in model.parameters()) of the
# PyTorch references; CIFAR-style at 100 classes, ImageNet-style at 1000. mobilenetv2_tin
# (mdistiller's mv2_tinyimagenet.MobileNetV2): 2,497,480 at TinyImageNet's 200 classes, i.e.
# 2,369,380 at 100 (1,280 weights and a bias fewer per class), counted from a PyTorch transcription
# in tests/test_convert_torch.py.
PROTOCOL_PARAM_COUNTS = {
    "resnet8": 83_892,
    "resnet14": 181_108,
    "resnet20": 278_324,
    "resnet32": 472_756,
    "resnet44": 667_188,
    "resnet56": 861_620,
    "resnet110": 1_736_564,
    "resnet8x4": 1_233_540,
    "resnet32x4": 7_433_860,
    "resnet18": 11_220_132,
    "resnet50": 23_705_252,
    "wrn_16_1": 180_916,
    "wrn_16_2": 703_284,
    "wrn_40_1": 569_780,
    "wrn_40_2": 2_255_156,
    "vgg8": 3_965_028,
    "vgg11": 9_277_284,
    "vgg13": 9_462_180,
    "vgg16": 14_774_436,
    "vgg19": 20_086_692,
    "mobilenetv2": 812_836,
    "mobilenetv2_tin": 2_369_380,
    "shufflenetv1": 949_258,
    "shufflenetv2": 1_355_528,
    "resnet18_imagenet": 11_689_512,
    "resnet34_imagenet": 21_797_672,
    "resnet50_imagenet": 25_557_032,
    # mdistiller's models/imagenet/mobilenetv1.py (the count; the transcription in
    # benchmarks/torch_models.py gives the same, tests/test_convert_torch.py).
    "mobilenetv1": 4_231_976,
}
IMAGENET_MODELS = {"resnet18_imagenet", "resnet34_imagenet", "resnet50_imagenet", "mobilenetv1"}
CIFAR_MODELS = sorted(set(PROTOCOL_PARAM_COUNTS) - IMAGENET_MODELS)


def _num_classes(name: str) -> int:
    return 1000 if name in IMAGENET_MODELS else 100


def _native_size(name: str) -> int:
    return 224 if name in IMAGENET_MODELS else 32


def _images(size: int, batch: int = 2) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)


@functools.cache
def _abstract_init(name: str, size: int):
    """(logits, variables) as ShapeDtypeStructs of an eval-mode init at ``size`` pixels."""
    model = models.create(name, num_classes=_num_classes(name))
    return jax.eval_shape(
        lambda x: model.init_with_output(jax.random.key(0), x, train=False), _images(size)
    )


def _flat_shapes(variables) -> dict[str, tuple[int, ...]]:
    return {k: v.shape for k, v in traverse_util.flatten_dict(variables, sep="/").items()}


def test_registry_holds_exactly_the_protocol_models():
    assert models.names() == sorted(PROTOCOL_PARAM_COUNTS)
    assert {n for n in models.names() if models.input_style(n) == "imagenet"} == IMAGENET_MODELS


@pytest.mark.parametrize("name", sorted(PROTOCOL_PARAM_COUNTS))
def test_param_count_equals_reference_and_logits_are_float32(name):
    logits, variables = _abstract_init(name, _native_size(name))
    assert set(variables) == {"params", "batch_stats"}
    assert models.count_params(variables["params"]) == PROTOCOL_PARAM_COUNTS[name]
    assert logits.shape == (2, _num_classes(name))
    assert logits.dtype == jnp.float32
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_cifar_models_train_on_64_pixel_inputs_in_bfloat16(name):
    model = models.create(name, num_classes=200, dtype=jnp.bfloat16)

    def init_then_train(x):
        variables = model.init(jax.random.key(0), x, train=False)
        return variables, model.apply(variables, x, train=True, mutable=["batch_stats"])

    variables, (logits, updates) = jax.eval_shape(init_then_train, _images(64))
    assert logits.shape == (2, 200)
    assert logits.dtype == jnp.float32
    assert jax.tree.structure(updates) == jax.tree.structure(
        {"batch_stats": variables["batch_stats"]}
    )
    assert {leaf.dtype for leaf in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize(
    ("name", "size", "module", "spatial"),
    [
        ("resnet8", 32, "layer3_0", 8),
        ("wrn_16_1", 64, "block3", 16),
        ("resnet18", 32, "layer4_1", 4),
        ("resnet18_imagenet", 224, "layer4_1", 7),
        ("resnet50_imagenet", 224, "layer1_2", 56),
        ("mobilenetv1", 224, "model_0_1", 112),
        ("mobilenetv1", 224, "model_13_4", 7),
        ("mobilenetv2", 32, "blocks_6_0", 2),
        ("shufflenetv1", 32, "layer3_3", 4),
        ("shufflenetv2", 64, "layer3_3", 8),
        # The 1x1 stem with padding 1 grows 64 to 66 pixels: 33, 17, 9 after the strides.
        ("mobilenetv2_tin", 64, "pre_0", 66),
        ("mobilenetv2_tin", 64, "stage7", 9),
        # VGG pools after block 3 only for 64-pixel inputs, as its reference does.
        ("vgg8", 32, "block4_0", 4),
        ("vgg8", 64, "block4_0", 4),
    ],
)
def test_feature_map_sizes_follow_the_references(name, size, module, spatial):
    _, variables = _abstract_init(name, _native_size(name))
    model = models.create(name, num_classes=_num_classes(name))
    _, state = jax.eval_shape(
        lambda v, x: model.apply(
            v, x, train=False, capture_intermediates=True, mutable=["intermediates"]
        ),
        variables,
        _images(size),
    )
    (output,) = state["intermediates"][module]["__call__"]
    assert output.shape[1:3] == (spatial, spatial)


RESNET8_TREE = {
    "params/conv1/kernel": (3, 3, 3, 16),
    "params/bn1/scale": (16,),
    "params/bn1/bias": (16,),
    "params/fc/kernel": (64, 100),
    "params/fc/bias": (100,),
    "batch_stats/bn1/mean": (16,),
    "batch_stats/bn1/var": (16,),
}
for _stage, _in, _out in ((1, 16, 16), (2, 16, 32), (3, 32, 64)):
    _block = f"layer{_stage}_0"
    RESNET8_TREE[f"params/{_block}/conv1/kernel"] = (3, 3, _in, _out)
    RESNET8_TREE[f"params/{_block}/conv2/kernel"] = (3, 3, _out, _out)
    _bns = ["bn1", "bn2"]
    if _in != _out:
        RESNET8_TREE[f"params/{_block}/downsample_0/kernel"] = (1, 1, _in, _out)
        _bns.append("downsample_1")
    for _bn in _bns:
        for _leaf in ("params/{}/scale", "params/{}/bias", "batch_stats/{}/mean"):
            RESNET8_TREE[_leaf.format(f"{_block}/{_bn}")] = (_out,)
        RESNET8_TREE[f"batch_stats/{_block}/{_bn}/var"] = (_out,)


def test_resnet8_tree_is_the_reference_state_dict_renamed():
    _, variables = _abstract_init("resnet8", 32)
    assert _flat_shapes(variables) == RESNET8_TREE


@pytest.mark.parametrize(
    ("name", "path", "shape"),
    [
        ("resnet8x4", "params/layer1_0/downsample_0/kernel", (1, 1, 32, 64)),
        ("wrn_40_2", "params/block1/layer_0/convShortcut/kernel", (1, 1, 16, 32)),
        ("wrn_40_2", "batch_stats/block3/layer_5/bn2/var", (128,)),
        ("wrn_40_2", "params/bn1/scale", (128,)),
        ("vgg13", "params/block0_3/kernel", (3, 3, 64, 64)),
        ("vgg13", "params/block0_3/bias", (64,)),
        ("vgg13", "batch_stats/block4_4/mean", (512,)),
        ("vgg13", "params/classifier/kernel", (512, 100)),
        ("mobilenetv2", "params/conv1_0/kernel", (3, 3, 3, 16)),
        ("mobilenetv2", "params/blocks_1_0/conv_3/kernel", (3, 3, 1, 48)),
        ("mobilenetv2", "params/blocks_6_0/conv_7/scale", (160,)),
        ("mobilenetv2", "params/conv2_1/bias", (1280,)),
        ("mobilenetv2", "params/classifier_0/kernel", (1280, 100)),
        ("mobilenetv2_tin", "params/pre_0/kernel", (1, 1, 3, 32)),
        ("mobilenetv2_tin", "params/pre_0/bias", (32,)),
        ("mobilenetv2_tin", "params/stage1/residual_0/kernel", (1, 1, 32, 32)),
        ("mobilenetv2_tin", "params/stage4_3/residual_3/kernel", (3, 3, 1, 384)),
        ("mobilenetv2_tin", "params/stage4_3/residual_3/bias", (384,)),
        ("mobilenetv2_tin", "params/stage7/residual_6/kernel", (1, 1, 960, 320)),
        ("mobilenetv2_tin", "batch_stats/conv1_1/var", (1280,)),
        ("mobilenetv2_tin", "params/conv2/kernel", (1, 1, 1280, 100)),
        ("mobilenetv2_tin", "params/conv2/bias", (100,)),
        ("shufflenetv1", "params/layer1_0/conv1/kernel", (1, 1, 24, 54)),
        ("shufflenetv1", "params/layer2_1/conv1/kernel", (1, 1, 160, 120)),
        ("shufflenetv1", "params/layer2_1/conv3/kernel", (1, 1, 40, 480)),
        ("shufflenetv2", "params/layer1_0/conv5/kernel", (1, 1, 58, 58)),
        ("shufflenetv2", "params/layer1_3/conv2/kernel", (3, 3, 1, 58)),
        ("shufflenetv2", "params/conv2/kernel", (1, 1, 464, 1024)),
        ("shufflenetv2", "params/linear/kernel", (1024, 100)),
        ("resnet18", "params/layer2_0/shortcut_0/kernel", (1, 1, 64, 128)),
        ("resnet18", "params/linear/bias", (100,)),
        ("resnet50", "params/layer1_0/shortcut_1/scale", (256,)),
        ("resnet50_imagenet", "params/conv1/kernel", (7, 7, 3, 64)),
        ("resnet50_imagenet", "params/layer4_2/bn3/bias", (2048,)),
        ("resnet50_imagenet", "batch_stats/layer3_0/downsample_1/mean", (1024,)),
        ("resnet50_imagenet", "params/fc/kernel", (2048, 1000)),
        ("mobilenetv1", "params/model_0_0/kernel", (3, 3, 3, 32)),
        ("mobilenetv1", "params/model_1_0/kernel", (3, 3, 1, 32)),
        ("mobilenetv1", "params/model_1_3/kernel", (1, 1, 32, 64)),
        ("mobilenetv1", "batch_stats/model_13_4/var", (1024,)),
        ("mobilenetv1", "params/fc/bias", (1000,)),
    ],
)
def test_param_paths_mirror_reference_module_names(name, path, shape):
    _, variables = _abstract_init(name, _native_size(name))
    assert _flat_shapes(variables)[path] == shape


# --- real computation: small model, tiny batch ------------------------------------------------


@pytest.fixture(scope="module")
def resnet8():
    model = models.create("resnet8", num_classes=10)
    images = jax.random.normal(jax.random.key(1), (3, 32, 32, 3))
    # An "rbg" key: threefry sampling of every parameter takes XLA:CPU seconds to compile.
    key = jax.random.key(0, impl="rbg")
    variables = jax.jit(functools.partial(model.init, train=False))(key, images)
    return model, variables, images


def test_initialisation_follows_the_reference(resnet8):
    _, variables, _ = resnet8
    params, stats = variables["params"], variables["batch_stats"]
    kernel = np.asarray(params["layer3_0"]["conv2"]["kernel"])
    std = np.sqrt(2.0 / (3 * 3 * 64))  # Kaiming normal, fan_out
    assert kernel.std() == pytest.approx(std, rel=0.03)
    assert np.abs(kernel).max() > 3 * std  # untruncated normal
    bound = 1 / np.sqrt(64)  # PyTorch nn.Linear default
    for leaf in (params["fc"]["kernel"], params["fc"]["bias"]):
        assert 0.8 * bound < np.abs(leaf).max() <= bound
    for bn in (params["bn1"], params["layer2_0"]["downsample_1"]):
        np.testing.assert_array_equal(bn["scale"], 1.0)
        np.testing.assert_array_equal(bn["bias"], 0.0)
    for leaf_path, value in traverse_util.flatten_dict(stats).items():
        np.testing.assert_array_equal(value, 0.0 if leaf_path[-1] == "mean" else 1.0)


def test_train_mode_uses_and_updates_batch_statistics_eval_mode_does_not(resnet8):
    model, variables, images = resnet8
    train = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
    evaluate = jax.jit(lambda v, x: model.apply(v, x, train=False))

    logits, updates = train(variables, images)
    trained = {**variables, **updates}
    changed = jax.tree.map(
        lambda old, new: bool(np.any(old != new)), variables["batch_stats"], updates["batch_stats"]
    )
    assert all(jax.tree.leaves(changed))
    # Training normalises with the batch, so the running statistics do not affect it.
    np.testing.assert_allclose(train(trained, images)[0], logits, rtol=1e-5, atol=1e-5)
    # Evaluation normalises with the running statistics and returns only the logits.
    eval_logits = evaluate(trained, images)
    assert isinstance(eval_logits, jax.Array)
    assert not np.allclose(evaluate(variables, images), eval_logits)


def test_bfloat16_compute_keeps_float32_params_and_logits(resnet8):
    _, variables, images = resnet8
    model = models.create("resnet8", num_classes=10, dtype=jnp.bfloat16)
    bf16_variables = jax.eval_shape(
        functools.partial(model.init, train=False), jax.random.key(0), images
    )
    assert {leaf.dtype for leaf in jax.tree.leaves(bf16_variables)} == {jnp.dtype(jnp.float32)}

    logits, state = jax.jit(
        lambda v, x: model.apply(
            v, x, train=False, capture_intermediates=True, mutable=["intermediates"]
        )
    )(variables, images)
    assert state["intermediates"]["conv1"]["__call__"][0].dtype == jnp.bfloat16
    assert state["intermediates"]["layer3_0"]["__call__"][0].dtype == jnp.bfloat16
    assert logits.dtype == jnp.float32
    float32_model = models.create("resnet8", num_classes=10)
    reference = jax.jit(functools.partial(float32_model.apply, train=False))(variables, images)
    np.testing.assert_allclose(logits, reference, atol=0.05 * float(np.abs(reference).max()))


# --- BatchNorm ---------------------------------------------------------------------------------


def _bn_setup():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(4, 3, 3, 5)) * 3.0 + 2.0).astype(np.float32)
    bn = layers.BatchNorm()
    variables = bn.init(jax.random.key(0), x, train=True)
    variables = {
        "params": {
            "scale": rng.uniform(0.5, 1.5, 5).astype(np.float32),
            "bias": rng.normal(size=5).astype(np.float32),
        },
        "batch_stats": {
            "mean": rng.normal(size=5).astype(np.float32),
            "var": rng.uniform(0.5, 2.0, 5).astype(np.float32),
        },
    }
    return bn, variables, x


def test_batchnorm_matches_pytorch_training_and_eval_formulas():
    bn, variables, x = _bn_setup()
    params, stats = variables["params"], variables["batch_stats"]
    x64 = x.astype(np.float64).reshape(-1, 5)
    n = x64.shape[0]
    mean, biased_var = x64.mean(0), x64.var(0)

    y, updates = bn.apply(variables, x, train=True, mutable=["batch_stats"])
    expected = (x64 - mean) / np.sqrt(biased_var + 1e-5) * params["scale"] + params["bias"]
    np.testing.assert_allclose(np.asarray(y).reshape(-1, 5), expected, rtol=1e-5, atol=1e-5)
    new = updates["batch_stats"]
    np.testing.assert_allclose(new["mean"], 0.9 * stats["mean"] + 0.1 * mean, rtol=1e-6)
    unbiased_var = biased_var * n / (n - 1)
    np.testing.assert_allclose(new["var"], 0.9 * stats["var"] + 0.1 * unbiased_var, rtol=1e-6)

    y_eval = bn.apply(variables, x, train=False)
    expected_eval = (x64 - stats["mean"]) / np.sqrt(stats["var"] + 1e-5) * params["scale"] + params[
        "bias"
    ]
    np.testing.assert_allclose(np.asarray(y_eval).reshape(-1, 5), expected_eval, rtol=1e-5)


def test_batchnorm_axis_name_averages_statistics_over_the_mapped_axis():
    _, variables, x = _bn_setup()
    bn = layers.BatchNorm(axis_name="shards")
    shards = x.reshape(2, 2, 3, 3, 5)
    y, updates = jax.vmap(
        lambda s: bn.apply(variables, s, train=True, mutable=["batch_stats"]),
        axis_name="shards",
    )(shards)
    y_global, updates_global = layers.BatchNorm().apply(
        variables, x, train=True, mutable=["batch_stats"]
    )
    np.testing.assert_allclose(np.asarray(y).reshape(x.shape), y_global, rtol=1e-5, atol=1e-6)
    for key in ("mean", "var"):
        for shard in range(2):
            np.testing.assert_allclose(
                updates["batch_stats"][key][shard], updates_global["batch_stats"][key], atol=1e-6
            )


def test_batchnorm_rejects_a_single_value_per_channel_in_training():
    bn, variables, _ = _bn_setup()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn.apply(variables, np.ones((1, 1, 1, 5), np.float32), train=True, mutable=["batch_stats"])


def test_channel_shuffle_is_the_reference_nchw_permutation():
    x = np.arange(2 * 4 * 4 * 12, dtype=np.float32).reshape(2, 4, 4, 12)
    nchw = x.transpose(0, 3, 1, 2)
    shuffled = nchw.reshape(2, 3, 4, 4, 4).transpose(0, 2, 1, 3, 4).reshape(2, 12, 4, 4)
    np.testing.assert_array_equal(layers.channel_shuffle(x, 3), shuffled.transpose(0, 2, 3, 1))


def test_pytorch_default_initialisers():
    key = jax.random.key(0)
    depthwise = np.asarray(layers.TORCH_DEFAULT_WEIGHT(key, (3, 3, 1, 4096)))
    bound = 1 / np.sqrt(9)  # fan_in = kh * kw * in_channels / groups
    assert 0.99 * bound < np.abs(depthwise).max() <= bound
    linear = np.asarray(layers.NORMAL_0_01(key, (512, 100)))
    assert linear.std() == pytest.approx(0.01, rel=0.03)
    bias = np.asarray(layers.torch_default_bias(9)(key, (4096,)))
    assert 0.99 * bound < np.abs(bias).max() <= bound and abs(bias.mean()) < 0.02


# --- registry ------------------------------------------------------------------------------------


def test_unknown_name_error_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown model name 'resnet9'") as info:
        models.create("resnet9", num_classes=10)
    assert all(name in str(info.value) for name in models.names())
    with pytest.raises(ValueError, match="valid names"):
        models.input_style("ResNet50")


@pytest.mark.parametrize("num_classes", [0, -3, 2.5, True])
def test_num_classes_must_be_a_positive_int(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        models.create("resnet8", num_classes=num_classes)
