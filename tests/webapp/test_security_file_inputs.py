"""A UI event's file input names a server path that the caller writes: only files uploaded to this server's
Gradio upload folder may be used, never the database, /etc/passwd or any other file the process can read.

Every event with a file-like input (image, file, gallery, ...) is found in the app's own Gradio config, so a
new event is covered without editing this test, and called through the HTTP queue as a signed-in member.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import gradio as gr
import httpx
import pytest
from gradio.utils import get_upload_folder
from sqlalchemy import func, select

from storage.models import Upload
from tests.webapp.conftest import Live
from tests.webapp.helpers import png_bytes, queue_call, signed_in_browser
from webapp.ui.common import ImageFiles, uploaded_file
from webapp.ui.generate import GenerateTab


def file_events(config: dict) -> list[tuple[dict, list[int]]]:
    """Each Python event of the app with the positions of its file-like inputs (those taking a FileData)."""
    file_like = {
        c["id"] for c in config["components"] if "gradio.FileData" in json.dumps(c.get("api_info_as_input"))
    }
    return [
        (dependency, [n for n, input_id in enumerate(dependency["inputs"]) if input_id in file_like])
        for dependency in config["dependencies"]
        if dependency["backend_fn"] and file_like & set(dependency["inputs"])
    ]


def default_inputs(config: dict, dependency: dict) -> list:
    values = {c["id"]: c["props"].get("value") for c in config["components"]}
    return [values.get(input_id) for input_id in dependency["inputs"]]


def file_data(path: Path | str) -> dict:
    return {"path": str(path), "orig_name": "x.png", "meta": {"_type": "gradio.FileData"}}


def cached_files() -> set[Path]:
    return {path for path in Path(get_upload_folder()).rglob("*") if path.is_file()}


@pytest.fixture
def secret_png(live: Live) -> Path:
    """A valid image outside the upload folder: the most useful file to an attacker (it would pass as an upload)."""
    path = live.storage.data_dir / f"secret-{uuid.uuid4().hex}.png"
    path.write_bytes(png_bytes("purple"))
    return path


def test_no_event_copies_or_returns_a_file_from_outside_the_upload_folder(
    live: Live, secret_png: Path
) -> None:
    member = live.person()
    browser = signed_in_browser(live.url, member.name, member.password)
    config = browser.get("/config").raise_for_status().json()
    events = file_events(config)
    names = {dependency["api_name"] for dependency, _ in events}
    assert {"generate", "mix_remove_0"} <= names, (
        names
    )  # the enumeration finds the Generate tab's file inputs
    targets = [secret_png, live.storage.data_dir / "draftroom.db", Path("/etc/passwd")]
    before = cached_files()
    calls = []
    for dependency, positions in events:
        for target in targets:
            for position in positions:  # each file input on its own: a check must not stop at the first
                data = default_inputs(config, dependency)
                data[position] = file_data(target)
                calls.append(
                    (dependency["api_name"], position, target, queue_call(browser, dependency, data))
                )
    for api_name, position, target, messages in calls:
        completed = messages[-1]
        assert completed["msg"] == "process_completed", (api_name, messages)
        assert completed["success"] is False, (api_name, position, target, completed)
        assert "/gradio_api/file=" not in json.dumps(messages), (api_name, position, target)
    leaked = {path for path in cached_files() - before if path.name in {t.name for t in targets}}
    assert leaked == set(), f"copied into Gradio's cache: {sorted(leaked)}"
    with live.storage.db.read() as session:  # the guidance image did not become the caller's upload
        assert session.scalar(select(func.count()).where(Upload.uploader_id == member.user.id)) == 0


def test_a_signed_out_caller_cannot_call_an_event(live: Live, secret_png: Path) -> None:
    anonymous = httpx.Client(base_url=live.url, timeout=30)
    joined = anonymous.post(
        "/gradio_api/queue/join",
        json={"data": [file_data(secret_png)], "fn_index": 0, "session_hash": uuid.uuid4().hex},
    )
    assert joined.status_code == 401


def test_handlers_accept_only_files_in_the_upload_folder(live: Live, secret_png: Path) -> None:
    """Defence in depth: the handlers check the path themselves, whatever Gradio let through."""
    with pytest.raises(gr.Error, match="Guidance image: not a file uploaded"):
        uploaded_file(str(secret_png), "Guidance image")
    with pytest.raises(gr.Error, match="Ingredient 2: not a file uploaded"):
        uploaded_file("/etc/passwd", "Ingredient 2")
    escaping = Path(get_upload_folder()) / ".." / secret_png.relative_to("/")
    with pytest.raises(gr.Error, match="not a file uploaded"):
        uploaded_file(str(escaping), "Ingredient 1")

    with gr.Blocks():
        tab = GenerateTab(live.studio, ImageFiles(live.studio))
    uploaded = tab.guidance_image.move_resource_to_block_cache(str(secret_png))  # as Gradio stores an upload
    assert uploaded_file(uploaded, "Guidance image") == Path(uploaded).resolve()
    person = live.person()
    slots: list = [("image", "", str(secret_png), 1.0), ("image", "", uploaded, 1.0)]
    slots += [("text", "", None, 1.0)] * (len(tab.slots) - len(slots))
    with pytest.raises(gr.Error, match="Ingredient 1: not a file uploaded"):
        tab._remove_slot(1)(gr.Request(username=person.name), 2, *(v for slot in slots for v in slot))
    with pytest.raises(gr.Error, match="Guidance image: not a file uploaded"):
        tab._store_image(person.user, str(secret_png), "Guidance image")
    assert tab._store_image(person.user, uploaded, "Guidance image") is not None
