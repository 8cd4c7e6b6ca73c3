"""TFDS builders of the datasets that must be downloaded by hand; importing registers them.

Build one with ``python -m figkd_jax.data.prepare --dataset=<name> --data_dir=<data_dir>``
(``--manual_dir`` defaults to <data_dir>/downloads/manual).
"""

from figkd_jax.data.builders.mit67 import Mit67
from figkd_jax.data.builders.stanford40 import Stanford40
from figkd_jax.data.builders.tiny_imagenet import TinyImagenet

__all__ = ["Mit67", "Stanford40", "TinyImagenet"]
