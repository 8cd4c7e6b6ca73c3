"""TensorBoard event files that stay consistent across kills and resumptions.

A run killed after its last checkpoint has already logged some steps that
the resumed run will log again. On resumption, `truncate_events` rewrites
the workdir's event files so that they hold each (tag, step) once and
nothing after the restored step: the history has no duplicates, and since
the trainer logs an epoch's evaluation before checkpointing it, no gaps.
"""

from __future__ import annotations

import glob
import os
import socket
import time

import tensorflow as tf

PATTERN = "events.out.tfevents.*"


def files(logdir: str) -> list[str]:
    """Names of the event files in `logdir`, in the order TensorBoard reads them."""
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(logdir, PATTERN)))


def truncate_events(logdir: str, last_step: int) -> int:
    """Keeps the events of steps <= `last_step`, once per (tag, step); returns how many.

    The kept events go to one new file, atomically renamed into place before
    the old files are removed, so a kill at any point leaves either the old
    files (still truncated by the next resumption) or the new one.
    """
    paths = [os.path.join(logdir, name) for name in files(logdir)]
    if not paths:
        return 0
    header, kept = None, {}
    for path in paths:
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            if not event.summary.value:
                header = header or event  # the file_version record
                continue
            if event.step > last_step:
                continue
            for value in event.summary.value:
                single = tf.compat.v1.Event(wall_time=event.wall_time, step=event.step)
                single.summary.value.add().CopyFrom(value)
                kept[value.tag, event.step] = single  # a later file's copy wins
    name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}.resumed"
    tmp = os.path.join(logdir, f".{name}.tmp")
    with tf.io.TFRecordWriter(tmp) as writer:
        if header is not None:
            writer.write(header.SerializeToString())
        for event in sorted(kept.values(), key=lambda e: (e.step, e.wall_time)):
            writer.write(event.SerializeToString())
    os.replace(tmp, os.path.join(logdir, name))
    for path in paths:
        os.remove(path)
    return len(kept)


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} of every scalar in `logdir`, in file order."""
    scalars: dict[str, list[tuple[int, float]]] = {}
    for name in files(logdir):
        for record in tf.data.TFRecordDataset(os.path.join(logdir, name)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                number = (
                    value.simple_value
                    if value.HasField("simple_value")
                    else float(tf.make_ndarray(value.tensor))
                )
                scalars.setdefault(value.tag, []).append((event.step, number))
    return scalars
