"""TFDS builder of Stanford 40 Actions from the two official zips, read without extracting.

``Stanford40_JPEGImages.zip`` holds JPEGImages/<action>_<nnn>.jpg and
``Stanford40_ImageSplits.zip`` holds ImageSplits/<action>_train.txt and <action>_test.txt
(one file name per line). Splits ``train`` (4,000) and ``test`` (5,532); label i is the i-th
action name in sorted order.
"""

import posixpath
import re
import zipfile

from figkd_jax.data.builders import common
from figkd_jax.data.registry import SOURCES, get_info

_LIST_NAME = re.compile(r"(?P<action>.+)_(?P<split>train|test)\.txt")


class Stanford40(common.ManualImageBuilder):
    """Stanford 40 Actions, official train/test lists."""

    MANUAL_FILES = SOURCES["stanford40"].manual_files
    HOMEPAGE = SOURCES["stanford40"].homepage
    MANUAL_DOWNLOAD_INSTRUCTIONS = common.instructions(MANUAL_FILES, HOMEPAGE)
    EXPECTED_NUM_CLASSES = get_info("stanford40").num_classes
    DESCRIPTION = "Stanford 40 Actions: 40 human actions (Yao et al., ICCV 2011)."

    def _split_generators(self, dl_manager):
        images_name, splits_name = self.MANUAL_FILES
        images_path = self._manual_file(dl_manager, images_name)
        action_of = {"train": {}, "test": {}}  # split -> image file name -> action
        with zipfile.ZipFile(self._manual_file(dl_manager, splits_name)) as archive:
            for path in archive.namelist():
                match = _LIST_NAME.fullmatch(posixpath.basename(path))
                if match:
                    for line in archive.read(path).decode().split():
                        action_of[match["split"]][line] = match["action"]
        self._set_class_names(sorted(set(action_of["train"].values())))
        return {
            split: self._generate_examples(images_path, labels)
            for split, labels in action_of.items()
        }

    def _generate_examples(self, images_path, action_of):
        with zipfile.ZipFile(images_path) as archive:
            paths = {posixpath.basename(path): path for path in archive.namelist()}
            missing = sorted(set(action_of) - set(paths))
            if missing:
                raise ValueError(
                    f"stanford40: {len(missing)} listed images are not in {images_path} "
                    f"(first: {missing[0]})"
                )
            for filename, action in sorted(action_of.items()):
                image = common.image_bytes_for_tfds(archive.read(paths[filename]))
                yield filename, {"image": image, "label": action, "image/filename": filename}
