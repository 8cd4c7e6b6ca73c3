"""The order of the classes along the axis that FiGKD's Haar transform runs over.

The Haar step pairs class ``2k`` with ``2k+1`` and coarser levels group neighbouring blocks, so
which classes are neighbours decides what "high frequency" means (docs/method.md, "Class order
matters"); dataset indices are arbitrary (CIFAR-100's are alphabetical). The order is a choice,
``config.method.figkd.class_order``:

- ``"index"``: the dataset's indices (the identity; the default).
- ``"random"``: a permutation drawn from the run's seed: the control.
- ``"superclass"``: the classes of each superclass contiguous (CIFAR-100's 20 coarse classes of
  5, superclasses and their classes in index order).
- ``"teacher"``: computed once from the frozen teacher's softened predictions on the training
  split (`teacher_order`).
- a path: a ``class_order.json`` written by a run, or that run's workdir.

An order is a permutation ``p`` of ``range(C)``: position ``i`` of the reordered class axis
holds class ``p[i]``, i.e. ``logits[..., p]``, the ``class_permutation`` of
`figkd_jax.losses.figkd_loss`. `high_band_energy_share` measures what an order does: the
fraction of the teacher's (centred) logit energy that lands in the high band.

NumPy, SciPy and the library's Haar transform only (no TensorFlow).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.cluster import hierarchy
from scipy.spatial import distance

from figkd_jax.io import storage
from figkd_jax.trainer import summary
from figkd_jax.wavelets import haar_highpass, haar_max_level

KINDS = ("index", "random", "superclass", "teacher")
FILE_NAME = "class_order.json"

# CIFAR-100's superclasses as the dataset defines them (Krizhevsky, "Learning Multiple Layers
# of Features from Tiny Images", 2009, and https://www.cs.toronto.edu/~kriz/cifar.html), in the
# spelling of the dataset's label-name files. Fine and coarse label indices are the
# alphabetical ranks of these names.
CIFAR100_SUPERCLASSES: Mapping[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}


def cifar100_coarse_labels() -> np.ndarray:
    """int [100]: the coarse (superclass) label of each CIFAR-100 fine label."""
    fine_names = sorted(name for names in CIFAR100_SUPERCLASSES.values() for name in names)
    coarse_of_name = {
        name: coarse
        for coarse, superclass in enumerate(sorted(CIFAR100_SUPERCLASSES))
        for name in CIFAR100_SUPERCLASSES[superclass]
    }
    return np.array([coarse_of_name[name] for name in fine_names])


# Datasets with superclasses: name -> coarse label of every class.
COARSE_LABELS = {"cifar100": cifar100_coarse_labels}


@dataclasses.dataclass(frozen=True)
class ClassOrder:
    """A class order and how it was made.

    kind: one of `KINDS`, or "file" for an order read from a path.
    permutation: position ``i`` holds class ``permutation[i]``.
    details: how it was made (seed, temperature, source, ...), JSON values.
    requested: the ``class_order`` config value that asked for it.
    """

    kind: str
    permutation: tuple[int, ...]
    details: Mapping[str, Any]
    requested: str

    @property
    def label(self) -> str:
        """What the report prints: the kind, and the kind of the saved order a file held."""
        if self.kind == "file":
            return f"{self.details.get('source_kind', '?')} (from {self.details['source']})"
        return self.kind

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "requested": self.requested,
            "permutation": list(self.permutation),
            "details": dict(self.details),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ClassOrder:
        return cls(
            kind=obj["kind"],
            permutation=tuple(int(c) for c in obj["permutation"]),
            details=dict(obj.get("details", {})),
            requested=obj.get("requested", obj["kind"]),
        )


def check_permutation(permutation: Sequence[int], num_classes: int) -> np.ndarray:
    """`permutation` as an int array after checking it is a permutation of range(num_classes)."""
    values = np.asarray(permutation)
    if values.shape != (num_classes,) or not np.array_equal(
        np.sort(values), np.arange(num_classes)
    ):
        raise ValueError(
            f"a class order of {num_classes} classes must hold each of 0..{num_classes - 1} "
            f"exactly once, got {len(values)} entries"
        )
    return values.astype(np.int64)


def random_order(num_classes: int, seed: int) -> np.ndarray:
    """A uniformly random permutation of range(num_classes), a pure function of `seed`."""
    return np.random.default_rng(seed).permutation(num_classes)


def superclass_order(dataset: str) -> np.ndarray:
    """Classes grouped by superclass (stable: index order within and across superclasses)."""
    if dataset not in COARSE_LABELS:
        raise ValueError(
            f"'superclass' needs a dataset with superclasses ({sorted(COARSE_LABELS)}), "
            f"not {dataset!r}"
        )
    return np.argsort(COARSE_LABELS[dataset](), kind="stable")


def softened_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) over the last axis, in float64."""
    scaled = np.asarray(logits, np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def class_similarity(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[C, C] Bhattacharyya coefficients between the classes' mean softened predictions.

    Row ``c`` of ``M`` is the mean of ``probabilities`` over the examples labelled ``c`` (what
    the teacher says, softened, about images of class ``c``); the similarity of classes ``i``
    and ``j`` is ``sum_k sqrt(M_ik * M_jk)``: 1 for identical rows, 0 for disjoint ones. Two
    classes the teacher confuses with each other, or with the same third classes, score high.
    """
    probabilities = np.asarray(probabilities, np.float64)
    num_classes = probabilities.shape[-1]
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=num_classes)
    if np.any(counts == 0):
        missing = np.flatnonzero(counts == 0)[:5].tolist()
        raise ValueError(f"classes {missing} have no example in the split: no similarity")
    means = np.zeros((num_classes, num_classes))
    np.add.at(means, labels, probabilities)
    roots = np.sqrt(means / counts[:, None])
    return np.clip(roots @ roots.T, 0.0, 1.0)


def order_from_similarity(similarity: np.ndarray) -> np.ndarray:
    """Classes ordered so that similar ones are neighbours.

    Average-linkage agglomerative clustering on the Hellinger distances
    ``sqrt(1 - similarity)``, then the optimal leaf ordering of that tree (Bar-Joseph et al.,
    2001; `scipy.cluster.hierarchy.optimal_leaf_ordering`). Why this rather than a spectral
    seriation: the leaves of a tree keep every cluster contiguous, which is what the coarser
    Haar levels compare (blocks of 2, 4, ... neighbours), and among the orders the tree allows,
    the optimal leaf ordering seeks the least summed distance of neighbours, which is what
    level 1 compares. SciPy's implementation does not always find it (scipy/scipy#11227: on
    the chained matrix of tests/test_class_order.py it returns a summed distance of 3.26 where
    2.65 fits the same tree); the order is SciPy's, pinned by that test. Average linkage does
    not chain unrelated classes together as single linkage does. A cluster of odd size can
    still leave one class paired across a cluster boundary.
    """
    similarity = np.asarray(similarity, np.float64)
    num_classes = similarity.shape[0]
    if num_classes < 3:
        return np.arange(num_classes)
    distances = np.sqrt(np.clip(1.0 - similarity, 0.0, None))
    # The condensed form keeps the upper triangle only: the diagonal never enters.
    condensed = distance.squareform((distances + distances.T) / 2, checks=False)
    tree = hierarchy.linkage(condensed, method="average")
    return hierarchy.leaves_list(hierarchy.optimal_leaf_ordering(tree, condensed))


def teacher_order(logits: np.ndarray, labels: np.ndarray, temperature: float) -> np.ndarray:
    """The order of a teacher: `order_from_similarity` of the `class_similarity` of its
    predictions softened at `temperature` (the distillation temperature) on the training
    split (`logits` [N, C], `labels` [N])."""
    probabilities = softened_probabilities(logits, temperature)
    return order_from_similarity(class_similarity(probabilities, labels))


def high_band_energy_share(
    logits: np.ndarray,
    permutation: Sequence[int] | None = None,
    *,
    level: int = 1,
    mode: str = "symmetric",
) -> float:
    """The share of the logits' energy in the Haar high band when the classes are in that order.

    ``sum_n ||high_L(z_n[p])||^2 / sum_n ||z_n - mean(z_n)||^2`` over the examples ``n``. Each
    logit vector is centred first because its mean lies in the low band under every order
    (and is invisible to softmax). Lower means that neighbouring classes get similar logits.

    Args:
      logits: [N, C].
      permutation: the class order (None: index order).
      level: Haar level, ``1 <= level <= haar_max_level(C)``.
      mode: Haar boundary mode.
    """
    z = np.asarray(logits, np.float64)
    if permutation is not None:
        z = z[:, check_permutation(permutation, z.shape[-1])]
    z = z - z.mean(axis=-1, keepdims=True)
    high = np.asarray(haar_highpass(z.astype(np.float32), level, mode=mode), np.float64)
    total = float(np.sum(z**2))
    return float(np.sum(high**2)) / total if total > 0 else 0.0


def energy_share_table(
    logits: np.ndarray,
    orders: Mapping[str, Sequence[int]],
    *,
    levels: Sequence[int] = (1, 2),
    random_draws: int = 20,
    mode: str = "symmetric",
) -> str:
    """A Markdown table of `high_band_energy_share` per order (rows) and Haar level (columns).

    A "random" row is added: mean ± sample std over the orders of seeds 0..random_draws-1.
    Levels above what the class count allows are left out.
    """
    num_classes = np.shape(logits)[-1]
    levels = [level for level in levels if level <= haar_max_level(num_classes)]
    header = ["class order", *(f"high-band share, level {level}" for level in levels)]
    rows = [
        [name, *(f"{high_band_energy_share(logits, p, level=lv, mode=mode):.3f}" for lv in levels)]
        for name, p in orders.items()
    ]
    if random_draws > 0:
        cells = []
        for level in levels:
            shares = [
                high_band_energy_share(
                    logits, random_order(num_classes, seed), level=level, mode=mode
                )
                for seed in range(random_draws)
            ]
            mean, std = summary.mean_std(shares)
            cells.append(f"{mean:.3f} ± {'—' if std is None else f'{std:.3f}'}")
        rows.append([f"random ({random_draws} seeds)", *cells])
    return summary.markdown_table(header, rows)


def check(value: str, dataset: str, num_classes: int) -> None:
    """Raises ValueError (one line, naming the fix) unless `value` is a class order that a run
    on `dataset` can use: one of `KINDS` (with superclasses for "superclass") or a readable
    saved order of `num_classes` classes."""
    if value in KINDS:
        if value == "superclass":
            superclass_order(dataset)
        return
    path = storage.path(value)
    if not path.exists():
        raise ValueError(
            f"{value!r} is neither one of {KINDS} nor an existing class_order.json or run workdir"
        )
    load(value, num_classes)


def make(
    value: str,
    *,
    dataset: str,
    num_classes: int,
    seed: int,
    teacher_logits: Any = None,
    temperature: float = 4.0,
) -> ClassOrder:
    """The class order that the config value `value` asks for.

    `teacher_logits` is called only for "teacher": ``() -> (logits [N, C], labels [N])`` of the
    frozen teacher on the training split.
    """
    if value == "index":
        return ClassOrder("index", tuple(range(num_classes)), {}, value)
    if value == "random":
        permutation = random_order(num_classes, seed)
        return ClassOrder("random", tuple(permutation.tolist()), {"seed": seed}, value)
    if value == "superclass":
        permutation = superclass_order(dataset)
        return ClassOrder("superclass", tuple(permutation.tolist()), {"dataset": dataset}, value)
    if value == "teacher":
        logits, labels = teacher_logits()
        permutation = teacher_order(logits, labels, temperature)
        details = {
            "temperature": temperature,
            "num_examples": len(labels),
            "method": "average linkage on Hellinger distances of class-mean softened "
            "predictions, optimal leaf ordering",
            "high_band_energy_share_train": {
                "index": high_band_energy_share(logits),
                "teacher": high_band_energy_share(logits, permutation),
            },
        }
        return ClassOrder("teacher", tuple(permutation.tolist()), details, value)
    saved = load(value, num_classes)
    details = {"source": value, "source_kind": saved.label, **saved.details}
    return ClassOrder("file", saved.permutation, details, value)


def load(path: str, num_classes: int | None = None) -> ClassOrder:
    """The order saved at `path` (a class_order.json, or a directory holding one)."""
    location = storage.path(path)
    if location.is_dir():
        location = location / FILE_NAME
    try:
        order = ClassOrder.from_json(json.loads(location.read_text()))
    except FileNotFoundError:
        raise ValueError(f"no class order at {location}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{location} is not a class order: {e}") from None
    if num_classes is not None:
        check_permutation(order.permutation, num_classes)
    return order


def load_saved(workdir: str, num_classes: int | None = None) -> ClassOrder | None:
    """The order a run saved in `workdir`, or None if it has none."""
    path = storage.path(workdir) / FILE_NAME
    return load(str(path), num_classes) if path.exists() else None


def save(workdir: str, order: ClassOrder) -> None:
    """Writes ``<workdir>/class_order.json`` (whole or not at all)."""
    storage.write_text(
        storage.path(workdir) / FILE_NAME, json.dumps(order.to_json(), indent=2, sort_keys=True)
    )
