"""Class orders: the loss and diagnostics in an order, the teacher's order on a constructed
teacher, CIFAR-100's superclasses, the high-band energy share, and saving and resuming."""

import csv
import itertools
import json
import os
import re

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from scipy.cluster import hierarchy
from scipy.spatial import distance

from configs import default
from figkd_jax import diagnostics, losses
from figkd_jax.trainer import class_order, methods, run_setup, train
from figkd_jax.wavelets import haar_highpass
from tests.helpers import write_teacher
from tests.train_worker import digits_config

# A float32 loss of O(1) through a few dozen operations: relative rounding of a few hundred
# ulps at most, whatever the reduction order of the CPU.
RTOL = 1e-5


def _logits(seed, shape=(6, 10)):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape).astype(np.float32) * 3


def _method_config(name):
    config = default.get_config().method
    config.name = name
    return config


@pytest.mark.parametrize("level", [1, 2, 3])
def test_permuted_loss_equals_the_loss_on_permuted_logits(level):
    s, t = _logits(0), _logits(1)
    permutation = np.random.default_rng(2).permutation(10)
    permuted = losses.figkd_loss(s, t, level=level, class_permutation=permutation)
    reference = losses.figkd_loss(s[:, permutation], t[:, permutation], level=level)
    np.testing.assert_allclose(permuted, reference, rtol=RTOL)
    # The order matters: the index order gives another value.
    assert not np.allclose(losses.figkd_loss(s, t, level=level), reference, rtol=1e-3)


def test_objective_in_a_class_order_reorders_figkd_and_keeps_the_others():
    s, t = _logits(3), _logits(4)
    labels = jnp.array([0, 3, 9, 5, 5, 1])
    permutation = np.random.default_rng(5).permutation(10)
    figkd = methods.build(_method_config("figkd"), class_permutation=permutation)
    terms = figkd(s, t, labels, epoch=1)
    np.testing.assert_allclose(
        terms["figkd"], losses.figkd_loss(s, t, class_permutation=permutation), rtol=RTOL
    )
    np.testing.assert_allclose(terms["ce"], methods.cross_entropy(s, labels), rtol=RTOL)
    # DKD reads the labels: renumbered with the logits, its value does not change.
    for name in ("kd", "dkd"):
        ordered = methods.build(_method_config(name), class_permutation=permutation)
        plain = methods.build(_method_config(name))
        got, want = ordered(s, t, labels, epoch=1), plain(s, t, labels, epoch=1)
        for term in want:
            np.testing.assert_allclose(got[term], want[term], rtol=RTOL)


def test_band_diagnostics_see_the_order_the_loss_sees():
    s, t = _logits(6), _logits(7)
    permutation = np.random.default_rng(8).permutation(10)
    got = diagnostics.band_diagnostics(s, t, class_permutation=permutation)
    want = diagnostics.band_diagnostics(s[:, permutation], t[:, permutation])
    for name in diagnostics.DIAGNOSTICS:
        np.testing.assert_allclose(got[name], want[name], rtol=RTOL)
    np.testing.assert_allclose(
        got["kl_high"],
        np.mean(losses.figkd_loss(s, t, class_permutation=permutation)),
        rtol=RTOL,
    )


# Eight classes in four similar pairs, deliberately not neighbours in index order.
PAIRS = ((0, 5), (1, 3), (2, 7), (4, 6))


def _paired_teacher(num_per_class=30, seed=0):
    """Logits of a teacher that gives an image of class c a high logit, its pair partner a
    middling one, and every other class noise."""
    rng = np.random.default_rng(seed)
    partner = {a: b for pair in PAIRS for a, b in (pair, pair[::-1])}
    labels = np.repeat(np.arange(8), num_per_class)
    logits = rng.normal(scale=0.5, size=(len(labels), 8))
    logits[np.arange(len(labels)), labels] += 6.0
    logits[np.arange(len(labels)), [partner[c] for c in labels]] += 4.0
    return logits.astype(np.float32), labels


def test_teacher_order_recovers_the_similar_pairs():
    logits, labels = _paired_teacher()
    order = class_order.teacher_order(logits, labels, temperature=4.0)
    assert sorted(order.tolist()) == list(range(8))
    haar_pairs = {tuple(sorted(order[k : k + 2].tolist())) for k in range(0, 8, 2)}
    assert haar_pairs == set(PAIRS)
    # It puts less of the teacher's energy in the high band than the index or a random order.
    share = class_order.high_band_energy_share(logits, order)
    assert share < class_order.high_band_energy_share(logits)
    assert share < class_order.high_band_energy_share(logits, class_order.random_order(8, 0))


# A chain of similar classes, 2-0-5-3-4-1 (similarities 0.7 to 0.9), among weaker ones: the
# linkages and distances disagree on it (single linkage follows the chain, average linkage
# does not), where cleanly separated pairs are recovered by any of them. No two candidate
# merges of the average-linkage tree are within 0.02 of each other: the tree does not hang on
# rounding.
CHAINED_SIMILARITY = np.array(
    [
        [1.0, 0.5, 0.7, 0.3, 0.3, 0.8],
        [0.5, 1.0, 0.1, 0.0, 0.6, 0.5],
        [0.7, 0.1, 1.0, 0.4, 0.3, 0.0],
        [0.3, 0.0, 0.4, 1.0, 0.9, 0.8],
        [0.3, 0.6, 0.3, 0.9, 1.0, 0.1],
        [0.8, 0.5, 0.0, 0.8, 0.1, 1.0],
    ]
)


def _average_linkage_tree(distances):
    """UPGMA from its definition: merge the two clusters of least mean pairwise distance."""
    clusters = {(i,): i for i in range(len(distances))}
    while len(clusters) > 1:
        _, a, b = min(
            (np.mean(distances[np.ix_(a, b)]), a, b) for a, b in itertools.combinations(clusters, 2)
        )
        clusters[a + b] = (clusters.pop(a), clusters.pop(b))
    return next(iter(clusters.values()))


def _leaf_orders(tree):
    """Every order of the leaves that keeps each subtree contiguous."""
    if isinstance(tree, int):
        return [(tree,)]
    left, right = (_leaf_orders(child) for child in tree)
    return [a + b for a in left for b in right] + [b + a for a in left for b in right]


def _clustered_order(similarity, distances, method, optimal=True):
    condensed = distance.squareform(distances(similarity), checks=False)
    tree = hierarchy.linkage(condensed, method=method)
    if optimal:
        tree = hierarchy.optimal_leaf_ordering(tree, condensed)
    return tuple(hierarchy.leaves_list(tree).tolist())


def test_teacher_order_of_a_chained_structure_is_average_linkage_with_optimal_leaf_order():
    order = tuple(class_order.order_from_similarity(CHAINED_SIMILARITY).tolist())
    assert order == (2, 1, 5, 0, 3, 4)
    # Independently: the average-linkage tree of the Hellinger distances, built by hand, is
    # (2, ((3, 4), (1, (0, 5)))), and the order is one of its leaf orders (every cluster
    # contiguous). Not the one of least summed neighbour distance, (2, 0, 5, 1, 4, 3): SciPy's
    # optimal_leaf_ordering misses it (scipy/scipy#11227), so the pin is SciPy's choice.
    hellinger = np.sqrt(1.0 - CHAINED_SIMILARITY)
    tree = _average_linkage_tree(hellinger)
    assert tree == (2, ((3, 4), (1, (0, 5))))
    assert order in _leaf_orders(tree)
    # The case tells the choices apart: another linkage, distance or leaf order differs.
    hellinger_of = lambda s: np.sqrt(1.0 - s)
    others = {
        "single linkage": _clustered_order(CHAINED_SIMILARITY, hellinger_of, "single"),
        "complete linkage": _clustered_order(CHAINED_SIMILARITY, hellinger_of, "complete"),
        "1 - similarity": _clustered_order(CHAINED_SIMILARITY, lambda s: 1.0 - s, "average"),
        "tree order": _clustered_order(CHAINED_SIMILARITY, hellinger_of, "average", False),
    }
    for name, other in others.items():
        assert other not in (order, order[::-1]), name


def test_teacher_order_uses_the_hellinger_distance_itself():
    # The same tree under sqrt(2 - similarity), by hand: ((0, 1), (4, (2, (3, 5)))); only the
    # distances between leaves, which orient the subtrees, tell the two apart.
    similarity = np.array(
        [
            [1.0, 0.7, 0.5, 0.4, 0.1, 0.1],
            [0.7, 1.0, 0.1, 0.2, 0.3, 0.7],
            [0.5, 0.1, 1.0, 0.4, 0.5, 0.7],
            [0.4, 0.2, 0.4, 1.0, 0.3, 0.9],
            [0.1, 0.3, 0.5, 0.3, 1.0, 0.5],
            [0.1, 0.7, 0.7, 0.9, 0.5, 1.0],
        ]
    )
    order = tuple(class_order.order_from_similarity(similarity).tolist())
    assert order == (1, 0, 3, 5, 2, 4)
    tree = _average_linkage_tree(np.sqrt(1.0 - similarity))
    assert tree == _average_linkage_tree(np.sqrt(2.0 - similarity)) == ((0, 1), (4, (2, (3, 5))))
    assert order in _leaf_orders(tree)
    other = _clustered_order(similarity, lambda s: np.sqrt(2.0 - s), "average")
    assert other not in (order, order[::-1])


def test_three_classes_are_clustered_and_two_kept_in_index_order():
    # Classes 0 and 2 alike, 1 nearer to 2 than to 0: 1 | 2 0 or its reverse, by hand.
    similarity = np.array([[1.0, 0.1, 0.9], [0.1, 1.0, 0.3], [0.9, 0.3, 1.0]])
    assert tuple(class_order.order_from_similarity(similarity).tolist()) in {(1, 2, 0), (0, 2, 1)}
    assert class_order.order_from_similarity(np.eye(2)).tolist() == [0, 1]


def test_softened_probabilities_are_the_softmax_at_the_temperature_in_float64():
    logits = _logits(11, (4, 7))  # float32; the result is float64 whatever the input
    expected = special.softmax(logits.astype(np.float64) / 4.0, axis=-1)
    probabilities = class_order.softened_probabilities(logits, 4.0)
    assert probabilities.dtype == np.float64
    # float64 arithmetic on a few terms: a few ulps (float32 would be ~1e-7 off).
    np.testing.assert_allclose(probabilities, expected, rtol=1e-13, atol=0)
    # Logits far beyond exp's range: the largest is subtracted first, so nothing overflows.
    large = logits.astype(np.float64) * 1000
    np.testing.assert_allclose(
        class_order.softened_probabilities(large, 4.0),
        special.softmax(large / 4.0, axis=-1),
        rtol=1e-13,
        atol=1e-300,  # subnormal results carry fewer significant digits
    )


def test_similarity_of_a_class_with_no_example_is_an_error():
    logits, labels = _paired_teacher()
    keep = labels != 3
    with pytest.raises(ValueError, match=r"classes \[3\] have no example"):
        class_order.teacher_order(logits[keep], labels[keep], temperature=4.0)


def test_high_band_energy_share_at_level_1_is_the_pair_differences_share():
    z = _logits(9, (5, 12)).astype(np.float64)
    permutation = np.random.default_rng(10).permutation(12)
    p = z[:, permutation]
    # Level 1, even C: the high band of pair (a, b) is (a - b) / 2 and -(a - b) / 2.
    high_energy = np.sum((p[:, 0::2] - p[:, 1::2]) ** 2 / 2)
    centred_energy = np.sum((z - z.mean(axis=1, keepdims=True)) ** 2)
    np.testing.assert_allclose(
        class_order.high_band_energy_share(z, permutation), high_energy / centred_energy, rtol=1e-5
    )


def test_class_similarity_is_the_bhattacharyya_coefficient_of_class_means_at_most_1():
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 6
    probabilities = special.softmax(rng.normal(size=(40, 6)) * 3, axis=-1)
    similarity = class_order.class_similarity(probabilities, labels)
    # By its definition: the classes' mean predictions M, then sum_k sqrt(M_ik M_jk).
    roots = np.sqrt(np.stack([probabilities[labels == c].mean(axis=0) for c in range(6)]))
    unclipped = roots @ roots.T
    np.testing.assert_allclose(similarity, np.minimum(unclipped, 1.0), rtol=1e-13, atol=0)
    # A class with itself is the sum of its mean probabilities, 1 up to rounding: here above 1
    # for some class, which the clip keeps at 1 (the distance sqrt(1 - s) stays real).
    assert unclipped.max() > 1.0 and similarity.max() == 1.0


def test_classes_without_examples_are_named_and_one_example_suffices():
    with pytest.raises(
        ValueError, match=r"^classes \[2, 3, 4, 5, 6\] have no example in the split: no similarity$"
    ):
        class_order.class_similarity(np.full((3, 9), 1 / 9), np.array([0, 1, 8]))
    # The last classes too, where no label reaches them.
    with pytest.raises(ValueError, match=r"^classes \[2\] have no example in the split"):
        class_order.class_similarity(np.full((2, 3), 1 / 3), np.array([0, 1]))
    one_each = class_order.class_similarity(np.eye(3), np.arange(3))
    np.testing.assert_array_equal(one_each, np.eye(3))


@pytest.mark.parametrize("permutation", [[0, 0, 2], [1, 2, 3], [0, 1], [[2, 0, 1]]])
def test_check_permutation_refuses_what_is_not_a_permutation(permutation):
    with pytest.raises(
        ValueError, match=r"^a class order of 3 classes must hold each of 0\.\.2 exactly once"
    ):
        class_order.check_permutation(permutation, 3)


def test_high_band_energy_share_centres_each_example_and_is_0_without_energy():
    z = _logits(12, (5, 11))
    permutation = np.random.default_rng(13).permutation(11)
    share = class_order.high_band_energy_share(z, permutation)
    # Per-example offsets, 1e4 apart, are removed before the energy is summed: the share is
    # that of the same float32 logits without them (centring all examples together would
    # count the offsets as energy).
    offsets = np.arange(1, 6)[:, None] * 1e4
    shifted = (z + offsets).astype(np.float32)
    np.testing.assert_allclose(
        class_order.high_band_energy_share(shifted, permutation),
        class_order.high_band_energy_share(shifted.astype(np.float64) - offsets, permutation),
        rtol=1e-5,
    )
    # Scale-free (small logits too); no energy, no share.
    small = class_order.high_band_energy_share(z * 1e-3, permutation)
    np.testing.assert_allclose(small, share, rtol=1e-5)
    assert class_order.high_band_energy_share(np.full((2, 8), 3.0)) == 0.0
    # The mode reaches the transform: with 11 classes "zero" extends the last pair by a zero.
    p = z[:, permutation].astype(np.float64)
    centred = p - p.mean(axis=1, keepdims=True)
    high = np.asarray(haar_highpass(centred.astype(np.float32), 1, mode="zero"), np.float64)
    np.testing.assert_allclose(
        class_order.high_band_energy_share(z, permutation, mode="zero"),
        np.sum(high**2) / np.sum(centred**2),
        rtol=1e-5,
    )
    assert not np.isclose(class_order.high_band_energy_share(z, permutation, mode="zero"), share)


def test_energy_share_table_has_a_row_per_order_and_a_random_row():
    logits, labels = _paired_teacher()
    orders = {"index": list(range(8)), "teacher": class_order.teacher_order(logits, labels, 4.0)}
    table = class_order.energy_share_table(logits, orders, levels=(1, 2, 5), random_draws=5)
    lines = table.splitlines()
    assert lines[0] == "| class order | high-band share, level 1 | high-band share, level 2 |"
    assert [line.split(" | ")[0] for line in lines[2:]] == [
        "| index",
        "| teacher",
        "| random (5 seeds)",
    ]


def test_energy_share_table_cells_are_the_shares_of_each_order_and_level():
    # 9 classes: an odd length, where the boundary mode changes the shares; a mode other than the
    # default and two levels, so that each argument must reach its cell.
    logits = np.random.default_rng(2).standard_normal((30, 9)) * np.arange(1, 10)
    share = class_order.high_band_energy_share
    orders = {"index": list(range(9)), "reversed": list(range(8, -1, -1))}
    table = class_order.energy_share_table(
        logits, orders, levels=(1, 2), random_draws=5, mode="zero"
    )
    rows = [line.strip("| ").split(" | ") for line in table.splitlines()[2:]]
    expected = {
        name: [f"{share(logits, order, level=lv, mode='zero'):.3f}" for lv in (1, 2)]
        for name, order in orders.items()
    }
    assert rows[:2] == [[name, *cells] for name, cells in expected.items()]
    assert expected["index"] != expected["reversed"]
    assert expected["index"] != [f"{share(logits, level=lv):.3f}" for lv in (1, 2)]
    random_shares = [
        [
            share(logits, class_order.random_order(9, seed), level=lv, mode="zero")
            for seed in range(5)
        ]
        for lv in (1, 2)
    ]
    assert rows[2] == [
        "random (5 seeds)",
        *(f"{np.mean(s):.3f} ± {np.std(s, ddof=1):.3f}" for s in random_shares),
    ]
    # One draw has no spread; none leaves the row out.
    one = class_order.energy_share_table(logits, orders, levels=(1,), random_draws=1)
    assert one.splitlines()[-1] == (
        f"| random (1 seeds) | {share(logits, class_order.random_order(9, 0)):.3f} ± — |"
    )
    none = class_order.energy_share_table(logits, orders, levels=(1,), random_draws=0)
    assert [line.split(" | ")[0] for line in none.splitlines()[2:]] == ["| index", "| reversed"]


def test_cifar100_superclasses_match_the_published_fine_to_coarse_labels():
    # The coarse label of each fine label (0..99) as CIFAR-100's own records give it, the
    # vector commonly transcribed as `sparse2coarse`.
    published = [
        4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
        6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
        5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
        10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
        16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
    ]  # fmt: skip
    np.testing.assert_array_equal(class_order.cifar100_coarse_labels(), published)
    order = class_order.superclass_order("cifar100")
    coarse = np.asarray(published)[order]
    np.testing.assert_array_equal(coarse, np.repeat(np.arange(20), 5))
    # Within a superclass, its classes in index order (a stable sort; numpy's default is not).
    assert np.all(np.diff(order.reshape(20, 5), axis=1) > 0)
    with pytest.raises(ValueError, match="'superclass' needs a dataset with superclasses"):
        class_order.superclass_order("digits")


def test_tfds_cifar100_has_the_20_coarse_labels_the_order_uses():
    import tensorflow_datasets as tfds

    features = tfds.builder_cls("cifar100")().info.features
    assert features["label"].num_classes == len(class_order.cifar100_coarse_labels())
    assert features["coarse_label"].num_classes == len(class_order.CIFAR100_SUPERCLASSES)


def test_random_order_is_a_pure_function_of_the_seed():
    np.testing.assert_array_equal(
        class_order.random_order(100, 3), class_order.random_order(100, 3)
    )
    assert not np.array_equal(class_order.random_order(100, 3), class_order.random_order(100, 4))


def test_each_kind_is_made_as_the_config_asks_and_survives_a_save(tmp_path):
    logits, labels = _paired_teacher()
    made = {
        kind: class_order.make(
            kind,
            dataset="cifar100" if kind == "superclass" else "digits",
            num_classes=100 if kind == "superclass" else 8,
            seed=3,
            teacher_logits=lambda: (logits, labels),
        )
        for kind in class_order.KINDS
    }
    assert made["index"] == class_order.ClassOrder("index", tuple(range(8)), {}, "index")
    assert made["random"] == class_order.ClassOrder(
        "random", tuple(class_order.random_order(8, 3).tolist()), {"seed": 3}, "random"
    )
    assert made["superclass"] == class_order.ClassOrder(
        "superclass",
        tuple(class_order.superclass_order("cifar100").tolist()),
        {"dataset": "cifar100"},
        "superclass",
    )
    teacher = made["teacher"]
    assert teacher.kind == teacher.requested == "teacher"
    assert teacher.permutation == tuple(class_order.teacher_order(logits, labels, 4.0).tolist())
    assert teacher.details["temperature"] == 4.0 and teacher.details["num_examples"] == len(labels)
    # The report says how the order was made.
    assert teacher.details["method"] == (
        "average linkage on Hellinger distances of class-mean softened predictions, "
        "optimal leaf ordering"
    )
    assert teacher.details["high_band_energy_share_train"] == {
        "index": class_order.high_band_energy_share(logits),
        "teacher": class_order.high_band_energy_share(logits, teacher.permutation),
    }
    class_order.save(str(tmp_path), teacher)
    loaded = class_order.make(str(tmp_path), dataset="digits", num_classes=8, seed=0)
    assert loaded.kind == "file" and loaded.permutation == teacher.permutation
    assert loaded.requested == str(tmp_path)
    assert loaded.label == f"teacher (from {tmp_path})"


def test_the_saved_file_format(tmp_path):
    # class_order.json as runs write it and other runs, reports and users read it; files
    # without "requested" or "details" (written before these existed) still load.
    order = class_order.ClassOrder("teacher", (2, 0, 1), {"temperature": 4.0}, "teacher")
    written = {
        "kind": "teacher",
        "requested": "teacher",
        "permutation": [2, 0, 1],
        "details": {"temperature": 4.0},
    }
    assert order.to_json() == written
    assert class_order.ClassOrder.from_json(written) == order
    requested = {**written, "requested": "/runs/teacher"}
    assert class_order.ClassOrder.from_json(requested).requested == "/runs/teacher"
    minimal = {"kind": "random", "permutation": [1, 0]}
    assert class_order.ClassOrder.from_json(minimal) == class_order.ClassOrder(
        "random", (1, 0), {}, "random"
    )


def test_every_kind_passes_the_config_check_where_it_applies():
    for kind in class_order.KINDS:
        class_order.check(kind, "cifar100", 100)
    with pytest.raises(ValueError, match="'superclass' needs a dataset with superclasses"):
        class_order.check("superclass", "digits", 10)


def test_a_workdir_gives_back_the_order_its_run_saved(tmp_path):
    # How a resumed run finds its order (train.py): none before the first save.
    workdir = str(tmp_path)
    assert class_order.load_saved(workdir) is None
    order = class_order.make("random", dataset="digits", num_classes=10, seed=3)
    class_order.save(workdir, order)
    assert class_order.load_saved(workdir, 10) == order
    assert class_order.load_saved(workdir) == order
    with pytest.raises(ValueError, match=r"must hold each of 0\.\.11 exactly once"):
        class_order.load_saved(workdir, 12)
    with pytest.raises(ValueError, match=r"must hold each of 0\.\.11 exactly once"):
        class_order.make(workdir, dataset="digits", num_classes=12, seed=0)
    missing = str(tmp_path / "missing.json")
    with pytest.raises(ValueError, match=f"^no class order at {re.escape(missing)}$"):
        class_order.load(missing)
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(ValueError, match=r"empty\.json is not a class order: 'kind'$"):
        class_order.load(str(tmp_path / "empty.json"))


def _figkd_config(**overrides):
    config = digits_config(**overrides)
    config.method.name = "figkd"
    config.teacher.model = "resnet8"
    config.teacher.workdir = "/nonexistent"
    return config


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("superclass", "'superclass' needs a dataset with superclasses"),
        ("/no/such/order.json", "neither one of"),
    ],
)
def test_a_class_order_that_cannot_run_fails_before_anything_is_written(value, message):
    config = _figkd_config()
    config.method.figkd.class_order = value
    with pytest.raises(run_setup.ConfigError, match=message):
        run_setup.build_run(config)


def test_a_saved_order_of_another_class_count_is_refused(tmp_path):
    order = class_order.make("random", dataset="digits", num_classes=12, seed=0)
    class_order.save(str(tmp_path), order)
    config = _figkd_config()
    config.method.figkd.class_order = str(tmp_path)
    with pytest.raises(run_setup.ConfigError, match=r"must hold each of 0\.\.9 exactly once"):
        run_setup.build_run(config)


@pytest.fixture(scope="module")
def teacher_workdir(tmp_path_factory):
    """A digits teacher run's workdir: its order only needs some fixed resnet8."""
    workdir = str(tmp_path_factory.mktemp("teacher"))
    return write_teacher(workdir, config={"dataset.name": "digits", "model": "resnet8"})


@pytest.mark.slow
def test_teacher_order_is_saved_and_reused_on_resume(teacher_workdir, tmp_path, monkeypatch):
    config = _figkd_config(num_epochs=1, max_steps=2)
    config.teacher.workdir = teacher_workdir
    config.method.figkd.class_order = "teacher"
    workdir = str(tmp_path / "student")
    train.train_and_evaluate(config, workdir)
    saved = class_order.load_saved(workdir, 10)
    assert saved.kind == "teacher" and sorted(saved.permutation) == list(range(10))
    assert saved.details["temperature"] == config.method.temperature
    # Replace the saved order: a resumption must use it and never recompute the order.
    replaced = class_order.ClassOrder("teacher", tuple(range(9, -1, -1)), {}, "teacher")
    class_order.save(workdir, replaced)
    monkeypatch.setattr(class_order, "teacher_order", lambda *a: pytest.fail("recomputed"))
    results = train.train_and_evaluate(_figkd_resumed(config), workdir)
    assert results["class_order"]["permutation"] == list(range(9, -1, -1))
    assert class_order.load_saved(workdir).permutation == replaced.permutation
    # Another run can take that order from the workdir: it is read, with its source.
    other = _figkd_resumed(config)
    other.method.figkd.class_order = workdir
    results = train.train_and_evaluate(other, str(tmp_path / "other"))
    assert results["class_order"]["kind"] == "file"
    assert results["class_order"]["permutation"] == list(range(9, -1, -1))
    with open(tmp_path / "other" / "class_order.json") as f:
        assert json.load(f)["details"]["source"] == workdir


def _figkd_resumed(config):
    resumed = _figkd_config(num_epochs=1, max_steps=4)
    resumed.teacher.workdir = config.teacher.workdir
    resumed.method.figkd.class_order = config.method.figkd.class_order
    return resumed


def _write_results(directory, seed, order):
    """A digits FiGKD results.json (as workdir.results writes it) that used `order`."""
    directory.mkdir(parents=True)
    history = [{"epoch": 1, "step": 21, "top1": 0.9 + seed / 100, "top5": 1.0}]
    results = {
        "dataset": "digits",
        "model": "resnet8",
        "teacher": "resnet8",
        "method": "figkd",
        "standardize": False,
        "seed": seed,
        "num_epochs": 1,
        "epochs_done": 1,
        "best_top1": history[0]["top1"],
        "best_epoch": 1,
        "last_top1": history[0]["top1"],
        "last_epoch": 1,
        "teacher_eval": {"top1": 0.95, "top5": 1.0},
        "history": history,
        "config": {"seed": seed, "method.name": "figkd", "method.temperature": 4.0},
        "class_order": order.to_json(),
        "wall_time": 1.0,
    }
    (directory / "results.json").write_text(json.dumps(results))


def test_report_names_the_order_of_each_row_and_bands_its_energy_share(teacher_workdir, tmp_path):
    from figkd_jax.tools import bands, report

    order = class_order.ClassOrder("teacher", (1, 7, 0, 2, 3, 5, 4, 6, 8, 9), {}, "teacher")
    for seed in (0, 1):
        _write_results(tmp_path / "runs" / f"figkd_seed{seed}", seed, order)
    written = report.write_report([str(tmp_path / "runs")], str(tmp_path / "out"))
    (row,) = written.rows
    assert row.label == "figkd (teacher order)" and row.seeds == (0, 1)
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| digits | resnet8 | resnet8 | figkd (teacher order) | 2 |" in text
    with open(written.csv_path, newline="") as f:
        assert next(csv.DictReader(f))["class_order"] == "teacher"
    # The teacher's energy table: index, the runs' teacher order, random orders, levels 1 to 3.
    banded = bands.write_bands(teacher_workdir, [str(tmp_path / "runs")], str(tmp_path / "bands"))
    section = (tmp_path / "bands" / "bands.md").read_text().split("by class order")[1]
    rows = [line.split(" | ")[0] for line in section.splitlines() if line.startswith("| ")]
    assert rows == ["| class order", "| index", "| teacher", "| random (20 seeds)"]
    assert "high-band share, level 3 |" in section and banded.energy in section
    # The band picture in the teacher's order beside the index one.
    names = [os.path.basename(p) for p in banded.plots]
    assert names == ["bands_digits_resnet8.png", "bands_digits_resnet8_teacher.png"]
