"""Small builders the webapp tests share: images as upload bytes, unique words, a finished generation, a real
server process with one account."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import httpx
from PIL import Image

from bench.load import ServerProcess
from storage.types import OPERATOR
from tests.webapp.conftest import TEST_STEPS, open_test_storage, wait_final


def png_bytes(color: str = "red", size: tuple[int, int] = (48, 48), fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def unique_word() -> str:
    """A word no other test writes, so a search finds exactly this test's prompt (letters only)."""
    return "zz" + "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:10])


def upload(
    client: httpx.Client, data: bytes, name: str = "guide.png", mime: str = "image/png"
) -> httpx.Response:
    return client.post("/api/v1/uploads", files={"file": (name, data, mime)})


def generate(client: httpx.Client, prompt: str, **fields: object) -> dict:
    """Generate, wait, and return the finished generation (asserting it succeeded)."""
    response = client.post("/api/v1/generations", json={"prompt": prompt, "steps": TEST_STEPS, **fields})
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    body = wait_final(client, response.json()["id"])
    assert body["status"] == "succeeded", body
    return body


def png_declaring(width: int, height: int) -> bytes:
    """A small PNG file whose header declares `width`x`height` pixels: a decompression bomb's shape."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def start_server_with_account(
    tmp_path: Path, model_path: Path, name: str, role: str, password: str
) -> tuple[ServerProcess, str]:
    """A real `app.py serve` over a fresh data folder (`server.data_dir`) holding one account.

    Returns the started server and that account's API token; the caller stops (or kills) the server.
    """
    data_dir = tmp_path / "data"
    with open_test_storage(data_dir) as storage:
        user = storage.users.create(OPERATOR, name, role=role, password=password).user
        token = storage.tokens.create(OPERATOR, user.id, "setup").secret
    server = ServerProcess(data_dir, model_path, tmp_path / "server.log")
    server.start()
    return server, token


def signed_in_browser(url: str, name: str, password: str) -> httpx.Client:
    """An HTTP client holding the UI's session cookie, as a browser has after the sign-in form."""
    client = httpx.Client(base_url=url, timeout=60, headers={"Origin": url})
    response = client.post("/login", data={"username": name, "password": password})
    assert response.status_code == 200, response.text
    return client


def queue_call(
    client: httpx.Client, dependency: dict, data: list, session_hash: str | None = None
) -> list[dict]:
    """Run one UI event through Gradio's HTTP queue (`queue/join`, then the `queue/data` stream), as the
    browser does; returns the stream's messages up to the event's completion."""
    session_hash = session_hash or uuid.uuid4().hex
    joined = client.post(
        "/gradio_api/queue/join",
        json={
            "data": data,
            "fn_index": dependency["id"],
            "session_hash": session_hash,
            "event_data": None,
            "trigger_id": dependency["targets"][0][0] if dependency["targets"] else None,
        },
    )
    assert joined.status_code == 200, joined.text
    return read_stream(client, session_hash, joined.json()["event_id"])


def read_stream(client: httpx.Client, session_hash: str, event_id: str | None = None) -> list[dict]:
    """The messages of a session's results stream, up to the completion of `event_id` (or of any event), or
    up to Gradio's error message (an unknown session, for one)."""
    messages: list[dict] = []
    with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session_hash}) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[len("data:") :])
            messages.append(message)
            if message.get("msg") in ("close_stream", "unexpected_error") or (
                message.get("msg") == "process_completed" and event_id in (None, message.get("event_id"))
            ):
                break
    return messages
