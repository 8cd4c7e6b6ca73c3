"""Paths that may be local or URLs (``gs://bucket/...``): one filesystem layer, etils `epath`.

Every file the project reads or writes goes through `path(...)`, never through ``open``,
``os.path`` or ``shutil``, so a workdir, a data dir, a teacher or an output directory can be
a Cloud Storage URL (or any scheme epath knows: ``s3://``, ``az://``). orbax reaches the same
URLs through epath (metadata) and tensorstore (arrays).

Atomicity. Locally a file is written to ``<name>.tmp`` and renamed over ``<name>``: a kill
leaves the old file or the new one. On an object store a rename is a copy and a delete (not
atomic), but the upload of a single object is: the object is replaced whole when the upload
completes, so a kill leaves the old object or the new one there too. `write_bytes` therefore
uploads the final object directly, and a reader never sees half a file on either.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading

# epath reaches gs:// through TensorFlow's filesystem when TensorFlow is installed, else through
# gcsfs. gcsfs it is, always: the same layer the emulator tests exercise (TensorFlow's cannot be
# pointed at an emulator), and the data-free tools (report, export) then need no TensorFlow.
# Read by epath at each call, so setting it before the first gs:// access suffices.
os.environ.setdefault("EPATH_USE_TF", "false")

from etils import epath

# Written by `check_writable`, read back by every process of a multi-host run.
MARKER = ".write_check"
# Schemes that epath (and orbax through it) can open.
SCHEMES = ("gs", "s3", "az")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(/*)")
_ACCESS_HINT = (
    "check the bucket name and that this machine has credentials with write access "
    "(`gcloud auth application-default login`, or a VM service account with the "
    "Storage Object Admin role)"
)


# The start-up probe's deadline. The storage clients retry a failing request for a long time
# (gcsfs: 6 tries with exponential back-off, about 30 s per request, a traceback logged per
# try), which suits a transient error during training but not a mistyped bucket, missing
# credentials or no route to Cloud Storage at start-up.
PROBE_TIMEOUT_S = 10.0


class StorageError(ValueError):
    """A path cannot be used (bad URL, unreachable, not writable); the message says why."""


def is_url(location: str | epath.Path) -> bool:
    """Whether `location` names an object store (``gs://...``) rather than a local path."""
    match = _URL.match(str(location))
    return bool(match) and match.group(2) == "//"


def path(location: str | epath.Path) -> epath.Path:
    """`location` as an epath Path: a URL as is, a local path made absolute.

    Raises StorageError for a URL-like string epath would silently take as a local path
    (``gs:/bucket``, ``gs:bucket``) and for an unknown scheme (``gcs://bucket``).
    """
    text = str(location)
    match = _URL.match(text)
    # Windows drive letters ("C:\\") are one letter; no scheme is.
    if match and len(match.group(1)) > 1:
        scheme, slashes = match.groups()
        if scheme not in SCHEMES:
            raise StorageError(
                f"{text}: unknown storage scheme {scheme!r}; use gs://bucket/... for Cloud "
                f"Storage ({', '.join(s + '://' for s in SCHEMES)} are supported) or a local path"
            )
        if slashes != "//":
            raise StorageError(
                f"{text}: a URL needs two slashes after the scheme: {scheme}://"
                f"{text[match.end() :]}"
            )
        return epath.Path(text)
    return epath.Path(text).expanduser().absolute()


def write_bytes(target: str | epath.Path, data: bytes) -> None:
    """Writes `data` so that a reader or a kill never sees half of it (module docstring)."""
    target = path(target)
    if is_url(target):
        target.write_bytes(data)  # one object upload: atomic
        return
    tmp = target.with_name(f"{target.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)


def write_text(target: str | epath.Path, text: str) -> None:
    write_bytes(target, text.encode())


def check_writable(
    directory: str | epath.Path, timeout_s: float = PROBE_TIMEOUT_S, marker: str = MARKER
) -> str:
    """Creates `directory`, writes and reads back a marker with a random token; returns it.

    The marker (``.write_check``) is left for `check_shared` to read; `remove_marker` removes
    it. Raises StorageError with one line naming the directory and what to do when it cannot
    be created or written (missing bucket, no credentials, no permission, unreachable), within
    `timeout_s` seconds for a URL (see `PROBE_TIMEOUT_S`).
    """
    directory = path(directory)
    token = secrets.token_hex(16)

    def probe():
        directory.mkdir(parents=True, exist_ok=True)
        write_bytes(directory / marker, token.encode())
        return (directory / marker).read_text()

    try:
        written = _within(timeout_s, probe) if is_url(directory) else probe()
    except TimeoutError:
        raise StorageError(
            f"cannot reach {directory}: no answer from the storage service within {timeout_s:g} "
            f"s (no network route to it, or refused credentials being retried): {_ACCESS_HINT}"
        ) from None
    except Exception as e:  # each backend fails its own way (OSError, HttpError, auth errors)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        hint = _ACCESS_HINT if is_url(directory) else "choose a directory you can write to"
        raise StorageError(f"cannot write to {directory} ({reason}): {hint}") from None
    if written != token:
        raise StorageError(f"{directory} did not read back what was written to it")
    return token


def _within(timeout_s: float, function):
    """`function()`, or TimeoutError after `timeout_s` seconds.

    The call goes on in a daemon thread after a timeout (no client can be interrupted
    mid-request); the storage clients' loggers are silenced for the call so that their
    retries print no tracebacks, and stay silenced after a timeout, which ends the launch.
    """
    loggers = [logging.getLogger(name) for name in ("gcsfs", "fsspec", "google.auth")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    outcome: dict = {}

    def call():
        try:
            outcome["value"] = function()
        except BaseException as e:  # handed to the caller
            outcome["error"] = e

    thread = threading.Thread(target=call, daemon=True, name="storage-probe")
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def probe(directory: str | epath.Path, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """`check_writable` under a marker of this call's own, removed afterwards: the launcher's
    early check, safe while the other processes of a run check the shared marker."""
    marker = f"{MARKER}.{secrets.token_hex(8)}"
    check_writable(directory, timeout_s, marker)
    _within(timeout_s, lambda: (path(directory) / marker).unlink(missing_ok=True))


def copy_tree(
    source: str | epath.Path, target: str | epath.Path, last: tuple[str, ...] = ()
) -> list[str]:
    """Copies every file under `source` to the same relative path under `target` where that
    is missing or of another size; returns the relative paths copied.

    Either side may be a URL. Each file is written whole (`write_bytes`; locally through a
    temporary name of this process's own, so that processes mirroring the same tree at once
    do not collide). Files named in `last` are copied after all others: a reader that waits
    for them (TFDS's ``dataset_info.json``) never sees a partial tree.
    """
    source, target = path(source), path(target)
    # gcsfs walks an object store without the URL's scheme ("bucket/dir"): compare without.
    root = str(source).split("://", 1)[-1].rstrip("/")
    relative = sorted(
        (
            "/".join(
                filter(None, (str(directory).split("://", 1)[-1][len(root) :].strip("/"), name))
            )
            for directory, _, names in source.walk()
            for name in names
        ),
        key=lambda name: (name.rsplit("/", 1)[-1] in last, name),
    )
    copied = []
    for name in relative:
        destination = target / name
        if destination.exists() and destination.stat().length == (source / name).stat().length:
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        data = (source / name).read_bytes()
        if is_url(destination):
            destination.write_bytes(data)
        else:
            tmp = destination.with_name(f"{destination.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(destination)
        copied.append(name)
    return copied


def read_marker(directory: str | epath.Path) -> str | None:
    """The token of `directory`'s marker, or None if this machine cannot see it."""
    try:
        return (path(directory) / MARKER).read_text()
    except Exception:  # missing or unreadable: either way not the shared marker
        return None


def remove_marker(directory: str | epath.Path) -> None:
    (path(directory) / MARKER).unlink(missing_ok=True)
