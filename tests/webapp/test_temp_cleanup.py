"""Temporary files age out: image copies handed to Gradio, export zips, and Gradio's own cache."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

from tests.webapp.conftest import Live
from webapp.ui.common import SWEEP_EVERY_S, TEMP_MAX_AGE_S, TempFolder


class Clock:
    def __init__(self) -> None:
        self.now = 2_000_000_000.0

    def __call__(self) -> float:
        return self.now


def aged(path: Path, mtime: float) -> Path:
    os.utime(path, (mtime, mtime))
    return path


def test_files_older_than_the_max_age_are_swept_and_new_ones_kept() -> None:
    clock = Clock()
    folder = TempFolder(f"draftroom-test-{uuid.uuid4().hex}-", max_age_s=100, sweep_every_s=50, clock=clock)
    (folder.path / "zip").mkdir()
    for name in ("old.png", "zip/export.zip", "fresh.png"):
        (folder.path / name).write_bytes(b"x")
    old, nested, fresh = (
        aged(folder.path / name, clock.now - age)
        for name, age in (("old.png", 101), ("zip/export.zip", 101), ("fresh.png", 10))
    )
    aged(folder.path / "zip", clock.now - 101)
    folder.maybe_sweep()  # the last sweep was just now: nothing yet
    assert old.exists()
    clock.now += 50
    folder.maybe_sweep()
    assert not old.exists() and not nested.exists() and not (folder.path / "zip").exists()
    assert fresh.exists() and folder.path.is_dir()


def test_folders_left_by_earlier_processes_are_removed_once_old() -> None:
    prefix = f"draftroom-test-{uuid.uuid4().hex}-"
    clock = Clock()
    stale = Path(tempfile.mkdtemp(prefix=prefix))
    (stale / "draftroom-1.png").write_bytes(b"x")
    aged(stale, clock.now - 1000)
    recent = Path(tempfile.mkdtemp(prefix=prefix))
    aged(recent, clock.now - 10)
    current = TempFolder(prefix, max_age_s=100, clock=clock)
    assert not stale.exists() and recent.is_dir() and current.path.is_dir()


def test_gradio_deletes_its_cached_files_by_age(live: Live) -> None:
    from webapp.ui import build_ui

    assert build_ui(live.studio).delete_cache == (SWEEP_EVERY_S, TEMP_MAX_AGE_S)
