"""Each image of a generation shows its own seed (image i uses seed + i) wherever it appears: the REST
image record, the history (REST and UI), the review queue, the export's manifests, and its PNG's recipe."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import gradio as gr

from storage.metadata import read_png_metadata
from tests.webapp.conftest import Live
from tests.webapp.helpers import generate, unique_word
from webapp.ui.common import ImageFiles
from webapp.ui.generate import GenerateTab
from webapp.ui.history import HistoryTab
from webapp.ui.review import ReviewTab


def test_the_third_image_of_a_generation_shows_its_own_seed_everywhere(live: Live) -> None:
    author, reviewer = live.person(), live.person("reviewer")
    client, staff = live.client(author), live.client(reviewer)
    word = unique_word()
    done = generate(client, f"a red circle {word}", seed=41, num_images=3, candidates=1)
    third = done["images"][2]
    assert [image["seed"] for image in done["images"]] == [41, 42, 43]
    assert read_png_metadata(client.get(third["url"]).content).seed == 43

    listed = client.get("/api/v1/prompts", params={"q": word}).json()["items"]
    assert [image["seed"] for image in listed[0]["images"]] == [41, 42, 43]
    files = ImageFiles(live.studio)
    with gr.Blocks(), gr.Tabs() as tabs:
        with gr.Tab("Generate"):
            generate_tab = GenerateTab(live.studio, files)
        with gr.Tab("History"):
            history = HistoryTab(live.studio, files, generate_tab, tabs)
        with gr.Tab("Review"):
            review = ReviewTab(live.studio, files)
    per_image = str(history.details(author.user, done["id"])[2])
    assert f"Image #{third['id']} (seed 43)" in per_image

    assert client.post(f"/api/v1/images/{third['id']}/submit").status_code == 200
    assert third["id"] in [item["id"] for item in review._queue(reviewer.user, author.name, "", "")]
    _, recipe, _ = review.panel(reviewer.user, third["id"])
    assert "<dt>Seed</dt><dd>43</dd>" in recipe
    approved = staff.post(f"/api/v1/images/{third['id']}/reviews", json={"decision": "approve"})
    assert approved.status_code == 201, approved.text

    exported = staff.get("/api/v1/export", params={"status": "approved"})
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        entry = next(
            row for row in json.loads(archive.read("manifest.json")) if row["image_id"] == third["id"]
        )
        row = next(
            r
            for r in csv.DictReader(io.StringIO(archive.read("manifest.csv").decode()))
            if int(r["image_id"]) == third["id"]
        )
        assert entry["seed"] == int(row["seed"]) == read_png_metadata(archive.read(entry["file"])).seed == 43
