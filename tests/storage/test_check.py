"""`db check`: each kind of problem is found, and `repair` fixes what is safe."""

from __future__ import annotations

import os
import time
from pathlib import Path

from storage import Storage
from storage.images import ImageStore
from storage.types import Decision, ProblemKind, ReviewStatus

from .conftest import People
from .helpers import generate, plain_png


def _kinds(storage: Storage, **kwargs: object) -> list[tuple[ProblemKind, str, bool]]:
    report = storage.check.run(**kwargs)  # type: ignore[arg-type]
    return sorted((p.kind, p.store, p.repaired) for p in report.problems)


def _age(path: Path, seconds: float = 3600) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_consistent_store_passes(storage: Storage, people: People) -> None:
    generate(storage, people.alice, images=3)
    storage.uploads.add(people.alice, plain_png())
    report = storage.check.run()
    assert report.ok and report.problems == () and (report.rows, report.files) == (4, 4)


def test_a_row_without_its_file_is_found_and_marked(storage: Storage, people: People) -> None:
    image = generate(storage, people.alice, images=1).images[0]
    storage.reviews.submit(people.alice, image.id)
    storage.reviews.decide(people.rita, image.id, Decision.APPROVE)
    backup = storage.images.read(image.sha256)
    storage.images.path_for(image.sha256).unlink()
    assert _kinds(storage) == [(ProblemKind.MISSING_FILE, "images", False)]
    assert not storage.check.run().ok
    assert _kinds(storage, repair=True) == [(ProblemKind.MISSING_FILE, "images", True)]
    after = storage.generations.image(people.alice, image.id)
    assert after.file_missing and after.review_status == ReviewStatus.APPROVED  # history stays
    assert storage.check.run().ok  # known and marked: no longer a problem
    storage.images.put(backup)  # restored from a backup
    assert _kinds(storage, repair=True) == [(ProblemKind.FILE_BACK, "images", True)]
    assert not storage.generations.image(people.alice, image.id).file_missing


def test_orphans_are_deleted_only_once_old_enough(storage: Storage, people: People) -> None:
    stored = storage.images.put(b"written, then the process died before the commit")
    assert _kinds(storage, repair=True) == [
        (ProblemKind.ORPHAN_FILE, "images", False)
    ]  # young: maybe in flight
    assert storage.images.exists(stored.sha256)
    _age(storage.images.path_for(stored.sha256))
    assert _kinds(storage, repair=True) == [(ProblemKind.ORPHAN_FILE, "images", True)]
    assert not storage.images.exists(stored.sha256)
    assert storage.check.run().ok


def test_hash_mismatches_are_quarantined_and_marked(storage: Storage, people: People) -> None:
    image = generate(storage, people.alice, images=1).images[0]
    storage.images.path_for(image.sha256).write_bytes(b"bit rot")
    assert _kinds(storage) == [(ProblemKind.HASH_MISMATCH, "images", False)]
    assert _kinds(storage, repair=True) == [(ProblemKind.HASH_MISMATCH, "images", True)]
    assert [p.read_bytes() for p in (storage.data_dir / "quarantine" / "images").iterdir()] == [b"bit rot"]
    assert storage.generations.image(people.alice, image.id).file_missing
    assert storage.check.run().ok


def test_stray_and_temp_files_in_the_upload_store(storage: Storage, people: People) -> None:
    storage.uploads.add(people.alice, plain_png())
    root = storage.upload_store.root
    (root / "notes.txt").write_text("someone put this here")
    temp = root / "ab" / "cd" / ".tmp-12345"
    temp.parent.mkdir(parents=True, exist_ok=True)
    temp.write_bytes(b"half a png")
    _age(temp)
    assert _kinds(storage) == [
        (ProblemKind.STRAY_FILE, "uploads", False),
        (ProblemKind.TEMP_FILE, "uploads", False),
    ]
    assert _kinds(storage, repair=True) == [
        (ProblemKind.STRAY_FILE, "uploads", True),
        (ProblemKind.TEMP_FILE, "uploads", True),
    ]
    assert not temp.exists() and not (root / "notes.txt").exists()
    assert (storage.data_dir / "quarantine" / "uploads").is_dir()
    assert storage.check.run().ok


def test_an_upload_row_without_its_file(storage: Storage, people: People) -> None:
    upload = storage.uploads.add(people.alice, plain_png())
    ImageStore(storage.upload_store.root).delete(upload.sha256)
    assert _kinds(storage) == [(ProblemKind.MISSING_FILE, "uploads", False)]
    assert _kinds(storage, repair=True) == [(ProblemKind.MISSING_FILE, "uploads", True)]
    assert storage.check.run().ok
