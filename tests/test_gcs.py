"""Runs on Cloud Storage: training killed and resumed, a teacher, an export and a report, all
on gs:// URLs served by a local emulator (tests/gcs_emulator.py), several processes sharing a
bucket, and the one-line errors of bad storage paths.

What reaches the emulator: every read and write of ours (etils epath through gcsfs) and
orbax's checkpoints (epath for metadata, tensorstore for arrays), TensorBoard event files
included (`figkd_jax.events` writes them through epath), and TFDS's metadata checks (epath).
What cannot: TensorFlow's own filesystem (``tf.io.gfile``, used by TFDS to write and read
records), which has no endpoint override; record writing is tested on local directories by
tests/test_data_builders.py, and here a guard (`gcs_emulator.guard_hook`, installed in this
process and in every subprocess) fails any local file operation on a path with a ``gs:``
component, and `local_gs_paths` asserts that none was left behind.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from figkd_jax import checkpoints, events, export, report, run_setup, storage, train
from tests.gcs_emulator import local_gs_paths
from tests.train_worker import digits_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = "figkd-test"
# A digits KD student of 2 epochs x 21 steps, checkpointed at steps 21 and 42.
STUDENT_ARGS = [
    "--config=configs/default.py",
    "--config.num_epochs=2",
    "--config.eval_batch_size=128",
    "--config.log_every_steps=5",
    "--config.optim.lr_decay_epochs=(1,)",
    "--config.method.name=kd",
    "--config.teacher.model=resnet8",
]


def _student_config(teacher):
    config = digits_config(num_epochs=2, eval_batch_size=128, log_every_steps=5)
    config.method.name = "kd"
    config.teacher.model = "resnet8"
    config.teacher.workdir = teacher
    return config


def _launch(*args, env=None):
    return subprocess.Popen(
        [sys.executable, "launch.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def bucket(gcs):
    return gcs.create_bucket(BUCKET)


@pytest.fixture(scope="module")
def teacher(bucket):
    """A teacher trained for one epoch (21 steps) in this process, its workdir on gs://."""
    workdir = f"{bucket}/runs/teacher"
    train.train_and_evaluate(digits_config(num_epochs=1), workdir)
    return workdir


def _committed_steps(gcs, prefix):
    """Steps of `prefix`'s checkpoints that orbax committed (on GCS, no rename marks it done:
    a ``commit_success.txt`` written last does)."""
    directory = f"{prefix}/checkpoints/"
    relative = [n.removeprefix(directory).split("/") for n in gcs.objects(BUCKET, directory)]
    return {int(p[0]) for p in relative if len(p) == 2 and p[1] == "commit_success.txt"}


@pytest.mark.slow
def test_run_on_gcs_killed_and_resumed_equals_uninterrupted_run(gcs, bucket, teacher, tmp_path):
    workdir = f"{bucket}/runs/student"
    args = [f"--workdir={workdir}", *STUDENT_ARGS, f"--config.teacher.workdir={teacher}"]
    proc = _launch(*args)
    deadline = time.time() + 300
    while 21 not in _committed_steps(gcs, "runs/student"):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)
    proc.kill()
    out = proc.communicate()[0]
    assert proc.returncode == -signal.SIGKILL, out[-3000:]  # killed in epoch 2, not finished
    proc = _launch(*args)
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-3000:]
    assert "Resumed from step 21" in out

    config = _student_config(teacher)
    reference = train.train_and_evaluate(config, f"{bucket}/runs/reference")
    resumed = json.loads(storage.path(f"{workdir}/results.json").read_text())
    assert resumed["history"] == reference["history"]
    assert resumed["teacher_eval"] == reference["teacher_eval"]
    run = run_setup.build_run(config)
    shapes = checkpoints.abstract(jax.eval_shape(lambda: run_setup.initial_state(run).variables))
    restored = []
    for directory in (f"{workdir}/checkpoints", f"{bucket}/runs/reference/checkpoints"):
        step, _ = checkpoints.read_meta(directory)
        assert step == 42
        restored.append(checkpoints.restore_variables(directory, step, shapes))
    for a, b in zip(*map(jax.tree.leaves, restored), strict=True):
        np.testing.assert_array_equal(a, b)
    # TensorBoard events in the bucket: each (tag, step) once after the kill and resume.
    scalars = events.read_scalars(workdir)
    assert [s for s, _ in scalars["eval/top1"]] == [21, 42]
    assert sorted(s for s, _ in scalars["train/loss"]) == sorted({*range(5, 43, 5), 21, 42})
    assert len(events.files(workdir)) == 1
    assert local_gs_paths(ROOT) == [] and local_gs_paths(str(tmp_path)) == []


@pytest.mark.slow
def test_export_and_report_read_and_write_gcs(gcs, bucket, teacher, tmp_path):
    out = f"{bucket}/exported/teacher"
    export.export_student(teacher, out)
    logits = export.load_inference(out)(np.zeros((3, 8, 8, 1), np.float32))
    assert logits.shape == (3, 10) and np.all(np.isfinite(logits))
    assert json.loads(storage.path(f"{out}/export.json").read_text())["step"] == 21
    # The export is a checkpoint directory that a run accepts as its teacher.
    restored = run_setup.teacher_checkpoint(out)
    assert restored[1] == 21 and restored[2]["model"] == "resnet8"

    code = report.main(
        [f"{bucket}/runs/teacher", "--out", f"{bucket}/reports", "--bands_from", teacher]
    )
    assert code == 0
    names = gcs.objects(BUCKET, "reports/")
    assert {"reports/report.md", "reports/report.csv"} <= set(names)
    assert any(n.startswith("reports/bands_digits_resnet8") for n in names)
    assert "| digits |" in storage.path(f"{bucket}/reports/report.md").read_text()
    assert local_gs_paths(ROOT) == [] and local_gs_paths(str(tmp_path)) == []
