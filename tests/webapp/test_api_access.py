"""Who may do what over REST: 401 without a valid token, 403 for the wrong role or someone else's
job, the four-eyes rule, and a pending password change that allows only /me."""

from __future__ import annotations

import pytest

from storage.types import OPERATOR, HistoryQuery
from tests.webapp.conftest import PASSWORD, Live
from tests.webapp.helpers import generate, png_bytes, unique_word, upload

PROTECTED = [
    ("GET", "/api/v1/me"),
    ("GET", "/api/v1/prompts"),
    ("POST", "/api/v1/generations"),
    ("GET", "/api/v1/generations/1"),
    ("DELETE", "/api/v1/generations/1"),
    ("GET", "/api/v1/images/1"),
    ("POST", "/api/v1/images/1/submit"),
    ("POST", "/api/v1/images/1/reviews"),
    ("GET", "/api/v1/export"),
    ("POST", "/api/v1/uploads"),
    ("GET", "/api/v1/users"),
    ("POST", "/api/v1/tokens"),
]


def test_health_needs_no_token_and_everything_else_does(live: Live) -> None:
    anonymous = live.client()
    health = anonymous.get("/api/v1/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["engine"] == {"kind": "local", "state": None, "replica_states": {}, "replicas": []}
    for method, path in PROTECTED:
        response = anonymous.request(method, path)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    wrong_scheme = anonymous.get("/api/v1/me", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert wrong_scheme.status_code == 401


def test_revoked_tokens_and_disabled_accounts_stop_at_the_next_request(live: Live) -> None:
    person = live.person()
    client = live.client(person)
    assert client.get("/api/v1/me").status_code == 200
    live.storage.users.set_active(OPERATOR, person.user.id, False)
    assert client.get("/api/v1/me").status_code == 401
    live.storage.users.set_active(OPERATOR, person.user.id, True)
    assert client.get("/api/v1/me").status_code == 200
    [token] = live.storage.tokens.list_for(OPERATOR, person.user.id)
    live.storage.tokens.revoke(OPERATOR, token.id)
    assert client.get("/api/v1/me").status_code == 401


@pytest.mark.parametrize(
    ("role", "users", "export"), [("member", 403, 403), ("reviewer", 403, 200), ("admin", 200, 200)]
)
def test_role_gates(live: Live, role: str, users: int, export: int) -> None:
    client = live.client(live.person(role))
    assert client.get("/api/v1/users").status_code == users
    assert client.get("/api/v1/export").status_code == export
    made = client.post("/api/v1/users", json={"name": f"x-{unique_word()}", "role": "admin"})
    assert made.status_code == (201 if role == "admin" else 403)


def test_members_cannot_review_and_nobody_reviews_their_own_image(live: Live) -> None:
    author, member, reviewer = live.person(), live.person(), live.person("reviewer")
    done = generate(live.client(author), f"a green square {unique_word()}")
    image_id = done["images"][0]["id"]
    assert live.client(reviewer).post(f"/api/v1/images/{image_id}/submit").status_code == 403  # not theirs
    assert live.client(author).post(f"/api/v1/images/{image_id}/submit").status_code == 200
    decision = {"decision": "reject", "comment": "too dark"}
    assert live.client(member).post(f"/api/v1/images/{image_id}/reviews", json=decision).status_code == 403
    assert live.client(author).post(f"/api/v1/images/{image_id}/reviews", json=decision).status_code == 403
    # an admin who authored an image is refused too: four-eyes binds every role
    admin = live.person("admin")
    own = generate(live.client(admin), f"a white circle {unique_word()}")["images"][0]["id"]
    live.client(admin).post(f"/api/v1/images/{own}/submit").raise_for_status()
    assert live.client(admin).post(f"/api/v1/images/{own}/reviews", json=decision).status_code == 403
    done_review = live.client(reviewer).post(f"/api/v1/images/{image_id}/reviews", json=decision)
    assert done_review.status_code == 201 and done_review.json()["review_status"] == "rejected"
    again = live.client(reviewer).post(f"/api/v1/images/{image_id}/reviews", json=decision)
    assert again.status_code == 409


def test_only_the_owner_or_an_admin_cancels_and_progress_shows_the_queue(live: Live) -> None:
    owner, other, admin = live.person(), live.person(), live.person("admin")
    client = live.client(owner)
    steps = live.engine.model_info.max_steps
    many = live.engine.model_info.max_images
    long_job = {"prompt": "a red circle", "steps": steps, "num_images": many}
    first = client.post("/api/v1/generations", json=long_job).json()["id"]
    second = client.post("/api/v1/generations", json={**long_job, "steps": steps - 1}).json()["id"]
    waiting = client.get(f"/api/v1/generations/{second}").json()
    assert waiting["status"] == "queued" and isinstance(waiting["progress"]["queue_position"], int)
    assert waiting["progress"]["total"] == (steps - 1) * many

    assert live.client(other).delete(f"/api/v1/generations/{second}").status_code == 403
    by_admin = live.client(admin).delete(f"/api/v1/generations/{second}")
    assert by_admin.status_code == 200 and by_admin.json()["status"] == "cancelled"
    by_owner = client.delete(f"/api/v1/generations/{first}")
    assert by_owner.status_code == 200 and by_owner.json()["status"] == "cancelled"
    assert client.delete(f"/api/v1/generations/{first}").status_code == 409
    for generation_id in (first, second):
        body = client.get(f"/api/v1/generations/{generation_id}").json()
        assert body["status"] == "cancelled" and body["images"] == []


def test_a_pending_password_change_allows_only_me(live: Live) -> None:
    created = live.storage.users.create(OPERATOR, f"new-{unique_word()}", role="member")
    token = live.storage.tokens.create(OPERATOR, created.user.id, "t").secret
    client = live.client(token)
    me = client.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["must_change_password"] is True
    blocked = client.get("/api/v1/prompts")
    assert blocked.status_code == 403 and "password change required" in blocked.json()["detail"]
    wrong = client.post("/api/v1/me/password", json={"current_password": "nope", "new_password": PASSWORD})
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["field"] == "current_password"
    changed = client.post(
        "/api/v1/me/password", json={"current_password": created.generated_password, "new_password": PASSWORD}
    )
    assert changed.status_code == 204
    assert client.get("/api/v1/prompts").status_code == 200


def test_a_generation_may_use_only_the_callers_own_uploads(live: Live) -> None:
    owner, thief = live.person(), live.person()
    upload_id = upload(live.client(owner), png_bytes("green")).json()["id"]
    mine = HistoryQuery(mine=True)
    before = live.storage.history.search(thief.user.id, mine).total
    refused = live.client(thief).post(
        "/api/v1/generations",
        json={"prompt": "a circle", "guidance_image": upload_id, "image_guidance_scale": 0.1},
    )
    assert refused.status_code == 404 and "guidance_image" in refused.json()["detail"]
    absent = live.client(thief).post(
        "/api/v1/generations",
        json={"prompt": "a circle", "guidance_image": upload_id + 10**6, "image_guidance_scale": 0.1},
    )
    assert absent.status_code == 404  # the same answer: the thief cannot tell which upload ids exist
    assert absent.json()["detail"] == refused.json()["detail"].replace(str(upload_id), str(upload_id + 10**6))
    mixed = live.client(thief).post(
        "/api/v1/generations", json={"prompt": "a circle", "mix": [{"image": upload_id, "weight": 1.0}]}
    )
    assert mixed.status_code == 404 and "mix.0.image" in mixed.json()["detail"]
    assert live.storage.history.search(thief.user.id, mine).total == before == 0


def test_someone_elses_tokens_read_exactly_like_a_missing_account_or_token(live: Live) -> None:
    member, victim = live.person(), live.person()
    client = live.client(member)
    [victim_token] = live.storage.tokens.list_for(OPERATOR, victim.user.id)
    pairs = [
        (
            client.get("/api/v1/tokens", params={"name": victim.name}),
            client.get("/api/v1/tokens", params={"name": "nobody-" + victim.name}),
        ),
        (
            client.post("/api/v1/tokens", json={"user": victim.name}),
            client.post("/api/v1/tokens", json={"user": "nobody-" + victim.name}),
        ),
        (client.delete(f"/api/v1/tokens/{victim_token.id}"), client.delete(f"/api/v1/tokens/{10**12}")),
    ]
    for theirs, absent in pairs:
        assert theirs.status_code == absent.status_code == 404
        assert theirs.json()["detail"].replace(victim.name, "?").replace(
            str(victim_token.id), "?"
        ) == absent.json()["detail"].replace("nobody-" + victim.name, "?").replace(str(10**12), "?")
    assert live.storage.tokens.list_for(OPERATOR, victim.user.id)[0].revoked_at is None
