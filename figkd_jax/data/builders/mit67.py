"""TFDS builder of MIT Indoor-67 from indoorCVPR_09.tar, TrainImages.txt and TestImages.txt.

Splits ``train`` (5,360) and ``test`` (1,340) are the official lists (lines like
``kitchen/int474.jpg``, relative to Images/ in the tar). Label i is the i-th category name in
sorted order. The tar is streamed once per split, never extracted.
"""

import tarfile

from figkd_jax.data.builders import common
from figkd_jax.data.registry import SOURCES, get_info


class Mit67(common.ManualImageBuilder):
    """MIT Indoor-67 scene recognition, official train/test lists."""

    MANUAL_FILES = SOURCES["mit67"].manual_files
    HOMEPAGE = SOURCES["mit67"].homepage
    MANUAL_DOWNLOAD_INSTRUCTIONS = common.instructions(MANUAL_FILES, HOMEPAGE)
    EXPECTED_NUM_CLASSES = get_info("mit67").num_classes
    DESCRIPTION = "MIT Indoor-67: 67 indoor scene categories (Quattoni and Torralba, CVPR 2009)."

    def _split_generators(self, dl_manager):
        tar_name, train_name, test_name = self.MANUAL_FILES
        tar_path = self._manual_file(dl_manager, tar_name)
        splits = {
            "train": _read_list(self._manual_file(dl_manager, train_name)),
            "test": _read_list(self._manual_file(dl_manager, test_name)),
        }
        self._set_class_names(
            sorted({path.split("/")[0] for paths in splits.values() for path in paths})
        )
        return {split: self._generate_examples(tar_path, paths) for split, paths in splits.items()}

    def _generate_examples(self, tar_path, listed_paths):
        wanted = set(listed_paths)
        found = set()
        with tarfile.open(tar_path, "r|*") as archive:
            for member in archive:
                parts = member.name.split("/")
                if not member.isfile() or len(parts) < 3 or parts[-3] != "Images":
                    continue
                key = "/".join(parts[-2:])
                if key in wanted:
                    found.add(key)
                    image = common.image_bytes_for_tfds(archive.extractfile(member).read())
                    yield key, {"image": image, "label": parts[-2], "image/filename": key}
        missing = sorted(wanted - found)
        if missing:
            raise ValueError(
                f"mit67: {len(missing)} listed images are not in {tar_path} (first: {missing[0]})"
            )


def _read_list(path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]
