"""Runs on Cloud Storage: training killed and resumed, a teacher, an export and a report, all
on gs:// URLs served by a local emulator (tests/gcs_emulator.py), several processes sharing a
bucket, and the one-line errors of bad storage paths.

What reaches the emulator: every read and write of ours (etils epath through gcsfs) and
orbax's checkpoints (epath for metadata, tensorstore for arrays), TensorBoard event files
included (`figkd_jax.io.events` writes them through epath), TFDS's metadata checks (epath),
and the prepared records: `prepare` uploads them and training copies them into a local mirror
through `storage` (`figkd_jax.data.sources.mirror_dir`). What cannot: TensorFlow's own
filesystem (``tf.io.gfile``), which has no endpoint override; the project routes nothing on
gs:// through it, and here a guard (`gcs_emulator.guard_hook`, installed in this
process and in every subprocess) fails any local file operation on a path with a ``gs:``
component, and `local_gs_paths` asserts that none was left behind.
"""

import json
import os
import re
import shlex
import signal
import socket
import time

import jax
import numpy as np
import pytest

from figkd_jax.io import events, storage
from figkd_jax.tools import bands, export, report
from figkd_jax.trainer import checkpoints, run_setup, train
from tests.gcs_emulator import local_gs_paths
from tests.helpers import ROOT, launch
from tests.train_worker import digits_config

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
    proc = launch(*args)
    deadline = time.time() + 300
    while 21 not in _committed_steps(gcs, "runs/student"):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)
    proc.kill()
    out = proc.communicate()[0]
    assert proc.returncode == -signal.SIGKILL, out[-3000:]  # killed in epoch 2, not finished
    proc = launch(*args)
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
    # Only the resumed session's objects are left.
    assert len({name.rsplit(".", 1)[0] for name in events.files(workdir)}) == 1
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

    assert report.main([f"{bucket}/runs/teacher", "--out", f"{bucket}/reports"]) == 0
    assert bands.main([teacher, "--out", f"{bucket}/reports"]) == 0
    names = gcs.objects(BUCKET, "reports/")
    assert {"reports/report.md", "reports/report.csv"} <= set(names)
    assert any(n.startswith("reports/bands_digits_resnet8") for n in names)
    assert "| digits |" in storage.path(f"{bucket}/reports/report.md").read_text()
    assert local_gs_paths(ROOT) == [] and local_gs_paths(str(tmp_path)) == []


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_processes(workdirs, *args):
    """One launch.py per workdir, joined in one JAX distributed runtime on localhost."""
    address = f"127.0.0.1:{_free_port()}"
    return [
        launch(
            f"--workdir={workdir}",
            f"--coordinator_address={address}",
            f"--num_processes={len(workdirs)}",
            f"--process_id={i}",
            *args,
        )
        for i, workdir in enumerate(workdirs)
    ]


@pytest.mark.slow
def test_two_processes_share_a_gcs_workdir_through_preemption_and_resume(gcs, bucket, tmp_path):
    workdir = f"{bucket}/runs/two_processes"
    args = [
        "--config=configs/default.py",
        "--config.num_epochs=2",
        "--config.optim.lr_decay_epochs=(1,)",
        "--config.log_every_steps=7",
    ]
    procs = _launch_processes([workdir, workdir], *args)
    deadline = time.time() + 300
    while 21 not in _committed_steps(gcs, "runs/two_processes"):
        assert all(p.poll() is None for p in procs), procs[0].stdout.read()[-3000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)
    # A preemption notice to one host: both stop at the same step with a checkpoint.
    procs[1].send_signal(signal.SIGTERM)
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [143, 143], outs[0][-3000:] + outs[1][-3000:]
    stopped_at = max(_committed_steps(gcs, "runs/two_processes"))
    assert 21 < stopped_at < 42
    procs = _launch_processes([workdir, workdir], *args)
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    assert all(f"Resumed from step {stopped_at}" in out for out in outs)
    results = json.loads(storage.path(f"{workdir}/results.json").read_text())
    assert [r["epoch"] for r in results["history"]] == [1, 2]
    assert results["devices"]["processes"] == 2
    # Only process 0 writes events: one session's objects, each evaluation once.
    assert len({name.rsplit(".", 1)[0] for name in events.files(workdir)}) == 1
    assert [s for s, _ in events.read_scalars(workdir)["eval/top1"]] == [21, 42]
    assert local_gs_paths(ROOT) == [] and local_gs_paths(str(tmp_path)) == []


@pytest.mark.slow
def test_processes_that_do_not_share_the_workdir_stop_with_one_line(tmp_path):
    procs = _launch_processes(
        [str(tmp_path / "host0"), str(tmp_path / "host1")], "--config=configs/default.py"
    )
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [2, 2], outs[0][-3000:] + outs[1][-3000:]
    for out in outs:
        last = out.strip().splitlines()[-1]
        assert last.startswith("error:") and "must be shared storage" in last, out[-3000:]
        assert "Traceback" not in out
    assert not any((tmp_path / name / "config.json").exists() for name in ("host0", "host1"))


@pytest.mark.slow
def test_bad_storage_paths_fail_with_one_line_and_write_nothing(gcs, bucket, tmp_path):
    no_credentials = dict(
        os.environ,
        FSSPEC_GCS_TOKEN="google_default",
        GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "missing.json"),
    )
    # Through the launcher (a process each, started together): the exit status and the line.
    cases = {
        # name: (workdir, extra flags, environment, what the line must say)
        "scheme typo": ("gs:/figkd-test/typo", [], None, "two slashes"),
        "missing bucket": ("gs://no-such-bucket/run", [], None, "cannot write to gs://no-such"),
        "no credentials": (f"{bucket}/creds", [], no_credentials, "credentials"),
        "data not prepared": (
            f"{bucket}/data_missing",
            ["--config.dataset.name=cifar100", f"--config.dataset.data_dir={bucket}/tfds"],
            None,
            f"cifar100 is not prepared in {bucket}/tfds",
        ),
    }
    before = gcs.objects(BUCKET)
    procs = {
        name: launch(f"--workdir={workdir}", "--config=configs/default.py", *flags, env=env)
        for name, (workdir, flags, env, _) in cases.items()
    }
    for name, proc in procs.items():
        out = proc.communicate(timeout=300)[0]
        last = out.strip().splitlines()[-1]
        assert proc.returncode == 2, f"{name}: {out[-3000:]}"
        assert last.startswith("error:") and cases[name][3] in last, f"{name}: {last}"
        assert "Traceback" not in out, name
    # In this process (launch.py turns a StorageError into that line and status 2, as above).
    (tmp_path / "a_file").write_text("")
    in_process = {
        "gcs://figkd-test/typo": "unknown storage scheme 'gcs'",
        str(tmp_path / "a_file" / "run"): "choose a directory you can write to",
    }
    if os.geteuid() != 0:  # root may write to a read-only directory
        (tmp_path / "read_only").mkdir(mode=0o555)
        in_process[str(tmp_path / "read_only" / "run")] = "choose a directory you can write to"
    for workdir, message in in_process.items():
        with pytest.raises(storage.StorageError, match=message):
            train.train_and_evaluate(digits_config(), workdir)
    config = digits_config()
    config.dataset.data_dir = "gs:/figkd-test/tfds"
    with pytest.raises(storage.StorageError, match="a URL needs two slashes"):
        train.train_and_evaluate(config, f"{bucket}/data_typo")
    assert gcs.objects(BUCKET) == before
    assert local_gs_paths(ROOT) == [] and local_gs_paths(str(tmp_path)) == []
    assert {p.name for p in tmp_path.iterdir()} <= {"a_file", "read_only"}


def _readme_recipe_commands(program):
    """The `python <program> ...` commands of the fresh-machine guide (docs/cloud.md), with
    continuation lines joined and the ssh --command="..." wrappers removed."""
    with open(os.path.join(ROOT, "docs", "cloud.md")) as f:
        section = f.read()
    lines = section.replace("\\\n", " ").replace("&&\n", "&& ").splitlines()
    commands = [
        c for line in lines for c in re.findall(rf"python {re.escape(program)} [^\"`]*", line)
    ]
    assert commands, program
    return [c.strip() for c in commands]


@pytest.mark.slow
def test_readme_recipe_commands_run_against_the_emulator(gcs, bucket, capsys):
    prefix = f"{bucket}/readme"
    # The arguments after `python <program>`, with $BUCKET in the emulator's bucket.
    substitute = lambda command, program: shlex.split(
        command.replace("$BUCKET", prefix).split(program, 1)[1]
    )
    # The report and the export: their entry points, on a bucket with no run yet.
    (report_command,) = _readme_recipe_commands("-m figkd_jax.tools.report")
    assert report.main(substitute(report_command, "figkd_jax.tools.report")) == 2
    assert f"{prefix}/runs is not a directory" in capsys.readouterr().err
    (export_command,) = _readme_recipe_commands("-m figkd_jax.tools.export")
    with pytest.raises(SystemExit) as exit_status:
        export.main(substitute(export_command, "figkd_jax.tools.export"))
    assert exit_status.value.code == 2
    assert f"{prefix}/runs/r32x4-r8x4-figkd/config.json does not exist" in capsys.readouterr().err
    # The launches (teacher, student, GPU) parse and reach the bucket, where they stop at the
    # dataset that cannot be downloaded here. --distributed is left out: without a cluster
    # JAX cannot find its peers (the two-process tests above join a runtime explicitly).
    # Without it the TPU teacher command is the GPU one: run each once.
    commands = {
        tuple(a for a in substitute(c, "launch.py") if a != "--distributed")
        for c in _readme_recipe_commands("launch.py")
    }
    assert len(commands) == 2
    launches = [launch(*args) for args in sorted(commands)]
    for proc in launches:
        out = proc.communicate(timeout=300)[0]
        assert proc.returncode == 2, out[-3000:]
        assert f"cifar100 is not prepared in {prefix}/tfds" in out.strip().splitlines()[-1]
    # The data preparation downloads CIFAR-100 (no network here): not run.
    assert _readme_recipe_commands("-m figkd_jax.data.prepare")
    assert gcs.objects(BUCKET, "readme/") == []


def test_storage_paths_writes_and_the_workdir_check(gcs, bucket, tmp_path):
    assert storage.path(f"{bucket}/a/b") == storage.path(f"{bucket}/a") / "b"
    assert str(storage.path("relative")) == os.path.join(os.getcwd(), "relative")
    typos = {
        "gs:/b/x": "two slashes",
        "gs:b": "two slashes",
        "gcs://b": "unknown storage scheme",
        "http://b": "unknown storage scheme",
    }
    for typo, message in typos.items():
        with pytest.raises(storage.StorageError, match=message):
            storage.path(typo)
    # Written whole on both sides; locally through a temporary file that does not stay.
    for directory in (f"{bucket}/writes", str(tmp_path)):
        storage.write_text(f"{directory}/x.json", "{}")
        storage.write_text(f"{directory}/x.json", '{"a": 1}')
        assert storage.path(f"{directory}/x.json").read_text() == '{"a": 1}'
        assert [p.name for p in storage.path(directory).iterdir()] == ["x.json"]
    # The workdir check leaves no marker behind.
    from figkd_jax.trainer import workdir

    workdir.check_workdir(f"{bucket}/checked")
    assert gcs.objects(BUCKET, "checked/") == []


def test_event_uploads_are_linear_in_the_run_length(gcs, bucket, monkeypatch):
    """Each record is uploaded once, in a new object per upload, in names that sort in
    writing order; unforced flushes upload at most every `upload_every_s`; a resumed session
    carries the history over and removes the earlier objects."""
    uploaded = []
    write_bytes = storage.write_bytes
    monkeypatch.setattr(
        events.storage,
        "write_bytes",
        lambda t, data: (uploaded.append(len(data)), write_bytes(t, data)),
    )
    logdir = f"{bucket}/events_linear"
    writer = events.Writer(logdir, upload_every_s=0.0)
    flushes = 60
    for step in range(1, flushes + 1):
        writer.scalar("train/loss", 1.0 / step, step)
        writer.flush(force=False)
    sizes = {n: len(storage.path(f"{logdir}/{n}").read_bytes()) for n in events.files(logdir)}
    assert len(uploaded) == len(sizes) == flushes
    # Every upload is a new object of the new records only: the bytes uploaded are the bytes
    # stored, about one record per flush (a re-upload of the whole file would be ~30x more).
    assert sum(uploaded) == sum(sizes.values())
    assert max(uploaded[1:]) <= 2 * min(uploaded[1:])
    assert [s for s, _ in events.read_scalars(logdir)["train/loss"]] == list(range(1, flushes + 1))

    rare = events.Writer(f"{bucket}/events_rare", upload_every_s=3600.0)
    uploaded.clear()
    for step in range(1, 11):
        rare.scalar("train/loss", 1.0, step)
        rare.flush(force=False)
    assert uploaded == []  # held back until the next forced flush
    rare.flush()
    assert len(uploaded) == 1
    assert len(events.read_scalars(f"{bucket}/events_rare")["train/loss"]) == 10

    resumed = events.Writer(logdir, resume_step=50, upload_every_s=0.0)
    resumed.scalar("train/loss", 0.5, 51)
    resumed.flush()
    assert len(events.files(logdir)) == 2
    assert [s for s, _ in events.read_scalars(logdir)["train/loss"]] == list(range(1, 52))


@pytest.mark.slow
def test_data_prepared_into_the_bucket_is_read_from_it_during_training(
    gcs, bucket, tmp_path, monkeypatch
):
    """The recipe's data path: the manual archives in the bucket, `prepare` with a gs://
    data dir (built in the local mirror, uploaded through storage), then a run whose data dir
    is the bucket: TFDS reads a mirror copied from the bucket, not the one prepare built."""
    from figkd_jax.data import builders, prepare, sources
    from tests.test_data_builders import _write_tiny_imagenet

    monkeypatch.setattr(builders.TinyImagenet, "EXPECTED_NUM_CLASSES", 3)  # a tiny archive
    monkeypatch.setenv("FIGKD_DATA_CACHE", str(tmp_path / "prepare_cache"))
    data_dir = f"{bucket}/data/tfds"
    _write_tiny_imagenet(tmp_path / "manual")
    storage.copy_tree(tmp_path / "manual", f"{data_dir}/downloads/manual")
    prepare.main(["--dataset=tiny_imagenet", f"--data_dir={data_dir}"])
    uploaded = gcs.objects(BUCKET, "data/tfds/tiny_imagenet/")
    assert any(n.endswith("/dataset_info.json") for n in uploaded)
    assert any(".tfrecord-" in n for n in uploaded)
    # A second preparation finds everything in place and uploads nothing.
    copy_tree = storage.copy_tree
    copies = []
    monkeypatch.setattr(
        storage, "copy_tree", lambda *a, **k: copies.append(copy_tree(*a, **k)) or copies[-1]
    )
    prepare.main(["--dataset=tiny_imagenet", f"--data_dir={data_dir}"])
    assert copies and all(c == [] for c in copies)

    # Training on another machine: an empty cache, filled from the bucket.
    cache = tmp_path / "train_cache"
    monkeypatch.setenv("FIGKD_DATA_CACHE", str(cache))
    sources.load_split.cache_clear()
    config = digits_config(
        num_epochs=1, batch_size=2, eval_batch_size=4, log_every_steps=1, model="resnet8"
    )
    config.dataset.name = "tiny_imagenet"
    config.dataset.data_dir = data_dir
    config.optim.lr_decay_epochs = ()
    results = train.train_and_evaluate(config, f"{bucket}/runs/tiny_imagenet")
    sources.load_split.cache_clear()
    assert results["history"][-1]["step"] == 3  # 6 training images, batch 2
    mirrored = sorted(
        str(p.relative_to(cache / "gs" / BUCKET / "data/tfds"))
        for p in cache.rglob("*")
        if p.is_file()
    )
    assert mirrored == sorted(n.removeprefix("data/tfds/") for n in uploaded)
    assert local_gs_paths(ROOT) == [] and local_gs_paths(str(tmp_path)) == []
