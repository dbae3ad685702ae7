"""The generation job service's bookkeeping around a real engine: a stopped server leaves no job queued or running,
and a full queue is refused with 429 and a final row rather than a silent loss."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from storage.types import OPERATOR, GenerationStatus, HistoryQuery
from tests.webapp.conftest import open_test_storage


def test_stopping_the_server_marks_unfinished_jobs_interrupted(tmp_path: Path, model_path: Path) -> None:
    from model.engine import LocalEngine
    from webapp.server import create_app

    engine = LocalEngine.from_path(model_path, device="cpu", max_queue=1)
    with open_test_storage(tmp_path) as storage:
        user = storage.users.create(OPERATOR, "ada", password="correct-horse-1").user
        token = storage.tokens.create(OPERATOR, user.id).secret
        info = engine.model_info
        long_job = {"prompt": "a red circle", "steps": info.max_steps, "num_images": info.max_images}
        with TestClient(create_app(storage, engine), base_url="http://localhost") as client:
            client.headers["Authorization"] = f"Bearer {token}"
            running = client.post("/api/v1/generations", json=long_job).json()["id"]
            deadline = time.monotonic() + 30
            while client.get(f"/api/v1/generations/{running}").json()["status"] != "running":
                assert time.monotonic() < deadline, "the long job never started"
                time.sleep(0.02)
            queued = client.post("/api/v1/generations", json={**long_job, "steps": 3})
            full = client.post("/api/v1/generations", json={**long_job, "steps": 4})
            assert queued.status_code == 202
            assert full.status_code == 429 and full.json()["error"] == "queue_full"
        engine.shutdown(wait=True)  # the job service cancelled what was left, so this returns at once
        outcome = {
            item.generation.id: item.generation
            for item in storage.history.search(user.id, HistoryQuery(mine=True)).items
        }
    assert (
        outcome.pop(running).status == outcome.pop(queued.json()["id"]).status == GenerationStatus.INTERRUPTED
    )
    [refused] = outcome.values()
    assert refused.status == GenerationStatus.FAILED and "queue" in refused.error


def test_a_member_at_their_limit_gets_429_naming_it_while_another_member_gets_202(
    tmp_path: Path, model_path: Path
) -> None:
    from model.engine import LocalEngine
    from webapp.server import create_app

    engine = LocalEngine.from_path(model_path, device="cpu", max_queue=10, max_user_jobs=2)
    with open_test_storage(tmp_path) as storage:
        tokens = {}
        for name in ("greedy", "patient"):
            user = storage.users.create(OPERATOR, name, password="correct-horse-1").user
            tokens[name] = {"Authorization": f"Bearer {storage.tokens.create(OPERATOR, user.id).secret}"}
        info = engine.model_info
        long_job = {"prompt": "a red circle", "steps": info.max_steps, "num_images": info.max_images}
        with TestClient(create_app(storage, engine), base_url="http://localhost") as client:
            running = client.post("/api/v1/generations", json=long_job, headers=tokens["greedy"]).json()["id"]
            deadline = time.monotonic() + 30
            while (
                client.get(f"/api/v1/generations/{running}", headers=tokens["greedy"]).json()["status"]
                != "running"
            ):
                assert time.monotonic() < deadline, "the long job never started"
                time.sleep(0.02)
            queued = [
                client.post("/api/v1/generations", json={**long_job, "steps": 3}, headers=tokens["greedy"])
                for _ in range(2)
            ]
            over = client.post("/api/v1/generations", json={**long_job, "steps": 3}, headers=tokens["greedy"])
            other = client.post(
                "/api/v1/generations", json={**long_job, "steps": 3}, headers=tokens["patient"]
            )
            assert [response.status_code for response in queued] == [202, 202]
            assert over.status_code == 429 and over.headers["Retry-After"] == "5"
            assert over.json()["error"] == "queue_full" and "max_user_jobs" in over.json()["detail"]
            assert other.status_code == 202
        engine.shutdown(wait=True)
