"""The benchmark report on synthetic sweeps: table numbers, published references, unfinished
runs, variants, CSV, plots and the command line."""

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from figkd_jax.tools import bands, plots, report
from figkd_jax.trainer import summary
from tests.helpers import write_teacher

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_EPOCHS = 5


def _config(method, seed, **overrides):
    config = {
        "seed": seed,
        "model": "resnet8x4",
        "method.name": method,
        "method.temperature": 4.0,
        "method.kd.kd_weight": 0.9,
        "method.figkd.band": "high",
        "teacher.workdir": f"/sweeps/a{seed}/teacher",
        "dataset.data_dir": f"/data{seed}",
        "num_epochs": NUM_EPOCHS,
    }
    return {**config, **overrides}


def _write_run(
    directory,
    *,
    method,
    seed,
    top1,
    teacher="resnet32x4",
    model="resnet8x4",
    epochs_done=NUM_EPOCHS,
    config=None,
):
    """A results.json as workdir.results writes it; `top1` per epoch (fractions)."""
    history = [
        {
            "epoch": epoch,
            "step": 10 * epoch,
            "top1": value,
            "top5": min(1.0, value + 0.2),
            **({"agreement": value + 0.1, "teacher_kl": 0.5} if teacher else {}),
        }
        for epoch, value in zip(range(1, epochs_done + 1), top1, strict=False)
    ]
    best = max(history, key=lambda r: r["top1"]) if history else None
    results = {
        "dataset": "cifar100",
        "model": model,
        "teacher": teacher,
        "method": method,
        "standardize": False,
        "seed": seed,
        "num_epochs": NUM_EPOCHS,
        "epochs_done": epochs_done,
        "best_top1": best["top1"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "last_top1": history[-1]["top1"] if history else None,
        "last_epoch": history[-1]["epoch"] if history else None,
        "teacher_eval": {"top1": 0.79, "top5": 0.95} if teacher else None,
        "history": history,
        "config": config if config is not None else _config(method, seed, model=model),
        "wall_time": 1.0,
    }
    os.makedirs(directory, exist_ok=True)
    (directory / "checkpoints").mkdir(exist_ok=True)
    with open(directory / "results.json", "w") as f:
        json.dump(results, f)


# Best top-1 per seed is the max of each history, last is its final value (fractions).
KD_TOP1 = {
    0: [0.50, 0.65, 0.70, 0.68, 0.69],
    1: [0.52, 0.66, 0.70, 0.72, 0.71],
    2: [0.55, 0.60, 0.74, 0.73, 0.70],
}
FIGKD_TOP1 = {
    0: [0.55, 0.70, 0.75, 0.74, 0.74],
    1: [0.56, 0.71, 0.76, 0.75, 0.75],
    2: [0.60, 0.72, 0.80],  # unfinished: 3 of 5 epochs
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    parent = tmp_path_factory.mktemp("sweep")
    _write_run(
        parent / "teacher",
        method="ce",
        seed=0,
        teacher=None,
        model="resnet32x4",
        top1=[0.5, 0.7, 0.75, 0.78, 0.79],
        config=_config("ce", 0, model="resnet32x4"),
    )
    for seed, top1 in KD_TOP1.items():
        _write_run(parent / f"kd_seed{seed}", method="kd", seed=seed, top1=top1)
    for seed, top1 in FIGKD_TOP1.items():
        _write_run(
            parent / f"figkd_seed{seed}",
            method="figkd",
            seed=seed,
            top1=top1,
            epochs_done=len(top1),
        )
    return parent


@pytest.fixture(scope="module")
def written(sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return report.write_report([str(sweep)], str(out)), out


def _rows(written):
    return {(r.teacher, r.student, r.label): r for r in written[0].rows}


def test_rows_hold_mean_and_sample_std_over_seeds(written):
    rows = _rows(written)
    assert list(rows) == [
        (None, "resnet32x4", "ce"),
        ("resnet32x4", "resnet8x4", "kd"),
        ("resnet32x4", "resnet8x4", "figkd"),
    ]
    kd = rows["resnet32x4", "resnet8x4", "kd"]
    # best: 70, 72, 74 -> mean 72, std 2; last: 69, 71, 70 -> mean 70, std 1.
    assert kd.seeds == (0, 1, 2) and kd.num_epochs == NUM_EPOCHS and kd.unfinished == ()
    assert kd.best_mean == pytest.approx(72.0) and kd.best_std == pytest.approx(2.0)
    assert kd.last_mean == pytest.approx(70.0) and kd.last_std == pytest.approx(1.0)
    figkd = rows["resnet32x4", "resnet8x4", "figkd"]
    # best: 75, 76, 80 -> mean 77, std sqrt((4 + 1 + 9) / 2); last: 74, 75, 80.
    assert figkd.best_mean == pytest.approx(77.0)
    assert figkd.best_std == pytest.approx(math.sqrt(7.0))
    assert figkd.last_mean == pytest.approx(229 / 3)
    assert figkd.teacher_top1 == pytest.approx(79.0)
    teacher = rows[None, "resnet32x4", "ce"]
    assert teacher.seeds == (0,) and teacher.best_std is None and teacher.best_mean == 79.0


def test_markdown_table_shows_numbers_references_and_unfinished_runs(written):
    result, _ = written
    lines = {line.split(" | ")[3]: line for line in result.markdown.splitlines()[2:]}
    assert lines["kd"] == (
        "| cifar100 | resnet32x4 | resnet8x4 | kd | 3 | 5 | 72.00 ± 2.00 | 70.00 ± 1.00 "
        "| 73.33 | -1.33 | 79.00 |"
    )
    # No FiGKD number is published (docs/method.md): no reference, no difference.
    assert "| 77.00 ± 2.65 |" in lines["figkd"] and "| — | — |" in lines["figkd"]
    assert "5 (**unfinished**: seed 2 at 3)" in lines["figkd"]
    # The teacher alone: one seed, matched to the teacher column of the published table.
    assert lines["ce"] == (
        "| cifar100 | — | resnet32x4 | ce | 1 | 5 | 79.00 | 79.00 | 79.42 | -0.42 | — |"
    )
    with open(result.markdown_path) as f:
        text = f.read()
    assert result.markdown in text
    # Every published number of the pair, DIST and MLKD included, and the plots are linked.
    published = (
        "| cifar100 | resnet32x4 | resnet8x4 | 79.42 | 72.50 | 73.33 | 76.32 | 76.31 | 77.08 |"
    )
    assert published in text
    assert "![top1_cifar100_resnet32x4_to_resnet8x4.png]" in text


def test_csv_has_one_numeric_field_per_column(written):
    result, _ = written
    with open(result.csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["ce", "kd", "figkd"]
    figkd = rows[2]
    assert figkd["seeds"] == "0 1 2" and figkd["unfinished"] == "2:3"
    assert float(figkd["best_top1_std"]) == pytest.approx(math.sqrt(7.0), abs=1e-4)
    assert figkd["published_top1"] == "" and float(rows[1]["published_top1"]) == 73.33
    assert rows[0]["teacher"] == "" and rows[0]["best_top1_std"] == ""


def test_plots_are_valid_images_of_every_pair(written):
    result, out = written
    names = sorted(os.path.basename(p) for p in result.plots)
    assert names == [
        "agreement_cifar100_resnet32x4_to_resnet8x4.png",
        "top1_cifar100_resnet32x4.png",
        "top1_cifar100_resnet32x4_to_resnet8x4.png",
    ]
    for path in result.plots:
        assert os.path.dirname(path) == str(out)
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"))
        assert pixels.shape[0] > 300 and pixels.shape[1] > 500
        # Curves, bands and text: far from a blank canvas.
        assert pixels.std() > 10 and len(np.unique(pixels)) > 20


def test_epoch_curve_aggregates_the_runs_that_reached_each_epoch():
    runs = [
        {"history": [{"epoch": 1, "top1": 0.1}, {"epoch": 2, "top1": 0.3}]},
        {"history": [{"epoch": 1, "top1": 0.3}]},
        {"history": [{"epoch": 1, "accuracy_only": 1.0}]},
    ]
    epochs, mean, low, high = plots.epoch_curve(runs, "top1")
    np.testing.assert_array_equal(epochs, [1, 2])
    np.testing.assert_allclose(mean, [20.0, 30.0])
    np.testing.assert_allclose(low, [10.0, 30.0])
    np.testing.assert_allclose(high, [30.0, 30.0])
    assert plots.epoch_curve(runs, "agreement") is None


def test_runs_with_different_settings_are_separate_rows(tmp_path):
    for seed, band in ((0, "high"), (1, "high"), (0, "low")):
        _write_run(
            tmp_path / f"{band}{seed}",
            method="figkd",
            seed=seed,
            top1=[0.5 + seed / 10],
            config=_config(
                "figkd",
                seed,
                **{
                    "method.figkd.band": band,
                    # Another method's block never splits.
                    "method.kd.kd_weight": seed,
                },
            ),
        )
    rows = report.summarize(report.find_results([str(tmp_path)]))
    assert [(r.label, r.seeds) for r in rows] == [
        ("figkd [method.figkd.band=high]", (0, 1)),
        ("figkd [method.figkd.band=low]", (0,)),
    ]


def test_logit_standardization_is_its_own_method_with_its_reference(tmp_path):
    _write_run(tmp_path / "run", method="kd", seed=0, top1=[0.7])
    path = tmp_path / "run" / "results.json"
    results = json.loads(path.read_text())
    path.write_text(json.dumps({**results, "standardize": True}))
    (row,) = report.summarize(report.find_results([str(tmp_path / "run")]))
    assert row.label == "kd+LS" and row.reference == 76.62


def test_published_numbers_of_models_alone_and_of_pairs():
    assert report.reference_top1("cifar100", None, "mobilenetv2", "ce") == 64.60
    assert report.reference_top1("cifar100", None, "mobilenetv2", "kd") is None
    assert report.reference_top1("cifar100", "resnet56", "resnet20", "figkd") is None
    assert report.reference_top1("cifar100", "resnet56", "resnet20", "dkd+LS") == 72.32
    assert report.reference_top1("cifar100", "resnet56", "resnet20", "mlkd+LS") == 72.33
    assert report.reference_top1("tiny_imagenet", "resnet18", "mobilenetv2_tin", "kd") == 58.35
    # Numbers without a source are not shown (docs/method.md): FiGKD's, the fine-grained ones.
    assert report.reference_top1("tiny_imagenet", "vgg13", "vgg8", "figkd") is None
    assert report.reference_top1("stanford_dogs", None, "resnet34_imagenet", "ce") is None


def test_no_results_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no results\.json under .*empty"):
        report.write_report([str(tmp_path / "empty")])
    with pytest.raises(ValueError, match="is not a directory"):
        report.find_results([str(tmp_path / "missing")])


def test_command_line_prints_the_table_and_writes_the_report(sweep, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    run = lambda *args: subprocess.run(
        [sys.executable, "-m", "figkd_jax.tools.report", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    done = run(str(sweep / "kd_seed0"), str(sweep / "kd_seed1"), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "| cifar100 | resnet32x4 | resnet8x4 | kd | 2 | 5 | 71.00 ± 1.41 |" in done.stdout
    assert sorted(os.listdir(tmp_path / "out")) == [
        "agreement_cifar100_resnet32x4_to_resnet8x4.png",
        "report.csv",
        "report.md",
        "top1_cifar100_resnet32x4_to_resnet8x4.png",
    ]
    (tmp_path / "empty").mkdir()
    failed = run(str(tmp_path / "empty"))
    assert failed.returncode == 2 and "error: no results.json under" in failed.stderr


def test_logit_bands_split_the_logits_per_level():
    logits = np.random.default_rng(0).standard_normal((3, 10)).astype(np.float32)
    panels = plots.logit_bands(logits)
    assert list(panels) == [
        "logits",
        "low, level 1",
        "high, level 1",
        "low, level 2",
        "high, level 2",
    ]
    for level in (1, 2):
        low, high = panels[f"low, level {level}"], panels[f"high, level {level}"]
        np.testing.assert_allclose(low + high, logits, atol=1e-6)
    pairs = (logits[:, 0::2] + logits[:, 1::2]) / 2
    np.testing.assert_allclose(panels["low, level 1"], np.repeat(pairs, 2, axis=1), atol=1e-6)
    # Three classes allow one level only.
    assert list(plots.logit_bands(logits[:, :3])) == ["logits", "low, level 1", "high, level 1"]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A teacher run's workdir holding a resnet8 for digits (random variables) at step 7."""
    workdir = tmp_path_factory.mktemp("teacher_run")
    config = {"dataset.name": "digits", "model": "resnet8"}
    write_teacher(workdir, step=7, config=config)
    return workdir


def test_band_picture_of_a_teacher_run(sweep, teacher_run, tmp_path):
    written = bands.write_bands(str(teacher_run), out=str(tmp_path), dataset="digits")
    path = str(tmp_path / "bands_digits_resnet8.png")
    assert written.plots == [path]
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"))
    # Four examples by five panels (logits, low and high of levels 1 and 2).
    assert pixels.shape[0] > 600 and pixels.shape[1] > 1200 and pixels.std() > 10
    markdown = (tmp_path / "bands.md").read_text()
    assert "![bands_digits_resnet8.png](bands_digits_resnet8.png)" in markdown
    assert written.energy in markdown


def test_band_picture_errors_name_the_fix(sweep, teacher_run, tmp_path):
    # A bare checkpoint directory has no dataset: the runs' only dataset is tried, and its
    # class count does not match.
    checkpoint = str(teacher_run / "checkpoints")
    with pytest.raises(ValueError, match=r"10 classes, but dataset 'cifar100' has 100"):
        bands.write_bands(checkpoint, [str(sweep)], str(tmp_path))
    assert bands.main([checkpoint, "--out", str(tmp_path)]) == 2
    with pytest.raises(ValueError, match="has no checkpoint"):
        plots.plot_bands(str(tmp_path), str(tmp_path))


def test_bands_command_answers_help():
    done = subprocess.run(
        [sys.executable, "-m", "figkd_jax.tools.bands", "--help"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=ROOT),
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0 and "energy share" in done.stdout


# --------------------------------------------------------------------------
# A sweep of variants: its summary by variant in the report


# Best top-1 per seed (fractions, one epoch each) of an ablation sweep.
ABLATION_TOP1 = {
    "kd": [0.70, 0.72, 0.71],
    "figkd": [0.60, 0.61, 0.62],
    "figkd_T8": [0.69, 0.73, 0.70],
}
ABLATION_CONFIGS = {
    "kd": {"method.name": "kd"},
    "figkd": {"method.name": "figkd", "method.temperature": 4.0},
    "figkd_T8": {"method.name": "figkd", "method.temperature": 8.0},
}


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    parent = tmp_path_factory.mktemp("ablation")
    for variant, values in ABLATION_TOP1.items():
        for seed, value in enumerate(values):
            method = ABLATION_CONFIGS[variant]["method.name"]
            overrides = {**ABLATION_CONFIGS[variant], "sweep.variant": variant}
            _write_run(
                parent / f"{variant}_seed{seed}",
                method=method,
                seed=seed,
                top1=[value] * NUM_EPOCHS,
                config=_config(method, seed, **overrides, **{"sweep.baseline": "kd"}),
            )
    return parent


def test_a_sweep_of_variants_gets_its_summary_by_variant(ablation, tmp_path):
    written = report.write_report([str(ablation)], str(tmp_path))
    ((directory, table),) = written.sweeps.items()
    assert directory == str(ablation)
    runs = report.find_results([str(ablation)])
    assert table == summary.variant_table(runs, "kd")
    lines = {line.split(" | ")[0][2:]: line for line in table.splitlines()}
    assert lines["variant"].startswith("| variant | model | method.name | method.temperature |")
    # figkd is 10 points below kd with a std of 1: marked; figkd_T8 is within kd's noise.
    assert "| figkd | resnet8x4 | figkd | 4.0 | 3 | 61.00 ± 1.00 |" in lines["figkd"]
    assert "| -10.00 * |" in lines["figkd"] and "| -0.33 |" in lines["figkd_T8"]
    assert table in (tmp_path / "report.md").read_text()
    # The main table keeps a row per setting of the same method.
    labels = [row.label for row in written.rows]
    assert labels == ["kd", "figkd [method.temperature=4.0]", "figkd [method.temperature=8.0]"]


def test_the_baseline_variant_can_be_named(ablation, tmp_path):
    written = report.write_report([str(ablation)], str(tmp_path), baseline="figkd")
    (table,) = written.sweeps.values()
    assert "best − figkd" in table and "| +10.00 * |" in table
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "figkd_jax.tools.report", str(ablation), "--out", str(tmp_path),
         "--baseline", "figkd_T8"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"Sweep {ablation}, by variant:" in done.stdout and "best − figkd_T8" in done.stdout
