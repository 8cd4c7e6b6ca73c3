"""The sweep's summary table: mean ± std over seeds and differences from CE marked by noise."""

import numpy as np
import pytest
from scipy import stats

from figkd_jax.trainer import sweep


def _results(method, top1, model="resnet8"):
    return {"model": model, "method": method, "best_top1": top1, "last_top1": top1 - 0.01,
            "wall_time": 2.0}  # fmt: skip


# Top-1 (fractions) per seed: kd is clearly above ce, figkd within ce's noise.
TOP1 = {
    "ce": [0.900, 0.910, 0.905],
    "kd": [0.940, 0.950, 0.945],
    "figkd": [0.890, 0.925, 0.915],
}


@pytest.fixture(scope="module")
def table():
    results = {"teacher": _results("ce", 0.98, model="resnet20")}
    for method, values in TOP1.items():
        for seed, value in enumerate(values):
            results[f"{method}_seed{seed}"] = _results(method, value)
    return sweep.summary_table(results)


def _row(table, name):
    (line,) = [line for line in table.splitlines() if line.startswith(f"| {name} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_rows_hold_seeds_mean_std_and_summed_wall_time(table):
    assert _row(table, "teacher") == ["teacher", "resnet20", "1", "98.00", "97.00", "", "", "2.0"]
    kd = _row(table, "kd")
    assert kd[:3] == ["kd", "resnet8", "3"]
    assert kd[3] == f"{np.mean(TOP1['kd']) * 100:.2f} ± {np.std(TOP1['kd'], ddof=1) * 100:.2f}"
    assert kd[7] == "6.0"


def test_a_difference_is_marked_when_a_two_sample_t_test_rejects_it(table):
    for method in ("kd", "figkd"):
        values, baseline = 100 * np.array(TOP1[method]), 100 * np.array(TOP1["ce"])
        p_value = stats.ttest_ind(values, baseline, equal_var=True).pvalue
        cell = _row(table, method)[5]
        assert cell.startswith(f"{values.mean() - baseline.mean():+.2f}")
        assert cell.endswith(" *") == (p_value < 0.05)
    assert _row(table, "kd")[5].endswith(" *") and not _row(table, "figkd")[5].endswith(" *")
    assert _row(table, "ce")[5:7] == ["", ""]
