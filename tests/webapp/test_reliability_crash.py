"""`kill -9` of the studio, then a restart: nothing accepted is lost and nothing half-written shows.

The team's choice (webapp/services/generation_jobs.py, docs/RELIABILITY.md): jobs a dead process left queued or running
are marked `interrupted` at the next start, never requeued. Image files are written atomically
(temp file, fsync, rename) before their rows commit, and the start-up removes the files a dead
process wrote but never recorded, so `db check` is clean right after the restart.
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from storage.images import TEMP_PREFIX
from storage.types import OPERATOR, GenerationStatus
from tests.webapp.conftest import Live, open_test_storage
from tests.webapp.helpers import generate, png_bytes, start_server_with_account

ROOT = Path(__file__).resolve().parents[2]
LONG_JOB = {"prompt": "a red circle", "steps": 150, "num_images": 8}


def integrity(data_dir: Path) -> str:
    with sqlite3.connect(data_dir / "draftroom.db") as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def db_check(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "db", "check", "--data-dir", str(data_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def temp_files(data_dir: Path) -> list[Path]:
    return [path for store in ("images", "uploads") for path in (data_dir / store).rglob(f"{TEMP_PREFIX}*")]


def assert_every_image_row_is_whole(data_dir: Path) -> int:
    """Every image row's file is there, hashes to the row's name and decodes completely."""
    with sqlite3.connect(data_dir / "draftroom.db") as db:
        rows = db.execute("SELECT id, sha256 FROM images").fetchall()
    for image_id, sha256 in rows:
        path = data_dir / "images" / sha256[:2] / sha256[2:4] / f"{sha256}.png"
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha256, image_id
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    return len(rows)


def wait_running(client: httpx.Client, generation_id: int, timeout: float = 120) -> None:
    """Until the job has made at least one denoising step: the kill must land mid-generation."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/v1/generations/{generation_id}").json()
        if body["status"] == "running" and body["progress"]["step"] >= 1:
            return
        assert body["status"] in ("queued", "running"), body
        time.sleep(0.05)
    raise AssertionError(f"generation {generation_id} never started")


def test_kill_9_during_generation_then_restart(tmp_path: Path, model_path: Path) -> None:
    server, token = start_server_with_account(tmp_path, model_path, "ada", "member", "correct-horse-1")
    data_dir = server.data_dir
    try:
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        done = generate(client, "a blue square")
        accepted = [client.post("/api/v1/generations", json=LONG_JOB).json()["id"] for _ in range(3)]
        wait_running(client, accepted[0])
        server.kill()

        with sqlite3.connect(data_dir / "draftroom.db") as db:
            left = dict(
                db.execute("SELECT id, status FROM generations WHERE id IN (?, ?, ?)", accepted).fetchall()
            )
        assert left[accepted[0]] == "running" and set(left.values()) <= {"queued", "running"}, left
        assert len(left) == len(accepted)

        server.start()
        assert "marked 3 unfinished generation(s) as interrupted" in server.log_text()
        assert integrity(data_dir) == "ok"
        for generation_id in accepted:
            body = client.get(f"/api/v1/generations/{generation_id}").json()
            assert body["status"] == "interrupted" and body["images"] == [], body
            assert "Interrupted" in body["error"]
        listed = client.get("/api/v1/prompts", params={"mine": True, "status": "interrupted"}).json()
        assert sorted(item["generation_id"] for item in listed["items"]) == sorted(accepted)

        before = client.get(f"/api/v1/generations/{done['id']}").json()
        assert before["status"] == "succeeded" and before["images"] == done["images"]
        served = client.get(done["images"][0]["url"])
        assert hashlib.sha256(served.content).hexdigest() == done["images"][0]["sha256"]

        after = generate(client, "a green star")  # the restarted studio works
        assert after["id"] > max(accepted)
        with sqlite3.connect(data_dir / "draftroom.db") as db:
            assert db.execute("SELECT count(*) FROM generations").fetchone()[0] == len(accepted) + 2
    finally:
        server.stop()
    assert temp_files(data_dir) == []
    assert assert_every_image_row_is_whole(data_dir) == 2
    checked = db_check(data_dir)
    assert checked.returncode == 0 and ": 0 problems" in checked.stdout, checked.stdout + checked.stderr


# A crash in the narrow window between writing a file and committing its row -----------------------

CRASHING_CHILD = """
import os, signal, sys
from pathlib import Path
from storage import open_storage
from storage.images import ImageStore
from storage.types import NewImage

data_dir, action, where, user_id, generation_id, payload = sys.argv[1:]
payload = Path(payload).read_bytes()
die = lambda *_args, **_kwargs: os.kill(os.getpid(), signal.SIGKILL)

class HalfWriter:
    # Stands in for the temp file: it gets half the bytes, then the process dies.
    def __init__(self, fd, *_args, **_kwargs): self.fd = fd
    def __enter__(self): return self
    def __exit__(self, *_exc): return False
    def write(self, data): os.write(self.fd, data[: len(data) // 2]); os.fsync(self.fd); die()

if where == "mid-write":
    os.fdopen = HalfWriter
else:  # the file is complete and in place; its row never commits
    put = ImageStore.put
    ImageStore.put = lambda self, data: (put(self, data), die())
storage = open_storage(Path(data_dir))
if action == "generation":
    storage.generations.mark_succeeded(int(generation_id), images=[NewImage(0, payload, 8, 8)])
else:
    storage.uploads.add(int(user_id), payload)
raise SystemExit("the process should have died")
"""


@pytest.mark.parametrize(
    ("action", "where"),
    [("generation", "mid-write"), ("generation", "after-write"), ("upload", "after-write")],
)
def test_a_crash_between_a_file_and_its_row_leaves_nothing_after_restart(
    tmp_path: Path, live: Live, action: str, where: str
) -> None:
    from webapp.server import create_app

    data_dir = tmp_path / "data"
    with open_test_storage(data_dir) as storage:
        user = storage.users.create(OPERATOR, "ada", role="member", password="correct-horse-1").user
        prompt = storage.prompts.create(user.id, text="a red circle")
        generation = storage.generations.create(user.id, prompt.id, model_id="m", model_hash="h", params={})
        storage.generations.mark_running(generation.id)
    payload = tmp_path / "payload.png"
    payload.write_bytes(png_bytes("red", (8, 8)))
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            CRASHING_CHILD,
            str(data_dir),
            action,
            where,
            str(user.id),
            str(generation.id),
            str(payload),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -9, child.stderr  # killed at the chosen point, not finished
    store = data_dir / ("images" if action == "generation" else "uploads")
    leftovers = [path for path in store.rglob("*") if path.is_file()]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(TEMP_PREFIX) == (where == "mid-write")
    assert db_check(data_dir).returncode == 1  # before the restart, the leftover is a problem

    with open_test_storage(data_dir) as storage:
        app = create_app(storage, live.engine)  # the start-up path of `app.py serve`
        app.state.studio.jobs.shutdown()
        after = storage.generations.get(user.id, generation.id)
        assert after.status == GenerationStatus.INTERRUPTED and len(after.images) == 0
    assert [path for path in store.rglob("*") if path.is_file()] == []
    assert integrity(data_dir) == "ok"
    with sqlite3.connect(data_dir / "draftroom.db") as db:
        assert db.execute("SELECT count(*) FROM images").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM uploads").fetchone()[0] == 0
    checked = db_check(data_dir)
    assert checked.returncode == 0 and ": 0 problems" in checked.stdout, checked.stdout
