"""Sweeps of variants: the plan and its names, every variant validated before training, resume
run by run, and the summary by variant (mean ± std over seeds, noise marks against a baseline)."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from configs import ablation_digits
from figkd_jax.trainer import summary, sweep, train
from figkd_jax.trainer.run_setup import ConfigError
from tests.train_worker import digits_config


def _sweep_config(**sweep_fields):
    config = digits_config(**{"dataset.train_split": "train[:128]", "num_epochs": 1})
    config.teacher.model = "resnet8"
    config.sweep.seeds = (0, 1)
    for key, value in sweep_fields.items():
        config.sweep[key] = value
    return config


def test_variants_and_grid_plan_one_run_per_variant_and_seed():
    config = _sweep_config(
        variants=(
            ("kd", {"method.name": "kd"}),
            ("figkd_low", {"method.name": "figkd", "method.figkd.band": "low"}),
        ),
        grid=(("method.temperature", (2.0, 8.0)), ("method.figkd.level", (1, 2))),
        train_teacher=True,
        baseline="kd",
    )
    config.method.name = "figkd"
    runs = dict(sweep.plan(config))
    grid_names = ["temperature2.0_level1", "temperature2.0_level2", "temperature8.0_level1",
                  "temperature8.0_level2"]  # fmt: skip
    variants = ["kd", "figkd_low", *grid_names]
    assert list(runs) == ["teacher", *(f"{v}_seed{s}" for v in variants for s in (0, 1))]
    assert runs["teacher"].sweep.variant == "teacher" and runs["teacher"].method.name == "ce"
    low = runs["figkd_low_seed1"]
    assert (low.method.name, low.method.figkd.band, low.seed) == ("figkd", "low", 1)
    assert (low.sweep.variant, low.teacher.workdir) == ("figkd_low", "teacher")
    # Fields a variant does not set keep the config's value.
    assert low.method.temperature == config.method.temperature
    grid = runs["temperature8.0_level2_seed0"]
    assert (grid.method.temperature, grid.method.figkd.level) == (8.0, 2)
    assert grid.method.name == "figkd" and grid.sweep.variant == "temperature8.0_level2"
    # The plan's runs are single runs: none is a sweep again.
    assert not any(sweep.is_sweep(run) for run in runs.values())


def test_methods_are_variants_named_after_them():
    config = _sweep_config(methods=("ce", "kd"))
    runs = dict(sweep.plan(config))
    assert list(runs) == ["ce_seed0", "ce_seed1", "kd_seed0", "kd_seed1"]
    assert runs["kd_seed1"].sweep.variant == "kd" and runs["kd_seed1"].method.name == "kd"


@pytest.mark.parametrize(
    "variants, message",
    [
        ((("a", {"method.figkd.bnad": "low"}),), r"'a': config\.method\.figkd\.bnad=.*no such"),
        ((("a", {"method.temperature": "hot"}),), r"'a': config\.method\.temperature='hot'"),
        ((("a", {"method": "kd"}),), r"variant 'a': config\.method is a block"),
        ((("a", {"seed": 3}),), r"variant 'a': 'seed' cannot be varied"),
        ((("a", {"sweep.seeds": (1,)}),), r"variant 'a': 'sweep\.seeds' cannot be varied"),
        ((("a", {"method.name": "kd"}), ("a", {})), "'a' is used twice"),
        ((("teacher", {}),), "name 'teacher' must be"),
        ((("a/b", {}),), "name 'a/b' must be"),
        ((("a_seed1", {}),), "name 'a_seed1' must be"),
        ((("a", {"method.name": "kdd"}),), r"variant 'a': config\.method\.name='kdd' is unknown"),
        (("a",), r"entry 'a' must be a \(name, \{field: value\}\) pair"),
    ],
)  # fmt: skip
def test_a_bad_variant_is_one_error_naming_it(variants, message):
    with pytest.raises(ConfigError, match=message):
        sweep.plan(_sweep_config(variants=variants))


def test_every_variant_is_validated_before_any_trains(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "train_and_evaluate", lambda *a: pytest.fail("trained"))
    # The last variant is out of range: nothing trains, and the error names it.
    config = _sweep_config(
        variants=(
            ("kd", {"method.name": "kd"}),
            ("deep", {"method.name": "figkd", "method.figkd.level": 9}),
        ),
        train_teacher=True,
        baseline="kd",
    )
    with pytest.raises(ConfigError, match=r"^sweep variant 'deep': .*level"):
        sweep.run(config, str(tmp_path))
    config = _sweep_config(variants=(("kd", {"method.name": "kd", "method.temperature": -1.0}),),
                           train_teacher=True, baseline="kd")  # fmt: skip
    with pytest.raises(ConfigError, match=r"^sweep variant 'kd': config\.method\.temperature=-1"):
        sweep.run(config, str(tmp_path))
    config = _sweep_config(variants=(("kd", {"method.name": "kd"}),), baseline="ce")
    with pytest.raises(
        ConfigError, match=r"baseline='ce' is not a variant of the sweep: one of kd"
    ):
        sweep.run(config, str(tmp_path))
    config = _sweep_config(variants=(("kd", {"method.name": "kd"}),), methods=("ce",))
    with pytest.raises(ConfigError, match="exclusive"):
        sweep.run(config, str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_ablation_config_plans_its_variants_and_validates():
    config = ablation_digits.get_config()
    runs = sweep.plan(config)
    variants = list(dict.fromkeys(run.sweep.variant for _, run in runs))
    assert variants == ["teacher", "ce", "kd", "figkd", "figkd_band_all", "figkd_kd_weights",
                        "figkd_level2", "figkd_level3", "figkd_coefficients", "figkd_order_random",
                        "figkd_order_teacher", "figkd_T2", "figkd_T8"]  # fmt: skip
    assert len(runs) == 1 + 12 * 3
    by_name = dict(runs)
    # Each FiGKD variant differs from FiGKD at its defaults in its own fields only.
    default = summary.setting(_results_of(by_name["figkd_seed0"]))
    changed = {
        variant: {
            k: v
            for k, v in summary.setting(_results_of(by_name[f"{variant}_seed0"])).items()
            if default.get(k) != v
        }
        for variant in variants[4:]
    }
    assert changed == {
        "figkd_band_all": {"method.figkd.band": "all"},
        "figkd_kd_weights": {"method.figkd.ce_weight": 0.1, "method.figkd.figkd_weight": 0.9},
        "figkd_level2": {"method.figkd.level": 2},
        "figkd_level3": {"method.figkd.level": 3},
        "figkd_coefficients": {"method.figkd.domain": "coefficients"},
        "figkd_order_random": {"method.figkd.class_order": "random"},
        "figkd_order_teacher": {"method.figkd.class_order": "teacher"},
        "figkd_T2": {"method.temperature": 2.0},
        "figkd_T8": {"method.temperature": 8.0},
    }
    # The demo's budgets.
    student = by_name["kd_seed2"]
    assert (student.num_epochs, student.dataset.train_split, student.model) == (
        40,
        "train[:320]",
        "resnet8",
    )
    validated = dict(sweep.validate(config, "/tmp/unused-sweep"))
    assert validated["kd_seed0"].teacher.workdir == "/tmp/unused-sweep/teacher"
    assert validated["ce_seed0"].teacher.workdir is None


def _results_of(run_config):
    from figkd_jax.trainer import workdir

    return {"method": run_config.method.name, "config": workdir.config_to_dict(run_config)}


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_run_by_run(tmp_path, monkeypatch):
    config = _sweep_config(
        variants=(
            ("ce", {"method.name": "ce"}),
            ("fast", {"method.name": "ce", "optim.learning_rate": 0.1}),
        ),
    )
    config.sweep.seeds = (0,)
    config.teacher.model = None
    original = train.train_and_evaluate
    trained = []

    def interrupted(run_config, workdir):
        if run_config.sweep.variant == "fast":
            raise train.Preempted("stopped")
        trained.append(workdir)
        return original(run_config, workdir)

    monkeypatch.setattr(train, "train_and_evaluate", interrupted)
    with pytest.raises(train.Preempted):
        sweep.run(config, str(tmp_path))
    first = json.loads((tmp_path / "ce_seed0" / "results.json").read_text())
    assert not (tmp_path / "fast_seed0").exists()

    monkeypatch.setattr(train, "train_and_evaluate", original)
    results = sweep.run(config, str(tmp_path))
    # The finished run is restored, not retrained: the same results, wall time included.
    assert {k: v for k, v in results["ce_seed0"].items() if k != "path"} == first
    assert results["fast_seed0"]["config"]["optim.learning_rate"] == 0.1
    assert results["fast_seed0"]["config"]["sweep.variant"] == "fast"


# --------------------------------------------------------------------------
# The summary by variant


def _results(variant, top1, seed, model="resnet8", **config):
    return {"model": model, "method": config.get("method.name", "ce"), "seed": seed,
            "best_top1": top1, "last_top1": top1 - 0.01, "wall_time": 2.0,
            "config": {"sweep.variant": variant, **config}}  # fmt: skip


# Top-1 (fractions) per seed: kd is clearly above ce, figkd within ce's noise.
TOP1 = {
    "ce": [0.900, 0.910, 0.905],
    "kd": [0.940, 0.950, 0.945],
    "figkd_T8": [0.890, 0.925, 0.915],
    "figkd_low": [0.880, 0.890, 0.900],
}
CONFIGS = {
    "ce": {"method.name": "ce", "method.temperature": 4.0},
    # A field that only one variant holds, and holds alike in all its runs, is not a column.
    "kd": {"method.name": "kd", "method.temperature": 4.0, "method.kd.kd_weight": 0.9},
    "figkd_T8": {"method.name": "figkd", "method.temperature": 8.0, "method.figkd.band": "high"},
    "figkd_low": {"method.name": "figkd", "method.temperature": 4.0, "method.figkd.band": "low"},
}


@pytest.fixture(scope="module")
def table():
    runs = [_results("teacher", 0.98, 0, model="resnet20", **{"method.name": "ce"})]
    for variant, values in TOP1.items():
        runs += [_results(variant, v, seed, **CONFIGS[variant]) for seed, v in enumerate(values)]
    return summary.variant_table(runs, "ce")


def _row(table, name):
    (line,) = [line for line in table.splitlines() if line.startswith(f"| {name} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_rows_hold_varied_fields_seeds_mean_std_and_summed_wall_time(table):
    header = _row(table, "variant")
    assert header == ["variant", "model", "method.figkd.band", "method.name", "method.temperature",
                      "seeds", "best top-1 (%)", "last top-1 (%)", "best − ce", "last − ce",
                      "wall time (s)"]  # fmt: skip
    # The teacher shows its model only; a field of another method's block is left empty.
    assert _row(table, "teacher") == ["teacher", "resnet20", "", "", "", "1", "98.00", "97.00",
                                      "", "", "2.0"]  # fmt: skip
    kd = _row(table, "kd")
    assert kd[:6] == ["kd", "resnet8", "", "kd", "4.0", "3"]
    assert kd[6] == f"{np.mean(TOP1['kd']) * 100:.2f} ± {np.std(TOP1['kd'], ddof=1) * 100:.2f}"
    assert kd[10] == "6.0"
    assert _row(table, "figkd_T8")[2:5] == ["high", "figkd", "8.0"]
    assert _row(table, "figkd_low")[2:5] == ["low", "figkd", "4.0"]


def test_a_difference_is_marked_when_a_two_sample_t_test_rejects_it(table):
    for variant in ("kd", "figkd_T8"):
        values, baseline = 100 * np.array(TOP1[variant]), 100 * np.array(TOP1["ce"])
        p_value = stats.ttest_ind(values, baseline, equal_var=True).pvalue
        cell = _row(table, variant)[8]
        assert cell.startswith(f"{values.mean() - baseline.mean():+.2f}")
        assert cell.endswith(" *") == (p_value < summary.ALPHA)
    assert _row(table, "kd")[8].endswith(" *") and not _row(table, "figkd_T8")[8].endswith(" *")
    assert _row(table, "ce")[8:10] == ["", ""]
    assert "`*`: the difference from ce exceeds its noise" in table


def test_unfinished_runs_are_named_in_the_seeds_cell():
    runs = [_results("kd", 0.9, seed, **CONFIGS["kd"]) for seed in (0, 1)]
    runs[1].update(epochs_done=12, num_epochs=40)
    assert (
        _row(summary.variant_table(runs, "kd"), "kd")[2] == "2 (**unfinished**: seed 1 at epoch 12)"
    )


def test_a_single_seed_has_no_noise_mark():
    assert summary.difference([1.0], [0.0]) == summary.Difference(1.0, None)
    assert str(summary.difference([1.0], [0.0])) == "+1.00"
    # One seed against three: the pooled variance is the three's, without a NaN.
    values, baseline = [95.0], [97.0, 97.5, 98.0]
    p_value = stats.ttest_ind(values, baseline, equal_var=True).pvalue
    assert summary.difference(values, baseline).significant == (p_value < summary.ALPHA)
    assert summary.mean_std([2.0]) == (2.0, None) and summary.mean_std([]) == (None, None)


def test_launcher_stops_a_sweep_with_a_bad_variant_in_one_line(tmp_path):
    workdir = tmp_path / "sweep"
    root = pathlib.Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "launch.py", f"--workdir={workdir}", "--config=configs/ablation_digits.py",
         "--config.method.figkd.class_order=teacher_order"],
        cwd=root, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    # absl's info log shares stderr: the error is its one last line, and no traceback.
    line = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr
    assert line.startswith("error: sweep variant 'figkd': ") and "teacher_order" in line
    assert not workdir.exists()
