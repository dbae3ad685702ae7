"""A live studio on a free loopback port: real storage, a real engine, uvicorn in a thread.

The model is the embedded one when it is installed (model/weights/embedded), else the tiny random
Kandinsky 2.2 folder the model tests build (tests/model/tiny_models.py). Tests ask for few steps.
One server serves the whole session; each test makes its own users, so tests do not see each
other's data unless they look for it.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher

from storage import Storage, open_storage
from storage.types import OPERATOR, UserInfo
from tests.model.tiny_models import build_kandinsky22
from webapp.cli import DEFAULT_MODEL

TINY_SETTINGS = {
    "name": "tiny-webapp",
    "default_steps": 2,
    "default_guidance": 4.0,
    "sizes": [[32, 32]],
    "prior_steps": 2,
}
PASSWORD = "correct-horse-1"
TEST_STEPS = 2


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """Keep each phase's report on the test item, so fixtures can tell a failed test at teardown."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def embedded_model() -> Path | None:
    return (
        DEFAULT_MODEL if (DEFAULT_MODEL / "prior").is_dir() and (DEFAULT_MODEL / "decoder").is_dir() else None
    )


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return embedded_model() or build_kandinsky22(
        tmp_path_factory.mktemp("webapp-model") / "tiny", draftroom_json=TINY_SETTINGS
    )


@dataclass
class Person:
    user: UserInfo
    password: str
    token: str

    @property
    def name(self) -> str:
        return self.user.username


@dataclass
class Live:
    url: str
    storage: Storage
    engine: object
    studio: object
    """The server's webapp.context.Studio, for tests that call UI handlers directly."""

    def person(self, role: str = "member", *, prefix: str | None = None) -> Person:
        """A new account with a known password and an API token."""
        name = f"{prefix or role}-{uuid.uuid4().hex[:8]}"
        created = self.storage.users.create(OPERATOR, name, role=role, password=PASSWORD)
        token = self.storage.tokens.create(OPERATOR, created.user.id, "tests").secret
        return Person(created.user, PASSWORD, token)

    def client(self, who: Person | str | None = None) -> httpx.Client:
        """An HTTP client for the API, with `who`'s bearer token (a Person or a raw token)."""
        token = who.token if isinstance(who, Person) else who
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def serve(app: object) -> tuple[str, uvicorn.Server, threading.Thread]:
    """Run `app` with uvicorn on a free loopback port in a thread; returns once it answers."""
    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def open_test_storage(data_dir: Path) -> Storage:
    """Storage with a cheap argon2 setting: the tests sign in often and the CI machine has 2 cores."""
    return open_storage(
        data_dir, password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Iterator[Live]:
    from model.engine import LocalEngine
    from webapp.server import create_app

    storage = open_test_storage(tmp_path_factory.mktemp("webapp-data"))
    engine = LocalEngine.from_path(model_path, device="cpu")
    app = create_app(storage, engine)
    url, server, thread = serve(app)
    yield Live(url, storage, engine, app.state.studio)
    server.should_exit = True
    thread.join(timeout=30)
    engine.shutdown(wait=True)  # the server's job service cancelled what was left; this joins the worker
    storage.close()


def wait_final(client: httpx.Client, generation_id: int, timeout: float = 120) -> dict:
    """Poll `GET /generations/{id}` until the job is no longer queued or running."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/v1/generations/{generation_id}").raise_for_status().json()
        if body["status"] not in ("queued", "running"):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"generation {generation_id} still {body['status']} after {timeout}s")
        time.sleep(0.1)


from tests.webapp.browser_session import browser, sessions  # noqa: E402, F401 - fixtures for the browser tests
