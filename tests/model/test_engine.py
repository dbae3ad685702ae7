"""LocalEngine's worker from the inside: batching equivalence, fair turns, previews, cancel, error isolation,
shutdown. The Engine contract every engine meets (progress, limits, cancel, shutdown through the interface
only) is in test_engine_contract.py, run against LocalEngine and RayEngine."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import PIL.Image
import pytest
from image_checks import max_pixel_diff, mean_pixel_diff

from model.engine import (
    EngineClosed,
    GenerationRequest,
    JobCancelled,
    JobFailed,
    JobStatus,
    MixIngredient,
    Progress,
)
from model.families import Family, Row

TOLERANCE = 3  # levels of 255: batched and lone runs differ only by float reduction order

REFERENCE = PIL.Image.new("RGB", (32, 32), (230, 30, 30))


def ask(prompt: str, seed: int, user: str = "anonymous", **fields: object) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, seed=seed, user=user, **{"steps": 2, **fields})  # type: ignore[arg-type]


class Recorder:
    """Wraps a family's generate to record each batch's rows (and optionally fail or pause)."""

    def __init__(self, family: Family, fail_if: Callable[[Row], bool] | None = None) -> None:
        self.family = family
        self.batches: list[list[Row]] = []
        self.fail_if = fail_if
        self._generate = family.generate

    def __call__(self, rows: Sequence[Row], control=None, step_hook=None):
        self.batches.append(list(rows))
        if self.fail_if and any(self.fail_if(row) for row in rows):
            raise RuntimeError("injected failure")
        return self._generate(rows, control, step_hook)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Recorder]:
    def wrap(family: Family, fail_if: Callable[[Row], bool] | None = None) -> Recorder:
        recorder = Recorder(family, fail_if)
        monkeypatch.setattr(family, "generate", recorder)
        return recorder

    return wrap


def blocker(engine, family: Family) -> threading.Event:
    """Occupy the worker with one job that waits at its first step until the returned event is set."""
    release = threading.Event()
    handle = engine.submit(ask("hold", 99, user="holder", steps=2))
    started = threading.Event()

    def hold(progress: Progress) -> None:
        if progress.status is JobStatus.RUNNING and progress.step >= 1:
            started.set()
            release.wait(30)

    handle.subscribe(hold)
    assert started.wait(30)
    return release


JOBS = [
    ask("a red circle on a white background", 11, "ann", num_images=2),
    ask("a blue square", 12, "bob", guidance_scale=1.0, negative_prompt="green"),
    ask(
        "a green triangle",
        13,
        "cid",
        guidance_scale=9.0,
        guidance_image=REFERENCE,
        image_guidance_scale=0.3,
        image_guidance_decay="linear",
    ),
    ask("a red circle", 14, "dee", mix=(MixIngredient(-1.0, text="red"), MixIngredient(1.0, text="blue"))),
]


@pytest.mark.parametrize("name", ["kandinsky", "sd", "sdxl"])
def test_batched_jobs_match_the_same_jobs_run_alone(
    name: str, request: pytest.FixtureRequest, engine_for, recorded
) -> None:
    family: Family = request.getfixturevalue(name)
    recorder = recorded(family)
    alone = []
    with engine_for(family, max_batch=1) as engine:
        for job in JOBS:
            alone.append(engine.submit(job).result(60).images)
    assert all(len(batch) == 1 for batch in recorder.batches)
    recorder.batches.clear()
    engine = engine_for(family, max_batch=8, gather_s=0.2)
    handles = [engine.submit(job) for job in JOBS]
    batched = [handle.result(60).images for handle in handles]
    assert [len(batch) for batch in recorder.batches] == [5], "all jobs shared one batch"
    for lone_images, batch_images in zip(alone, batched, strict=True):
        for lone, in_batch in zip(lone_images, batch_images, strict=True):
            assert max_pixel_diff(lone, in_batch) <= TOLERANCE
    assert mean_pixel_diff(batched[0][0], batched[1][0]) > 5, "jobs kept their own prompts"


def test_fair_turns_across_users(kandinsky: Family, engine_for, recorded) -> None:
    recorder = recorded(kandinsky)
    engine = engine_for(kandinsky, max_batch=2)
    release = blocker(engine, kandinsky)
    greedy = [engine.submit(ask(f"a circle {i}", i, "greedy")) for i in range(4)]
    others = [engine.submit(ask(f"a square {u}", 50, u)) for u in ("bob", "cid")]
    release.set()
    for handle in greedy + others:
        handle.result(60)
    users = [[row.request.user for row in batch] for batch in recorder.batches[1:]]
    assert users == [["greedy", "bob"], ["cid", "greedy"], ["greedy", "greedy"]]


class CountedPreviews:
    """Wraps a family's preview_images to count the latents each call decodes."""

    def __init__(self, family: Family) -> None:
        self.calls: list[int] = []
        self._preview = family.preview_images

    def __call__(self, latents):
        self.calls.append(latents.shape[0])
        return self._preview(latents)


@pytest.mark.parametrize("name", ["kandinsky", "sd"])
def test_a_watched_job_gets_live_previews_and_progress_per_image(
    name: str, request: pytest.FixtureRequest, engine_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    family: Family = request.getfixturevalue(name)
    counted = CountedPreviews(family)
    monkeypatch.setattr(family, "preview_images", counted)
    engine = engine_for(family, max_batch=1, preview_every_s=0)
    release = blocker(engine, family)
    handle = engine.submit(ask("a red circle", 3, "ann", num_images=2, steps=3, scheduler="ddim"))
    handle.want_previews()
    events: list[Progress] = []
    handle.subscribe(events.append)
    release.set()
    result = handle.result(60)

    running = [e for e in events if e.status is JobStatus.RUNNING]
    stepping = [(e.running_images, e.image_step, e.image_steps) for e in running if e.stage == "denoising"]
    assert list(dict.fromkeys((images, step) for images, step, _ in stepping if step)) == [
        ((0,), 1),
        ((0,), 2),
        ((0,), 3),
        ((1,), 1),
        ((1,), 2),
        ((1,), 3),
    ], "each image counts its own steps, one image after the other"
    assert {steps for _, _, steps in stepping} == {3} and running[-1].total == 6
    if name == "kandinsky":
        stages = [e.stage for e in running if e.stage]
        assert stages.index("prior") < stages.index("denoising"), "the prior comes first"

    previews = [e.previews for e in running if any(e.previews)]
    assert counted.calls == [1, 1, 1, 1], "every step but the last of each image, one latent each"
    first = previews[0]
    assert isinstance(first[0], PIL.Image.Image) and first[1] is None, "a preview before any image is done"
    assert first[0].width <= result.images[0].width and first[0].height <= result.images[0].height
    assert any(e.images_done == 1 and e.previews[1] is not None for e in running), "image 2 previews too"
    assert events[-1].status is JobStatus.SUCCEEDED and list(events[-1].previews) == result.images


def test_previews_are_decoded_only_for_watched_jobs_and_at_most_every_preview_every_s(
    kandinsky: Family, engine_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = CountedPreviews(kandinsky)
    monkeypatch.setattr(kandinsky, "preview_images", counted)
    engine = engine_for(kandinsky, preview_every_s=60)
    release = blocker(engine, kandinsky)
    watched = engine.submit(ask("a red circle", 1, "ann", steps=4))
    unwatched = engine.submit(ask("a blue square", 2, "bob", steps=4))
    watched.want_previews()
    release.set()
    watched.result(60), unwatched.result(60)
    assert counted.calls == [1], "one preview (at the first step), of the watched job's image only"
    assert unwatched.progress().previews == ()


def test_cancel_a_queued_job(kandinsky: Family, engine_for, recorded) -> None:
    recorder = recorded(kandinsky)
    engine = engine_for(kandinsky)
    release = blocker(engine, kandinsky)
    doomed = engine.submit(ask("doomed", 1, "a"))
    kept = engine.submit(ask("kept", 2, "b"))
    assert doomed.cancel() and not doomed.cancel()
    assert doomed.progress().status is JobStatus.CANCELLED
    release.set()
    kept.result(60)
    with pytest.raises(JobCancelled):
        doomed.result(1)
    assert all(row.request.prompt != "doomed" for batch in recorder.batches for row in batch)
    assert not kept.cancel(), "a finished job cannot be cancelled"


@pytest.mark.parametrize("name", ["kandinsky", "sd"])
def test_cancel_a_running_job_leaves_its_batch_at_the_next_step(
    name: str, request: pytest.FixtureRequest, engine_for
) -> None:
    """The batch shrinks with any scheduler: Kandinsky's DDPM, and SD's PNDM, whose multistep history is per row."""
    family: Family = request.getfixturevalue(name)
    unet = family.decoder.unet if name == "kandinsky" else family.pipe.unet
    unet_rows: list[int] = []
    lone = engine_for(family).submit(ask("stay", 7, "b", steps=4)).result(60).images[0]
    engine = engine_for(family, gather_s=0.2)
    doomed = engine.submit(ask("leave", 6, "a", steps=4))
    stay = engine.submit(ask("stay", 7, "b", steps=4))
    doomed_steps: list[int] = []

    def cancel_at_first_step(progress: Progress) -> None:
        if progress.status is JobStatus.RUNNING and progress.step >= 1:
            doomed_steps.append(progress.step)
            doomed.cancel()

    doomed.subscribe(cancel_at_first_step)
    hook = unet.register_forward_pre_hook(
        lambda module, args, kwargs: unet_rows.append((args[0] if args else kwargs["sample"]).shape[0]),
        with_kwargs=True,
    )
    stay_steps: list[int] = []
    stay.subscribe(lambda p: stay_steps.append(p.step) if p.status is JobStatus.RUNNING else None)
    try:
        result = stay.result(60)
    finally:
        hook.remove()
    with pytest.raises(JobCancelled):
        doomed.result(1)
    assert unet_rows[0] == 4 and set(unet_rows[1:]) == {2} and len(unet_rows) >= 4, (
        "2 rows x CFG, then the batch shrinks"
    )
    assert doomed_steps == [1], "no progress after the cancel"
    assert stay_steps[-1] == 4
    assert max_pixel_diff(result.images[0], lone) <= TOLERANCE


def test_a_failing_job_fails_alone(kandinsky: Family, engine_for, recorded) -> None:
    recorder = recorded(kandinsky, fail_if=lambda row: row.request.prompt == "boom")
    engine = engine_for(kandinsky, gather_s=0.2)
    good = [engine.submit(ask(f"fine {i}", i, f"u{i}")) for i in range(2)]
    bad = engine.submit(ask("boom", 9, "mallory"))
    images = [handle.result(60).images[0] for handle in good]
    with pytest.raises(JobFailed, match="injected failure"):
        bad.result(60)
    assert bad.progress().status is JobStatus.FAILED and "injected" in (bad.progress().error or "")
    assert [len(batch) for batch in recorder.batches] == [3, 1, 1, 1], "one batch, then each job alone"
    lone = engine_for(kandinsky).submit(ask("fine 0", 0, "u0")).result(60).images[0]
    assert max_pixel_diff(images[0], lone) <= TOLERANCE


def test_graceful_shutdown_finishes_the_queue_then_refuses(kandinsky: Family, engine_for) -> None:
    engine = engine_for(kandinsky, max_batch=1)
    handles = [engine.submit(ask(f"p{i}", i)) for i in range(3)]
    engine.shutdown(wait=True)
    assert all(handle.progress().status is JobStatus.SUCCEEDED for handle in handles)
    assert not engine._thread.is_alive()
    with pytest.raises(EngineClosed):
        engine.submit(ask("late", 1))


def test_shutdown_without_waiting_cancels_what_is_left(kandinsky: Family, engine_for) -> None:
    engine = engine_for(kandinsky, max_batch=1)
    release = blocker(engine, kandinsky)
    queued = engine.submit(ask("queued", 1))
    engine.shutdown(wait=False)
    release.set()
    engine._thread.join(30)
    assert not engine._thread.is_alive()
    assert queued.progress().status is JobStatus.CANCELLED


def test_call_on_fresh_thread_returns_the_result_or_raises_the_error() -> None:
    from model.engine.engine_local import call_on_fresh_thread

    caller = threading.current_thread()
    ran_on: list[threading.Thread] = []
    assert call_on_fresh_thread(lambda: ran_on.append(threading.current_thread()) or 42) == 42
    assert ran_on[0] is not caller and not ran_on[0].is_alive()
    with pytest.raises(ZeroDivisionError):
        call_on_fresh_thread(lambda: 1 / 0)


def test_from_path_loads_the_model_off_the_calling_thread(
    kandinsky_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Torch work on the caller's long-lived thread would slow the worker about 2x on a small CPU."""
    import model.families
    from model.engine import LocalEngine

    loaded_on: list[threading.Thread] = []
    real_load = model.families.load_family

    def recording_load(*args, **kwargs):
        loaded_on.append(threading.current_thread())
        return real_load(*args, **kwargs)

    monkeypatch.setattr(model.families, "load_family", recording_load)
    with LocalEngine.from_path(kandinsky_path, device="cpu") as engine:
        assert engine.submit(ask("a red circle", 1)).result(60).images
    assert loaded_on and loaded_on[0] is not threading.current_thread() and not loaded_on[0].is_alive()
    assert loaded_on[0] is not engine._thread
