"""The review rules: roles, four-eyes, only pending decided, append-only history, disabled users."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from storage import Storage
from storage.errors import InvalidState, NotFound, PermissionDenied, ValidationFailed
from storage.types import Decision, ReviewStatus, Role

from .conftest import People
from .helpers import generate


def _pending_image(storage: Storage, owner: int) -> int:
    image = generate(storage, owner, images=1).images[0]
    storage.reviews.submit(owner, image.id)
    return image.id


def _status(storage: Storage, image_id: int) -> ReviewStatus:
    return storage.generations.image(storage.users.find("ruth").id, image_id).review_status


def test_submit_then_approve(storage: Storage, people: People) -> None:
    image = generate(storage, people.alice, images=1).images[0]
    assert storage.reviews.submit(people.alice, image.id).review_status == ReviewStatus.PENDING
    review = storage.reviews.decide(people.rita, image.id, Decision.APPROVE, "  looks right ")
    assert (review.reviewer, review.decision, review.comment) == ("rita", Decision.APPROVE, "looks right")
    assert _status(storage, image.id) == ReviewStatus.APPROVED


def test_only_the_owner_submits_and_only_drafts(storage: Storage, people: People) -> None:
    image = generate(storage, people.alice, images=1).images[0]
    for other in (people.bob, people.rita, people.ada):
        with pytest.raises(PermissionDenied, match="Only the person who made"):
            storage.reviews.submit(other, image.id)
    storage.reviews.submit(people.alice, image.id)
    with pytest.raises(InvalidState, match="is pending, not draft"):
        storage.reviews.submit(people.alice, image.id)


def test_members_cannot_review(storage: Storage, people: People) -> None:
    image_id = _pending_image(storage, people.alice)
    with pytest.raises(PermissionDenied, match="Only reviewers and admins"):
        storage.reviews.decide(people.bob, image_id, Decision.APPROVE)
    assert _status(storage, image_id) == ReviewStatus.PENDING


@pytest.mark.parametrize("who", ["rita", "ada"])
def test_four_eyes_nobody_reviews_their_own_generation(storage: Storage, people: People, who: str) -> None:
    reviewer = getattr(people, who)
    image_id = _pending_image(storage, reviewer)
    with pytest.raises(PermissionDenied, match="Four-eyes"):
        storage.reviews.decide(reviewer, image_id, Decision.APPROVE)
    assert _status(storage, image_id) == ReviewStatus.PENDING
    assert storage.reviews.decide(people.ruth, image_id, Decision.APPROVE).reviewer == "ruth"


def test_four_eyes_holds_when_someone_else_wrote_the_prompt(storage: Storage, people: People) -> None:
    """What counts is who ran the generation: remixing a colleague's prompt does not make it theirs."""
    prompt = storage.prompts.create(people.alice, text="a yellow star")
    image_id = generate(storage, people.rita, prompt_id=prompt.id, images=1).images[0].id
    storage.reviews.submit(people.rita, image_id)
    with pytest.raises(PermissionDenied, match="Four-eyes"):
        storage.reviews.decide(people.rita, image_id, Decision.APPROVE)


@pytest.mark.parametrize("status", ["draft", "approved", "rejected"])
def test_only_pending_images_can_be_decided(storage: Storage, people: People, status: str) -> None:
    image_id = generate(storage, people.alice, images=1).images[0].id
    if status != "draft":
        storage.reviews.submit(people.alice, image_id)
        storage.reviews.decide(
            people.rita, image_id, Decision.APPROVE if status == "approved" else Decision.REJECT, "no"
        )
    with pytest.raises(InvalidState, match=f"is {status}, not pending"):
        storage.reviews.decide(people.ruth, image_id, Decision.REJECT, "no")
    assert _status(storage, image_id) == ReviewStatus(status)


def test_request_changes_sends_it_back_and_history_keeps_every_decision(
    storage: Storage, people: People
) -> None:
    image_id = _pending_image(storage, people.alice)
    with pytest.raises(ValidationFailed) as error:
        storage.reviews.decide(people.rita, image_id, Decision.REQUEST_CHANGES)
    assert error.value.field == "comment"
    storage.reviews.decide(people.rita, image_id, Decision.REQUEST_CHANGES, "make it bigger")
    assert _status(storage, image_id) == ReviewStatus.DRAFT
    storage.reviews.submit(people.alice, image_id)
    storage.reviews.decide(people.ruth, image_id, Decision.REJECT, "still small")
    history = storage.reviews.history(people.alice, image_id)
    assert [(r.reviewer, r.decision, r.comment) for r in history] == [
        ("rita", Decision.REQUEST_CHANGES, "make it bigger"),
        ("ruth", Decision.REJECT, "still small"),
    ]
    assert _status(storage, image_id) == ReviewStatus.REJECTED


@pytest.mark.parametrize("statement", ["UPDATE reviews SET decision = 'approve'", "DELETE FROM reviews"])
def test_the_database_refuses_to_change_or_delete_a_review(
    storage: Storage, people: People, statement: str
) -> None:
    image_id = _pending_image(storage, people.alice)
    storage.reviews.decide(people.rita, image_id, Decision.REJECT, "no")
    with pytest.raises(DBAPIError, match="append-only"), storage.db.write() as session:
        session.execute(text(statement))
    assert [r.decision for r in storage.reviews.history(people.rita, image_id)] == [Decision.REJECT]


def test_a_disabled_user_can_do_nothing(storage: Storage, people: People) -> None:
    image_id = _pending_image(storage, people.alice)
    draft_id = generate(storage, people.rita, images=1).images[0].id
    prompt_id = storage.prompts.create(people.rita, text="kept").id
    storage.users.set_active(people.ada, people.rita, False)
    attempts = [
        lambda: storage.reviews.decide(people.rita, image_id, Decision.APPROVE),
        lambda: storage.reviews.submit(people.rita, draft_id),
        lambda: storage.reviews.history(people.rita, image_id),
        lambda: storage.reviews.queue(people.rita),
        lambda: storage.prompts.create(people.rita, text="new"),
        lambda: storage.prompts.get(people.rita, prompt_id),
        lambda: storage.prompts.set_favourite(people.rita, prompt_id),
        lambda: storage.generations.create(people.rita, prompt_id, model_id="m", model_hash="h", params={}),
        lambda: storage.generations.get(people.rita, 1),
        lambda: storage.history.search(people.rita),
        lambda: storage.history.most_reused(people.rita),
        lambda: storage.tokens.create(people.rita, people.rita),
        lambda: storage.users.change_password(
            people.rita, people.rita, "new password!", current_password="x"
        ),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionDenied, match="disabled"):
            attempt()
    assert _status(storage, image_id) == ReviewStatus.PENDING


def test_a_disabled_admin_loses_admin_powers(storage: Storage, people: People) -> None:
    storage.users.set_role(people.ada, people.ruth, Role.ADMIN)
    storage.users.set_active(people.ruth, people.ada, False)
    with pytest.raises(PermissionDenied, match="disabled"):
        storage.users.set_active(people.ada, people.ada, True)
    with pytest.raises(PermissionDenied, match="disabled"):
        storage.audit.list_events(people.ada)


def test_the_queue_lists_pending_images_of_others_oldest_first(storage: Storage, people: People) -> None:
    alices = [_pending_image(storage, people.alice) for _ in range(2)]
    ritas = _pending_image(storage, people.rita)
    generate(storage, people.bob, images=1)  # a draft: not in the queue
    page = storage.reviews.queue(people.rita)
    assert [item.image.id for item in page.items] == alices and page.total == 2
    assert page.items[0].prompt.text == "a red circle" and page.items[0].generation.username == "alice"
    assert [item.image.id for item in storage.reviews.queue(people.ruth).items] == [*alices, ritas]
    with pytest.raises(PermissionDenied):
        storage.reviews.queue(people.alice)


def test_unknown_images_are_not_found(storage: Storage, people: People) -> None:
    with pytest.raises(NotFound):
        storage.reviews.decide(people.rita, 404, Decision.APPROVE)
    with pytest.raises(ValidationFailed) as error:
        storage.reviews.decide(people.rita, 404, "maybe")
    assert error.value.field == "decision"


@pytest.mark.parametrize("decision", [Decision.REJECT, Decision.REQUEST_CHANGES])
def test_reject_and_request_changes_need_a_comment(
    storage: Storage, people: People, decision: Decision
) -> None:
    image_id = _pending_image(storage, people.alice)
    for blank in ("", "   "):
        with pytest.raises(ValidationFailed) as error:
            storage.reviews.decide(people.rita, image_id, decision, blank)
        assert error.value.field == "comment"
    assert _status(storage, image_id) == ReviewStatus.PENDING
    assert storage.reviews.history(people.rita, image_id) == []
    storage.reviews.decide(people.rita, image_id, decision, "the circle is off-centre")
    assert storage.reviews.history(people.rita, image_id)[0].comment == "the circle is off-centre"


def test_approval_needs_no_comment(storage: Storage, people: People) -> None:
    image_id = _pending_image(storage, people.alice)
    assert storage.reviews.decide(people.rita, image_id, Decision.APPROVE).comment == ""


def test_a_revision_links_to_the_image_it_answers_and_the_lineage_follows_it(
    storage: Storage, people: People
) -> None:
    first = _pending_image(storage, people.alice)
    storage.reviews.decide(people.rita, first, Decision.REQUEST_CHANGES, "make it bigger")
    second = generate(storage, people.alice, "a bigger red circle", images=1).images[0].id
    assert storage.reviews.submit(people.alice, second, revision_of=first).revision_of == first
    storage.reviews.decide(people.rita, second, Decision.REQUEST_CHANGES, "bigger still")
    third = generate(storage, people.alice, "a huge red circle", images=1).images[0].id
    storage.reviews.submit(people.alice, third, revision_of=second)
    assert [i.id for i in storage.reviews.lineage(people.rita, third)] == [second, first]
    assert storage.reviews.lineage(people.rita, first) == []
    assert storage.generations.image(people.rita, third).revision_of == second
    event = storage.audit.list_events(people.ada, action="review.submit").items[0]
    assert (event.target_id, event.detail) == (str(third), {"revision_of": second})


def test_a_revision_must_revise_an_earlier_image_of_ones_own_without_loops(
    storage: Storage, people: People
) -> None:
    alices = generate(storage, people.alice, images=2).images
    bobs = generate(storage, people.bob, images=1).images[0]
    storage.reviews.submit(people.alice, alices[1].id, revision_of=alices[0].id)
    storage.reviews.decide(people.rita, alices[1].id, Decision.REQUEST_CHANGES, "again")
    refused = {
        "someone else's image": (alices[0].id, bobs.id),
        "an unknown image": (alices[0].id, 10**9),
        "itself": (alices[0].id, alices[0].id),
        "its own revision (a loop)": (alices[0].id, alices[1].id),
        "a second, different original": (alices[1].id, bobs.id),
    }
    for why, (image_id, earlier) in refused.items():
        with pytest.raises(ValidationFailed) as error:
            storage.reviews.submit(people.alice, image_id, revision_of=earlier)
        assert error.value.field == "revision_of", why
        assert _status(storage, image_id) == ReviewStatus.DRAFT, why


def test_the_inbox_lists_decisions_on_ones_own_images_newest_first(storage: Storage, people: People) -> None:
    first, second = _pending_image(storage, people.alice), _pending_image(storage, people.alice)
    _pending_image(storage, people.bob)
    storage.reviews.decide(people.rita, first, Decision.APPROVE, "good")
    storage.reviews.decide(people.ruth, second, Decision.REJECT, "blurry")
    inbox = storage.reviews.inbox(people.alice)
    assert inbox.total == 2
    assert [(i.image.id, i.review.decision, i.review.comment, i.review.reviewer) for i in inbox.items] == [
        (second, Decision.REJECT, "blurry", "ruth"),
        (first, Decision.APPROVE, "good", "rita"),
    ]
    assert inbox.items[0].prompt_text == "a red circle"
    assert storage.reviews.inbox(people.bob).total == 0


def test_decisions_on_a_prompt_cover_every_image_made_from_it(storage: Storage, people: People) -> None:
    prompt = storage.prompts.create(people.alice, text="a blue square")
    images = [generate(storage, people.alice, prompt_id=prompt.id, images=1).images[0].id for _ in range(2)]
    for image_id in images:
        storage.reviews.submit(people.alice, image_id)
    storage.reviews.decide(people.rita, images[0], Decision.REJECT, "too pale")
    storage.reviews.decide(people.ruth, images[1], Decision.APPROVE)
    assert [(r.image_id, r.decision) for r in storage.reviews.on_prompt(people.rita, prompt.id)] == [
        (images[1], Decision.APPROVE),
        (images[0], Decision.REJECT),
    ]
