"""The Generate tab's progress panel (`#progress`, in the results column): one bar from the click to the images.

A queued job shows its place in the queue and the estimated wait; a running one its stage: the prior (the
prompt becomes an image embedding), then each image's own denoising steps ("image 2 of 4, step 7/15"), with
an ETA. Under the bar, the live previews the engine decodes for a watched job (`Progress.previews`) appear
until the finished images arrive in the gallery. Previews travel as small data URIs and are never stored.
"""

from __future__ import annotations

import html

from PIL import Image

from model.engine.engine_common import JobStatus, Progress, Stage
from webapp.ui.common import picture_uri

PREVIEW_SIDE = 128
"""Previews are shrunk to this side at most before they go into the page (the page scales them up)."""
PRELUDE_SHARE = 0.5
"""Of an image's work counted by the bar, a stage before the denoising loop (the prior) that has begun counts
this many steps' worth, so the bar moves as soon as the job starts."""


def progress_html(progress: Progress | None) -> str:
    """The panel for a job that is queued or running (None: submitted, not yet seen by the engine)."""
    if progress is None or progress.status is JobStatus.QUEUED:
        return panel(queued_label(progress), None, ())
    return panel(running_label(progress), fraction(progress), progress.previews)


def finished_html(label: str, *, succeeded: bool) -> str:
    """The panel once the job's final status is stored: a full bar and what came of it, or why not."""
    return panel(label, 1.0 if succeeded else None, (), final=True)


def panel(
    label: str, value: float | None, previews: tuple[Image.Image | None, ...], *, final: bool = False
) -> str:
    """The bar (indeterminate while `value` is None, hidden on a final failure), its label and the previews."""
    bar = ""
    if not (final and value is None):
        shown = "" if value is None else f' value="{value:.3f}"'
        bar = f'<progress class="bar" max="1"{shown} aria-label="Generation progress"></progress>'
    pictures = "".join(
        f'<img class="preview" src="{picture_uri(picture, PREVIEW_SIDE)}" alt="preview of image {index + 1}">'
        for index, picture in enumerate(previews)
        if picture is not None
    )
    strip = f'<div class="previews">{pictures}</div>' if pictures else ""
    return f'<div class="progress-panel">{bar}<div class="label">{html.escape(label)}</div>{strip}</div>'


def queued_label(progress: Progress | None) -> str:
    """ "Queued: position 2 in the queue, about 14 s" (the wait shows once the engine can estimate it)."""
    ahead = None if progress is None else progress.queue_position
    where = "starts next" if not ahead else f"position {ahead + 1} in the queue"
    wait = "" if progress is None or progress.eta_s is None else f", about {duration(progress.eta_s)}"
    return f"Queued: {where}{wait}"


def running_label(progress: Progress) -> str:
    """Where the images now running are: "Image 2 of 4, step 7/15, about 12 s left"."""
    count = progress.num_images
    if not progress.running_images:
        what = f"{progress.images_done} of {count} images done, waiting for the next turn"
    else:
        images = image_names(progress.running_images, count)
        if progress.stage is Stage.DENOISING:
            what = f"{images}, step {progress.image_step}/{progress.image_steps}"
        elif progress.stage is Stage.PRIOR:
            what = f"{images}: prior (the prompt becomes an image embedding)"
        else:
            what = f"{images}: starting"
    left = "" if progress.eta_s is None else f", about {duration(progress.eta_s)} left"
    return f"{what[0].upper()}{what[1:]}{left}"


def image_names(indexes: tuple[int, ...], count: int) -> str:
    """1-based: "image 2 of 4", "images 1-4 of 4", "images 1, 3 of 4"."""
    numbers = [index + 1 for index in indexes]
    if len(numbers) == 1:
        return f"image {numbers[0]} of {count}"
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"images {numbers[0]}-{numbers[-1]} of {count}"
    return f"images {', '.join(map(str, numbers))} of {count}"


def fraction(progress: Progress) -> float:
    """The share of the job done: each image counts its steps plus one for what comes before them (the prior,
    the encoders); a begun prelude counts PRELUDE_SHARE of that one."""
    per_image = progress.image_steps + 1
    running = len(progress.running_images)
    current: float
    if progress.stage is Stage.DENOISING:
        current = running * (1 + progress.image_step)
    else:
        current = running * PRELUDE_SHARE
    done = progress.images_done * per_image + current
    return min(1.0, done / (progress.num_images * per_image))


def duration(seconds: float) -> str:
    """ "8 s", "2 min": an estimate, so rounded."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{round(seconds / 60)} min"
