"""The launcher's start-up: mistakes answer in one line before jax and TensorFlow start, an
unreachable Cloud Storage workdir within seconds, --distributed outside a cluster in one line.

"Before jax and TensorFlow start" is tested, not only timed: the launches run with stand-ins
of ``jax`` and ``tensorflow`` first on the path that fail on import, so a check that comes
after either import fails the test whatever the machine's speed.
"""

import importlib
import os
import subprocess
import sys
import time

import pytest

import figkd_jax
from figkd_jax import models
from figkd_jax.io import storage
from figkd_jax.trainer import config_checks, methods
from figkd_jax.wavelets import haar_max_level
from tests.gcs_emulator import Emulator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The budgets: a config mistake within 3 s, an unreachable bucket within 15 s, on a
# quiet machine; the bounds below add room for a loaded CI host (2 cores shared).
CONFIG_MISTAKE_S = 3.0 * 4
UNREACHABLE_S = 15.0 * 2


def _stand_ins(tmp_path, *modules):
    """A directory of packages named `modules` that raise when imported."""
    for module in modules:
        (tmp_path / module).mkdir()
        (tmp_path / module / "__init__.py").write_text(
            f"raise ImportError('{module} was imported before the check')\n"
        )
    return str(tmp_path)


def _launch(args, env=None, pythonpath=None):
    env = dict(os.environ if env is None else env)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH")) if p)
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "launch.py", "--config=configs/default.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done, time.monotonic() - start


def _one_line(done):
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_the_jax_free_lists_equal_the_registries_and_the_library():
    assert list(config_checks.MODEL_NAMES) == models.names()
    assert list(config_checks.METHOD_NAMES) == methods.names()
    library = {"__version__"}  # the top level's lazy names: the losses' and the wavelets'
    for module in ("losses", "wavelets"):
        module = importlib.import_module(f"figkd_jax.{module}")
        library |= set(module.__all__)
        for name in module.__all__:
            assert getattr(figkd_jax, name) is getattr(module, name), name
    assert library == set(figkd_jax.__all__)
    for n in range(1, 1025):
        assert config_checks.deepest_haar_level(n) == haar_max_level(n), n


@pytest.mark.parametrize(
    ("flags", "message", "stand_ins"),
    [
        (["--config.model=resnet9"], "config.model='resnet9' is unknown", ("jax", "tensorflow")),
        (["--config.dataset.name=cifar10"], "unknown dataset 'cifar10'", ("jax", "tensorflow")),
        (
            ["--config.method.name=fkd"],
            "config.method.name='fkd' is unknown",
            ("jax", "tensorflow"),
        ),
        (
            ["--config.optim.learning_rate=-0.1"],
            "learning_rate=-0.1 must be > 0",
            ("jax", "tensorflow"),
        ),
        (["--config.dtype=float16"], "config.dtype='float16'", ("jax", "tensorflow")),
        (["--config.optim.momentum=1.0"], "momentum=1.0 must be in [0, 1)", ("jax", "tensorflow")),
        (
            ["--config.method.name=figkd", "--config.method.figkd.level=9"],
            "level=9 must be in [1, haar_max_level(10) = 3]",
            ("jax", "tensorflow"),
        ),
    ],
)
def test_config_mistakes_answer_in_one_line_before_jax_and_tensorflow(
    tmp_path, flags, message, stand_ins
):
    done, seconds = _launch(
        [f"--workdir={tmp_path / 'run'}", *flags], pythonpath=_stand_ins(tmp_path, *stand_ins)
    )
    assert message in _one_line(done)
    assert seconds < CONFIG_MISTAKE_S
    assert not (tmp_path / "run").exists()


def test_an_unreachable_bucket_answers_in_one_line_within_seconds(tmp_path):
    # An emulator address where nothing listens: every request is refused, and the storage
    # client would retry each for about 30 s.
    unreachable = Emulator()
    env = dict(os.environ, **unreachable.env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp_path), env["PYTHONPATH"]) if p)
    done, seconds = _launch(
        ["--workdir=gs://figkd-unreachable/run"],
        env=env,
        pythonpath=_stand_ins(tmp_path, "jax", "tensorflow"),
    )
    line = _one_line(done)
    assert "gs://figkd-unreachable/run" in line and "within 10 s" in line, line
    assert seconds < UNREACHABLE_S


def test_the_probe_leaves_nothing_and_is_bounded(gcs):
    bucket = gcs.create_bucket("figkd-probe")
    storage.probe(f"{bucket}/run")
    assert gcs.objects("figkd-probe") == []
    start = time.monotonic()
    with pytest.raises(storage.StorageError, match="no answer from the storage service"):
        storage.check_writable(f"{bucket}/slow", timeout_s=0.0)
    assert time.monotonic() - start < 1.0


@pytest.mark.slow
def test_distributed_outside_a_cluster_says_what_to_pass(tmp_path):
    done, _ = _launch(
        [f"--workdir={tmp_path / 'run'}", "--distributed"],
        pythonpath=_stand_ins(tmp_path, "tensorflow"),
    )
    line = _one_line(done)
    assert "coordinator_address should be defined" in line
    assert "--coordinator_address=<host0>:<port>" in line and "leave out --distributed" in line
    assert not (tmp_path / "run").exists()
