"""TFDS builder of Tiny ImageNet (200 classes, 64x64) from ``tiny-imagenet-200.zip``.

Splits: ``train`` (100,000: train/<wnid>/images/*.JPEG) and ``validation`` (10,000:
val/images/*.JPEG, labels from the tab-separated val/val_annotations.txt); the unlabelled
test images are ignored. Label i is the i-th wnid of wnids.txt in sorted order, which is also
the class order of torchvision's ImageFolder over train/ (what PyTorch codebases use).
"""

import posixpath
import zipfile

from figkd_jax.data.builders import common
from figkd_jax.data.registry import SOURCES, get_info


class TinyImagenet(common.ManualImageBuilder):
    """Tiny ImageNet: the 64x64 JPEGs as they are in the zip."""

    MANUAL_FILES = SOURCES["tiny_imagenet"].manual_files
    HOMEPAGE = SOURCES["tiny_imagenet"].homepage
    MANUAL_DOWNLOAD_INSTRUCTIONS = common.instructions(MANUAL_FILES, HOMEPAGE)
    EXPECTED_NUM_CLASSES = get_info("tiny_imagenet").num_classes
    IMAGE_SHAPE = (64, 64, 3)
    DESCRIPTION = "Tiny ImageNet (CS231n): 200 ImageNet classes at 64x64."

    def _split_generators(self, dl_manager):
        (archive_name,) = self.MANUAL_FILES
        archive_path = self._manual_file(dl_manager, archive_name)
        with zipfile.ZipFile(archive_path) as archive:
            root = _root_prefix(archive)
            wnids = sorted(archive.read(root + "wnids.txt").decode().split())
            val_lines = archive.read(root + "val/val_annotations.txt").decode().splitlines()
        self._set_class_names(wnids)
        val_labels = dict(line.split("\t")[:2] for line in val_lines if line.strip())
        return {
            "train": self._generate_examples(archive_path, root, "train", val_labels),
            "validation": self._generate_examples(archive_path, root, "validation", val_labels),
        }

    def _generate_examples(self, archive_path, root, split, val_labels):
        with zipfile.ZipFile(archive_path) as archive:
            for path in archive.namelist():
                label = _label_of(path[len(root) :], split, val_labels)
                if label is not None:
                    filename = posixpath.basename(path)
                    image = common.image_bytes_for_tfds(archive.read(path))
                    yield filename, {"image": image, "label": label, "image/filename": filename}


def _root_prefix(archive: zipfile.ZipFile) -> str:
    """The folder holding wnids.txt ("tiny-imagenet-200/" in the official zip)."""
    for path in archive.namelist():
        if posixpath.basename(path) == "wnids.txt":
            return path[: -len("wnids.txt")]
    raise ValueError(f"{archive.filename}: no wnids.txt; is this tiny-imagenet-200.zip?")


def _label_of(relative_path: str, split: str, val_labels: dict[str, str]) -> str | None:
    """The wnid of a member of the split, or None for members of other splits and non-images."""
    parts = relative_path.split("/")
    if not parts[-1].endswith(".JPEG"):
        return None
    if split == "train" and len(parts) == 4 and parts[0] == "train" and parts[2] == "images":
        return parts[1]
    if split == "validation" and len(parts) == 3 and parts[:2] == ["val", "images"]:
        return val_labels[parts[2]]
    return None
