"""The trainer: methods, pure train and eval steps, run set-up, the loop, sweeps, workdirs.

Needs the ``train`` extra; the modules that read datasets also need TensorFlow, which that
extra includes, but the steps, the run set-up and the on-device input do not.
"""

from figkd_jax import extras

extras.require_train()
