"""The content-addressed image store."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from storage.errors import ValidationFailed
from storage.images import ImageStore


def test_put_stores_bytes_under_their_hash_in_two_levels_of_folders(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    data = b"\x89PNG not really"
    stored = store.put(data)
    digest = hashlib.sha256(data).hexdigest()
    assert stored.sha256 == digest and stored.size == len(data) and stored.created
    assert stored.relpath == f"{digest[:2]}/{digest[2:4]}/{digest}.png"
    assert (tmp_path / "images" / stored.relpath).read_bytes() == data
    assert store.exists(digest) and store.read(digest) == data


def test_putting_the_same_bytes_again_writes_nothing_new(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    first = store.put(b"same")
    mtime = store.path_for(first.sha256).stat().st_mtime_ns
    again = store.put(b"same")
    assert again.sha256 == first.sha256 and not again.created
    assert store.path_for(first.sha256).stat().st_mtime_ns == mtime


def test_writes_leave_no_temp_files_even_when_they_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ImageStore(tmp_path)
    store.put(b"one")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        store.put(b"two")
    names = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert names == [f"{hashlib.sha256(b'one').hexdigest()}.png"]


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "A" * 64, "0" * 63, "0" * 65, "g" * 64, "", "0" * 62 + "/."]
)
def test_paths_only_come_from_valid_hex_digests(tmp_path: Path, bad: str) -> None:
    store = ImageStore(tmp_path)
    with pytest.raises(ValidationFailed) as error:
        store.path_for(bad)
    assert error.value.field == "sha256"


def test_delete_removes_the_file_once(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    stored = store.put(b"gone soon")
    assert store.delete(stored.sha256)
    assert not store.exists(stored.sha256)
    assert not store.delete(stored.sha256)


def test_only_well_formed_paths_name_a_hash(tmp_path: Path) -> None:
    stored = ImageStore(tmp_path).put(b"x")
    assert ImageStore.sha256_of_relpath(stored.relpath) == stored.sha256
    assert ImageStore.sha256_of_relpath(f"00/00/{stored.sha256}.png") is None
    assert ImageStore.sha256_of_relpath("notes.txt") is None
