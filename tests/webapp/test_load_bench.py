"""bench/load.py at CI size (4 users x 2 requests, 2 steps): the load held and nothing was lost.
Its full size (16 x 10) is run by hand; docs/RELIABILITY.md has the figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.load import Accepted, Record, verify

ROOT = Path(__file__).resolve().parents[2]
OUTCOMES = [
    "text: generated",
    "guided: generated",
    "mix: generated",
    "cancel: ",
    "submit: submitted",
    "search: answered",
    "review: ",
]


def test_the_load_benchmark_holds_and_loses_nothing(tmp_path: Path, model_path: Path) -> None:
    data_dir = tmp_path / "data"
    run = subprocess.run(
        [
            sys.executable,
            "bench/load.py",
            "--users",
            "4",
            "--requests",
            "2",
            "--steps",
            "2",
            "--model",
            str(model_path),
            "--data-dir",
            str(data_dir),
            "--time-limit",
            "300",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    printed = run.stdout
    assert "errors by kind: none" in printed and "verified: " in printed, printed
    assert all(outcome in printed for outcome in OUTCOMES), printed
    assert "p50 " in printed and "p95 " in printed and "requests/s" in printed

    # The checks can fail: a generation nobody recorded, and an image file changed on disk.
    record = Record(deadline=0)
    record.accepted[10**9] = Accepted(user="nobody", num_images=1)
    assert any("vanished" in problem for problem in verify(data_dir, [], record))
    image = next((data_dir / "images").rglob("*.png"))
    image.write_bytes(image.read_bytes() + b"tampered")
    assert any("db check exited 1" in problem for problem in verify(data_dir, [], Record(deadline=0)))
