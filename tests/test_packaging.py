"""What each install provides: the library with jax and numpy alone, the trainer's modules
without TensorFlow where they do not need it, and a one-line error naming the extra
otherwise. Missing packages are simulated with ``sys.modules[name] = None`` in a fresh
interpreter (what Python does for a blocked import)."""

import pathlib
import subprocess
import sys

import pytest

from figkd_jax import extras

LAUNCHER = str(pathlib.Path(__file__).resolve().parent.parent / "launch.py")
TRAIN_ONLY = ("flax", "optax", "orbax", "ml_collections", "absl", "etils")
TENSORFLOW = ("tensorflow", "tensorflow_datasets")


def _python(code: str, hidden: tuple[str, ...]) -> subprocess.CompletedProcess:
    hide = "".join(f"sys.modules[{name!r}] = None\n" for name in hidden)
    return subprocess.run(
        [sys.executable, "-c", f"import sys\n{hide}{code}"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_library_runs_with_jax_and_numpy_alone():
    done = _python(
        "import jax.numpy as jnp, figkd_jax as fk, figkd_jax.data, figkd_jax.diagnostics\n"
        "print(float(fk.figkd_loss(jnp.array([[1., 0.]]), jnp.array([[0., 1.]]))[0]) > 0,"
        " figkd_jax.data.get_info('cifar100').num_classes)",
        hidden=TRAIN_ONLY + TENSORFLOW + ("matplotlib", "torch", "sklearn"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "100"]


def test_train_step_and_on_device_input_import_without_tensorflow():
    done = _python(
        "import figkd_jax.trainer.steps, figkd_jax.trainer.run_setup, figkd_jax.trainer.feeds,"
        " figkd_jax.data.device_input",
        hidden=TENSORFLOW,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("code", "hidden", "extra"),
    [
        ("import figkd_jax.trainer.train", ("flax",), "train"),
        ("import figkd_jax.trainer.checkpoints", ("orbax",), "train"),
        ("from figkd_jax.data import pipeline", ("tensorflow",), "train"),
        ("import figkd_jax.tools.report", ("matplotlib",), "report"),
        (
            "import runpy; runpy.run_module('figkd_jax.tools.export', run_name='__main__')",
            ("flax",),
            "train",
        ),
    ],
)
def test_a_module_without_its_extra_fails_naming_the_extra(code, hidden, extra):
    done = _python(code, hidden)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert f'pip install "figkd_jax[{extra}]"' in last, done.stderr
    assert "MissingExtraError" in last


def test_import_leaves_the_import_system_as_it_found_it():
    done = _python(
        "hooks = list(sys.meta_path), list(sys.path_hooks)\n"
        "import figkd_jax, figkd_jax.diagnostics, figkd_jax.data\n"
        "print(hooks == (list(sys.meta_path), list(sys.path_hooks)))",
        hidden=(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]


def test_require_names_the_extra():
    extras.require("train", "jax")
    with pytest.raises(extras.MissingExtraError, match=r"figkd_jax\[torch\]"):
        extras.require("torch", "no_such_package_for_figkd_jax")


@pytest.mark.parametrize(
    "module",
    [
        "figkd_jax.tools.export",
        "figkd_jax.tools.report",
        "figkd_jax.tools.convert_torch",
        "figkd_jax.data.prepare",
    ],
)
def test_help_names_the_module_and_imports_no_tensorflow(module):
    done = _python(
        "import runpy\n"
        "sys.argv = ['-m', '--help']\n"
        "try:\n"
        f"    runpy.run_module({module!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('tensorflow imported:', 'tensorflow' in sys.modules)",
        hidden=(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m {module} ")
    assert "``" not in done.stdout  # plain text, not reStructuredText
    assert done.stdout.strip().endswith("tensorflow imported: False")


def test_launcher_without_the_trainer_says_which_extra_in_one_line():
    done = _python(
        "import runpy\n"
        "sys.argv = ['launch.py', '--help']\n"
        f"runpy.run_path({LAUNCHER!r}, run_name='__main__')",
        hidden=("absl",),
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: absl is not installed: the launcher needs the trainer: "
        'pip install "figkd_jax[train]"'
    ]
