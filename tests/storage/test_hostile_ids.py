"""Storage under hostile input and after a crash: ids no database column can hold, names with NUL
bytes, and the files a killed process wrote but never recorded (both backends)."""

from __future__ import annotations

import os
import time

import pytest

from storage import Storage
from storage.errors import NotFound, PermissionDenied, ValidationFailed
from storage.images import TEMP_PREFIX
from storage.types import OPERATOR, HistoryQuery, MixIngredientRef, ProblemKind
from tests.storage.conftest import PASSWORD, People
from tests.storage.helpers import generate, plain_png, png


@pytest.mark.parametrize("ident", [2**63, 10**30, 0, -1, -(2**63) - 1])
def test_ids_out_of_any_column_range_are_simply_not_found(
    storage: Storage, people: People, ident: int
) -> None:
    with pytest.raises(NotFound):
        storage.generations.get(people.alice, ident)
    with pytest.raises(NotFound):
        storage.generations.image(people.alice, ident)
    with pytest.raises(NotFound):
        storage.uploads.get(people.alice, ident)
    with pytest.raises(NotFound):
        storage.tokens.revoke(OPERATOR, ident)
    with pytest.raises(ValidationFailed) as refused:
        storage.prompts.create(
            people.alice, text="a red circle", mix=(MixIngredientRef(weight=1.0, upload_id=ident),)
        )
    assert refused.value.field.startswith("mix")


@pytest.mark.parametrize("name", ["ada\x00", "\x00", "a" * 10_000, "../../etc/passwd"])
def test_names_no_account_can_have_are_not_found(storage: Storage, people: People, name: str) -> None:
    """A NUL byte would reach PostgreSQL as an error unless stopped first; no username can hold one."""
    with pytest.raises(NotFound):
        storage.users.find(name)
    with pytest.raises(NotFound):
        storage.history.search(people.alice, HistoryQuery(author=name))


def test_start_up_removes_what_a_killed_process_wrote_but_never_recorded(
    storage: Storage, people: People
) -> None:
    recorded = generate(storage, people.alice, images=1).images[0]
    orphan = storage.images.put(png(color=(1, 2, 3)))
    upload_orphan = storage.upload_store.put(plain_png(color=(4, 5, 6)))
    temp = storage.images.path_for(recorded.sha256).parent / f"{TEMP_PREFIX}half"
    temp.write_bytes(b"\x89PNG half")
    stray = storage.images.root / "notes.txt"
    stray.write_text("not ours")
    an_hour_ago = time.time() - 3600
    os.utime(temp, (an_hour_ago, an_hour_ago))  # old or young: at start-up no write is in progress
    removed = storage.check.remove_interrupted_writes()
    assert sorted((p.kind, p.store) for p in removed) == [
        (ProblemKind.ORPHAN_FILE, "images"),
        (ProblemKind.ORPHAN_FILE, "uploads"),
        (ProblemKind.TEMP_FILE, "images"),
    ]
    assert not storage.images.exists(orphan.sha256) and not storage.upload_store.exists(upload_orphan.sha256)
    assert not temp.exists() and stray.exists() and storage.images.exists(recorded.sha256)
    assert [p.kind for p in storage.check.run().problems] == [ProblemKind.STRAY_FILE]


def test_with_other_front_ends_live_start_up_removes_only_old_leftovers(
    storage: Storage, people: People
) -> None:
    """Another front-end may be between writing a file and committing its row: young files stay."""
    young = storage.images.put(png(color=(1, 2, 3)))
    old = storage.images.put(png(color=(7, 8, 9)))
    young_temp = storage.images.path_for(young.sha256).parent / f"{TEMP_PREFIX}young"
    young_temp.write_bytes(b"\x89PNG half")
    an_hour_ago = time.time() - 3600
    os.utime(storage.images.path_for(old.sha256), (an_hour_ago, an_hour_ago))
    removed = storage.check.remove_interrupted_writes(older_than_s=15 * 60)
    assert [(p.kind, p.relpath) for p in removed] == [(ProblemKind.ORPHAN_FILE, old.relpath)]
    assert storage.images.exists(young.sha256) and young_temp.exists()


def test_a_sign_in_with_a_nul_in_the_name_fails_and_is_audited(storage: Storage, people: People) -> None:
    with pytest.raises(PermissionDenied):
        storage.users.authenticate("alice\x00", PASSWORD)
    [event] = storage.audit.list_events(people.ada, page_size=1).items
    assert (event.action, event.actor_name) == ("login.failed", "alice\ufffd")


@pytest.mark.parametrize("bad", ["\x00", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))])
def test_stored_texts_refuse_nul_bytes_and_bidi_controls_by_field(
    storage: Storage, people: People, bad: str
) -> None:
    image = generate(storage, people.alice, images=1).images[0]
    storage.reviews.submit(people.alice, image.id)
    attempts = {
        "text": lambda: storage.prompts.create(people.alice, text=f"a red{bad} circle"),
        "negative_prompt": lambda: storage.prompts.create(people.alice, text="a", negative_prompt=bad),
        "mix[0].text": lambda: storage.prompts.create(
            people.alice, text="a", mix=[MixIngredientRef(1.0, text=f"x{bad}")]
        ),
        "tags": lambda: storage.prompts.create(people.alice, text="a", tags=["ok", f"b{bad}d"]),
        "comment": lambda: storage.reviews.decide(people.rita, image.id, "reject", f"too{bad} dark"),
        "label": lambda: storage.tokens.create(people.alice, people.alice, f"ci{bad}"),
        "display_name": lambda: storage.users.create(
            OPERATOR, "nul-name", display_name=f"N{bad}L", password=PASSWORD
        ),
    }
    for field, attempt in attempts.items():
        with pytest.raises(ValidationFailed) as refused:
            attempt()
        assert refused.value.field == field
    assert storage.reviews.history(people.rita, image.id) == []


def test_other_format_characters_are_kept(storage: Storage, people: People) -> None:
    """A zero-width joiner builds emoji; right-to-left text itself is fine: only the controls are refused."""
    text = "a painter 👩\u200d🎨 and שלום"
    assert storage.prompts.create(people.alice, text=text).text == text
