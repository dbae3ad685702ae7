"""Hostile and broken input on every REST endpoint that takes any: a clear 4xx JSON error naming the
field, the server stays up, and nothing is written (every table's row count and every stored file
are the same before and after). Complements test_api_inputs.py (uploads, generation basics)."""

from __future__ import annotations

import dataclasses
import json
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage.models import Base, Generation
from tests.webapp.conftest import Live, Person
from tests.webapp.helpers import generate, png_bytes, unique_word, upload

HUGE_INT = 10**30
NO_BODY = object()


@dataclass(frozen=True)
class Bad:
    """One hostile request: who sends it, what, and the status and field the answer must name."""

    label: str
    method: str
    path: str
    status: int
    field: str | None = None
    json_body: object = NO_BODY
    raw: str | None = None
    params: dict = dataclasses.field(default_factory=dict)
    who: str = "member"


def gen(label: str, body: object, field_name: str, status: int = 422) -> Bad:
    return Bad(label, "POST", "/api/v1/generations", status, field_name, json_body=body)


def raw_gen(label: str, raw: str, field_name: str) -> Bad:
    return Bad(label, "POST", "/api/v1/generations", 422, field_name, raw=raw)


A = {"prompt": "a red circle"}
TWO = [{"text": "a red circle", "weight": 1}, {"text": "a blue square", "weight": 1}]

GENERATIONS = [
    raw_gen("nan-mix-weight", '{"prompt": "a", "mix": [{"text": "b", "weight": NaN}]}', "mix.0.weight"),
    raw_gen(
        "inf-image-guidance", '{"prompt": "a", "image_guidance_scale": Infinity}', "image_guidance_scale"
    ),
    raw_gen(
        "neg-inf-interpolation",
        json.dumps({"mix": TWO})[:-1] + ', "interpolation": -Infinity}',
        "interpolation",
    ),
    raw_gen("overflowing-float-steps", '{"prompt": "a", "steps": 1e309}', "steps"),
    gen("negative-width", {**A, "width": -64}, "width"),
    gen("zero-height", {**A, "height": 0}, "height"),
    gen("negative-count", {**A, "num_images": -1}, "num_images"),
    gen("negative-seed", {**A, "seed": -1}, "seed"),
    gen("huge-seed", {**A, "seed": 2**64}, "seed"),
    gen("huge-steps", {**A, "steps": HUGE_INT}, "steps"),
    gen("huge-count", {**A, "num_images": HUGE_INT}, "num_images"),
    gen("huge-width", {**A, "width": HUGE_INT}, "width"),
    gen("negative-guidance", {**A, "guidance_scale": -0.5}, "guidance_scale"),
    gen("huge-guidance", {**A, "guidance_scale": 1e308}, "guidance_scale"),
    gen("steps-over-model-limit", {**A, "steps": 151}, "steps"),
    gen("count-over-model-limit", {**A, "num_images": 9}, "num_images"),
    gen("size-the-model-cannot-make", {**A, "width": 1024, "height": 1024}, "width"),
    gen("fractional-steps", {**A, "steps": 2.5}, "steps"),
    gen("body-is-a-list", [A], "body"),
    gen("body-is-null", None, "body"),
    gen("body-is-a-string", "a red circle", "body"),
    gen("mix-is-an-object", {**A, "mix": {"text": "a"}}, "mix"),
    gen("mix-item-is-a-string", {**A, "mix": ["a red circle"]}, "mix.0"),
    gen("count-as-string", {**A, "num_images": "2"}, "num_images"),
    gen("seed-as-bool", {**A, "seed": True}, "seed"),
    gen("prompt-as-list", {"prompt": ["a"]}, "prompt"),
    gen("negative-prompt-null", {**A, "negative_prompt": None}, "negative_prompt"),
    gen("unknown-nested-field", {**A, "mix": [{"text": "a", "weight": 1, "colour": "red"}]}, "mix.0.colour"),
    gen("spoofed-user", {**A, "user": "admin"}, "user"),
    gen("proto-key", {**A, "__proto__": {"admin": True}}, "__proto__"),
    gen("whitespace-prompt", {"prompt": "   \n\t "}, "prompt"),
    gen("prompt-one-over-limit", {"prompt": "x" * 1001}, "prompt"),
    gen("negative-100k", {**A, "negative_prompt": "y" * 100_000}, "negative_prompt"),
    gen("mix-text-100k", {**A, "mix": [{"text": "z" * 100_000}]}, "mix.0.text"),
    raw_gen("lone-surrogate", '{"prompt": "a \\ud800 circle"}', "prompt"),
    gen("bell-in-negative", {**A, "negative_prompt": "quiet\x07"}, "negative_prompt"),
    gen("escape-in-mix-text", {**A, "mix": [{"text": "\x1b[2J"}]}, "mix.0.text"),
    gen("zero-upload-id", {**A, "guidance_image": 0}, "guidance_image"),
    gen("sql-upload-id", {**A, "guidance_image": "1 OR 1=1"}, "guidance_image"),
    gen("path-as-mix-image", {**A, "mix": [{"image": "../../etc/passwd"}]}, "mix.0.image"),
    gen(
        "missing-upload",
        {**A, "guidance_image": 987_654_321, "image_guidance_scale": 0.1},
        "guidance_image",
        status=404,
    ),
    gen("guidance-scale-without-image", {**A, "image_guidance_scale": 0.5}, "guidance_image"),
    gen("interpolation-with-three", {"mix": [*TWO, TWO[0]], "interpolation": 0.5}, "interpolation"),
    gen("interpolation-prompt-and-two", {**A, "mix": TWO, "interpolation": 0.5}, "interpolation"),
    gen("interpolation-prompt-alone", {**A, "interpolation": 0.5}, "interpolation"),
    gen("seed-past-the-declared-range", {**A, "seed": 2**32}, "seed"),
    gen("sql-scheduler", {**A, "scheduler": "ddim; DROP TABLE generations"}, "scheduler"),
    gen("rtl-override-prompt", {"prompt": "a red \u202ecircle"}, "prompt"),
    gen("isolate-negative", {**A, "negative_prompt": "blue\u2066"}, "negative_prompt"),
    gen("embedding-mix-text", {"mix": [{"text": "a \u202a b", "weight": 1}]}, "mix.0.text"),
]

USERS = [
    Bad("path-username", "POST", "/api/v1/users", 422, "name", {"name": "../../etc/passwd"}, who="admin"),
    Bad(
        "sql-username", "POST", "/api/v1/users", 422, "name", {"name": "x'; DROP TABLE users;--"}, who="admin"
    ),
    Bad("unicode-username", "POST", "/api/v1/users", 422, "name", {"name": "ünï​code"}, who="admin"),
    Bad("long-username", "POST", "/api/v1/users", 422, "name", {"name": "a" * 65}, who="admin"),
    Bad("empty-username", "POST", "/api/v1/users", 422, "name", {"name": ""}, who="admin"),
    Bad("number-username", "POST", "/api/v1/users", 422, "name", {"name": 42}, who="admin"),
    Bad("root-role", "POST", "/api/v1/users", 422, "role", {"name": "newcomer", "role": "root"}, who="admin"),
    Bad(
        "short-password",
        "POST",
        "/api/v1/users",
        422,
        "password",
        {"name": "newcomer", "password": "short"},
        who="admin",
    ),
    Bad(
        "100k-password",
        "POST",
        "/api/v1/users",
        422,
        "password",
        {"name": "newcomer", "password": "p" * 100_000},
        who="admin",
    ),
    Bad(
        "11-char-password",
        "POST",
        "/api/v1/users",
        422,
        "password",
        {"name": "newcomer", "password": "eleven char"},
        who="admin",
    ),
    Bad(
        "common-password",
        "POST",
        "/api/v1/users",
        422,
        "password",
        {"name": "newcomer", "password": "Password2024!"},
        who="admin",
    ),
    Bad(
        "smuggled-flag",
        "POST",
        "/api/v1/users",
        422,
        "must_change_password",
        {"name": "newcomer", "password": "long-enough-1", "must_change_password": False},
        who="admin",
    ),
    Bad(
        "path-in-patch",
        "PATCH",
        "/api/v1/users/..%2F..%2Fetc%2Fpasswd",
        404,
        None,
        {"active": False},
        who="admin",
    ),
    Bad(
        "unknown-user-patch",
        "PATCH",
        "/api/v1/users/nobody-at-all",
        404,
        None,
        {"active": False},
        who="admin",
    ),
    Bad(
        "superadmin-role", "PATCH", "/api/v1/users/{victim}", 422, "role", {"role": "superadmin"}, who="admin"
    ),
    Bad(
        "active-as-string", "PATCH", "/api/v1/users/{victim}", 422, "active", {"active": "false"}, who="admin"
    ),
    Bad("rename-by-patch", "PATCH", "/api/v1/users/{victim}", 422, "name", {"name": "someone"}, who="admin"),
]

TOKENS = [
    Bad("path-token-owner", "POST", "/api/v1/tokens", 422, "user", {"user": "../../etc/passwd"}),
    Bad("newline-token-name", "POST", "/api/v1/tokens", 422, "name", {"user": "{me}", "name": "a\nb"}),
    Bad("long-token-name", "POST", "/api/v1/tokens", 422, "name", {"user": "{me}", "name": "x" * 65}),
    Bad("path-token-list", "GET", "/api/v1/tokens", 404, None, params={"name": "../../etc/passwd"}),
    Bad("word-token-id", "DELETE", "/api/v1/tokens/abc", 422, "token_id"),
    Bad("hex-token-id", "DELETE", "/api/v1/tokens/0x10", 422, "token_id"),
    Bad("negative-token-id", "DELETE", "/api/v1/tokens/-1", 404),
    Bad("huge-token-id", "DELETE", f"/api/v1/tokens/{HUGE_INT}", 404),
    Bad(
        "short-new-password",
        "POST",
        "/api/v1/me/password",
        422,
        "new_password",
        {"current_password": "whatever", "new_password": "short"},
    ),
    Bad(
        "100k-new-password",
        "POST",
        "/api/v1/me/password",
        422,
        "new_password",
        {"current_password": "whatever", "new_password": "n" * 100_000},
    ),
    Bad(
        "common-new-password",
        "POST",
        "/api/v1/me/password",
        422,
        "new_password",
        {"current_password": "whatever", "new_password": "qwertyuiop123"},
    ),
    Bad(
        "password-for-someone-else",
        "POST",
        "/api/v1/me/password",
        422,
        "user",
        {"current_password": "whatever", "new_password": "long-enough-1", "user": "admin"},
    ),
]

SEARCHES_AND_IDS = [
    Bad("501-char-query", "GET", "/api/v1/prompts", 422, "q", params={"q": "x" * 501}),
    Bad("page-zero", "GET", "/api/v1/prompts", 422, "page", params={"page": 0}),
    Bad("huge-page", "GET", "/api/v1/prompts", 422, "page", params={"page": HUGE_INT}),
    Bad("sql-page", "GET", "/api/v1/prompts", 422, "page", params={"page": "1; DROP TABLE prompts"}),
    Bad("huge-page-size", "GET", "/api/v1/prompts", 422, "page_size", params={"page_size": 1000}),
    Bad("word-date", "GET", "/api/v1/prompts", 422, "created_from", params={"created_from": "yesterday"}),
    Bad("sql-status", "GET", "/api/v1/prompts", 422, "status", params={"status": "'; DROP TABLE prompts;--"}),
    Bad("path-author", "GET", "/api/v1/prompts", 404, None, params={"author": "../../etc/passwd"}),
    Bad("sql-author", "GET", "/api/v1/prompts", 404, None, params={"author": "' OR 1=1 --"}),
    Bad("maybe-mine", "GET", "/api/v1/prompts", 422, "mine", params={"mine": "maybe"}),
    Bad("huge-generation-id", "GET", f"/api/v1/generations/{HUGE_INT}", 404),
    Bad("negative-generation-id", "GET", "/api/v1/generations/-1", 404),
    Bad("path-generation-id", "DELETE", "/api/v1/generations/..%2F..%2Fetc%2Fpasswd", 404),
    Bad("float-image-id", "GET", "/api/v1/images/1e3", 422, "image_id"),
    Bad("huge-image-submit", "POST", f"/api/v1/images/{HUGE_INT}/submit", 404),
    Bad("all-export", "GET", "/api/v1/export", 422, "status", params={"status": "all"}, who="reviewer"),
]

REVIEWS = [
    Bad(
        "shouted-decision",
        "POST",
        "/api/v1/images/{pending}/reviews",
        422,
        "decision",
        {"decision": "APPROVE"},
        who="reviewer",
    ),
    Bad(
        "numeric-decision",
        "POST",
        "/api/v1/images/{pending}/reviews",
        422,
        "decision",
        {"decision": 1},
        who="reviewer",
    ),
    Bad(
        "100k-comment",
        "POST",
        "/api/v1/images/{pending}/reviews",
        422,
        "comment",
        {"decision": "reject", "comment": "c" * 100_000},
        who="reviewer",
    ),
    Bad(
        "nul-comment",
        "POST",
        "/api/v1/images/{pending}/reviews",
        422,
        "comment",
        {"decision": "reject", "comment": "bad\x00"},
        who="reviewer",
    ),
    Bad(
        "rtl-override-comment",
        "POST",
        "/api/v1/images/{pending}/reviews",
        422,
        "comment",
        {"decision": "reject", "comment": "fine \u202egnorw"},
        who="reviewer",
    ),
    Bad(
        "spoofed-reviewer",
        "POST",
        "/api/v1/images/{pending}/reviews",
        422,
        "reviewer",
        {"decision": "approve", "reviewer": "someone-else"},
        who="reviewer",
    ),
    Bad(
        "changes-without-comment",
        "POST",
        "/api/v1/images/{pending}/reviews",
        422,
        "comment",
        {"decision": "request_changes"},
        who="reviewer",
    ),
    Bad(
        "review-body-list",
        "POST",
        "/api/v1/images/{pending}/reviews",
        422,
        "body",
        ["approve"],
        who="reviewer",
    ),
]

ALL = GENERATIONS + USERS + TOKENS + SEARCHES_AND_IDS + REVIEWS


@dataclass
class Scene:
    people: dict[str, Person]
    victim: Person
    pending_image: int


@pytest.fixture(scope="module")
def scene(live: Live) -> Scene:
    """A member, a reviewer, an admin, a user to aim at, and an image waiting for review."""
    people = {role: live.person(role) for role in ("member", "reviewer", "admin")}
    author = live.person()
    done = generate(live.client(author), f"a white ring {unique_word()}")
    image_id = done["images"][0]["id"]
    live.client(author).post(f"/api/v1/images/{image_id}/submit").raise_for_status()
    return Scene(people, live.person(), image_id)


def quiet(live: Live, timeout: float = 120) -> None:
    """Wait until no job of any test is queued or running: their rows would change the counts."""
    deadline = time.monotonic() + timeout
    while True:
        with live.storage.db.read() as session:
            busy = session.scalar(
                select(func.count())
                .select_from(Generation)
                .where(Generation.status.in_(["queued", "running"]))
            )
        if not busy or time.monotonic() > deadline:
            return
        time.sleep(0.1)


def snapshot(live: Live) -> tuple[dict[str, int], set[str]]:
    """Row counts of every table, and every file in the two stores."""
    with live.storage.db.read() as session:
        counts = {
            table.name: session.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables
        }
    root: Path = live.storage.data_dir
    files = {
        str(path.relative_to(root))
        for store in ("images", "uploads")
        for path in (root / store).rglob("*")
        if path.is_file()
    }
    return counts, files


def names_field(body: dict, field_name: str) -> bool:
    detail = body["detail"]
    if isinstance(detail, list):
        return any(item["field"].startswith(field_name) or field_name in item["message"] for item in detail)
    return field_name in str(detail)


def fill(template: str, scene: Scene) -> str:
    return (
        template.replace("{victim}", scene.victim.name)
        .replace("{pending}", str(scene.pending_image))
        .replace("{me}", scene.people["member"].name)
    )


@pytest.mark.parametrize("bad", ALL, ids=[bad.label for bad in ALL])
def test_hostile_request_is_refused_by_field_and_writes_nothing(live: Live, scene: Scene, bad: Bad) -> None:
    client = live.client(scene.people[bad.who])
    quiet(live)
    before = snapshot(live)
    kwargs: dict = {"params": bad.params}
    if bad.raw is not None:
        kwargs.update(content=bad.raw, headers={"Content-Type": "application/json"})
    elif bad.json_body is not NO_BODY:
        body = json.loads(fill(json.dumps(bad.json_body), scene))
        kwargs.update(content=json.dumps(body), headers={"Content-Type": "application/json"})
    response = client.request(bad.method, fill(bad.path, scene), **kwargs)
    assert response.status_code == bad.status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "detail"} and body["detail"], body
    if bad.field is not None:
        assert names_field(body, bad.field), body
    assert live.client().get("/api/v1/health").status_code == 200
    assert snapshot(live) == before


# Upload details test_api_inputs.py does not cover -------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def broken_crc_png() -> bytes:
    data = bytearray(png_bytes("red", (16, 16)))
    data[29] ^= 0xFF  # inside IHDR's CRC
    return bytes(data)


BAD_FILES = [
    ("bitmap.png", png_bytes("red", (8, 8), "BMP"), 415, "unsupported_media_type"),
    ("tiff.png", png_bytes("red", (8, 8), "TIFF"), 415, "unsupported_media_type"),
    ("crc.png", broken_crc_png(), 422, "invalid_image"),
    ("damaged.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 64, 422, "invalid_image"),
    ("damaged.webp", b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 16, 422, "invalid_image"),
    (
        "header-only.png",
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)),
        422,
        "invalid_image",
    ),
    (
        "zero-size.png",
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0)),
        422,
        "invalid_image",
    ),
]


@pytest.mark.parametrize(("name", "data", "status", "error"), BAD_FILES, ids=[f[0] for f in BAD_FILES])
def test_more_broken_files_are_refused(
    live: Live, scene: Scene, name: str, data: bytes, status: int, error: str
) -> None:
    quiet(live)
    before = snapshot(live)
    response = upload(live.client(scene.people["member"]), data, name)
    assert (response.status_code, response.json()["error"]) == (status, error), response.text
    assert snapshot(live) == before


@pytest.mark.parametrize("form", [{"data": {"file": "not a file"}}, {"json": {"file": "aGVsbG8="}}, {}])
def test_an_upload_without_a_file_names_the_field(live: Live, scene: Scene, form: dict) -> None:
    before = snapshot(live)
    response = live.client(scene.people["member"]).post("/api/v1/uploads", **form)
    assert response.status_code == 422 and names_field(response.json(), "file"), response.text
    assert snapshot(live) == before


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "..\\..\\windows\\win.ini", "/etc/shadow.png", "a\x00b.png", "<script>.png"]
)
def test_upload_filenames_never_reach_the_filesystem(live: Live, scene: Scene, name: str) -> None:
    """The file is stored under the hash of its re-encoded pixels; the name the client sent is ignored."""
    colour = "#%06x" % (hash(name) & 0xFFFFFF)
    response = upload(live.client(scene.people["member"]), png_bytes(colour, (9, 9)), name)
    assert response.status_code == 201, response.text
    sha256 = response.json()["sha256"]
    root = live.storage.data_dir
    assert (root / "uploads" / sha256[:2] / sha256[2:4] / f"{sha256}.png").is_file()
    stray = [
        path
        for path in root.rglob("*")
        if path.name in ("passwd", "shadow.png", "win.ini") or "script" in path.name
    ]
    assert stray == []


def test_a_polyglot_upload_is_stored_as_a_clean_png(live: Live, scene: Scene) -> None:
    """A PNG with HTML glued on is accepted as the picture it is; the stored copy is re-encoded."""
    polyglot = png_bytes("orange", (11, 7)) + b"<html><script>alert(1)</script></html>"
    response = upload(live.client(scene.people["member"]), polyglot, "nice.png")
    assert response.status_code == 201, response.text
    stored = live.storage.upload_store.read(response.json()["sha256"])
    assert b"<script>" not in stored and stored.startswith(b"\x89PNG")


@pytest.mark.parametrize("query", ["\x00", "名前 \u2217 🔴", "\u202e evil", "a" * 500])
def test_odd_but_legal_searches_are_answered(live: Live, scene: Scene, query: str) -> None:
    response = live.client(scene.people["member"]).get("/api/v1/prompts", params={"q": query})
    assert response.status_code == 200 and isinstance(response.json()["total"], int), response.text


def test_joiners_and_right_to_left_text_survive_into_the_png(live: Live, scene: Scene) -> None:
    """Format characters other than the bidirectional controls (refused above) are text: kept as typed."""
    from storage.metadata import read_png_metadata

    prompt = f"a red circle שלום 👩\u200d🎨 {unique_word()}"
    client = live.client(scene.people["member"])
    done = generate(client, prompt)
    served = client.get(done["images"][0]["url"]).content
    assert read_png_metadata(served).prompt == prompt
