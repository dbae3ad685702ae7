"""Bad input over REST gets a clear 4xx JSON error naming the field, and nothing is stored for it."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import cast

import pytest
from PIL import Image

from storage.metadata import read_png_metadata
from tests.webapp.conftest import Live, Person
from tests.webapp.helpers import generate, png_bytes, png_declaring, unique_word, upload
from webapp.context import Studio
from webapp.uploads import MAX_UPLOAD_BYTES


def stored_uploads(live: Live) -> set[Path]:
    return {path for path in (live.storage.data_dir / "uploads").rglob("*") if path.is_file()}


@pytest.fixture
def member(live: Live) -> Person:
    return live.person()


BAD_UPLOADS = [
    ("bomb.png", png_declaring(20000, 20000), "image/png", 413, "image_too_large"),
    ("truncated.png", png_bytes("red", (64, 64))[:120], "image/png", 422, "invalid_image"),
    ("notes.png", b"just some text, not a picture\n" * 10, "image/png", 415, "unsupported_media_type"),
    (
        "logo.svg",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "image/svg+xml",
        415,
        "unsupported_media_type",
    ),
    (
        "page.html",
        b"<html><body><script>alert(1)</script></body></html>",
        "text/html",
        415,
        "unsupported_media_type",
    ),
    ("anim.gif", png_bytes("red", fmt="GIF"), "image/gif", 415, "unsupported_media_type"),
    ("empty.png", b"", "image/png", 422, "invalid_image"),
]


@pytest.mark.parametrize(
    ("name", "data", "mime", "status", "error"), BAD_UPLOADS, ids=[c[0] for c in BAD_UPLOADS]
)
def test_bad_uploads_are_refused_and_nothing_is_kept(
    live: Live, member: Person, name: str, data: bytes, mime: str, status: int, error: str
) -> None:
    before = stored_uploads(live)
    response = upload(live.client(member), data, name, mime)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error and "file" in response.json()["detail"]
    assert stored_uploads(live) == before


@pytest.mark.parametrize("size", [MAX_UPLOAD_BYTES + 1, 50 * 1024 * 1024])
def test_oversized_uploads_are_refused(live: Live, member: Person, size: int) -> None:
    before = stored_uploads(live)
    huge = b"\x89PNG\r\n\x1a\n" + b"\0" * size
    response = upload(live.client(member), huge)
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"
    assert stored_uploads(live) == before


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_png_jpeg_and_webp_are_accepted(live: Live, member: Person, fmt: str) -> None:
    response = upload(live.client(member), png_bytes("purple", (40, 30), fmt), f"x.{fmt.lower()}")
    assert response.status_code == 201, response.text
    assert (response.json()["width"], response.json()["height"]) == (40, 30)


BAD_BODIES = [
    ({"prompt": "a circle", "colour": "red"}, "colour"),
    ({"prompt": "a circle", "steps": "25"}, "steps"),
    ({"prompt": "a circle", "steps": 10**9}, "steps"),
    ({"prompt": "a circle", "steps": -3}, "steps"),
    ({"prompt": "a circle", "width": 10**6}, "width"),
    ({"prompt": "a circle", "num_images": 0}, "num_images"),
    ({"prompt": "a circle", "num_images": 1000}, "num_images"),
    ({"prompt": "a circle", "guidance_scale": True}, "guidance_scale"),
    ({"prompt": "x" * 100_000}, "prompt"),
    ({"prompt": "a circle\x00\x1b[31m"}, "prompt"),
    ({"prompt": "a circle", "image_guidance_decay": "sometimes"}, "image_guidance_decay"),
    ({"prompt": "a circle", "mix": [{"text": "a", "image": "1", "weight": 1}]}, "mix.0"),
    ({"prompt": "a circle", "guidance_image": "../../etc/passwd"}, "guidance_image"),
    ({"prompt": "a circle", "scheduler": "warp-drive"}, "scheduler"),
    ({"prompt": "a circle", "candidates": 0}, "candidates"),
    ({"prompt": "a circle", "candidates": 20}, "candidates"),  # the schema allows 64, the model's verifier 16
    ({"prompt": 42}, "prompt"),
    ({"prompt": "a circle", "mix": [{"text": "red"}], "mix_space": "sideways"}, "mix_space"),
    ({"prompt": "", "mix": [{"text": "red", "weight": -1}]}, "mix_space"),  # text space needs a text to draw
    ({"prompt": "a circle", "upscale": "yes"}, "upscale"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES, ids=[c[1] + str(i) for i, c in enumerate(BAD_BODIES)])
def test_bad_generation_bodies_name_the_field(live: Live, member: Person, body: dict, field: str) -> None:
    response = live.client(member).post("/api/v1/generations", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request"
    assert any(item["field"].startswith(field) for item in response.json()["detail"]), response.json()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(live: Live, member: Person, literal: str) -> None:
    raw = f'{{"prompt": "a circle", "guidance_scale": {literal}}}'
    response = live.client(member).post(
        "/api/v1/generations", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "guidance_scale"


def chunks(head: bytes, megabytes: int, tail: bytes):
    """A body sent chunked, without Content-Length: the size is only known as it arrives."""
    yield head
    for _ in range(megabytes):
        yield b"a" * (1024 * 1024)
    yield tail


def test_chunked_bodies_are_capped_as_they_arrive(live: Live, member: Person) -> None:
    client = live.client(member)
    before = stored_uploads(live)
    form = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )
    sent = client.post(
        "/api/v1/uploads",
        content=chunks(form, 12, b"\r\n--b--\r\n"),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert sent.status_code == 413 and sent.json()["error"] == "payload_too_large"
    assert stored_uploads(live) == before
    body = client.post(
        "/api/v1/generations",
        content=chunks(b'{"prompt": "', 2, b'"}'),
        headers={"Content-Type": "application/json"},
    )
    assert body.status_code == 413 and body.json()["error"] == "payload_too_large"


def test_malformed_json_and_huge_bodies_get_json_errors(live: Live, member: Person) -> None:
    client = live.client(member)
    broken = client.post(
        "/api/v1/generations", content="{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["error"] == "invalid_request"
    huge = client.post(
        "/api/v1/generations",
        content=json.dumps({"prompt": "a" * 2_000_000}),
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413 and huge.json()["error"] == "payload_too_large"


def test_nothing_is_recorded_for_a_refused_generation(live: Live, member: Person) -> None:
    client = live.client(member)
    for body, _ in BAD_BODIES:
        client.post("/api/v1/generations", json=body)
    assert client.get("/api/v1/prompts", params={"mine": True}).json()["total"] == 0


def test_emoji_and_right_to_left_text_round_trip(live: Live, member: Person) -> None:
    word = unique_word()
    prompt = f"a red circle 🔴 دائرة حمراء {word}"
    done = generate(live.client(member), prompt)
    found = live.client(member).get("/api/v1/prompts", params={"q": word}).json()
    assert [item["prompt"] for item in found["items"]] == [prompt]
    assert done["params"]["prompt"] == prompt


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/images/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/generations/abc",
        "/api/v1/images/999999999",
        "/api/v1/no/such/endpoint",
    ],
)
def test_hostile_and_unknown_paths_get_json_errors(live: Live, member: Person, path: str) -> None:
    response = live.client(member).get(path)
    assert response.status_code in (404, 422) and set(response.json()) == {"error", "detail"}


@pytest.mark.parametrize("query", ["' OR 1=1 --", '"; DROP TABLE prompts; --', "NEAR(a b)", "*", "%_%"])
def test_sql_looking_searches_are_just_words(live: Live, member: Person, query: str) -> None:
    response = live.client(member).get("/api/v1/prompts", params={"q": query})
    assert response.status_code == 200 and isinstance(response.json()["total"], int)


def test_interpolation_between_the_prompt_and_one_ingredient_is_accepted(live: Live, member: Person) -> None:
    """A non-empty prompt is one end of an interpolation over REST too, as in the UI and the engine."""
    done = generate(
        live.client(member),
        f"a red circle {unique_word()}",
        mix=[{"text": "a blue square"}],
        interpolation=0.25,
    )
    assert done["params"]["interpolation"] == 0.25 and len(done["params"]["mix"]) == 1


def test_a_mix_records_its_space_and_the_same_request_draws_the_same_image(
    live: Live, member: Person
) -> None:
    """Texts mix in text space unless asked otherwise; the space is in the recorded parameters and the PNG."""
    client = live.client(member)
    prompt = f"a red circle {unique_word()}"
    body = {"seed": 11, "mix": [{"text": "red", "weight": -1}, {"text": "blue", "weight": 1}]}

    def pixels(done: dict) -> bytes:
        with Image.open(io.BytesIO(client.get(done["images"][0]["url"]).content)) as image:
            assert f"Mix space: {done['params']['mix_space']}" in str(image.info["parameters"])
            return image.tobytes()

    first, again = (generate(client, prompt, **body) for _ in range(2))
    assert first["params"]["mix_space"] == again["params"]["mix_space"] == "text"
    assert pixels(first) == pixels(again)
    image_space = generate(client, prompt, mix_space="image", **body)
    assert image_space["params"]["mix_space"] == "image"
    assert pixels(image_space) != pixels(first)


def test_upscale_over_rest_stores_the_4x_picture_or_is_refused_by_name(live: Live, member: Person) -> None:
    client = live.client(member)
    factor = cast(Studio, live.studio).engine.model_info.upscale_factor
    if factor == 1:  # a model without an upsampler
        response = client.post("/api/v1/generations", json={"prompt": "a circle", "upscale": True})
        assert response.status_code == 422, response.text
        assert [item["field"] for item in response.json()["detail"]] == ["upscale"]
        return
    done = generate(client, f"a red circle {unique_word()}", seed=21, upscale=True)
    assert done["params"]["upscale"] is True
    [image] = done["images"]
    size = (done["params"]["width"] * factor, done["params"]["height"] * factor)
    assert (image["width"], image["height"]) == size
    recipe = read_png_metadata(client.get(image["url"]).content)
    assert (recipe.width, recipe.height) == size and recipe.params["upscale"] is True
    assert (
        recipe.settings()["Upscale"]
        == f"{done['params']['width']}x{done['params']['height']} -> {size[0]}x{size[1]}"
    )
