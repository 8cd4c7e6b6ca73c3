"""Command-line tools over finished runs: report and plots, export, PyTorch conversion.

Needs the ``train`` extra; the report and its plots also the ``report`` extra.
"""

from figkd_jax import extras

extras.require_train()
