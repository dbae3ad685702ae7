"""Two front-ends (two studios, each with its own engine on the tiny random model) on one database and one
data directory, as behind a load balancer: the studio flow works across them, a cancel reaches the engine
that holds the job, and a restarting front-end leaves the other's jobs alone while a dead one's are
interrupted. Runs on SQLite and on the PostgreSQL that scripts/test.sh starts (DRAFTROOM_TEST_POSTGRES_URL)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from model.engine.engine_common import JobStatus
from storage import Storage, open_storage
from storage.models import Frontend, utcnow
from storage.types import OPERATOR, GenerationStatus
from tests.model.tiny_models import build_kandinsky22
from tests.storage.conftest import FAST_HASHER, database_url  # noqa: F401 - the fixture: sqlite, postgresql
from tests.webapp.conftest import PASSWORD, TEST_STEPS, TINY_SETTINGS
from webapp.services.generation_jobs import FrontendTiming

TIMING = FrontendTiming(heartbeat_s=0.2, stale_after_s=3.0, poll_s=0.1)
BASE_URL = "http://localhost"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_kandinsky22(
        tmp_path_factory.mktemp("multi-frontend-model") / "tiny", draftroom_json=TINY_SETTINGS
    )


@dataclass
class Frontends:
    """Opens front-ends over one database and one data directory; each gets its own storage and engine."""

    data_dir: Path
    database_url: str | None
    model: Path
    stack: ExitStack

    def open_storage(self) -> Storage:
        return self.stack.enter_context(
            open_storage(self.data_dir, self.database_url, password_hasher=FAST_HASHER)
        )

    def engine(self) -> object:
        from model.engine import LocalEngine

        engine = LocalEngine.from_path(self.model, device="cpu")
        self.stack.callback(engine.shutdown, wait=False)
        return engine

    @contextmanager
    def start(self, frontend_id: str, engine: object | None = None) -> Iterator[TestClient]:
        """A front-end named `frontend_id`, served (lifespan included) until the block ends."""
        from webapp.server import create_app

        app = create_app(
            self.open_storage(), engine or self.engine(), frontend_id=frontend_id, frontend_timing=TIMING
        )
        with TestClient(app, base_url=BASE_URL) as client:
            yield client


@pytest.fixture
def frontends(tmp_path: Path, database_url: str | None, tiny_model: Path) -> Iterator[Frontends]:  # noqa: F811
    with ExitStack() as stack:
        yield Frontends(tmp_path / "data", database_url, tiny_model, stack)


@dataclass(frozen=True)
class Account:
    name: str
    headers: dict[str, str]


def account(storage: Storage, name: str, role: str = "member") -> Account:
    user = storage.users.create(OPERATOR, name, role=role, password=PASSWORD).user
    token = storage.tokens.create(OPERATOR, user.id, "tests").secret
    return Account(name, {"Authorization": f"Bearer {token}"})


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not after {timeout}s"
        time.sleep(0.05)


def status(client: TestClient, who: Account, generation_id: int) -> str:
    return client.get(f"/api/v1/generations/{generation_id}", headers=who.headers).json()["status"]


def submit(client: TestClient, who: Account, prompt: str, **fields: object) -> int:
    response = client.post(
        "/api/v1/generations", json={"prompt": prompt, "steps": TEST_STEPS, **fields}, headers=who.headers
    )
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def long_job(client: TestClient) -> dict[str, object]:
    """As long a job as the model takes: it holds the engine while the test acts."""
    info = client.app.state.studio.engine.model_info  # type: ignore[attr-defined]
    return {"steps": info.max_steps, "num_images": info.max_images}


def test_the_studio_flow_works_across_two_front_ends(frontends: Frontends) -> None:
    with frontends.start("front-a") as a, frontends.start("front-b") as b:
        storage = a.app.state.studio.storage  # type: ignore[attr-defined]
        mia, rex = account(storage, "mia"), account(storage, "rex", "reviewer")

        # A browser signed in through A is signed in on B, and signing out on B signs it out on A.
        assert b.get("/config").status_code == 401
        signed_in = a.post(
            "/login", data={"username": "mia", "password": PASSWORD}, headers={"Origin": BASE_URL}
        )
        assert signed_in.status_code == 200, signed_in.text
        cookies = dict(a.cookies)
        assert b.get("/config", cookies=cookies).status_code == 200
        assert b.app.state.studio.auth.browser_sessions.username(cookies) == "mia"  # type: ignore[attr-defined]
        signed_out = b.post("/logout", cookies=cookies, headers={"Origin": BASE_URL}, follow_redirects=False)
        assert signed_out.status_code == 303
        assert a.get("/config", cookies=cookies).status_code == 401

        # Jobs on both at once: each visible from the other, each image once, every file in place.
        jobs = [submit(client, mia, f"a red circle {n}", num_images=2) for n in range(3) for client in (a, b)]
        for generation_id in jobs:
            wait_until(
                lambda g=generation_id: status(b, mia, g) == "succeeded", f"generation {generation_id}"
            )
        bodies = [a.get(f"/api/v1/generations/{g}", headers=mia.headers).json() for g in jobs]
        assert [len(body["images"]) for body in bodies] == [2] * len(jobs)
        image_ids = [image["id"] for body in bodies for image in body["images"]]
        assert len(set(image_ids)) == len(image_ids)
        first = image_ids[0]
        from_a = a.get(f"/api/v1/images/{first}", headers=mia.headers)
        assert from_a.status_code == 200 and b.get(
            f"/api/v1/images/{first}", headers=mia.headers
        ).content == (from_a.content)
        assert storage.check.run().problems == ()

        # Made on A, submitted and reviewed on B; the history of either shows the decision.
        assert (
            b.post(f"/api/v1/images/{first}/submit", headers=mia.headers).json()["review_status"] == "pending"
        )
        decided = b.post(f"/api/v1/images/{first}/reviews", json={"decision": "approve"}, headers=rex.headers)
        assert decided.status_code == 201, decided.text
        [decision] = a.get(f"/api/v1/images/{first}/reviews", headers=mia.headers).json()
        assert (decision["reviewer"], decision["review_status"]) == ("rex", "approved")


def test_a_cancel_through_the_other_front_end_reaches_the_engine_that_holds_the_job(
    frontends: Frontends,
) -> None:
    with frontends.start("front-a") as a, frontends.start("front-b") as b:
        storage = a.app.state.studio.storage  # type: ignore[attr-defined]
        jobs_a = a.app.state.studio.jobs  # type: ignore[attr-defined]
        mia = account(storage, "mia")
        blocker = submit(a, mia, "a blue square", **long_job(a))
        wait_until(lambda: status(a, mia, blocker) == "running", "the long job starts on A")
        waiting = submit(a, mia, "a green triangle", **long_job(a))
        handles = {g: jobs_a._jobs[g].handle for g in (blocker, waiting)}  # A's engine handles
        assert handles[waiting].progress().status == JobStatus.QUEUED

        seen_from_b = b.get(f"/api/v1/generations/{blocker}", headers=mia.headers).json()
        assert seen_from_b["status"] == "running"  # B holds no handle: the stored status
        assert seen_from_b["progress"]["queue_position"] is None

        for generation_id in (waiting, blocker):  # the queued job, then the running one
            cancelled = b.delete(f"/api/v1/generations/{generation_id}", headers=mia.headers)
            assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
            wait_until(
                lambda g=generation_id: handles[g].progress().status == JobStatus.CANCELLED,
                "A cancels through its handle",
                timeout=10,
            )
            wait_until(lambda g=generation_id: jobs_a.progress(g) is None, "A lets the job go", timeout=10)
        assert handles[waiting].progress().images_done == 0
        for generation_id in (waiting, blocker):
            body = a.get(f"/api/v1/generations/{generation_id}", headers=mia.headers).json()
            assert (body["status"], body["images"]) == ("cancelled", [])


def _front_end_that_died(storage: Storage, frontend_id: str, *, silent_for: timedelta) -> None:
    storage.frontends.register(frontend_id)
    with storage.db.write() as session:
        session.execute(
            update(Frontend).where(Frontend.id == frontend_id).values(heartbeat_at=utcnow() - silent_for)
        )


def _held_job(storage: Storage, user_id: int, frontend_id: str) -> int:
    prompt = storage.prompts.create(user_id, text="a yellow star")
    return storage.generations.create(
        user_id, prompt.id, model_id="m", model_hash="h", params={}, frontend_id=frontend_id
    ).id


def test_a_restarting_front_end_leaves_the_others_jobs_alone_and_interrupts_a_dead_ones(
    frontends: Frontends,
) -> None:
    with frontends.start("front-a") as a:
        storage = a.app.state.studio.storage  # type: ignore[attr-defined]
        mia = account(storage, "mia")
        mia_id = storage.users.find("mia").id
        engine_b = frontends.engine()
        with frontends.start("front-b", engine_b) as b:
            running_on_a = submit(a, mia, "a blue square", **long_job(a))
            wait_until(lambda: status(a, mia, running_on_a) == "running", "the long job starts on A")
            on_b = submit(b, mia, "a blue square", **long_job(b))
        # B stopped: its own job is interrupted, A's goes on.
        assert status(a, mia, on_b) == "interrupted"
        assert status(a, mia, running_on_a) == "running"

        _front_end_that_died(storage, "front-dead", silent_for=timedelta(hours=1))
        dead_job = _held_job(storage, mia_id, "front-dead")
        with frontends.start("front-b", engine_b) as b:  # B starts again
            assert status(b, mia, dead_job) == "interrupted"
            assert status(b, mia, running_on_a) == "running"
            assert storage.generations.get(mia_id, dead_job).error.startswith("Interrupted")  # type: ignore[union-attr]

            # A front-end that stops beating while the others run: whichever notices interrupts its jobs.
            storage.frontends.register("front-gone")
            gone_job = _held_job(storage, mia_id, "front-gone")
            time.sleep(TIMING.heartbeat_s * 3)
            assert status(b, mia, gone_job) == "queued"  # still beating a moment ago: left alone
            wait_until(lambda: status(b, mia, gone_job) == "interrupted", "a live front-end notices", 15)
            assert "front-gone" not in storage.frontends.live(TIMING.stale_after_s)
            assert status(b, mia, running_on_a) == "running"
            assert sorted(storage.frontends.live(TIMING.stale_after_s)) == ["front-a", "front-b"]
        a.delete(f"/api/v1/generations/{running_on_a}", headers=mia.headers)
    assert storage.generations.get(mia_id, running_on_a).status == GenerationStatus.CANCELLED
