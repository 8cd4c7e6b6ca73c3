"""A checkpoint with a few non-finite values is damaged too: resume sets it aside.

tests/test_faults.py damages whole files (truncated); here one value of one array is NaN or
infinite, which orbax restores without complaint. A skipped step is never applied, so the
trainer never writes such a state, and resuming from it would train on garbage.
"""

import asyncio
import gc
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from figkd_jax.trainer import checkpoints, run_setup
from figkd_jax.trainer import workdir as workdir_lib
from tests.train_worker import digits_config


def _with_one_value(tree, value):
    """`tree` with its first floating leaf's first entry set to `value` (one of many)."""
    leaves, treedef = jax.tree.flatten(tree)
    index = next(i for i, x in enumerate(leaves) if jnp.issubdtype(x.dtype, jnp.floating))
    assert leaves[index].size > 1  # partly damaged, not wholly
    leaves[index] = leaves[index].reshape(-1).at[0].set(value).reshape(leaves[index].shape)
    return jax.tree.unflatten(treedef, leaves)


@pytest.mark.parametrize(
    "where, value", [("params", np.nan), ("params", np.inf), ("opt_state", -np.inf)]
)
def test_a_partly_non_finite_checkpoint_is_set_aside_for_the_intact_one(tmp_path, where, value):
    run = run_setup.build_run(digits_config())
    template = run_setup.initial_state(run)
    mngr = workdir_lib.checkpoint_manager(str(tmp_path), keep_last=3)
    intact = template.replace(step=jnp.asarray(1, jnp.int32))
    meta = {"history": [], "best_step": None}
    workdir_lib.save_state(mngr, intact, meta, run, metrics=None)
    damaged = intact.replace(step=jnp.asarray(2, jnp.int32))
    damaged = damaged.replace(**{where: _with_one_value(getattr(damaged, where), value)})
    workdir_lib.save_state(mngr, damaged, meta, run, metrics=None)
    assert mngr.all_steps() == [1, 2]

    state, restored_meta = workdir_lib.resume_state(mngr, template, run)

    assert int(state.step) == 1 and restored_meta["step"] == 1
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(intact.params), strict=True):
        np.testing.assert_array_equal(a, b)
    names = sorted(os.listdir(tmp_path / workdir_lib.CHECKPOINTS_DIR))
    assert len(names) == 2 and names[0] == "1" and names[1].startswith("2.damaged-"), names
    assert mngr.all_steps() == [1]


def test_an_intact_checkpoint_resumes(tmp_path):
    """The check above rejects only damage: a finite state of the same run restores."""
    run = run_setup.build_run(digits_config())
    template = run_setup.initial_state(run)
    mngr = workdir_lib.checkpoint_manager(str(tmp_path), keep_last=3)
    saved = template.replace(step=jnp.asarray(3, jnp.int32))
    workdir_lib.save_state(mngr, saved, {"history": [], "best_step": None}, run, metrics=None)
    state, _ = workdir_lib.resume_state(mngr, template, run)
    assert int(state.step) == 3 and mngr.all_steps() == [3]


def _abandon_failed_reads(error, *, as_task):
    """What orbax leaves when a restore fails: reads whose failure nobody retrieves."""
    loop = asyncio.new_event_loop()

    async def read():
        raise error

    if as_task:
        abandoned = loop.create_task(read())
    else:
        abandoned = loop.create_future()
        abandoned.set_exception(error)
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    del abandoned
    gc.collect()  # asyncio logs an unretrieved failure when its future is collected


@pytest.mark.parametrize("as_task", [True, False], ids=["task", "future"])
def test_abandoned_checkpoint_reads_stay_off_the_log_and_other_failures_do_not(caplog, as_task):
    """Which of orbax's abandoned reads asyncio reports first, as a Task or a bare Future,
    varies from run to run; either would print a traceback under the one warning line."""
    checkpoints.silence_abandoned_reads()
    gc.collect()  # what earlier tests left is reported now, outside the capture
    read_error = Exception(
        "Encountered error while reading array index: (slice(0, 3, 1),). "
        "See full TensorStore details: <bound method spec of TensorStore({...})>."
    )
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        _abandon_failed_reads(read_error, as_task=as_task)
        assert caplog.records == []
        _abandon_failed_reads(ValueError("an unrelated failure"), as_task=as_task)
    kind = "Task" if as_task else "Future"
    assert [r.getMessage().splitlines()[0] for r in caplog.records] == [
        f"{kind} exception was never retrieved"
    ]
