"""Content-addressed file store: `<root>/ab/cd/<sha256>.png`, written atomically.

Files are named by the SHA-256 of their bytes, so a path is derived from a validated hex digest,
never from anything a user typed. A write goes to a temp file in the target directory, is fsynced,
renamed into place and the directory fsynced: after a crash a file is either whole or absent.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import ValidationFailed

_SHA256 = re.compile(r"[0-9a-f]{64}")
TEMP_PREFIX = ".tmp-"
SUFFIX = ".png"


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    relpath: str
    size: int
    created: bool
    """False when an identical file was already there: nothing new was written."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(target: Path, write: Callable[[BinaryIO], object], prefix: str = TEMP_PREFIX) -> None:
    """Write through a temp file in the target's folder, fsync, rename, fsync the folder.

    After a crash at any point the target is either whole or absent, never half-written.
    """
    fd, temp_name = tempfile.mkstemp(prefix=prefix, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


class ImageStore:
    """Files addressed by their SHA-256 under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def relpath_for(sha256: str) -> str:
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            raise ValidationFailed("sha256", "An image id must be 64 lowercase hexadecimal characters.")
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}{SUFFIX}"

    def path_for(self, sha256: str) -> Path:
        return self.root / self.relpath_for(sha256)

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def read(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()

    def put(self, data: bytes) -> StoredFile:
        """Store `data` under its hash; a no-op (created=False) when the same bytes are already stored."""
        sha256 = sha256_hex(data)
        relpath = self.relpath_for(sha256)
        target = self.root / relpath
        if target.is_file() and target.stat().st_size == len(data):
            return StoredFile(sha256, relpath, len(data), created=False)
        self._make_dirs(target.parent)
        write_atomically(target, lambda handle: handle.write(data))
        return StoredFile(sha256, relpath, len(data), created=True)

    def delete(self, sha256: str) -> bool:
        path = self.path_for(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    def _make_dirs(self, directory: Path) -> None:
        """Create `ab/cd/`, fsyncing each parent whose entry list changed so the new dirs survive a crash."""
        missing: list[Path] = []
        current = directory
        while not current.exists():
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            path.mkdir(exist_ok=True)
            _fsync_dir(path.parent)

    def walk(self) -> Iterator[tuple[str, Path]]:
        """Every file under the root as (relpath, path), for the consistency check."""
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for name in filenames:
                path = Path(dirpath) / name
                yield path.relative_to(self.root).as_posix(), path

    @classmethod
    def sha256_of_relpath(cls, relpath: str) -> str | None:
        """The hash a well-formed relpath names, or None for anything else (temp files, strays)."""
        name = relpath.rsplit("/", 1)[-1].removesuffix(SUFFIX)
        if _SHA256.fullmatch(name) and relpath == cls.relpath_for(name):
            return name
        return None
