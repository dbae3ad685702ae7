"""Review decisions and revisions over REST: reject and request-changes need a comment (422 naming
`comment`), and an image submitted as a revision shows its lineage."""

from __future__ import annotations

import httpx
import pytest

from tests.webapp.conftest import Live
from tests.webapp.helpers import generate, unique_word


def pending_image(author: httpx.Client, prompt: str) -> int:
    image_id = generate(author, prompt)["images"][0]["id"]
    author.post(f"/api/v1/images/{image_id}/submit").raise_for_status()
    return image_id


@pytest.mark.parametrize("decision", ["reject", "request_changes"])
def test_a_decision_against_the_image_needs_a_comment(live: Live, decision: str) -> None:
    author, reviewer = live.client(live.person()), live.client(live.person("reviewer"))
    image_id = pending_image(author, f"a grey square {unique_word()}")
    for comment in ({}, {"comment": ""}, {"comment": "   "}):
        refused = reviewer.post(f"/api/v1/images/{image_id}/reviews", json={"decision": decision, **comment})
        assert refused.status_code == 422, refused.text
        assert [d["field"] for d in refused.json()["detail"]] == ["comment"]
    assert reviewer.get(f"/api/v1/images/{image_id}/reviews").json() == []
    decided = reviewer.post(
        f"/api/v1/images/{image_id}/reviews", json={"decision": decision, "comment": "too pale"}
    )
    assert decided.status_code == 201 and decided.json()["comment"] == "too pale"


def test_a_revision_is_submitted_against_the_old_image_and_the_lineage_shows_it(live: Live) -> None:
    person = live.person()
    author, reviewer = live.client(person), live.client(live.person("reviewer"))
    word = unique_word()
    first = pending_image(author, f"a small red circle {word}")
    reviewer.post(
        f"/api/v1/images/{first}/reviews", json={"decision": "request_changes", "comment": "bigger"}
    ).raise_for_status()
    second = generate(author, f"a big red circle {word}")["images"][0]["id"]
    submitted = author.post(f"/api/v1/images/{second}/submit", json={"revision_of": first})
    assert submitted.status_code == 200, submitted.text
    assert (submitted.json()["review_status"], submitted.json()["revision_of"]) == ("pending", first)
    lineage = reviewer.get(f"/api/v1/images/{second}/lineage")
    assert [image["id"] for image in lineage.json()] == [first]
    assert reviewer.get(f"/api/v1/images/{first}/lineage").json() == []
    generation_id = live.storage.generations.image(person.user.id, second).generation_id
    generation = author.get(f"/api/v1/generations/{generation_id}").json()
    assert generation["images"][0]["revision_of"] == first


def test_a_revision_of_someone_elses_image_is_refused_naming_the_field(live: Live) -> None:
    author, other = live.client(live.person()), live.client(live.person())
    theirs = generate(other, f"a blue star {unique_word()}")["images"][0]["id"]
    mine = generate(author, f"a blue star {unique_word()}")["images"][0]["id"]
    refused = author.post(f"/api/v1/images/{mine}/submit", json={"revision_of": theirs})
    assert refused.status_code == 422
    assert [d["field"] for d in refused.json()["detail"]] == ["revision_of"]
    unknown_field = author.post(f"/api/v1/images/{mine}/submit", json={"revises": theirs})
    assert unknown_field.status_code == 422
    assert author.post(f"/api/v1/images/{mine}/submit").json()["review_status"] == "pending"
