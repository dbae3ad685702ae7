"""The audit log: logins, generation requests, submissions, reviews, role changes, exports."""

from __future__ import annotations

import io

import pytest

from storage import Storage
from storage.errors import PermissionDenied
from storage.types import OPERATOR, Decision, Role

from .conftest import PASSWORD, People
from .helpers import generate


def test_every_kind_of_action_leaves_an_event(storage: Storage, people: People) -> None:
    storage.users.authenticate("alice", PASSWORD)
    image = generate(storage, people.alice, images=1).images[0]
    storage.reviews.submit(people.alice, image.id)
    storage.reviews.decide(people.rita, image.id, Decision.APPROVE)
    storage.users.set_role(people.ada, people.bob, Role.REVIEWER)
    storage.export.write_zip(OPERATOR, io.BytesIO())
    events = storage.audit.list_events(people.ada).items
    recent = [(e.actor_name, e.action, e.target_type) for e in reversed(events[:6])]
    assert recent == [
        ("alice", "login", "user"),
        ("alice", "generation.request", "generation"),
        ("alice", "review.submit", "image"),
        ("rita", "review.decide", "image"),
        ("ada", "user.role_change", "user"),
        ("cli", "export", "images"),
    ]
    assert events[2].detail == {"decision": "approve"} and events[2].target_id == str(image.id)
    assert events[1].detail == {"old": "member", "new": "reviewer", "username": "bob"}
    assert all(e.created_at.tzinfo is not None for e in events)


def test_a_refused_action_leaves_no_event(storage: Storage, people: People) -> None:
    before = storage.audit.list_events(OPERATOR).total
    with pytest.raises(PermissionDenied):
        storage.users.set_role(people.alice, people.alice, Role.ADMIN)
    assert storage.audit.list_events(OPERATOR).total == before


def test_only_admins_read_the_log(storage: Storage, people: People) -> None:
    for actor in (people.alice, people.rita):
        with pytest.raises(PermissionDenied):
            storage.audit.list_events(actor)
    page = storage.audit.list_events(people.ada, action="user.", page_size=2)
    assert page.total == 5 and len(page.items) == 2  # the five accounts the fixture created
