"""Export: a zip of approved images with manifest.csv and manifest.json."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from storage import Storage
from storage.errors import PermissionDenied, ValidationFailed
from storage.metadata import read_png_metadata
from storage.services.export import neutralise_formula
from storage.types import OPERATOR, Decision

from .conftest import People
from .helpers import generate


@pytest.fixture
def approved(storage: Storage, people: People) -> list[int]:
    """Alice's image 0 approved by rita, image 1 rejected; bob's image approved by ada."""
    alice = generate(storage, people.alice, "a red circle", images=2, seed=11)
    bob = generate(storage, people.bob, "a blue square", images=1, seed=22)
    for owner, generation in ((people.alice, alice), (people.bob, bob)):
        for image in generation.images:
            storage.reviews.submit(owner, image.id)
    storage.reviews.decide(people.rita, alice.images[0].id, Decision.APPROVE, "good, clean")
    storage.reviews.decide(people.rita, alice.images[1].id, Decision.REJECT, "off-centre")
    storage.reviews.decide(people.ada, bob.images[0].id, Decision.APPROVE)
    return [alice.images[0].id, bob.images[0].id]


def test_the_zip_holds_approved_images_and_both_manifests(
    storage: Storage, people: People, approved: list[int], tmp_path: Path
) -> None:
    out = tmp_path / "exports" / "approved.zip"
    summary = storage.export.write_zip(people.rita, out)
    assert summary.count == 2 and summary.missing_image_ids == ()
    with zipfile.ZipFile(out) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
        assert [m["image_id"] for m in manifest] == approved
        first = manifest[0]
        assert {
            k: first[k] for k in ("prompt", "seed", "author", "reviewer", "decision", "comment", "model")
        } == {
            "prompt": "a red circle",
            "seed": 11,
            "author": "alice",
            "reviewer": "rita",
            "decision": "approve",
            "comment": "good, clean",
            "model": "embedded",
        }
        assert first["parameters"] == {"steps": 2, "guidance_scale": 6.0}
        assert datetime.fromisoformat(first["decided_at"]).tzinfo is not None
        assert (manifest[1]["author"], manifest[1]["reviewer"]) == ("bob", "ada")
        assert [int(r["image_id"]) for r in rows] == approved
        assert (
            rows[0]["prompt"] == "a red circle" and rows[0]["reviewer"] == "rita" and rows[0]["seed"] == "11"
        )
        assert json.loads(rows[0]["parameters"]) == {"guidance_scale": 6.0, "steps": 2}
        assert sorted(archive.namelist()) == sorted(
            [m["file"] for m in manifest] + ["manifest.csv", "manifest.json"]
        )
        png = archive.read(first["file"])
        assert read_png_metadata(png).generation_id == first["generation_id"]
    assert [e.detail["count"] for e in storage.audit.list_events(people.ada, action="export").items] == [2]


def test_other_statuses_and_open_files(storage: Storage, people: People, approved: list[int]) -> None:
    buffer = io.BytesIO()
    assert storage.export.write_zip(OPERATOR, buffer, "rejected").count == 1
    with zipfile.ZipFile(buffer) as archive:
        (row,) = json.loads(archive.read("manifest.json"))
    assert (row["decision"], row["comment"], row["review_status"]) == ("reject", "off-centre", "rejected")
    with pytest.raises(ValidationFailed) as error:
        storage.export.write_zip(OPERATOR, io.BytesIO(), "final")
    assert error.value.field == "status"


def test_members_cannot_export(storage: Storage, people: People, approved: list[int], tmp_path: Path) -> None:
    with pytest.raises(PermissionDenied):
        storage.export.write_zip(people.alice, tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


def test_images_whose_file_is_gone_are_listed_not_zipped(
    storage: Storage, people: People, approved: list[int], tmp_path: Path
) -> None:
    lost = storage.generations.image(people.ada, approved[1])
    storage.images.delete(lost.sha256)
    summary = storage.export.write_zip(people.ada, tmp_path / "x.zip")
    assert (summary.count, summary.missing_image_ids) == (1, (approved[1],))
    with zipfile.ZipFile(tmp_path / "x.zip") as archive:
        assert [m["image_id"] for m in json.loads(archive.read("manifest.json"))] == [approved[0]]


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised_json_stays_exact(
    storage: Storage, people: People, start: str
) -> None:
    prompt_text = start + 'HYPERLINK("http://evil.example","x")'
    negative = start + "SUM(1+1)*cmd|' /C calc'!A0"
    comment = start + "cmd|' /C calc'!A0"
    prompt = storage.prompts.create(people.alice, text=prompt_text, negative_prompt=negative)
    generation = generate(storage, people.alice, prompt_id=prompt.id, images=1)
    storage.reviews.submit(people.alice, generation.images[0].id)
    storage.reviews.decide(people.rita, generation.images[0].id, Decision.APPROVE, comment)
    buffer = io.BytesIO()
    storage.export.write_zip(people.rita, buffer)
    with zipfile.ZipFile(buffer) as archive:
        (row,) = json.loads(archive.read("manifest.json"))
        (cells,) = csv.DictReader(io.StringIO(archive.read("manifest.csv").decode(), newline=""))
    assert (row["prompt"], row["negative_prompt"], row["comment"]) == (prompt_text, negative, comment)
    assert (cells["prompt"], cells["negative_prompt"], cells["comment"]) == (
        "'" + prompt_text,
        "'" + negative,
        "'" + comment,
    )
    assert cells["author"] == "alice" and cells["seed"] == str(row["seed"])


def test_tab_and_carriage_return_starts_are_neutralised_too() -> None:
    """Storage strips typed prompts, so these starts reach the CSV only through other fields."""
    assert [neutralise_formula(v) for v in ("\tx", "\rx", "a=b", "", 5, None)] == [
        "'\tx",
        "'\rx",
        "a=b",
        "",
        5,
        None,
    ]
