"""From a config to what the training loop needs, before anything is written.

`check_config` checks a config (everything checkable without reading data or checkpoints);
`build_run` checks it and returns a `Run`: the mesh, the student, the objective, the schedule
and the optimiser.
`restore_teacher` restores a frozen teacher from a run or a checkpoint directory (the trainer
and the report use it alike), `initial_state` is the deterministic state at step 0, and
`input_on_device` decides where the train split lives.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from etils import epath
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from figkd_jax import data, models
from figkd_jax.io import storage
from figkd_jax.trainer import checkpoints, config_checks, methods
from figkd_jax.trainer import class_order as class_order_lib
from figkd_jax.trainer.errors import ConfigError
from figkd_jax.trainer.steps import DATA_AXIS, TrainState, learning_rate_schedule, make_optimizer


@dataclasses.dataclass
class Run:
    """What the loop needs, built from a validated config before any write."""

    config: ml_collections.ConfigDict
    info: data.DatasetInfo
    mesh: Mesh
    student: nn.Module
    objective: methods.Objective
    steps_per_epoch: int
    total_steps: int
    schedule: optax.Schedule
    tx: optax.GradientTransformationExtraArgs
    # FiGKD's class order (None for other methods), set by `with_class_order`.
    class_order: class_order_lib.ClassOrder | None = None

    @property
    def class_permutation(self) -> np.ndarray | None:
        """The loss's class permutation; None in index order."""
        order = self.class_order
        if order is None or order.permutation == tuple(range(len(order.permutation))):
            return None
        return np.asarray(order.permutation)

    @property
    def replicated(self):
        return NamedSharding(self.mesh, P())

    @property
    def batch_sharded(self):
        return NamedSharding(self.mesh, P(DATA_AXIS))


@dataclasses.dataclass(frozen=True)
class Teacher:
    """A frozen teacher: its module (eval mode only), variables, and checkpoint meta."""

    model: nn.Module
    variables: Any
    name: str
    step: int
    meta: dict


def build_run(config, info: data.DatasetInfo | None = None) -> Run:
    """Checks `config` (`check_config`) and builds its Run: mesh, student, objective,
    schedule and optimiser.

    `info` gives the prepared split sizes (data.prepared_info); by default the
    registry's sizes of the default splits.
    """
    info = check_config(config, info)
    steps_per_epoch = data.steps_per_epoch(info.num_train, config.batch_size)
    schedule = learning_rate_schedule(config, steps_per_epoch)
    return Run(
        config=config,
        info=info,
        mesh=Mesh(np.asarray(jax.devices()), (DATA_AXIS,)),
        student=models.create(
            config.model, num_classes=info.num_classes, dtype=models.compute_dtype(config.dtype)
        ),
        objective=methods.build(config.method),
        steps_per_epoch=steps_per_epoch,
        total_steps=steps_per_epoch * config.num_epochs,
        schedule=schedule,
        tx=make_optimizer(config, schedule),
    )


def check_config(config, info: data.DatasetInfo | None = None) -> data.DatasetInfo:
    """Raises ConfigError naming the first mistake of `config` that shows without reading
    data or checkpoints; returns the dataset's info (`info`, or the registry's)."""
    config_checks.check(config)
    info = info or data.get_info(config.dataset.name)
    method = methods.get(config.method.name)
    _check_teacher(config, method)
    _check_input(config, info, method)
    if config.method.name == "figkd":
        try:
            class_order_lib.check(config.method.figkd.class_order, info.name, info.num_classes)
        except ValueError as e:
            raise ConfigError(f"config.method.figkd.class_order: {e}") from None
    num_devices = jax.device_count()
    for field in ("batch_size", "eval_batch_size"):
        size = config[field]
        if size <= 0 or size % num_devices:
            raise ConfigError(
                f"config.{field}={size} must be a positive multiple of the {num_devices} devices"
            )
    _check_objective_traces(config, info, method)
    return info


def _check_teacher(config, method: methods.Method) -> None:
    """A distilling method's teacher: its architecture and exactly one source (names and
    choices are `config_checks`')."""
    if not method.needs_teacher:
        return
    if not config.teacher.model:
        raise ConfigError(
            f"method {config.method.name!r} distils from a teacher: set config.teacher.model "
            "and config.teacher.workdir (or config.teacher.checkpoint)"
        )
    if bool(config.teacher.workdir) == bool(config.teacher.checkpoint):
        raise ConfigError(
            "set exactly one of config.teacher.workdir (a teacher run) and "
            "config.teacher.checkpoint (a converted or exported checkpoint)"
        )


def _check_input(config, info: data.DatasetInfo, method: methods.Method) -> None:
    """Where the input lives and what the method asks of the dataset's augmentation."""
    if config.input_on_device == "device" and not info.fixed_resolution:
        raise ConfigError(
            f"config.input_on_device='device' needs a fixed-resolution dataset "
            f"(digits, cifar100, tiny_imagenet), not {info.name!r}"
        )
    if method.needs_strong_view and not (
        info.streamed or (isinstance(info.augment, data.PadCropFlip) and info.image_shape[-1] == 3)
    ):
        raise ConfigError(
            f"method {config.method.name!r} trains on a strong view (crop, flip, RandAugment), "
            f"which needs an RGB pad-crop-flip dataset (cifar100) or imagenet2012, "
            f"not {info.name!r}"
        )
    if config.steps_per_dispatch > 1 and not input_on_device(config, info):
        raise ConfigError(
            "config.steps_per_dispatch > 1 needs on-device input: "
            "set config.input_on_device='device'"
        )


def _check_objective_traces(config, info: data.DatasetInfo, method: methods.Method) -> None:
    """Tracing the objective once on dummy logits runs every argument check of the losses
    (temperature, wavelet level against the class count, ...)."""
    objective = methods.build(config.method)
    dummy = jax.ShapeDtypeStruct((2, info.num_classes), jnp.float32)
    views = dict(student_strong=dummy, teacher_strong=dummy) if method.needs_strong_view else {}
    try:
        jax.eval_shape(
            lambda s, t, views: objective(s, t, jnp.zeros(2, jnp.int32), epoch=1, **views),
            dummy,
            dummy,
            views,
        )
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config.method: {e}") from None


def teacher_checkpoint(source: str, which: str = "last") -> tuple[epath.Path, int, dict]:
    """(checkpoint directory, step, meta) of a teacher run's workdir or a checkpoint directory.

    `which` is "last" or "best" (the run's best evaluated step). `source` may be a URL.
    """
    try:
        directory = storage.path(source)
        if (directory / "checkpoints").is_dir():
            directory = directory / "checkpoints"
        step, meta = checkpoints.select(directory, which)
    except FileNotFoundError:
        raise ConfigError(
            f"teacher {source} has no checkpoint: train the teacher first, or pass a teacher "
            "run's workdir or a checkpoint directory"
        ) from None
    except Exception as e:  # a corrupt directory fails in many ways
        raise ConfigError(
            f"teacher {source} could not be read: {checkpoints.failure_reason(e)}"
        ) from None
    return directory, step, meta


def restore_teacher(
    source: str,
    info: data.DatasetInfo,
    *,
    which: str = "last",
    model: str | None = None,
    dtype=jnp.float32,
    sharding: jax.sharding.Sharding | None = None,
) -> Teacher:
    """The teacher in `source` (a run's workdir or a checkpoint directory) for dataset `info`.

    Raises ConfigError (one line) if it holds no checkpoint, another architecture than
    `model` (when given), or another class count than `info`.
    """
    directory, step, meta = teacher_checkpoint(source, which)
    if model is not None and meta.get("model") != model:
        raise ConfigError(f"teacher {source} holds a {meta.get('model')!r}, not a {model!r}")
    if meta.get("num_classes") != info.num_classes:
        raise ConfigError(
            f"teacher {source} has {meta.get('num_classes')} classes, but dataset "
            f"{info.name!r} has {info.num_classes}"
        )
    checkpoints.silence_abandoned_reads()
    try:
        module, variables = checkpoints.restore_model(
            directory, step, meta, image_shape=info.image_shape, dtype=dtype, sharding=sharding
        )
    except Exception as e:  # orbax raises several types for damage and tree mismatches
        raise ConfigError(
            f"teacher checkpoint {directory}/{step} could not be restored "
            f"as a {meta.get('model')}: {checkpoints.failure_reason(e)}"
        ) from None
    return Teacher(model=module, variables=variables, name=meta["model"], step=step, meta=meta)


def load_teacher(run: Run) -> Teacher | None:
    """The frozen teacher of `run`, replicated over the mesh; None for "ce"."""
    config = run.config
    if not methods.get(config.method.name).needs_teacher:
        return None
    return restore_teacher(
        config.teacher.workdir or config.teacher.checkpoint,
        run.info,
        which=config.teacher.which,
        model=config.teacher.model,
        dtype=models.compute_dtype(config.dtype),
        sharding=run.replicated,
    )


def make_class_order(run: Run, teacher_logits=None):
    """The class order of `run`'s config (None unless the method is FiGKD).

    `teacher_logits` (called for "teacher" only): ``() -> (logits [N, C], labels [N])`` of the
    frozen teacher on the training split. Raises ConfigError when the order cannot be made.
    """
    config = run.config
    if config.method.name != "figkd":
        return None
    try:
        return class_order_lib.make(
            config.method.figkd.class_order,
            dataset=run.info.name,
            num_classes=run.info.num_classes,
            seed=config.seed,
            teacher_logits=teacher_logits,
            temperature=config.method.temperature,
        )
    except ValueError as e:
        raise ConfigError(f"config.method.figkd.class_order: {e}") from None


def with_class_order(run: Run, order) -> Run:
    """`run` whose objective (and band diagnostics) see the classes in `order`."""
    run = dataclasses.replace(run, class_order=order)
    return dataclasses.replace(
        run, objective=methods.build(run.config.method, class_permutation=run.class_permutation)
    )


def initial_state(run: Run) -> TrainState:
    """The deterministic initial state of `run` (a pure function of config.seed)."""
    # RBG rather than threefry: XLA compiles the initialisers of a deep model
    # several times faster with it (tens of seconds saved per run on CPU).
    key = jax.random.key(run.config.seed, impl="rbg")
    variables = run.student.init(key, jnp.zeros((1, *run.info.image_shape)), train=False)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=run.tx.init(params),
        nonfinite_steps=jnp.zeros((), jnp.int32),
    )


def input_on_device(config, info: data.DatasetInfo) -> bool:
    """Whether the train split is uploaded once and augmented inside the step.

    "auto" chooses it on accelerators for datasets whose split fits at a fixed
    resolution; on the CPU the TensorFlow pipeline is faster.
    """
    if config.input_on_device == "auto":
        return info.fixed_resolution and jax.default_backend() != "cpu"
    return config.input_on_device == "device"
