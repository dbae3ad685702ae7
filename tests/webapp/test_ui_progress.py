"""The Generate tab's progress panel: queue place and wait, the prior, each image's own steps, ETA, previews."""

from __future__ import annotations

import base64
import io
import re

from PIL import Image

from model.engine.engine_common import JobStatus, Progress, Stage
from webapp.ui.progress import PREVIEW_SIDE, finished_html, progress_html


def running(**fields: object) -> Progress:
    base: dict = dict(
        status=JobStatus.RUNNING, queue_position=None, step=0, total=60, eta_s=None, num_images=4
    )
    return Progress(**{**base, "image_steps": 15, **fields})


def bar_value(panel: str) -> float | None:
    bar = re.search(r'<progress class="bar" max="1"(?: value="([0-9.]+)")?', panel)
    assert bar, panel
    return None if bar[1] is None else float(bar[1])


def test_a_queued_job_shows_its_place_and_the_estimated_wait_on_a_moving_bar() -> None:
    queued = Progress(JobStatus.QUEUED, queue_position=2, step=0, total=30, eta_s=14.2, num_images=2)
    panel = progress_html(queued)
    assert "Queued: position 3 in the queue, about 14 s" in panel
    assert bar_value(panel) is None, "an indeterminate (animated) bar until the job starts"
    assert "Queued: starts next" in progress_html(None)


def test_a_running_job_counts_each_images_own_steps() -> None:
    panel = progress_html(
        running(stage=Stage.DENOISING, images_done=1, running_images=(1,), image_step=7, eta_s=12.4)
    )
    assert "Image 2 of 4, step 7/15, about 12 s left" in panel
    assert bar_value(panel) == round((16 + 8) / 64, 3), "1 done image of 16 units, 8 of the second"
    together = progress_html(running(stage=Stage.DENOISING, running_images=(0, 1, 2, 3), image_step=3))
    assert "Images 1-4 of 4, step 3/15" in together


def test_the_prior_stage_already_moves_the_bar() -> None:
    panel = progress_html(running(stage=Stage.PRIOR, running_images=(0, 2), eta_s=130))
    assert "Images 1, 3 of 4: prior" in panel and "about 2 min left" in panel
    assert 0 < bar_value(panel) < 0.05  # type: ignore[operator]


def test_previews_are_small_images_in_the_panel() -> None:
    big = Image.new("RGB", (512, 512), (200, 30, 30))
    panel = progress_html(
        running(stage=Stage.DENOISING, running_images=(1,), image_step=2, previews=(None, big, None, None))
    )
    [(data, alt)] = re.findall(
        r'<img class="preview" src="data:image/png;base64,([^"]+)" alt="([^"]+)">', panel
    )
    assert alt == "preview of image 2"
    with Image.open(io.BytesIO(base64.b64decode(data))) as shown:
        assert shown.size == (PREVIEW_SIDE, PREVIEW_SIDE)
        assert shown.getpixel((5, 5)) == (200, 30, 30)


def test_a_final_panel_is_a_full_bar_or_the_escaped_reason() -> None:
    assert bar_value(finished_html("Done: 2 image(s), seed 7", succeeded=True)) == 1.0
    failed = finished_html("Failed: <b>boom</b>", succeeded=False)
    assert "<progress" not in failed and "Failed: &lt;b&gt;boom&lt;/b&gt;" in failed
