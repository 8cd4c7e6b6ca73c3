"""Paths, event files and the workdir lock: the one filesystem layer (local and ``gs://``).

Needs the ``train`` extra (etils epath, gcsfs); the event writer also TensorFlow.
"""

from figkd_jax import extras

extras.require_train()
