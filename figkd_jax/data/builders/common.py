"""What our manual-download TFDS builders share: features, version, class and file checks."""

from figkd_jax import extras

extras.require_tensorflow()

import inspect
import io

import PIL.Image
import tensorflow_datasets as tfds
from etils import epath


def image_bytes_for_tfds(data: bytes) -> bytes:
    """Keep JPEG and PNG bytes as they are; re-encode anything else (GIF, BMP...) as PNG.

    Some archives hold other formats behind a ``.jpg`` name; TFDS's own image decoding reads
    only single-frame JPEG and PNG reliably, so those few are converted once at build time.
    Only the header is parsed for the common case.
    """
    with PIL.Image.open(io.BytesIO(data)) as image:
        if image.format in ("JPEG", "PNG"):
            return data
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        return buffer.getvalue()


class ManualImageBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """An image classification dataset read from manually downloaded archives.

    Records hold the original encoded image bytes (``image``), the class (``label``, a
    ClassLabel whose names subclasses set from the archive, sorted) and the source file name.
    ``check_num_classes=False`` accepts an archive with fewer classes than the real dataset
    (tests build tiny archives); by default a class count other than ``EXPECTED_NUM_CLASSES``
    is refused, as it means an incomplete or wrong download.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}  # noqa: RUF012 (TFDS reads a plain dict)
    MANUAL_FILES: tuple[str, ...]
    EXPECTED_NUM_CLASSES: int
    HOMEPAGE: str
    DESCRIPTION: str
    IMAGE_SHAPE: tuple[int | None, int | None, int] = (None, None, 3)

    # TFDS 4.9.10 resolves the default code_path through `importlib_resources`, which it does
    # not install on Python >= 3.9 (tensorflow/datasets#11212); the file is all it needs.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(inspect.getfile(cls))

    def __init__(self, *, check_num_classes: bool = True, **kwargs):
        self._check_num_classes = check_num_classes
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=self.IMAGE_SHAPE),
                    "label": tfds.features.ClassLabel(),
                    "image/filename": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
            homepage=self.HOMEPAGE,
        )

    def _manual_file(self, dl_manager: tfds.download.DownloadManager, name: str) -> epath.Path:
        # An epath Path (the manual dir may be a gs:// URL): read it through .open().
        path = dl_manager.manual_dir / name
        if not path.exists():
            raise FileNotFoundError(
                f"{self.name}: {path} not found; {self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        return path

    def _set_class_names(self, class_names: list[str]) -> None:
        if self._check_num_classes and len(class_names) != self.EXPECTED_NUM_CLASSES:
            raise ValueError(
                f"{self.name}: the archive has {len(class_names)} classes, expected "
                f"{self.EXPECTED_NUM_CLASSES}; re-download {', '.join(self.MANUAL_FILES)}"
            )
        self.info.features["label"].names = class_names


def instructions(files: tuple[str, ...], homepage: str) -> str:
    """MANUAL_DOWNLOAD_INSTRUCTIONS text naming the files and where they come from."""
    return (
        f"Download {', '.join(files)} from {homepage} and place them, as downloaded (not "
        "extracted), in the manual dir (default <data_dir>/downloads/manual)."
    )
