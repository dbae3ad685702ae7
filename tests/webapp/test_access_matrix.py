"""Who gets in where: every REST operation (read from the app's OpenAPI, so a new route cannot be
forgotten) x anonymous, member, reviewer, admin, a disabled account and a revoked token, with the
status each cell must get. Resources belong to someone else (the interesting case). Also: four-eyes
under a race and after a promotion, the UI's handlers as the wrong role, an open bind without auth,
and secrets that never reach the server's log, its database or a later response.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from bench.load import free_port
from storage.types import OPERATOR, Role
from tests.webapp.conftest import PASSWORD, TEST_STEPS, Live, Person
from tests.webapp.helpers import generate, png_bytes, start_server_with_account, unique_word

ROLES = ("anonymous", "member", "reviewer", "admin", "disabled", "revoked")
ROOT = Path(__file__).resolve().parents[2]
NEW_PASSWORD = "another-horse-2"


def cells(member: int, reviewer: int, admin: int, *, open_to_all: bool = False) -> dict[str, int]:
    """Expected statuses; without a valid token (anonymous, disabled, revoked) it is 401."""
    outside = member if open_to_all else 401
    return {
        "anonymous": outside,
        "member": member,
        "reviewer": reviewer,
        "admin": admin,
        "disabled": outside,
        "revoked": outside,
    }


MATRIX: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/api/v1/health"): cells(200, 200, 200, open_to_all=True),
    ("GET", "/api/v1/me"): cells(200, 200, 200),
    ("POST", "/api/v1/me/password"): cells(204, 204, 204),
    ("POST", "/api/v1/uploads"): cells(201, 201, 201),
    ("POST", "/api/v1/generations"): cells(202, 202, 202),
    ("GET", "/api/v1/generations/{generation_id}"): cells(200, 200, 200),
    ("DELETE", "/api/v1/generations/{generation_id}"): cells(403, 403, 200),  # owner or admin
    ("GET", "/api/v1/images/{image_id}"): cells(200, 200, 200),
    ("POST", "/api/v1/images/{image_id}/submit"): cells(403, 403, 403),  # only the author submits
    ("POST", "/api/v1/images/{image_id}/reviews"): cells(403, 201, 201),
    ("GET", "/api/v1/images/{image_id}/reviews"): cells(200, 200, 200),
    ("GET", "/api/v1/images/{image_id}/lineage"): cells(200, 200, 200),
    ("GET", "/api/v1/prompts"): cells(200, 200, 200),
    ("GET", "/api/v1/export"): cells(403, 200, 200),
    ("GET", "/api/v1/users"): cells(403, 403, 200),
    ("POST", "/api/v1/users"): cells(403, 403, 201),
    ("PATCH", "/api/v1/users/{name}"): cells(403, 403, 200),
    ("POST", "/api/v1/tokens"): cells(404, 404, 201),  # a token for someone else: reads as no such user
    ("GET", "/api/v1/tokens"): cells(404, 404, 200),  # someone else's tokens
    ("DELETE", "/api/v1/tokens/{token_id}"): cells(404, 404, 204),  # someone else's token: reads as missing
}


@dataclass
class Stage:
    """Someone else's things for the callers to reach for."""

    live: Live
    author: Person
    generation: int
    image: int
    pending: list[int]
    disabled: Person
    revoked: Person

    def live_job(self) -> int:
        """A long job of the author's, still queued or running (the caller will try to cancel it)."""
        body = {"prompt": "a red circle", "steps": 150, "num_images": 8}
        return self.live.client(self.author).post("/api/v1/generations", json=body).json()["id"]


@pytest.fixture(scope="module")
def stage(live: Live) -> Stage:
    author = live.person()
    client = live.client(author)
    done = generate(client, f"a pink ring {unique_word()}", num_images=3)
    ids = [image["id"] for image in done["images"]]
    for image_id in ids:
        client.post(f"/api/v1/images/{image_id}/submit").raise_for_status()
    disabled, revoked = live.person(), live.person()
    live.storage.users.set_active(OPERATOR, disabled.user.id, False)
    [token] = live.storage.tokens.list_for(OPERATOR, revoked.user.id)
    live.storage.tokens.revoke(OPERATOR, token.id)
    return Stage(live, author, done["id"], ids[0], ids, disabled, revoked)


Request = tuple[str, dict]


def build(operation: tuple[str, str], stage: Stage, decider: bool) -> Request:
    """The path and arguments that would succeed for a caller allowed to do it (`decider`: a reviewer or
    admin, who gets an image of their own to decide, since each pending image takes one decision)."""
    live = stage.live
    method, path = operation
    victim = live.person() if "{name}" in path or "/tokens" in path else None
    if "{generation_id}" in path:
        generation_id = stage.live_job() if method == "DELETE" else stage.generation
        path = path.replace("{generation_id}", str(generation_id))
    if "{image_id}" in path:
        deciding = decider and operation == ("POST", "/api/v1/images/{image_id}/reviews")
        path = path.replace("{image_id}", str(stage.pending.pop() if deciding else stage.image))
    if victim is not None:
        [victim_token] = live.storage.tokens.list_for(OPERATOR, victim.user.id)
        path = path.replace("{name}", victim.name).replace("{token_id}", str(victim_token.id))
    arguments: dict[tuple[str, str], dict] = {
        ("POST", "/api/v1/me/password"): {
            "json": {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
        },
        ("POST", "/api/v1/uploads"): {"files": {"file": ("a.png", png_bytes("teal"), "image/png")}},
        ("POST", "/api/v1/generations"): {"json": {"prompt": "a red circle", "steps": TEST_STEPS}},
        ("POST", "/api/v1/images/{image_id}/reviews"): {"json": {"decision": "approve"}},
        ("POST", "/api/v1/users"): {"json": {"name": f"new-{unique_word()}", "role": "admin"}},
        ("PATCH", "/api/v1/users/{name}"): {"json": {"role": "admin"}},
        ("POST", "/api/v1/tokens"): {"json": {"user": victim.name if victim else "", "name": "stolen"}},
        ("GET", "/api/v1/tokens"): {"params": {"name": victim.name if victim else ""}},
    }
    return path, arguments.get(operation, {})


def caller_for(role: str, stage: Stage) -> tuple[Person | None, str | None]:
    if role == "anonymous":
        return None, None
    if role in ("disabled", "revoked"):
        person = getattr(stage, role)
        return person, person.token
    person = stage.live.person(role)
    return person, person.token


def test_the_matrix_lists_every_rest_operation(live: Live) -> None:
    spec = live.client().get("/openapi.json").json()
    operations = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert operations == set(MATRIX)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("operation", list(MATRIX), ids=[f"{m} {p}" for m, p in MATRIX])
def test_access_cell(live: Live, stage: Stage, operation: tuple[str, str], role: str) -> None:
    _caller, token = caller_for(role, stage)
    path, kwargs = build(operation, stage, decider=role in ("reviewer", "admin"))
    response = live.client(token).request(operation[0], path, **kwargs)
    expected = MATRIX[operation][role]
    assert response.status_code == expected, (role, operation, response.text)
    if expected >= 400:
        assert response.json()["error"] == {401: "unauthorized", 403: "forbidden", 404: "not_found"}[expected]
    if operation == ("POST", "/api/v1/generations") and expected == 202:  # keep the shared CPU for others
        live.client(token).delete(f"/api/v1/generations/{response.json()['id']}")
    if operation == ("DELETE", "/api/v1/generations/{generation_id}") and expected != 200:
        live.client(stage.author).delete(path)


# Four-eyes --------------------------------------------------------------------------------------


def pending_image(live: Live, author: Person) -> int:
    done = generate(live.client(author), f"a grey star {unique_word()}")
    image_id = done["images"][0]["id"]
    live.client(author).post(f"/api/v1/images/{image_id}/submit").raise_for_status()
    return image_id


def test_two_reviewers_at_once_one_decision_wins(live: Live) -> None:
    image_id = pending_image(live, live.person())
    clients = [live.client(live.person("reviewer")) for _ in range(2)]
    barrier, answers = threading.Barrier(2), []

    def decide(client: httpx.Client, decision: str) -> None:
        barrier.wait()
        answers.append(
            client.post(
                f"/api/v1/images/{image_id}/reviews", json={"decision": decision, "comment": "both at once"}
            ).status_code
        )

    threads = [
        threading.Thread(target=decide, args=(c, d))
        for c, d in zip(clients, ("approve", "reject"), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [201, 409]
    assert len(live.storage.reviews.history(live.person("admin").user.id, image_id)) == 1


def test_a_promoted_author_still_cannot_review_their_own_image(live: Live) -> None:
    author = live.person()
    image_id = pending_image(live, author)
    live.storage.users.set_role(OPERATOR, author.user.id, Role.REVIEWER)
    refused = live.client(author).post(f"/api/v1/images/{image_id}/reviews", json={"decision": "approve"})
    assert refused.status_code == 403 and "Four-eyes" in refused.json()["detail"]
    reviewer_author = live.person("reviewer")
    own = pending_image(live, reviewer_author)
    assert (
        live.client(reviewer_author)
        .post(f"/api/v1/images/{own}/reviews", json={"decision": "approve"})
        .status_code
        == 403
    )
    assert live.storage.reviews.history(live.person("admin").user.id, image_id) == []


# The UI's handlers, as the wrong role -----------------------------------------------------------


def signed_in(live: Live, person: Person) -> Client:
    return Client(live.url, auth=(person.name, person.password), verbose=False, download_files=False)


def staff_endpoints(client: Client) -> dict[str, list[dict]]:
    """The staff handlers a client can call. `/review_select` is left out: it is a gallery selection,
    and without one Gradio fails building its event data before any handler runs."""
    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    return {
        name: spec["parameters"]
        for name, spec in named.items()
        if name.startswith(("/admin_", "/review_")) and name != "/review_select"
    }


def test_ui_staff_handlers_refuse_the_wrong_role_and_change_nothing(live: Live) -> None:
    """Every admin_* handler refuses a reviewer, every admin_* and review_* handler a member, even when
    aimed at real accounts, tokens and a pending image."""
    victim = live.person()
    image_id = pending_image(live, live.person())
    [victim_token] = live.storage.tokens.list_for(OPERATOR, victim.user.id)
    values = {
        "name": victim.name,
        "role": "admin",
        "password": "password123",
        "token_user": victim.name,
        "token_id": victim_token.id,
        "label": "stolen",
        "comment": "fine",
        "status": "approved",
    }
    for role, prefixes in (("reviewer", ("/admin_",)), ("member", ("/admin_", "/review_"))):
        client = signed_in(live, live.person(role))
        endpoints = {n: p for n, p in staff_endpoints(client).items() if n.startswith(prefixes)}
        assert len(endpoints) >= (9 if role == "reviewer" else 12)
        for name, params in endpoints.items():
            args = [values.get(p["parameter_name"], p["parameter_default"]) for p in params]
            with pytest.raises(AppError, match="Only"):
                client.predict(*args, api_name=name)
    after = live.storage.users.find(victim.name)
    assert (after.role, after.active) == (Role.MEMBER, True)
    tokens = live.storage.tokens.list_for(OPERATOR, victim.user.id)
    assert [(t.id, t.revoked_at) for t in tokens] == [(victim_token.id, None)]
    assert (
        live.storage.generations.image(live.person("admin").user.id, image_id).review_status.value
        == "pending"
    )


# Binding and secrets ----------------------------------------------------------------------------


def test_an_open_bind_without_auth_refuses_to_start() -> None:
    port = free_port()
    started = subprocess.run(
        [
            sys.executable,
            str(ROOT / "app.py"),
            "serve",
            "--no-auth",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 2 and "loopback" in started.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)


def test_passwords_and_tokens_are_never_logged_stored_or_shown_again(
    tmp_path: Path, model_path: Path
) -> None:
    """A real `app.py serve`: sign-ins (right and wrong), new accounts, tokens, a password change, a
    bad token; then no secret is in its log, in the database file, or in any later answer."""
    server, admin_token = start_server_with_account(tmp_path, model_path, "boss", "admin", "boss-password-1")
    data_dir = server.data_dir
    try:
        api = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30
        )
        given = api.post("/api/v1/users", json={"name": "ada", "password": "ada-secret-pw-1"})
        assert given.status_code == 201 and given.json()["password"] is None
        generated = api.post("/api/v1/users", json={"name": "bob"}).json()["password"]
        ada_token = api.post("/api/v1/tokens", json={"user": "ada"}).json()["token"]
        bad_token = "dr_" + "x" * 40
        assert (
            httpx.get(f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {bad_token}"}).status_code
            == 401
        )
        ada = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ada_token}"}, timeout=30)
        assert (
            ada.post(
                "/api/v1/me/password",
                json={"current_password": "ada-secret-pw-1", "new_password": "ada-new-secret-2"},
            ).status_code
            == 204
        )
        assert (
            ada.post(
                "/api/v1/me/password",
                json={"current_password": "wrong-guess-pw-9", "new_password": "ada-other-secret-3"},
            ).status_code
            == 422
        )
        for username, password, ok in (
            ("ada", "ada-new-secret-2", True),
            ("ada", "wrong-guess-pw-9", False),
            ("bob", generated, True),
        ):
            login = httpx.post(
                f"{server.url}/login", data={"username": username, "password": password}, timeout=30
            )
            assert (login.status_code == 200) == ok, login.text
        later = " ".join(
            api.get(path, params=params).text
            for path, params in (
                ("/api/v1/users", {}),
                ("/api/v1/tokens", {"name": "ada"}),
                ("/api/v1/tokens", {}),
                ("/api/v1/me", {}),
            )
        )
    finally:
        server.stop()
    secrets = {
        "given password": "ada-secret-pw-1",
        "new password": "ada-new-secret-2",
        "wrong password": "wrong-guess-pw-9",
        "generated password": generated,
        "admin password": "boss-password-1",
        "api token": ada_token,
        "admin token": admin_token,
        "bad token": bad_token,
    }
    log = server.log_text()
    assert "POST /login" in log and "/api/v1/me/password" in log  # the log did record those requests
    database = b"".join(path.read_bytes() for path in data_dir.glob("draftroom.db*"))
    for what, secret in secrets.items():
        assert secret not in log, f"the server log holds the {what}"
        assert secret.encode() not in database, f"the database holds the {what} in clear"
        assert secret not in later, f"a later response shows the {what}"
