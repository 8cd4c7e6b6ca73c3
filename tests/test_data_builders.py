"""Our TFDS builders on tiny archives in the original layouts, read back through the streams.

Every image of class i is a solid gray of value COLORS[i], so the label each example carries
after building, shuffling and decoding can be checked against its pixels.
"""

import io
import tarfile
import zipfile

import ml_collections
import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds

from figkd_jax import data
from figkd_jax.data import builders, prepare
from figkd_jax.data.builders import common

COLORS = (30, 120, 210)  # by label, i.e. by sorted class name

tfds.disable_progress_bar()


def _image(value, size, image_format="JPEG", mode="RGB") -> bytes:
    """Encoded solid gray ``value`` of ``size`` (width, height), stored in PIL ``mode``."""
    image = PIL.Image.new("RGB", size, (value,) * 3)
    palette = PIL.Image.Palette.ADAPTIVE  # exact colors for "P"; ignored by other modes
    buffer = io.BytesIO()
    image.convert(mode, palette=palette).save(buffer, format=image_format)
    return buffer.getvalue()


def _build(builder_cls, tmp_path) -> ml_collections.ConfigDict:
    data_dir = str(tmp_path / "data")
    builder = builder_cls(data_dir=data_dir, check_num_classes=False)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual"))
    )
    return ml_collections.ConfigDict({"name": builder.name, "data_dir": data_dir})


def _gray_levels(images, info):
    """Mean pixel value (0..255) of each normalised image [N, H, W, C]."""
    pixels = images * np.array(info.std) + np.array(info.mean)
    return pixels.mean(axis=(1, 2, 3)) * 255


def _check_streams(config, num_train, num_eval):
    info = data.prepared_info(config)
    assert (info.num_train, info.num_eval) == (num_train, num_eval)
    batches = list(data.eval_stream(config, global_batch_size=4))
    mask = np.concatenate([b["mask"] for b in batches])
    assert mask.sum() == num_eval and mask[:num_eval].all()
    images = np.concatenate([b["image"] for b in batches])[:num_eval]
    labels = np.concatenate([b["label"] for b in batches])[:num_eval]
    assert images.shape[1:] == info.image_shape
    np.testing.assert_allclose(_gray_levels(images, info), np.take(COLORS, labels), atol=3)

    stream = data.train_stream(config, global_batch_size=2, seed=0)
    for batch in [next(stream) for _ in range(num_train // 2 + 1)]:
        assert batch["image"].shape == (2, *info.image_shape)
        center = batch["image"][:, 28:36, 28:36]  # inside the source image for every crop
        np.testing.assert_allclose(
            _gray_levels(center, info), np.take(COLORS, batch["label"]), atol=3
        )


def _write_tiny_imagenet(manual):
    wnids = ["n02", "n01", "n03"]  # wnids.txt is not sorted; labels follow the sorted order
    color = {wnid: COLORS[i] for i, wnid in enumerate(sorted(wnids))}
    manual.mkdir()
    with zipfile.ZipFile(manual / "tiny-imagenet-200.zip", "w") as archive:
        root = "tiny-imagenet-200/"
        archive.writestr(root + "wnids.txt", "\n".join(wnids) + "\n")
        archive.writestr(root + "words.txt", "n01\tone\n")
        for wnid in wnids:
            archive.writestr(f"{root}train/{wnid}/{wnid}_boxes.txt", "")
            for i in range(2):
                mode = "L" if i == 0 else "RGB"  # the real archive has grayscale JPEGs
                image = _image(color[wnid], (64, 64), mode=mode)
                archive.writestr(f"{root}train/{wnid}/images/{wnid}_{i}.JPEG", image)
        annotations = []
        for i, wnid in enumerate(["n03", "n01", "n01", "n02", "n03"]):
            archive.writestr(f"{root}val/images/val_{i}.JPEG", _image(color[wnid], (64, 64)))
            annotations.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
        archive.writestr(root + "val/val_annotations.txt", "\n".join(annotations) + "\n")
        archive.writestr(root + "test/images/test_0.JPEG", _image(0, (64, 64)))


def test_tiny_imagenet(tmp_path):
    _write_tiny_imagenet(tmp_path / "manual")
    config = _build(builders.TinyImagenet, tmp_path)
    _check_streams(config, num_train=6, num_eval=5)
    images, labels = data.load_arrays(config, "validation")
    assert images.shape == (5, 64, 64, 3) and sorted(labels) == [0, 0, 1, 2, 2]


def test_prepare_command_refuses_an_archive_with_the_wrong_class_count(tmp_path, capsys):
    _write_tiny_imagenet(tmp_path / "manual")
    arguments = [f"--data_dir={tmp_path / 'data'}", f"--manual_dir={tmp_path / 'manual'}"]
    with pytest.raises(ValueError, match="the archive has 3 classes, expected 200"):
        prepare.main(["--dataset=tiny_imagenet", *arguments])
    capsys.readouterr()
    prepare.main(["--dataset=digits"])
    assert capsys.readouterr().out == "digits is prepared\n"


def test_mit67(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    categories = ["kitchen", "bar", "office"]
    train, test = [], []
    with tarfile.open(manual / "indoorCVPR_09.tar", "w") as archive:
        for category in categories:
            color = COLORS[sorted(categories).index(category)]
            for i in range(3):
                path = f"{category}/img_{i}.jpg"
                (train if i < 2 else test).append(path)
                # Some files of the real archive are GIFs behind a .jpg name.
                is_gif = (category, i) == ("bar", 0)
                image = _image(color, (40 + 10 * i, 30), *(("GIF", "P") if is_gif else ()))
                member = tarfile.TarInfo(f"Images/{path}")
                member.size = len(image)
                archive.addfile(member, io.BytesIO(image))
    (manual / "TrainImages.txt").write_text("\n".join(train) + "\n")
    (manual / "TestImages.txt").write_text("\r\n".join(test))
    _check_streams(_build(builders.Mit67, tmp_path), num_train=6, num_eval=3)


def test_stanford40(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    actions = ["running", "applauding", "fishing"]
    with (
        zipfile.ZipFile(manual / "Stanford40_JPEGImages.zip", "w") as images,
        zipfile.ZipFile(manual / "Stanford40_ImageSplits.zip", "w") as splits,
    ):
        splits.writestr("ImageSplits/actions.txt", "action_name\tnumber_of_images\n")
        for action in actions:
            color = COLORS[sorted(actions).index(action)]
            names = [f"{action}_{i:03d}.jpg" for i in range(1, 5)]
            for name in names:
                mode = "CMYK" if name == "fishing_001.jpg" else "RGB"  # decodes as RGB too
                images.writestr(f"JPEGImages/{name}", _image(color, (30, 45), mode=mode))
            splits.writestr(f"ImageSplits/{action}_train.txt", "\n".join(names[:1]) + "\n")
            splits.writestr(f"ImageSplits/{action}_test.txt", "\n".join(names[1:]) + "\n")
        splits.writestr("ImageSplits/train.txt", "\n".join(f"{a}_001.jpg" for a in actions))
    _check_streams(_build(builders.Stanford40, tmp_path), num_train=3, num_eval=9)


@pytest.mark.parametrize(
    "image_format, mode, kept",
    [
        ("JPEG", "RGB", True),
        ("JPEG", "L", True),
        ("PNG", "RGBA", True),
        ("JPEG", "CMYK", True),
        ("GIF", "P", False),
    ],
)
def test_image_bytes_for_tfds(image_format, mode, kept):
    original = _image(0, (5, 4), image_format, mode)
    stored = common.image_bytes_for_tfds(original)
    assert (stored == original) == kept
    with PIL.Image.open(io.BytesIO(stored)) as image:
        assert image.format in ("JPEG", "PNG") and image.size == (5, 4)
