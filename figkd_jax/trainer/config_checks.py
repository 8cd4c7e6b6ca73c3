"""The checks of a config that need neither jax nor TensorFlow: names, choices and ranges.

The launcher runs them right after parsing the flags, before jax and TensorFlow start (seconds
of imports and their start-up logging), so that a typo or a value out of range answers at
once; `run_setup.build_run` runs them too, then the checks that need jax (device count,
tracing the objective). The model and method names and the deepest Haar level are here
because their registries and the library import flax and jax; tests/test_launch_start.py keeps
them equal to `models.names()`, `methods.names()` and `wavelets.haar_max_level`.
"""

from __future__ import annotations

from figkd_jax.data import registry
from figkd_jax.trainer.errors import ConfigError

MODEL_NAMES = (
    "mobilenetv1",
    "mobilenetv2",
    "mobilenetv2_tin",
    "resnet110",
    "resnet14",
    "resnet18",
    "resnet18_imagenet",
    "resnet20",
    "resnet32",
    "resnet32x4",
    "resnet34_imagenet",
    "resnet44",
    "resnet50",
    "resnet50_imagenet",
    "resnet56",
    "resnet8",
    "resnet8x4",
    "shufflenetv1",
    "shufflenetv2",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "vgg8",
    "wrn_16_1",
    "wrn_16_2",
    "wrn_40_1",
    "wrn_40_2",
)
METHOD_NAMES = ("ce", "dist", "dkd", "figkd", "kd", "mlkd")


def _positive(x):
    return x > 0


def _at_least_one(x):
    return x >= 1


def _non_negative(x):
    return x >= 0


# (field, test, valid range) of every numeric field whose valid range is known;
# each test is written so that NaN fails it. Batch sizes are checked against
# the device count in build_run, lr_decay_epochs against num_epochs below.
RANGES = (
    ("num_epochs", _at_least_one, ">= 1"),
    ("eval_batch_size", _at_least_one, ">= 1"),
    ("batch_size", _at_least_one, ">= 1"),
    ("steps_per_dispatch", _at_least_one, ">= 1"),
    ("log_every_steps", _at_least_one, ">= 1"),
    ("checkpoints_to_keep", _at_least_one, ">= 1"),
    ("max_consecutive_nonfinite_steps", _at_least_one, ">= 1"),
    ("max_steps", lambda x: x is None or x >= 1, "None or >= 1"),
    ("optim.learning_rate", _positive, "> 0"),
    ("optim.momentum", lambda x: 0 <= x < 1, "in [0, 1)"),
    ("optim.weight_decay", _non_negative, ">= 0"),
    ("optim.lr_decay_rate", lambda x: 0 < x <= 1, "in (0, 1]"),
    ("method.temperature", _positive, "> 0"),
    ("method.ce.ce_weight", _non_negative, ">= 0"),
    ("method.kd.ce_weight", _non_negative, ">= 0"),
    ("method.kd.kd_weight", _non_negative, ">= 0"),
    ("method.dkd.ce_weight", _non_negative, ">= 0"),
    ("method.dkd.alpha", _non_negative, ">= 0"),
    ("method.dkd.beta", _non_negative, ">= 0"),
    ("method.dkd.warmup_epochs", _non_negative, ">= 0"),
    ("method.figkd.ce_weight", _non_negative, ">= 0"),
    ("method.figkd.figkd_weight", _non_negative, ">= 0"),
    ("method.figkd.level", _at_least_one, ">= 1 (and at most the class count's maximum)"),
    ("method.figkd.ls_temperature", _positive, "> 0"),
    ("method.figkd.ls_weight_scale", _non_negative, ">= 0"),
    ("method.kd.ls_temperature", _positive, "> 0"),
    ("method.kd.ls_kd_weight", _non_negative, ">= 0"),
    ("method.dkd.ls_temperature", _positive, "> 0"),
    ("method.dkd.ls_weight_scale", _non_negative, ">= 0"),
    ("method.dist.ce_weight", _non_negative, ">= 0"),
    ("method.dist.beta", _non_negative, ">= 0"),
    ("method.dist.gamma", _non_negative, ">= 0"),
    ("method.mlkd.ce_weight", _non_negative, ">= 0"),
    ("method.mlkd.kd_weight", _non_negative, ">= 0"),
    ("method.mlkd.ls_temperature", _positive, "> 0"),
    ("method.mlkd.ls_kd_weight", _non_negative, ">= 0"),
    ("sweep.teacher_num_epochs", lambda x: x is None or x >= 1, "None or >= 1"),
    ("sweep.mlkd_num_epochs", lambda x: x is None or x >= 1, "None or >= 1"),
    ("sweep.mlkd_learning_rate", lambda x: x is None or x > 0, "None or > 0"),
)


def check_ranges(config) -> None:
    """Raises ConfigError naming the first field of `RANGES` (and the decay epochs or
    sweep seeds) outside its valid range."""
    for field, test, valid in RANGES:
        value = config
        for key in field.split("."):
            value = value[key]
        if not test(value):
            raise ConfigError(f"config.{field}={value} must be {valid}")
    decay = tuple(config.optim.lr_decay_epochs)
    if not (
        all(isinstance(e, int) and not isinstance(e, bool) for e in decay)
        and list(decay) == sorted(set(decay))
        and all(1 <= e <= config.num_epochs for e in decay)
    ):
        raise ConfigError(
            f"config.optim.lr_decay_epochs={decay} must be strictly increasing integers in "
            f"[1, num_epochs={config.num_epochs}]"
        )
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in config.sweep.seeds):
        raise ConfigError(f"config.sweep.seeds={tuple(config.sweep.seeds)} must be integers")


def check(config) -> None:
    """Raises ConfigError (one line) for an unknown dataset, model or method name, a choice
    field outside its choices, or a numeric field outside its range (`check_ranges`)."""
    try:
        registry.get_info(config.dataset.name)
    except ValueError as e:
        raise ConfigError(f"config.dataset.name: {e}") from None
    for field, name in [("method.name", config.method.name)] + [
        ("sweep.methods", m) for m in config.sweep.methods
    ]:
        if name not in METHOD_NAMES:
            raise ConfigError(
                f"config.{field}={name!r} is unknown; valid methods: {list(METHOD_NAMES)}"
            )
    for field, name in (("model", config.model), ("teacher.model", config.teacher.model)):
        if name is not None and name not in MODEL_NAMES:
            raise ConfigError(
                f"config.{field}={name!r} is unknown; valid models: {list(MODEL_NAMES)}"
            )
    choices = {
        "teacher.which": ("last", "best"),
        "input_on_device": ("auto", "device", "host"),
        "on_changed_config": ("refuse", "continue", "overwrite"),
        "dtype": ("float32", "bfloat16"),
    }
    for field, valid in choices.items():
        value = config
        for key in field.split("."):
            value = value[key]
        if value not in valid:
            raise ConfigError(
                f"config.{field}={value!r}; valid: {', '.join(repr(v) for v in valid)}"
            )
    check_ranges(config)
    if "figkd" in (config.method.name, *config.sweep.methods):
        _check_figkd_level(config)


def deepest_haar_level(num_classes: int) -> int:
    """`figkd_jax.wavelets.haar_max_level` (``floor(log2(n))``, PyWavelets' dwt_max_level for
    Haar) without importing jax, which the library does; tests/test_launch_start.py checks
    that the two agree."""
    return num_classes.bit_length() - 1


def _check_figkd_level(config) -> None:
    """The wavelet level against the dataset's class count: the loss's own check at trace
    time, made before jax starts."""
    num_classes = registry.get_info(config.dataset.name).num_classes
    level, deepest = config.method.figkd.level, deepest_haar_level(num_classes)
    if level > deepest:
        raise ConfigError(
            f"config.method.figkd.level={level} must be in [1, haar_max_level({num_classes}) = "
            f"{deepest}]: {config.dataset.name} has {num_classes} classes"
        )
