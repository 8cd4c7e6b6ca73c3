"""How `storage.write_bytes` reaches its target (figkd_jax/io/storage.py, "Atomicity").

Locally the data goes to ``<name>.tmp``, renamed over ``<name>``: a write that fails midway
leaves the old file. On Cloud Storage the final object is uploaded whole, once: a temporary
object would be one more upload plus a copy and a delete (a rename there is not atomic), and a
kill between them leaves it behind. What lies in the directory afterwards is the same both
ways, so these tests watch the calls that epath receives.
"""

import pytest
from etils.epath import gpath

from figkd_jax.io import storage

BUCKET = "figkd-storage-writes"


@pytest.fixture
def calls(monkeypatch):
    """Every file epath opens for writing and every rename or replace, in order."""
    seen = []
    real_open, real_replace, real_rename = (
        gpath._GPath.open,
        gpath._GPath.replace,
        gpath._GPath.rename,
    )

    def open_(self, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            seen.append(("write", str(self)))
        return real_open(self, mode, *args, **kwargs)

    def replace(self, target):
        seen.append(("rename", str(self), str(storage.path(target))))
        return real_replace(self, target)

    def rename(self, target):
        seen.append(("rename", str(self), str(storage.path(target))))
        return real_rename(self, target)

    monkeypatch.setattr(gpath._GPath, "open", open_)
    monkeypatch.setattr(gpath._GPath, "replace", replace)
    monkeypatch.setattr(gpath._GPath, "rename", rename)
    return seen


def test_a_local_file_is_written_beside_and_renamed_over(tmp_path, calls):
    target = tmp_path / "results.json"
    storage.write_text(target, "old")
    calls.clear()
    storage.write_text(target, "new")
    tmp = f"{target}.tmp"
    assert calls == [("write", tmp), ("rename", tmp, str(target))]
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_a_local_write_that_fails_midway_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    storage.write_text(target, "old")
    real_open = gpath._GPath.open

    class FullDisk:
        """A file that takes a few bytes, then fails as a full disk does."""

        def __init__(self, file):
            self.file = file

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            self.file.write(data[:2])
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(
        gpath._GPath,
        "open",
        lambda self, mode="r", *a, **k: (
            FullDisk(real_open(self, mode, *a, **k))
            if "w" in mode
            else real_open(self, mode, *a, **k)
        ),
    )
    with pytest.raises(OSError, match="No space"):
        storage.write_text(target, "a new, longer text")
    assert target.read_text() == "old"


def test_a_cloud_object_is_uploaded_whole_and_nothing_else(gcs, calls):
    bucket = gcs.create_bucket(BUCKET)
    target = f"{bucket}/run/results.json"
    storage.write_text(target, "old")
    calls.clear()
    storage.write_text(target, "new")
    assert calls == [("write", target)]
    assert storage.path(target).read_text() == "new"
    assert gcs.objects(BUCKET, "run/") == ["run/results.json"]
