"""The Engine contract, run against every engine: LocalEngine in-process and RayEngine (a Ray Serve deployment
of one tiny replica on a local Ray instance). Only the interface of model/engine/engine_base.py is used here;
LocalEngine's internals (batch composition, its threads) are tested in test_engine.py.

The engines share one set of options (the Ray deployment starts once per module); a front-end attaches to it
per test, as a second studio process would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import PIL.Image
import pytest
from image_checks import max_pixel_diff

from model.engine import (
    Engine,
    EngineClosed,
    GenerationRequest,
    JobCancelled,
    JobHandle,
    JobStatus,
    Progress,
    QueueFull,
    RequestError,
)
from model.engine.request_fields import MAX_STEPS
from model.families import Family

TOLERANCE = 3  # levels of 255: float reduction order only
REFERENCE = PIL.Image.new("RGB", (32, 32), (230, 30, 30))
OPTIONS = {
    "max_batch": 8,
    "max_queue": 3,
    "max_user_jobs": 2,
    "max_user_images": 3,
    "gather_s": 0.05,
    "preview_every_s": 0,
}
APP = "draftroom-contract"


def ask(prompt: str, seed: int, user: str = "anonymous", **fields: object) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, seed=seed, user=user, **{"steps": 2, **fields})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ray_app(ray_instance: None, kandinsky_path: Path) -> Iterator[str]:
    """The module's Ray Serve deployment: one replica of the tiny model, 1 CPU; deleted at the module's end."""
    from ray import serve

    from model.engine.engine_ray import RayEngine

    first = RayEngine(kandinsky_path, app_name=APP, replicas=1, cpus_per_replica=1, device="cpu", **OPTIONS)
    first.shutdown(wait=False)
    yield APP
    serve.delete(APP)


@pytest.fixture(params=["local", "ray"])
def engine(request: pytest.FixtureRequest, kandinsky: Family, kandinsky_path: Path) -> Iterator[Engine]:
    made: Engine
    if request.param == "local":
        from model.engine import LocalEngine

        made = LocalEngine(kandinsky, **OPTIONS)  # type: ignore[arg-type]
    else:
        from model.engine.engine_ray import RayEngine

        made = RayEngine(kandinsky_path, app_name=request.getfixturevalue("ray_app"), device="cpu", **OPTIONS)
        assert made.engine_options == OPTIONS, "the test front-end joined the module's deployment"
    yield made
    made.shutdown(wait=False)


def hold(engine: Engine) -> Callable[[], bool]:
    """Occupy the engine's worker with a long job (MAX_STEPS steps) until the returned release cancels it."""
    handle = engine.submit(ask("hold", 99, user="holder", steps=MAX_STEPS))
    wait_for(lambda: handle.progress().step >= 1)
    return handle.cancel


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_result_records_seed_params_model_and_times(engine: Engine) -> None:
    result = engine.submit(
        ask("a red circle", 5, num_images=2, guidance_image=REFERENCE, image_guidance_scale=0.2)
    ).result(60)
    assert result.seed == 5 and result.seeds == [5, 6] and result.params["seeds"] == [5, 6]
    assert (
        result.params["steps"] == 2 and result.params["width"] == 32 and result.params["scheduler"] == "ddpm"
    )
    assert len(result.params["guidance_image_sha256"]) == 64
    assert (result.model_name, result.model_hash) == (engine.model_info.name, engine.model_info.hash)
    assert result.model_s > 0 and result.queue_wait_s >= 0
    assert len(result.images) == 2 and result.images[0].size == (32, 32)


def test_validate_resolves_defaults_and_names_the_bad_field(engine: Engine) -> None:
    resolved = engine.validate(GenerationRequest(prompt="a red circle"))
    assert resolved.seed is not None and resolved.steps == engine.model_info.default_steps
    with pytest.raises(RequestError) as caught:
        engine.submit(GenerationRequest(prompt="x", width=64, height=64))
    assert caught.value.field == "width"
    assert engine.unknown_words("a red circle") == []


def test_progress_events_report_position_steps_and_eta(engine: Engine) -> None:
    release = hold(engine)
    first = engine.submit(ask("first", 1, "a"))
    second = engine.submit(ask("second", 2, "b", steps=3))
    events: list[Progress] = []
    second.subscribe(events.append)
    assert first.progress().queue_position == 0 and second.progress().queue_position == 1
    assert first.progress().eta_s is not None, "the held job's steps give an ETA"
    assert release()
    second.result(60)
    statuses = [event.status for event in events]
    assert statuses[0] is JobStatus.QUEUED and statuses[-1] is JobStatus.SUCCEEDED
    assert [e.queue_position for e in events if e.status is JobStatus.QUEUED][-1] == 0, "moved up the queue"
    running = [(e.step, e.total) for e in events if e.status is JobStatus.RUNNING]
    assert running[-1] == (3, 3) and (1, 3) in running
    assert events[-1].images_done == 1 and events[-1].eta_s == 0.0
    late: list[Progress] = []
    second.subscribe(late.append)
    assert [e.status for e in late] == [JobStatus.SUCCEEDED], "a finished job reports once, at once"


def test_a_watched_job_gets_live_previews_and_an_unwatched_one_none(engine: Engine) -> None:
    release = hold(engine)
    watched = engine.submit(ask("a red circle", 3, "ann", num_images=2, steps=3, scheduler="ddim"))
    unwatched = engine.submit(ask("a blue square", 4, "bob", steps=3, scheduler="ddim"))
    watched.want_previews()
    events: list[Progress] = []
    watched.subscribe(events.append)
    release()
    result = watched.result(60)
    unwatched.result(60)
    running = [e for e in events if e.status is JobStatus.RUNNING]
    stages = [e.stage for e in running if e.stage]
    assert stages.index("prior") < stages.index("denoising"), "the prior comes first"
    assert {e.image_steps for e in running if e.stage == "denoising"} == {3} and running[-1].total == 6
    previews = [e.previews for e in running if any(e.previews)]
    assert previews and isinstance(previews[0][0], PIL.Image.Image), "a live preview while it runs"
    assert previews[0][0].width <= result.images[0].width
    assert events[-1].status is JobStatus.SUCCEEDED and list(events[-1].previews) == result.images
    assert unwatched.progress().previews == ()


def test_cancel_a_queued_job(engine: Engine) -> None:
    release = hold(engine)
    doomed = engine.submit(ask("doomed", 1, "a"))
    kept = engine.submit(ask("kept", 2, "b"))
    assert doomed.cancel() and not doomed.cancel()
    assert doomed.progress().status is JobStatus.CANCELLED
    release()
    kept.result(60)
    with pytest.raises(JobCancelled):
        doomed.result(1)
    assert not kept.cancel(), "a finished job cannot be cancelled"


def test_cancel_a_running_job_stops_its_progress_and_spares_its_batch_mate(engine: Engine) -> None:
    lone = engine.submit(ask("stay", 7, "b", steps=4)).result(60).images[0]
    doomed = engine.submit(ask("leave", 6, "a", steps=4))
    stay = engine.submit(ask("stay", 7, "b", steps=4))
    doomed_steps: list[int] = []

    def cancel_at_first_step(progress: Progress) -> None:
        if progress.status is JobStatus.RUNNING and progress.step >= 1:
            doomed_steps.append(progress.step)
            doomed.cancel()

    doomed.subscribe(cancel_at_first_step)
    result = stay.result(60)
    with pytest.raises(JobCancelled):
        doomed.result(1)
    assert doomed_steps == [1], "no progress after the cancel"
    assert max_pixel_diff(result.images[0], lone) <= TOLERANCE


def test_queue_full_names_the_limit_and_frees_up(engine: Engine) -> None:
    release = hold(engine)
    queued = [engine.submit(ask(f"q{i}", i, f"user{i}")) for i in range(3)]
    with pytest.raises(QueueFull) as full:
        engine.submit(ask("one too many", 3, "user9"))
    assert full.value.limit == "max_queue" and "max_queue" in str(full.value)
    release()
    for handle in queued:
        handle.result(60)
    engine.submit(ask("room again", 4, "user9")).result(60)


def test_one_users_share_of_the_queue_is_checked_before_the_shared_limit(engine: Engine) -> None:
    release = hold(engine)
    mine = [engine.submit(ask("mine", 1, "greedy")), engine.submit(ask("mine", 2, "greedy"))]
    with pytest.raises(QueueFull) as jobs:
        engine.submit(ask("a third job", 3, "greedy"))
    assert jobs.value.limit == "max_user_jobs" and "max_user_jobs = 2" in str(jobs.value)
    with pytest.raises(QueueFull) as images:
        engine.submit(ask("four images", 5, "patient", num_images=4))
    assert images.value.limit == "max_user_images" and "max_user_images = 3" in str(images.value)
    release()
    for handle in mine:
        handle.result(60)
    engine.submit(ask("room again", 6, "greedy")).result(60)


def test_graceful_shutdown_finishes_the_jobs_then_refuses(engine: Engine) -> None:
    handles = [engine.submit(ask(f"p{i}", i, f"u{i}")) for i in range(3)]
    engine.shutdown(wait=True)
    assert all(handle.progress().status is JobStatus.SUCCEEDED for handle in handles)
    with pytest.raises(EngineClosed):
        engine.submit(ask("late", 1))


def test_shutdown_without_waiting_cancels_what_is_left(engine: Engine) -> None:
    hold(engine)
    queued = engine.submit(ask("queued", 1, "a"))
    engine.shutdown(wait=False)
    assert queued.progress().status is JobStatus.CANCELLED
    with pytest.raises(JobCancelled):
        queued.result(1)


def test_a_broken_subscriber_does_not_stop_the_engine(engine: Engine) -> None:
    handle: JobHandle = engine.submit(ask("x", 1))
    handle.subscribe(lambda progress: 1 / 0)
    assert handle.result(60).images
    assert engine.submit(ask("y", 2)).result(60).images


def test_ray_streams_a_queued_jobs_new_eta_at_most_every_half_second(
    ray_app: str, kandinsky_path: Path
) -> None:
    """Every step re-estimates every queued job's ETA; RayEngine's replica sends a queued job whose place has
    not changed a new ETA at most every QUEUED_ETA_EVERY_S, or 32 queued jobs cost more than the batches."""
    from model.engine.engine_ray import QUEUED_ETA_EVERY_S, RayEngine

    engine = RayEngine(kandinsky_path, app_name=ray_app, device="cpu", **OPTIONS)
    try:
        release = hold(engine)
        queued = engine.submit(ask("waiting", 1, "a"))
        events: list[Progress] = []
        queued.subscribe(events.append)
        time.sleep(4 * QUEUED_ETA_EVERY_S)
        etas = [event.eta_s for event in events if event.status is JobStatus.QUEUED]
        release()
        queued.result(60)
    finally:
        engine.shutdown(wait=False)
    assert 2 <= len(etas) <= 5, etas
