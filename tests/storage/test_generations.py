"""Generations: life cycle, timings, images written before their rows, crash recovery."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from storage import Storage
from storage.errors import InvalidState, NotFound, PermissionDenied, ValidationFailed
from storage.models import Frontend, utcnow
from storage.types import GenerationStatus, NewImage, ReviewStatus

from .conftest import People
from .helpers import generate, png


def _queued(storage: Storage, user: int, shared: bool = True) -> int:
    prompt = storage.prompts.create(user, text="a green triangle", shared=shared)
    return storage.generations.create(
        user, prompt.id, model_id="embedded", model_hash="h", params={"steps": 2}
    ).id


def _files(storage: Storage) -> set[str]:
    return {p.name for p in storage.images.root.rglob("*") if p.is_file()}


def test_a_generation_goes_from_queued_to_succeeded_with_its_images(storage: Storage, people: People) -> None:
    prompt = storage.prompts.create(people.alice, text="a green triangle")
    queued = storage.generations.create(
        people.alice, prompt.id, model_id="embedded", model_hash="h", params={"steps": 2, "scheduler": "ddpm"}
    )
    assert queued.status == GenerationStatus.QUEUED and queued.seed is None and queued.images == ()
    running = storage.generations.mark_running(queued.id)
    assert running.status == GenerationStatus.RUNNING and running.started_at is not None
    assert running.queue_wait_s is not None and running.queue_wait_s >= 0
    images = [NewImage(i, png(16, 8, generation_id=queued.id, image_index=i), 16, 8) for i in range(3)]
    done = storage.generations.mark_succeeded(
        queued.id, images=images, seed=99, model_s=1.25, queue_wait_s=0.5
    )
    assert (done.status, done.seed, done.model_s, done.queue_wait_s) == (
        GenerationStatus.SUCCEEDED,
        99,
        1.25,
        0.5,
    )
    assert done.finished_at is not None and done.finished_at >= done.started_at >= done.created_at
    assert [(i.index, i.width, i.height, i.review_status) for i in done.images] == [
        (0, 16, 8, ReviewStatus.DRAFT),
        (1, 16, 8, ReviewStatus.DRAFT),
        (2, 16, 8, ReviewStatus.DRAFT),
    ]
    for image, new in zip(done.images, images, strict=True):
        assert storage.images.read(image.sha256) == new.png
    assert storage.generations.get(people.alice, queued.id) == done
    assert storage.prompts.get(people.alice, prompt.id).use_count == 1


@pytest.mark.parametrize(
    ("steps", "then"),
    [
        (["running", "succeeded"], "running"),
        (["failed"], "running"),
        (["running", "cancelled"], "succeeded"),
        (["interrupted"], "running"),
    ],
)
def test_finished_generations_cannot_change_again(
    storage: Storage, people: People, steps: list[str], then: str
) -> None:
    gid = _queued(storage, people.alice)
    actions = {
        "running": lambda: storage.generations.mark_running(gid),
        "succeeded": lambda: storage.generations.mark_succeeded(gid),
        "failed": lambda: storage.generations.mark_failed(gid, "out of memory"),
        "cancelled": lambda: storage.generations.cancel(people.alice, gid),
        "interrupted": lambda: storage.generations.interrupt_orphaned(60),
    }
    for step in steps:
        actions[step]()
    with pytest.raises(InvalidState, match=f"is {steps[-1]}"):
        actions[then]()


def test_a_failure_keeps_its_error_text(storage: Storage, people: People) -> None:
    gid = _queued(storage, people.alice)
    failed = storage.generations.mark_failed(gid, "CUDA out of memory")
    assert failed.status == GenerationStatus.FAILED and failed.error == "CUDA out of memory"
    assert failed.started_at is None and failed.finished_at is not None


def test_startup_turns_jobs_left_by_a_crash_into_interrupted(storage: Storage, people: People) -> None:
    queued, running, done = (_queued(storage, people.alice) for _ in range(3))
    storage.generations.mark_running(running)
    storage.generations.mark_running(done)
    storage.generations.mark_succeeded(done)
    assert storage.generations.interrupt_orphaned(60) == 2  # recorded with no front-end: nobody holds them
    statuses = [storage.generations.get(people.alice, g).status for g in (queued, running, done)]
    assert statuses == [
        GenerationStatus.INTERRUPTED,
        GenerationStatus.INTERRUPTED,
        GenerationStatus.SUCCEEDED,
    ]
    assert "server stopped" in (storage.generations.get(people.alice, queued).error or "")
    assert storage.generations.interrupt_orphaned(60) == 0


def _held_by(storage: Storage, user: int, frontend_id: str) -> int:
    prompt = storage.prompts.create(user, text="a green triangle")
    return storage.generations.create(
        user, prompt.id, model_id="embedded", model_hash="h", params={}, frontend_id=frontend_id
    ).id


def test_only_jobs_of_a_front_end_that_stopped_beating_are_interrupted(
    storage: Storage, people: People
) -> None:
    storage.frontends.register("alive")
    storage.frontends.register("dead")
    with storage.db.write() as session:  # "dead" last beat two minutes ago
        session.execute(
            update(Frontend).where(Frontend.id == "dead").values(heartbeat_at=utcnow() - timedelta(minutes=2))
        )
    alive, dead, gone = (_held_by(storage, people.alice, name) for name in ("alive", "dead", "never-seen"))
    storage.generations.mark_running(alive)
    assert storage.generations.interrupt_orphaned(60) == 2
    status = {g: storage.generations.get(people.alice, g).status for g in (alive, dead, gone)}
    assert status == {
        alive: GenerationStatus.RUNNING,
        dead: GenerationStatus.INTERRUPTED,
        gone: GenerationStatus.INTERRUPTED,
    }
    assert storage.frontends.live(60) == ["alive"]
    assert not storage.frontends.beat("dead")  # it was taken for dead: it comes back registered
    assert sorted(storage.frontends.live(60)) == ["alive", "dead"]
    assert storage.generations.finished_among([alive, dead, gone]) == {dead, gone}
    assert storage.generations.interrupt_jobs_of("alive") == 1
    assert storage.generations.get(people.alice, alive).status == GenerationStatus.INTERRUPTED


def test_a_front_end_id_is_checked(storage: Storage, people: People) -> None:
    prompt = storage.prompts.create(people.alice, text="a green triangle")
    with pytest.raises(ValidationFailed, match="front-end") as refused:
        storage.generations.create(
            people.alice, prompt.id, model_id="m", model_hash="h", params={}, frontend_id="x" * 65
        )
    assert refused.value.field == "frontend_id"
    with pytest.raises(ValidationFailed, match="front-end"):
        storage.frontends.register("")


def test_only_the_requester_or_an_admin_cancels(storage: Storage, people: People) -> None:
    gid = _queued(storage, people.alice)
    for other in (people.bob, people.rita):
        with pytest.raises(PermissionDenied, match="cancel"):
            storage.generations.cancel(other, gid)
    assert storage.generations.cancel(people.ada, gid).status == GenerationStatus.CANCELLED


def test_generations_of_private_prompts_are_hidden_from_other_members(
    storage: Storage, people: People
) -> None:
    gid = _queued(storage, people.alice, shared=False)
    with pytest.raises(NotFound):
        storage.generations.get(people.bob, gid)
    assert storage.generations.get(people.rita, gid).id == gid


def test_images_of_a_finished_generation_are_refused_and_their_new_files_removed(
    storage: Storage, people: People
) -> None:
    done = generate(storage, people.alice, images=1)
    before = _files(storage)
    late = [
        NewImage(1, png(color=(1, 2, 3)), 8, 8),  # a new file: written first, removed when the commit fails
        NewImage(2, storage.images.read(done.images[0].sha256), 8, 8),  # an existing file: must be kept
    ]
    with pytest.raises(InvalidState):
        storage.generations.mark_succeeded(done.id, images=late)
    assert _files(storage) == before
    assert [i.index for i in storage.generations.get(people.alice, done.id).images] == [0]


@pytest.mark.parametrize(
    ("field", "images"),
    [
        ("images", [NewImage(0, png(), 8, 8), NewImage(0, png(color=(0, 0, 0)), 8, 8)]),
        ("images[0]", [NewImage(0, b"GIF89a" + b"\0" * 30, 8, 8)]),
        ("images[0]", [NewImage(0, png(8, 8), 16, 16)]),
        ("images[-1]", [NewImage(-1, png(), 8, 8)]),
    ],
)
def test_bad_images_are_refused_before_anything_is_written(
    storage: Storage, people: People, field: str, images: list[NewImage]
) -> None:
    gid = _queued(storage, people.alice)
    with pytest.raises(ValidationFailed) as error:
        storage.generations.mark_succeeded(gid, images=images)
    assert error.value.field == field
    assert _files(storage) == set()


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("model_id", {"model_id": ""}),
        ("params", {"params": {"x": float("nan")}}),
        ("params", {"params": {"x": object()}}),
        ("seed", {"seed": -1}),
        ("seed", {"seed": 2**63}),
    ],
)
def test_bad_generation_requests_name_the_field(
    storage: Storage, people: People, field: str, kwargs: dict[str, object]
) -> None:
    prompt = storage.prompts.create(people.alice, text="x")
    request = {"model_id": "embedded", "model_hash": "h", "params": {}, **kwargs}
    with pytest.raises(ValidationFailed) as error:
        storage.generations.create(people.alice, prompt.id, **request)  # type: ignore[arg-type]
    assert error.value.field == field
