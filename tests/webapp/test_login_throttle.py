"""The UI sign-in (Gradio's POST /login) is throttled per account and per client address, with the address
taken from the request (Gradio's `auth=` callable never sees it) and every refusal audited."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from storage.services.login_throttle import ACCOUNT_FAILURES
from storage.types import OPERATOR
from tests.webapp.conftest import PASSWORD, open_test_storage


def test_repeated_failures_get_429_with_the_reason_then_an_audit_row(
    tmp_path: Path, model_path: Path
) -> None:
    from model.engine import LocalEngine
    from webapp.server import create_app

    engine = LocalEngine.from_path(model_path, device="cpu")
    with open_test_storage(tmp_path) as storage:
        admin = storage.users.create(OPERATOR, "ada", role="admin", password=PASSWORD).user
        with TestClient(create_app(storage, engine), base_url="http://localhost") as client:
            for _ in range(ACCOUNT_FAILURES):
                wrong = client.post("/login", data={"username": "ada", "password": "not the password"})
                assert wrong.status_code == 400
            refused = client.post("/login", data={"username": "ada", "password": PASSWORD})
            assert refused.status_code == 429, refused.text
            assert "Too many failed sign-ins for this account" in refused.json()["detail"]
            assert 0 < int(refused.headers["Retry-After"]) <= 15 * 60
            assert client.post("/login", data={"username": "bob", "password": PASSWORD}).status_code == 400
        events = storage.audit.list_events(admin.id, page_size=50).items
        engine.shutdown(wait=True)
    logins = [(e.action, e.actor_name, e.detail) for e in events if e.action.startswith("login")]
    assert logins[0] == ("login.failed", "bob", {"client": "testclient"})
    assert logins[1] == ("login.throttled", "ada", {"scope": "account", "client": "testclient"})
    assert logins[2:] == [("login.failed", "ada", {"client": "testclient"})] * ACCOUNT_FAILURES
