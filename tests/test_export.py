"""Student export: variables-only checkpoint, serialized inference function, description.

Workdirs are written directly in the trainer's layout (config.json, checkpoints with variables,
optimizer and meta items) from resnet8 variables filled with random values, so no training
runs.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from figkd_jax import data, models
from figkd_jax.tools import export
from figkd_jax.trainer import checkpoints, run_setup
from figkd_jax.trainer import workdir as workdir_lib
from tests.helpers import model_variables
from tests.train_worker import digits_config

IMAGE_SHAPE = data.get_info("digits").image_shape  # (8, 8, 1)
STEPS, TOP1 = (22, 44), (0.61, 0.55)  # The first epoch is the best.


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A two-epoch digits run as the trainer leaves it; returns (workdir, {step: variables})."""
    workdir = str(tmp_path_factory.mktemp("run"))
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(workdir_lib.config_to_dict(digits_config()), f)
    mngr = checkpoints.manager(os.path.join(workdir, "checkpoints"))
    history, saved = [], {}
    all_variables = [model_variables("resnet8", seed=seed) for seed in range(len(STEPS))]
    for epoch, (step, top1, variables) in enumerate(
        zip(STEPS, TOP1, all_variables, strict=True), start=1
    ):
        history.append({"epoch": epoch, "step": step, "top1": top1, "top5": 0.9})
        meta = {
            "history": list(history),
            "best_step": STEPS[0],
            "wall_time": 1.0,
            "model": "resnet8",
            "num_classes": 10,
            "dataset": "digits",
            "step": step,
        }
        optimizer = {
            "opt_state": optax.sgd(0.05, momentum=0.9).init(variables["params"]),
            "nonfinite_steps": jnp.zeros((), jnp.int32),
        }
        checkpoints.save(
            mngr, step, variables=variables, optimizer=optimizer, meta=meta, metrics={"top1": top1}
        )
        saved[step] = variables
    mngr.close()
    return workdir, saved


def _assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_export_last_holds_the_student_alone_and_reproduces_its_logits(workdir, tmp_path):
    workdir, saved = workdir
    out = export.export_student(workdir, str(tmp_path / "out"))

    items = os.listdir(os.path.join(out, str(STEPS[1])))
    assert checkpoints.OPTIMIZER not in items and {checkpoints.VARIABLES, checkpoints.META} <= set(
        items
    )
    step, meta = checkpoints.read_meta(out)
    assert step == STEPS[1]
    assert meta["model"] == "resnet8" and meta["num_classes"] == 10 and meta["top1"] == TOP1[1]
    model = models.create("resnet8", num_classes=10)
    variables = checkpoints.restore_variables(out, step, checkpoints.abstract(saved[step]))
    _assert_trees_equal(variables, saved[step])

    with open(os.path.join(out, export.DESCRIPTION_FILE)) as f:
        description = json.load(f)
    info = data.get_info("digits")
    assert description["image_shape"] == [8, 8, 1] and description["dataset"] == "digits"
    assert description["mean"] == list(info.mean) and description["std"] == list(info.std)
    assert (description["step"], description["epoch"], description["top1"]) == (44, 2, TOP1[1])

    with open(os.path.join(out, export.INFERENCE_FILE), "rb") as f:
        exported = jax.export.deserialize(bytearray(f.read()))
    assert exported.platforms == ("cpu", "cuda")
    (image_aval,) = exported.in_avals
    assert str(image_aval.shape[0]) == "b" and image_aval.shape[1:] == IMAGE_SHAPE
    inference = export.load_inference(out)
    rng = np.random.default_rng(0)
    for batch in (1, 5):
        images = rng.normal(size=(batch, *IMAGE_SHAPE)).astype(np.float32)
        expected = model.apply(saved[step], images, train=False)
        logits = inference(images)
        assert logits.shape == (batch, 10) and logits.dtype == jnp.float32
        np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_export_best_picks_best_step_and_serves_as_a_teacher(workdir, tmp_path):
    workdir, saved = workdir
    out = str(tmp_path / "best")
    export.main([workdir, "--out", out, "--which", "best"])

    with open(os.path.join(out, export.DESCRIPTION_FILE)) as f:
        description = json.load(f)
    assert (description["step"], description["epoch"], description["top1"]) == (22, 1, TOP1[0])
    config = digits_config()
    config.method.name = "kd"
    config.teacher.model = "resnet8"
    config.teacher.checkpoint = out
    teacher = run_setup.load_teacher(run_setup.build_run(config))
    _assert_trees_equal(teacher.variables, saved[STEPS[0]])


def test_mid_epoch_checkpoint_exports_as_last_only(tmp_path):
    """A run stopped inside its first epoch (max_steps) has no evaluation and no best step."""
    workdir = tmp_path / "run"
    os.makedirs(workdir)
    with open(workdir / "config.json", "w") as f:
        json.dump(workdir_lib.config_to_dict(digits_config()), f)
    variables = model_variables("resnet8")
    meta = {"history": [], "best_step": None, "model": "resnet8", "num_classes": 10, "step": 7}
    mngr = checkpoints.manager(str(workdir / "checkpoints"))
    checkpoints.save(mngr, 7, variables=variables, meta=meta)
    mngr.close()

    with pytest.raises(ValueError, match=r"no best_step .* which=.last."):
        export.export_student(str(workdir), str(tmp_path / "best"), which="best")
    out = export.export_student(str(workdir), str(tmp_path / "last"))
    with open(os.path.join(out, export.DESCRIPTION_FILE)) as f:
        description = json.load(f)
    assert description["step"] == 7 and description["epoch"] is None
    with pytest.raises(ValueError, match="not empty"):
        export.export_student(str(workdir), out)
