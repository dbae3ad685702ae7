"""Consistency between the database and the file stores: `python app.py db check [--repair]`.

Finds rows without files, files without rows, files whose bytes do not match their hash, stray and
temp files. `repair` does only what is safe:
- orphan and temp files older than a grace period are deleted (a younger one may belong to a
  generation being recorded right now: files are written before their rows commit);
- corrupt and stray files are moved to `<data-dir>/quarantine/`, never deleted;
- rows whose file is gone are marked `file_missing` (their review history stays), and unmarked
  when the file comes back.
Rows are read before files are listed, so a generation committing during the check can only show
up as a young orphan, never as a row without a file.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from sqlalchemy import select, update

from ..db import Database
from ..images import TEMP_PREFIX, ImageStore
from ..models import Image, Upload, utcnow
from ..types import CheckReport, Problem, ProblemKind
from .helpers import Service

ORPHAN_GRACE_S = 15 * 60
_CHUNK = 1 << 20


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class CheckService(Service):
    """An operator's tool (the CLI); it acts for no user."""

    def __init__(self, db: Database, images: ImageStore, uploads: ImageStore, quarantine: Path) -> None:
        super().__init__(db)
        self.stores: dict[str, tuple[ImageStore, type[Image] | type[Upload]]] = {
            "images": (images, Image),
            "uploads": (uploads, Upload),
        }
        self.quarantine = quarantine

    def run(self, *, repair: bool = False, orphan_grace_s: float = ORPHAN_GRACE_S) -> CheckReport:
        problems: list[Problem] = []
        rows = files = 0
        for name, (store, model) in self.stores.items():
            found, row_count, file_count = self._check_store(name, store, model, repair, orphan_grace_s)
            problems += found
            rows += row_count
            files += file_count
        return CheckReport(tuple(problems), rows, files)

    def _check_store(
        self, name: str, store: ImageStore, model: type[Image] | type[Upload], repair: bool, grace_s: float
    ) -> tuple[list[Problem], int, int]:
        with self.db.read() as session:
            rows = session.execute(select(model.sha256, model.file_missing)).all()
        marked_missing: dict[str, bool] = {}  # sha256 -> every row with it is marked missing
        for row_sha256, row_missing in rows:
            marked_missing[row_sha256] = marked_missing.get(row_sha256, True) and row_missing
        problems: list[Problem] = []
        present: set[str] = set()
        corrupt: set[str] = set()
        file_count = 0
        cutoff = time.time() - grace_s

        def report(
            kind: ProblemKind, relpath: str, detail: str, act: bool, action: Callable[[], object]
        ) -> None:
            if act:
                action()
            problems.append(Problem(kind, name, relpath, detail, repaired=act))

        for relpath, path in store.walk():
            file_count += 1
            old = path.stat().st_mtime < cutoff
            sha256 = store.sha256_of_relpath(relpath)
            if path.name.startswith(TEMP_PREFIX):
                report(
                    ProblemKind.TEMP_FILE,
                    relpath,
                    "left by an interrupted write",
                    repair and old,
                    partial(path.unlink, missing_ok=True),
                )
            elif sha256 is None:
                report(
                    ProblemKind.STRAY_FILE,
                    relpath,
                    "not a file this store wrote",
                    repair,
                    partial(self._quarantine, name, relpath, path),
                )
            elif sha256 not in marked_missing:
                recent = "" if old else "; recent, may belong to a job being recorded"
                report(
                    ProblemKind.ORPHAN_FILE,
                    relpath,
                    "no row refers to it" + recent,
                    repair and old,
                    partial(store.delete, sha256),
                )
            elif _file_sha256(path) != sha256:
                corrupt.add(sha256)
                report(
                    ProblemKind.HASH_MISMATCH,
                    relpath,
                    "its bytes do not match its name",
                    repair,
                    partial(self._quarantine, name, relpath, path),
                )
            else:
                present.add(sha256)
                if marked_missing[sha256]:
                    report(
                        ProblemKind.FILE_BACK,
                        relpath,
                        "marked missing, but the file is there",
                        repair,
                        partial(self._mark, model, sha256, False),
                    )
        for sha256, missing in marked_missing.items():
            if sha256 in present or (missing and sha256 not in corrupt):
                continue  # fine, or already known to be missing
            if sha256 not in corrupt:
                problems.append(
                    Problem(
                        ProblemKind.MISSING_FILE,
                        name,
                        store.relpath_for(sha256),
                        "a row refers to it, but the file is gone",
                        repaired=repair,
                    )
                )
            if repair:
                self._mark(model, sha256, True)
        return problems, len(rows), file_count

    def remove_interrupted_writes(self, older_than_s: float = 0.0) -> list[Problem]:
        """Delete temp files and files no row refers to, older than `older_than_s` (by default whatever
        their age); returns what was deleted.

        Files are written before their rows commit, so a process killed in between leaves a temp
        file or an orphan that `run` spares for ORPHAN_GRACE_S (it cannot tell them from a write in
        progress). Call this only at start-up, before the process accepts work (as
        `GenerationService.interrupt_jobs_of`): when no other front-end shares the stores, no write is
        in progress and every such file is a dead process's leftover. When others are live they may be
        writing, so pass ORPHAN_GRACE_S, as `run` does. No file is hashed, so it is cheap.
        """
        removed: list[Problem] = []
        cutoff = time.time() - older_than_s
        for name, (store, model) in self.stores.items():
            with self.db.read() as session:
                referenced = set(session.scalars(select(model.sha256)))
            for relpath, path in store.walk():
                sha256 = store.sha256_of_relpath(relpath)
                try:
                    if older_than_s and path.stat().st_mtime >= cutoff:
                        continue
                except FileNotFoundError:  # another front-end's write renamed it meanwhile
                    continue
                if path.name.startswith(TEMP_PREFIX):
                    path.unlink(missing_ok=True)
                    removed.append(
                        Problem(ProblemKind.TEMP_FILE, name, relpath, "left by an interrupted write", True)
                    )
                elif sha256 is not None and sha256 not in referenced:
                    store.delete(sha256)
                    removed.append(
                        Problem(ProblemKind.ORPHAN_FILE, name, relpath, "written, never recorded", True)
                    )
        return removed

    def _quarantine(self, store: str, relpath: str, path: Path) -> None:
        target = self.quarantine / store / f"{utcnow():%Y%m%dT%H%M%S}-{relpath.replace('/', '_')}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)

    def _mark(self, model: type[Image] | type[Upload], sha256: str, missing: bool) -> None:
        with self.write() as session:
            session.execute(update(model).where(model.sha256 == sha256).values(file_missing=missing))
