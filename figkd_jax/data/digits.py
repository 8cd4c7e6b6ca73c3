"""The embedded dataset: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes).

Nothing to download, so the demo and the end-to-end tests always have real data. The split is
a fixed rule on the bundled file's order (no RNG): the first 1,400 images are ``train`` and the
remaining 397 are ``test`` (the file cycles through the classes, so both are balanced: 135-144
and 39-41 per class). Pixel values 0..16 are stored as uint8 ``round(v * 255 / 16)`` so that
every dataset shares the [0, 255] convention. A slice of a split in TFDS's syntax with example
counts, ``"train[:320]"``, takes the examples of that range in the same order (the first 320
hold 29 to 34 per class).
"""

import re

import numpy as np

NUM_TRAIN = 1400
SPLITS = ("train", "test")
_SLICED = re.compile(r"(?P<name>\w+)\[(?P<start>-?\d*):(?P<stop>-?\d*)\]")


def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 8, 8, 1] and labels int32 [N] of split "train" (N=1400) or "test" (397),
    or of a slice of one, ``"train[a:b]"`` (Python slice bounds, either may be omitted)."""
    sliced = _SLICED.fullmatch(split)
    name = sliced["name"] if sliced else split
    if name not in SPLITS:
        raise ValueError(
            f"digits split must be one of {SPLITS} or a slice such as 'train[:300]', got {split!r}"
        )
    from sklearn.datasets import load_digits  # slow import, only when digits are used

    bunch = load_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int32)
    part = slice(None, NUM_TRAIN) if name == "train" else slice(NUM_TRAIN, None)
    images, labels = images[part], labels[part]
    if sliced:
        bounds = slice(*(int(sliced[k]) if sliced[k] else None for k in ("start", "stop")))
        images, labels = images[bounds], labels[bounds]
        if not len(labels):
            raise ValueError(f"digits split {split!r} is empty")
    return images, labels
