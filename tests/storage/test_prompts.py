"""Prompts: validation, mix and guidance, sharing, remix lineage, use counts, favourites."""

from __future__ import annotations

import math

import pytest

from storage import Storage
from storage.errors import NotFound, PermissionDenied, ValidationFailed
from storage.types import Guidance, GuidanceDecay, MixIngredientRef

from .conftest import People
from .helpers import plain_png


def test_a_full_prompt_is_kept_as_given(storage: Storage, people: People) -> None:
    upload = storage.uploads.add(people.alice, plain_png())
    prompt = storage.prompts.create(
        people.alice,
        text="  a red circle  ",
        negative_prompt="blurry",
        mix=[MixIngredientRef(1.0, text="a red circle"), MixIngredientRef(-0.5, upload_id=upload.id)],
        guidance=Guidance(upload.id, 0.005, GuidanceDecay.LINEAR),
        tags=["Shapes", "shapes", " red "],
    )
    again = storage.prompts.get(people.alice, prompt.id)
    assert again == prompt
    assert (again.text, again.author, again.tags, again.shared) == (
        "a red circle",
        "alice",
        ("shapes", "red"),
        True,
    )
    assert again.mix == (
        MixIngredientRef(1.0, text="a red circle"),
        MixIngredientRef(-0.5, upload_id=upload.id),
    )
    assert again.guidance == Guidance(upload.id, 0.005, GuidanceDecay.LINEAR)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("text", {"text": ""}),
        ("text", {"text": "x" * 2001}),
        ("mix[0].weight", {"mix": [MixIngredientRef(math.nan, text="a")]}),
        ("mix[0].weight", {"mix": [MixIngredientRef(11.0, text="a")]}),
        ("mix[1]", {"mix": [MixIngredientRef(1.0, text="a"), MixIngredientRef(1.0)]}),
        ("mix[0].image", {"mix": [MixIngredientRef(1.0, upload_id=999)]}),
        ("guidance.image", {"guidance": Guidance(999, 0.1)}),
        ("tags", {"tags": ["x" * 33]}),
    ],
)
def test_bad_prompts_are_refused_naming_the_field(
    storage: Storage, people: People, field: str, kwargs: dict[str, object]
) -> None:
    kwargs = {"text": "fine", **kwargs}
    with pytest.raises(ValidationFailed) as error:
        storage.prompts.create(people.alice, **kwargs)  # type: ignore[arg-type]
    assert error.value.field == field


def test_a_guidance_scale_out_of_range_is_refused(storage: Storage, people: People) -> None:
    upload = storage.uploads.add(people.alice, plain_png())
    with pytest.raises(ValidationFailed) as error:
        storage.prompts.create(people.alice, text="x", guidance=Guidance(upload.id, 2.0))
    assert error.value.field == "guidance.scale"


def test_private_prompts_are_visible_to_their_author_and_staff_only(storage: Storage, people: People) -> None:
    private = storage.prompts.create(people.alice, text="secret idea", shared=False)
    for viewer in (people.alice, people.rita, people.ada):
        assert storage.prompts.get(viewer, private.id).text == "secret idea"
    with pytest.raises(NotFound):
        storage.prompts.get(people.bob, private.id)
    with pytest.raises(NotFound):
        storage.prompts.create(people.bob, text="remix", parent_id=private.id)


def test_a_remix_records_its_parent_and_counts_as_a_use(storage: Storage, people: People) -> None:
    original = storage.prompts.create(people.alice, text="a red circle")
    remix = storage.prompts.create(people.bob, text="a red circle, large", parent_id=original.id)
    assert remix.parent_id == original.id and remix.author == "bob"
    assert storage.prompts.get(people.bob, original.id).use_count == 1
    assert storage.prompts.get(people.bob, original.id).text == "a red circle"  # the original is untouched


def test_only_the_author_or_an_admin_changes_tags_and_sharing(storage: Storage, people: People) -> None:
    prompt = storage.prompts.create(people.alice, text="a square")
    with pytest.raises(PermissionDenied, match="author"):
        storage.prompts.update(people.bob, prompt.id, shared=False)
    assert storage.prompts.update(people.alice, prompt.id, tags=["Blue"]).tags == ("blue",)
    assert not storage.prompts.update(people.ada, prompt.id, shared=False).shared


def test_favourites_are_per_user_and_toggle(storage: Storage, people: People) -> None:
    one = storage.prompts.create(people.alice, text="one")
    two = storage.prompts.create(people.alice, text="two")
    storage.prompts.set_favourite(people.bob, one.id)
    storage.prompts.set_favourite(people.bob, two.id)
    storage.prompts.set_favourite(people.bob, two.id)  # twice is once
    assert {p.id for p in storage.prompts.favourites(people.bob)} == {one.id, two.id}
    assert storage.prompts.favourites(people.alice) == []
    storage.prompts.set_favourite(people.bob, one.id, False)
    assert [p.id for p in storage.prompts.favourites(people.bob)] == [two.id]
