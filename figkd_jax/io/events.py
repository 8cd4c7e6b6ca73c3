"""TensorBoard event files that stay consistent across kills, resumptions and object stores.

`Writer` writes the scalars of one training session to its own event file through `storage`,
so the logdir may be a ``gs://`` URL. Locally each flush appends to the session's file. An
object store cannot append, and re-uploading the whole file at each flush would make a run's
upload cost quadratic in its length: there a flush uploads only the records written since the
previous upload, as a new object (atomic: a kill leaves whole objects) named after the session
with a zero-padded part number, so that names sort in writing order, the order in which
TensorBoard reads the event files of a directory. Each record is uploaded once. The training
loop's frequent flushes (`flush(force=False)`) upload at most every `upload_every_s` seconds,
which bounds the number of objects; a forced flush (an evaluation, the end, a preemption)
always uploads.

A run killed after its last checkpoint has already logged some steps that the resumed run
will log again. On resumption the new `Writer` starts from the events of the existing files
with steps <= the restored step, each (tag, step) once, writes them into its own file and then
removes the old files: the history has no duplicates, and since the trainer logs an epoch's
evaluation before checkpointing it, no gaps. A kill in between leaves the old files and the
new one, which the next resumption merges again.
"""

from __future__ import annotations

from figkd_jax import extras

extras.require_tensorflow()

import os
import socket
import tempfile
import time

import tensorflow as tf

from figkd_jax.io import storage

PATTERN = "events.out.tfevents.*"
_FILE_VERSION = "brain.Event:2"


def files(logdir: str) -> list[str]:
    """Names of the event files in `logdir`, in the order TensorBoard reads them."""
    directory = storage.path(logdir)
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.glob(PATTERN))


def _records(path) -> list[bytes]:
    """The records of one TFRecord file at `path` (any storage)."""
    # tf.data reads through TensorFlow's own filesystems, which cannot reach every store
    # epath reaches (nor a storage emulator): read a local copy.
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "events")
        with open(local, "wb") as f:
            f.write(storage.path(path).read_bytes())
        records = []
        try:
            for record in tf.data.TFRecordDataset(local):
                records.append(record.numpy())
        except tf.errors.DataLossError:
            pass  # a local file cut by a kill in the middle of an append: keep what is whole
        return records


def _encode(records: list[bytes]) -> bytes:
    """`records` in the TFRecord framing (lengths and CRCs), as TensorFlow writes it."""
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "events")
        with tf.io.TFRecordWriter(local) as writer:
            for record in records:
                writer.write(record)
        with open(local, "rb") as f:
            return f.read()


def _scalar_events(logdir: str, last_step: int) -> list[tf.compat.v1.Event]:
    """One event per (tag, step <= last_step) of `logdir`'s files, in step order."""
    kept = {}
    for name in files(logdir):
        for record in _records(storage.path(logdir) / name):
            event = tf.compat.v1.Event.FromString(record)
            if event.step > last_step:
                continue
            for value in event.summary.value:
                single = tf.compat.v1.Event(wall_time=event.wall_time, step=event.step)
                single.summary.value.add().CopyFrom(value)
                kept[value.tag, event.step] = single  # a later file's copy wins
    return sorted(kept.values(), key=lambda e: (e.step, e.wall_time))


class Writer:
    """Scalar summaries of a session in its own event file of `logdir`, or its own objects
    on an object store (module docstring).

    `resume_step`: the step the session resumed from; the events of earlier sessions up to
    it are carried over into this session's first write and their files removed.
    `upload_every_s`: on an object store, the least time between two uploads of unforced
    flushes.
    """

    def __init__(self, logdir: str, resume_step: int = 0, upload_every_s: float = 60.0):
        self._logdir = storage.path(logdir)
        self._upload_every_s = upload_every_s
        previous = files(logdir)
        carried = _scalar_events(logdir, resume_step)
        self._name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}"
        self._parts = 0  # objects uploaded (object stores)
        self._last_upload = time.monotonic()
        header = tf.compat.v1.Event(wall_time=time.time(), file_version=_FILE_VERSION)
        self._records = [header.SerializeToString()] + [e.SerializeToString() for e in carried]
        self._flushed = 0  # how many of `_records` are written
        if previous:
            self.flush()
            for old in previous:
                (self._logdir / old).unlink(missing_ok=True)

    def scalar(self, tag: str, value: float, step: int) -> None:
        event = tf.compat.v1.Event(wall_time=time.time(), step=int(step))
        event.summary.value.add(tag=tag, simple_value=float(value))
        self._records.append(event.SerializeToString())

    def flush(self, force: bool = True) -> None:
        """Writes the records logged since the last write; unforced on an object store, only
        if `upload_every_s` has passed since the last upload."""
        new = self._records[self._flushed :]
        if not new:
            return
        if not storage.is_url(self._logdir):
            with (self._logdir / self._name).open("ab") as f:
                f.write(_encode(new))
        elif force or time.monotonic() - self._last_upload >= self._upload_every_s:
            storage.write_bytes(self._logdir / f"{self._name}.{self._parts:06d}", _encode(new))
            self._parts += 1
            self._last_upload = time.monotonic()
        else:
            return
        self._flushed = len(self._records)


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} of every scalar in `logdir`, in file order."""
    scalars: dict[str, list[tuple[int, float]]] = {}
    for name in files(logdir):
        for record in _records(storage.path(logdir) / name):
            event = tf.compat.v1.Event.FromString(record)
            for value in event.summary.value:
                number = (
                    value.simple_value
                    if value.HasField("simple_value")
                    else float(tf.make_ndarray(value.tensor))
                )
                scalars.setdefault(value.tag, []).append((event.step, number))
    return scalars
