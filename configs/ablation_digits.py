"""FiGKD's ablation on the embedded digits, at the demo's budgets (configs/demo.py), 3 seeds.

  python launch.py --config=configs/ablation_digits.py --workdir=/tmp/figkd_ablation
  python -m figkd_jax.tools.report /tmp/figkd_ablation

The demo leaves open what in FiGKD's definition makes it gain less than KD there. Each variant
changes one thing of FiGKD at its defaults (high band, level 1, logit domain, index order,
T = 4, CE weight 1 and FiGKD weight 1), beside CE and KD under the same teacher and budget:

- ``figkd_band_all``: the whole signal, which equals KD's term (docs/method.md), so this row
  differs from ``kd`` only in the loss weights (1 and 1 against KD's 0.1 and 0.9);
- ``figkd_kd_weights``: the high band under KD's weights;
- ``figkd_level2``, ``figkd_level3``: deeper Haar levels (3 is the most 10 classes allow);
- ``figkd_coefficients``: the wavelet coefficients rather than the band in the logit domain;
- ``figkd_order_random``, ``figkd_order_teacher``: the classes along the Haar axis in a random
  order (seeded by the run's seed) and in the teacher's similarity order;
- ``figkd_T2``, ``figkd_T8``: temperatures 2 and 8.

The differences are taken from KD, so each row says how that change compares with KD under
the same budget (``--baseline`` of the report takes any other variant).
"""

from configs import demo


def get_config():
    config = demo.get_config()
    config.sweep.methods = ()
    figkd = {"method.name": "figkd"}
    config.sweep.variants = (
        ("ce", {"method.name": "ce"}),
        ("kd", {"method.name": "kd"}),
        ("figkd", figkd),
        ("figkd_band_all", {**figkd, "method.figkd.band": "all"}),
        (
            "figkd_kd_weights",
            {**figkd, "method.figkd.ce_weight": 0.1, "method.figkd.figkd_weight": 0.9},
        ),
        ("figkd_level2", {**figkd, "method.figkd.level": 2}),
        ("figkd_level3", {**figkd, "method.figkd.level": 3}),
        ("figkd_coefficients", {**figkd, "method.figkd.domain": "coefficients"}),
        ("figkd_order_random", {**figkd, "method.figkd.class_order": "random"}),
        ("figkd_order_teacher", {**figkd, "method.figkd.class_order": "teacher"}),
        ("figkd_T2", {**figkd, "method.temperature": 2.0}),
        ("figkd_T8", {**figkd, "method.temperature": 8.0}),
    )
    config.sweep.baseline = "kd"
    return config
