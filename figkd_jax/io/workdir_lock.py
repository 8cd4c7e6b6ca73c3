"""One writer per workdir: a lock file naming the launch that holds it.

``<workdir>/lock.json`` holds the holder's host, PID, start time, the time of its
last refresh and a random token. A launch takes it before writing anything
(process 0 only, on several hosts), refreshes it from a background thread and
removes it when the run ends, however it ends short of SIGKILL. A second launch
on the same workdir refuses in one line naming the holder. A lock is stale, and
taken over with a warning, when its holder's process is gone (same host) or it
was not refreshed for `STALE_SECONDS` (any host).

Why a thread rather than the loop's log steps: the time between two log steps
has no bound (compilation, a teacher's evaluation, a large eval split, a slow
checkpoint on object storage), and a lock refreshed there could look stale
while its holder works. A thread refreshes on wall-clock time whatever the loop
does (JAX releases the GIL while it compiles and runs). The loop checks
`WorkdirLock.check` before each checkpoint, so a holder whose lock was taken
over (it stalled past `STALE_SECONDS`) stops before writing again.

How two launches that race for a free or stale lock end with one holder: each
writes its own token, waits `SETTLE_SECONDS`, and reads the file back; only the
one whose token is there proceeds. If B read the lock before A's write and
wrote after A's read-back, B's read came later than A's write (the settle time
exceeds the milliseconds between a launch's read and its write), so B would
have seen A's fresh lock and refused. This needs only read-after-write
consistency, which local disks and GCS (strongly consistent for object reads,
overwrites included) provide. GCS's generation preconditions (create only if
absent, overwrite only the generation read) would close the race without the
wait, but etils epath, through which every path here goes, does not expose
them; the read-back gives the same outcome for launches started by people or
schedulers, which are seconds apart or stall for far less than the settle time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import threading
import time
import uuid

import jax
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

LOCK_FILE = "lock.json"
# The holder rewrites the lock this often; a lock not rewritten for
# STALE_SECONDS (eight missed refreshes) belongs to a dead or frozen launch.
REFRESH_SECONDS = 15.0
STALE_SECONDS = 120.0
# Between writing a claim and reading it back (see the module docstring).
SETTLE_SECONDS = 1.0


class WorkdirLocked(RuntimeError):
    """Another launch holds the workdir, or took it over from this one."""


@dataclasses.dataclass(frozen=True)
class Holder:
    """What a lock file says about the launch that holds it."""

    host: str
    pid: int
    started: float
    refreshed: float
    token: str

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        age = time.time() - self.refreshed
        return (
            f"PID {self.pid} on host {self.host} (started {started}, "
            f"lock refreshed {age:.0f} s ago)"
        )


def read_holder(path: epath.Path) -> Holder | None:
    """The holder named in the lock file `path`; None if there is no lock file.

    Raises ValueError if the file is not a lock written by `WorkdirLock`.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        fields = json.loads(text)
        return Holder(**{f.name: fields[f.name] for f in dataclasses.fields(Holder)})
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a lock file: {e!r}") from None


def stale_reason(holder: Holder) -> str | None:
    """Why the lock of `holder` may be taken over; None while its holder may be alive."""
    if holder.host == socket.gethostname():
        # A restarted container often reuses the PID (and the hostname) of
        # the launch it replaces: a lock naming this very PID is a former life.
        if holder.pid == os.getpid():
            return f"its PID {holder.pid} is this launch's own (a restarted container)"
        if not _process_exists(holder.pid):
            return f"process {holder.pid} is gone"
    age = time.time() - holder.refreshed
    if age > STALE_SECONDS:
        return f"not refreshed for {age:.0f} s (stale after {STALE_SECONDS:.0f} s)"
    return None


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class WorkdirLock:
    """The lock of one workdir, held by this process from `acquire` to `release`."""

    def __init__(self, workdir: str | os.PathLike):
        self.workdir = epath.Path(workdir)
        self.path = self.workdir / LOCK_FILE
        self._token = uuid.uuid4().hex
        self._started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost: str | None = None

    def acquire(self) -> None:
        """Takes the lock, or raises WorkdirLocked naming the launch that holds it."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            holder = read_holder(self.path)
        except ValueError as e:
            logging.warning("Taking over the lock of %s: %s", self.workdir, e)
        else:
            if holder is not None:
                reason = stale_reason(holder)
                if reason is None:
                    raise WorkdirLocked(
                        f"workdir {self.workdir} is in use by {holder.describe()}: wait for "
                        "that launch to end or use another --workdir (if it is gone, "
                        f"remove {self.path})"
                    )
                logging.warning(
                    "Taking over the stale lock of %s from %s: %s",
                    self.workdir,
                    holder.describe(),
                    reason,
                )
        self._write()
        time.sleep(SETTLE_SECONDS)
        holder = self._current_holder()
        if holder is None or holder.token != self._token:
            raise WorkdirLocked(
                f"workdir {self.workdir} was claimed at the same moment by "
                f"{holder.describe() if holder else 'another launch'}: use another --workdir"
            )
        self._thread = threading.Thread(target=self._refresh, name="workdir-lock", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Raises WorkdirLocked if another launch took the lock over."""
        if self._lost is not None:
            raise WorkdirLocked(self._lost)

    def release(self) -> None:
        """Stops refreshing and removes the lock file if it is still this launch's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        holder = self._current_holder()
        if holder is not None and holder.token == self._token:
            self.path.unlink(missing_ok=True)

    def _current_holder(self) -> Holder | None:
        try:
            return read_holder(self.path)
        except ValueError:
            return None

    def _write(self) -> None:
        holder = Holder(
            host=socket.gethostname(),
            pid=os.getpid(),
            started=self._started,
            refreshed=time.time(),
            token=self._token,
        )
        # Written whole then renamed: a reader never sees half a lock.
        tmp = self.path.with_name(f".{LOCK_FILE}.{self._token}.tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(holder)))
        tmp.replace(self.path)

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_SECONDS):
            try:
                holder = self._current_holder()
                if holder is None or holder.token != self._token:
                    by = holder.describe() if holder else "a launch that removed the lock file"
                    self._lost = (
                        f"the lock of workdir {self.workdir} was taken over by {by}: "
                        "stopped before writing another checkpoint"
                    )
                    return
                self._write()
            except OSError as e:  # a storage hiccup: the next refresh retries
                logging.warning("Could not refresh the lock of %s: %s", self.workdir, e)


@contextlib.contextmanager
def hold(workdir: str | os.PathLike):
    """Holds the lock of `workdir` (taken by process 0) for the body; yields the lock,
    or None on the other processes. Every process raises WorkdirLocked if it is held."""
    lock = WorkdirLock(workdir) if jax.process_index() == 0 else None
    refusal = None
    if lock is not None:
        try:
            lock.acquire()
        except WorkdirLocked as e:
            refusal = e
    if jax.process_count() > 1:
        # Every process stops if process 0 could not take the lock.
        taken = multihost_utils.broadcast_one_to_all(np.asarray(refusal is None))
        if not bool(taken) and refusal is None:
            refusal = WorkdirLocked(
                f"workdir {workdir} is in use by another launch (process 0 says which)"
            )
    if refusal is not None:
        raise refusal
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()
