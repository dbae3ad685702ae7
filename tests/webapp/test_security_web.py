"""The studio as a hostile web page or a foreign Host sees it: an explicit CORS policy, SameSite=Lax sign-in
cookies, a same-origin check on state-changing browser requests (sign-in included), sign-out by POST only,
a trusted-host check in every mode, security headers on every page and a body limit before authentication.

Each test builds its own studio on its own data folder (sharing the session's engine) and calls it in
process, with the Host it wants: `studio.example` stands for a deployment's real name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from storage import Storage
from storage.types import OPERATOR
from tests.webapp.conftest import PASSWORD, Live, open_test_storage
from webapp.server import MAX_JSON_BYTES, create_app

HOST = "studio.example"
SITE = f"http://{HOST}"
PARTNER = "https://partner.example"
EVIL = "https://evil.example"


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    with open_test_storage(tmp_path / "data") as opened:
        opened.users.create(OPERATOR, "alice", role="admin", password=PASSWORD)
        yield opened


def build(live: Live, storage: Storage, **options: object) -> FastAPI:
    return create_app(
        storage, live.engine, **{"allowed_hosts": [HOST], "allowed_origins": [PARTNER], **options}
    )


def browser(app: FastAPI, origin: str | None = SITE) -> TestClient:
    """A client as a page served from `origin` uses the studio (None: a program, which sends no Origin)."""
    return TestClient(app, base_url=SITE, headers={"Origin": origin} if origin else {})


def sign_in(client: TestClient) -> None:
    response = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200, response.text


def signed_in(client: TestClient) -> bool:
    return client.get("/gradio_api/login_check").status_code == 200


def test_cors_allows_only_the_studios_own_origin_and_the_listed_ones(live: Live, storage: Storage) -> None:
    client = browser(build(live, storage), EVIL)
    sign_in(browser(build(live, storage)))
    token = client.get("/gradio_api/token")
    assert "access-control-allow-origin" not in token.headers  # Gradio answered any Origin with itself
    preflight = client.options("/gradio_api/queue/join", headers={"Access-Control-Request-Method": "POST"})
    assert preflight.headers.get("access-control-allow-origin") != EVIL
    partner = browser(build(live, storage), PARTNER).get("/gradio_api/token")
    assert partner.headers["access-control-allow-origin"] == PARTNER
    assert partner.headers["access-control-allow-credentials"] == "true"


def test_sign_in_cookies_are_same_site_lax(live: Live, storage: Storage) -> None:
    client = browser(build(live, storage))
    response = client.post("/login", data={"username": "alice", "password": PASSWORD})
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 2 and all(c.startswith("access-token") for c in cookies), cookies
    assert all("samesite=lax" in c.lower() and "samesite=none" not in c.lower() for c in cookies), cookies
    assert any("secure" in c.lower() for c in cookies)  # Gradio's secure cookie keeps its Secure flag


def test_state_changing_requests_from_another_origin_are_refused(live: Live, storage: Storage) -> None:
    app = build(live, storage)
    for headers in ({"Origin": EVIL}, {"Origin": "null"}, {"Referer": f"{EVIL}/attack.html"}):
        login = TestClient(app, base_url=SITE, headers=headers).post(
            "/login", data={"username": "alice", "password": PASSWORD}
        )
        assert login.status_code == 403, (headers, login.text)
        assert login.json()["error"] == "cross_origin" and "set-cookie" not in login.headers

    page = browser(app)
    sign_in(page)
    hostile = browser(app, EVIL)
    hostile.cookies = page.cookies  # what a browser attaches when a hostile page posts to the studio
    joined = hostile.post("/gradio_api/queue/join", json={"data": [], "fn_index": 0, "session_hash": "x"})
    assert joined.status_code == 403 and joined.json()["error"] == "cross_origin"
    # The same-site page, a listed origin and a program without Origin are not refused by this check.
    assert browser(app).post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 200
    assert (
        browser(app, PARTNER).post("/login", data={"username": "alice", "password": PASSWORD}).status_code
        == 200
    )
    assert (
        browser(app, None).post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 200
    )


def test_bearer_token_requests_are_not_origin_checked(live: Live, storage: Storage) -> None:
    alice = storage.users.find("alice")
    secret = storage.tokens.create(OPERATOR, alice.id, "tests").secret
    client = browser(build(live, storage), EVIL)
    response = client.post(
        "/api/v1/uploads",
        headers={"Authorization": f"Bearer {secret}"},
        files={"file": ("x.png", b"not an image", "image/png")},
    )
    assert response.status_code == 415, response.text  # reached the handler: the upload check answered


def test_no_auth_mode_refuses_another_origins_writes_and_a_foreign_host(live: Live, storage: Storage) -> None:
    app = create_app(storage, live.engine, auth_enabled=False)  # default hosts: localhost, 127.0.0.1
    local = TestClient(app, base_url="http://127.0.0.1:7860")
    assert local.get("/api/v1/me").json()["name"] == "alice"  # everyone acts as the admin here...
    rebound = TestClient(app, base_url="http://attacker.example:7860")  # ...so a DNS-rebound name must not
    response = rebound.get("/api/v1/me")
    assert response.status_code == 400 and "alice" not in response.text
    assert rebound.get("/").status_code == 400
    hostile = TestClient(app, base_url="http://localhost:7860", headers={"Origin": EVIL})
    response = hostile.post(
        "/api/v1/users", json={"name": "mallory", "role": "admin", "password": PASSWORD * 2}
    )
    assert response.status_code == 403 and response.json()["error"] == "cross_origin"
    assert all(user.username != "mallory" for user in storage.users.list_all(OPERATOR))


def test_a_foreign_host_is_refused_with_auth_on(live: Live, storage: Storage) -> None:
    app = build(live, storage)
    assert TestClient(app, base_url="http://other.example").get("/api/v1/me").status_code == 400
    assert TestClient(app, base_url=SITE).get("/api/v1/me").status_code == 401


def test_sign_out_is_a_same_origin_post(live: Live, storage: Storage) -> None:
    app = build(live, storage)
    page = browser(app)
    sign_in(page)
    link = page.get("/logout", follow_redirects=False)  # an <img src=/logout> on any page
    assert link.status_code == 405 and link.headers["allow"] == "POST"
    assert signed_in(page)
    hostile = browser(app, EVIL)
    hostile.cookies = page.cookies
    assert hostile.post("/logout").status_code == 403
    assert signed_in(page)

    other = browser(app)
    sign_in(other)
    out = page.post("/logout", follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/"
    assert not signed_in(page) and page.get("/config").status_code == 401
    assert all(not name.startswith("access-token") for name in page.cookies)
    assert signed_in(other)  # another browser of the same user stays signed in


def test_every_page_carries_the_security_headers(live: Live, storage: Storage) -> None:
    client = browser(build(live, storage))
    sign_in(client)
    for path in ("/", "/config", "/api/v1/me", "/api/v1/nowhere", "/gradio_api/info", "/docs"):
        headers = client.get(path).headers
        assert "frame-ancestors 'self'" in headers["content-security-policy"], path
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "same-origin", path
    assert (
        "frame-ancestors 'self'"
        in TestClient(build(live, storage), base_url="http://x.example")
        .get("/")
        .headers["content-security-policy"]
    )  # refused hosts too


def test_gradio_and_sign_in_bodies_are_capped_before_authentication(live: Live, storage: Storage) -> None:
    client = browser(build(live, storage))
    big = b"x" * (MAX_JSON_BYTES + 1)
    for path in ("/gradio_api/queue/join", "/gradio_api/upload", "/login", "/gradio_api/run/predict"):
        response = client.post(
            path,
            content=big if path != "/gradio_api/upload" else big * 11,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 413, (path, response.status_code, response.text[:200])
        assert response.json()["error"] == "payload_too_large"
    declared = client.post(
        "/gradio_api/queue/join", content=b"{}", headers={"Content-Length": str(100 << 20)}
    )
    assert declared.status_code == 413

    sign_in(client)  # a signed-in upload of an image-sized body passes the cap (and is stored by Gradio)
    uploaded = client.post("/gradio_api/upload", files={"files": ("big.png", b"\0" * (2 * MAX_JSON_BYTES))})
    assert uploaded.status_code == 200, uploaded.text
