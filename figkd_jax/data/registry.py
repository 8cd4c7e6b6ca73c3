"""What each benchmark dataset is: sizes, normalisation, augmentation, and where it comes from.

Plain frozen dataclasses: ``figkd_jax.data.transforms`` (fixed-resolution datasets, in JAX)
and ``figkd_jax.data.augment`` (fine-grained crops, in TensorFlow) apply the parameters.
"""

import dataclasses

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class PadCropFlip:
    """Train augmentation of the fixed-resolution datasets (torchvision semantics).

    Zero-pad ``pad`` pixels on each side in uint8 pixel space (before normalisation, as
    torchvision's ``RandomCrop(size, padding=pad)``), take a random crop of the original size
    with offsets uniform in ``[0, 2 * pad]``, then mirror left-right with probability 1/2 when
    ``flip``. Evaluation images are only normalised.
    """

    pad: int
    flip: bool


@dataclasses.dataclass(frozen=True)
class RotateFlip:
    """Train augmentation of mdistiller's TinyImageNet: rotation, then flip; no crop.

    torchvision's ``RandomRotation(degrees)`` with its defaults on PIL images (angle uniform in
    ``[-degrees, degrees]``, counter-clockwise about the image centre, nearest neighbour, fill 0,
    no expansion: ``figkd_jax.data.rotation`` gives PIL's exact arithmetic), then a left-right
    mirror with probability 1/2 when ``flip``. Evaluation images are only normalised.
    """

    degrees: float
    flip: bool


@dataclasses.dataclass(frozen=True)
class ResizedCropFlip:
    """Train/eval transforms of the fine-grained datasets (variable-size source images).

    Train: torchvision ``RandomResizedCrop(crop_size, scale, ratio)`` (10 tries, then the
    central crop fallback), bilinear antialiased resize, horizontal flip with probability 1/2.
    Eval: resize the shorter side to ``eval_resize`` and take the central ``crop_size`` square.
    """

    crop_size: int
    eval_resize: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """A benchmark dataset as the model sees it.

    Attributes:
      name: registry name (``names()``).
      num_classes: number of classes; labels are int32 in ``[0, num_classes)``.
      image_shape: (H, W, C) of the images leaving the pipeline.
      num_train, num_eval: sizes of the default train and eval splits of the full dataset.
      mean, std: per-channel normalisation in [0, 1] pixel units: ``(x / 255 - mean) / std``.
      train_split, eval_split: default split names (TFDS split syntax).
      augment: the train (and, for ``ResizedCropFlip``, eval) transform parameters.
      fixed_resolution: every source image has shape ``image_shape``, so the decoded split fits
        in memory as one uint8 array (``load_arrays``).
      streamed: too large for host memory: read from the records every epoch, each process
        its own shard of the files (``figkd_jax.data.imagenet``).
    """

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    num_train: int
    num_eval: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_split: str
    eval_split: str
    augment: PadCropFlip | RotateFlip | ResizedCropFlip
    fixed_resolution: bool
    streamed: bool = False


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a dataset comes from.

    kind: ``"tfds"`` (a TFDS catalogue dataset that ``tfds build`` can download),
      ``"manual"`` (one of our TFDS builders, or TFDS's imagenet2012, reading files the user
      downloads by hand), or
      ``"embedded"`` (bundled with a Python package, nothing to prepare).
    manual_files: for ``"manual"``, the file names the builder reads from the manual dir.
    homepage: where to download them.
    """

    kind: str
    manual_files: tuple[str, ...] = ()
    homepage: str = ""


def _fine_grained(name: str, num_classes: int, num_train: int, num_eval: int) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        num_classes=num_classes,
        image_shape=(224, 224, 3),
        num_train=num_train,
        num_eval=num_eval,
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        train_split="train",
        eval_split="test",
        augment=ResizedCropFlip(crop_size=224, eval_resize=256),
        fixed_resolution=False,
    )


_INFOS = {
    info.name: info
    for info in (
        # sklearn's bundled 8x8 digits; values 0..16 are stored as round(v * 255 / 16), so the
        # mean and std (of the train split) are those of v / 16 up to 0.002.
        DatasetInfo(
            name="digits",
            num_classes=10,
            image_shape=(8, 8, 1),
            num_train=1400,
            num_eval=397,
            mean=(0.3056,),
            std=(0.3755,),
            train_split="train",
            eval_split="test",
            augment=PadCropFlip(pad=1, flip=False),
            fixed_resolution=True,
        ),
        DatasetInfo(
            name="cifar100",
            num_classes=100,
            image_shape=(32, 32, 3),
            num_train=50_000,
            num_eval=10_000,
            mean=(0.5071, 0.4867, 0.4408),
            std=(0.2675, 0.2565, 0.2761),
            train_split="train",
            eval_split="test",
            augment=PadCropFlip(pad=4, flip=True),
            fixed_resolution=True,
        ),
        DatasetInfo(
            name="tiny_imagenet",
            num_classes=200,
            image_shape=(64, 64, 3),
            num_train=100_000,
            num_eval=10_000,
            # mdistiller's dataset/tiny_imagenet.py (its own statistics, not ImageNet's).
            mean=(0.4802, 0.4481, 0.3975),
            std=(0.2302, 0.2265, 0.2262),
            train_split="train",
            eval_split="validation",
            augment=RotateFlip(degrees=20.0, flip=True),
            fixed_resolution=True,
        ),
        # ILSVRC2012 as TFDS's imagenet2012 builds it; mdistiller's dataset/imagenet.py
        # transforms (RandomResizedCrop(224) + flip; Resize(256) + CenterCrop(224)).
        dataclasses.replace(
            _fine_grained("imagenet2012", 1000, 1_281_167, 50_000),
            eval_split="validation",
            streamed=True,
        ),
        _fine_grained("caltech_birds2011", 200, 5_994, 5_794),
        _fine_grained("stanford_dogs", 120, 12_000, 8_580),
        _fine_grained("mit67", 67, 5_360, 1_340),
        _fine_grained("stanford40", 40, 4_000, 5_532),
    )
}

SOURCES = {
    "digits": Source("embedded"),
    "cifar100": Source("tfds"),
    "caltech_birds2011": Source("tfds"),
    "stanford_dogs": Source("tfds"),
    "tiny_imagenet": Source(
        "manual", ("tiny-imagenet-200.zip",), "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
    ),
    # TFDS's own builder, reading the two archives the user downloads after registering.
    "imagenet2012": Source(
        "manual",
        ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"),
        "https://image-net.org/download-images",
    ),
    "mit67": Source(
        "manual",
        ("indoorCVPR_09.tar", "TrainImages.txt", "TestImages.txt"),
        "https://web.mit.edu/torralba/www/indoor.html",
    ),
    "stanford40": Source(
        "manual",
        ("Stanford40_JPEGImages.zip", "Stanford40_ImageSplits.zip"),
        "http://vision.stanford.edu/Datasets/40actions.html",
    ),
}


def names() -> list[str]:
    """Registry names of every benchmark dataset."""
    return list(_INFOS)


def get_info(name: str) -> DatasetInfo:
    """The description of dataset ``name`` (its default splits, full-size counts)."""
    if name not in _INFOS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(_INFOS)}")
    return _INFOS[name]


def steps_per_epoch(num_train: int, global_batch_size: int) -> int:
    """Full global batches per epoch, ``num_train // global_batch_size``.

    The remainder is dropped each epoch; the order is reshuffled every epoch, so different
    examples are dropped each time. The reference (mdistiller's PyTorch loader, no
    ``drop_last``) instead keeps a last partial batch: CIFAR-100 at batch 64 is 782 steps
    there, the last of 16 images, and 781 full steps here. We keep full batches because a
    partial batch would change the BatchNorm batch statistics' sample size and recompile the
    step; the 16 images left out differ every epoch. The schedule's decay "after epoch e"
    applies from step ``e * steps_per_epoch`` (docs/protocol.md).
    """
    if not 0 < global_batch_size <= num_train:
        raise ValueError(
            f"global_batch_size must be in [1, {num_train}] (the train split size), "
            f"got {global_batch_size}"
        )
    return num_train // global_batch_size
