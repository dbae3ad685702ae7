"""Storage records as REST bodies. Progress of a live job comes from the engine, the rest from storage."""

from __future__ import annotations

from storage.types import GenerationInfo, GenerationStatus, HistoryItem, ImageInfo
from webapp.context import Studio
from webapp.schemas import GenerationOut, ImageOut, ProgressOut, PromptItemOut


def image_url(image_id: int) -> str:
    return f"/api/v1/images/{image_id}"


def image_out(image: ImageInfo) -> ImageOut:
    return ImageOut(
        id=image.id,
        url=image_url(image.id),
        sha256=image.sha256,
        width=image.width,
        height=image.height,
        review_status=image.review_status.value,
        seed=image.seed,
        revision_of=image.revision_of,
    )


def planned_steps(generation: GenerationInfo) -> int:
    """Denoising steps over all images, the engine's unit for progress."""
    params = generation.params
    return int(params.get("steps") or 0) * int(params.get("num_images") or 1)


def progress_out(studio: Studio, generation: GenerationInfo) -> ProgressOut:
    """Live progress from the engine while the job runs here (no preview pixels); else what storage knows."""
    total = planned_steps(generation)
    image_steps = int(generation.params.get("steps") or 0)
    if generation.status == GenerationStatus.SUCCEEDED:
        done = len(generation.images)
        return ProgressOut(
            step=total, total=total, queue_position=None, images_done=done, image_steps=image_steps
        )
    live = studio.jobs.progress(generation.id)
    if live is None or generation.status not in (GenerationStatus.QUEUED, GenerationStatus.RUNNING):
        return ProgressOut(step=0, total=total, queue_position=None, image_steps=image_steps)
    return ProgressOut(
        step=live.step,
        total=live.total or total,
        queue_position=live.queue_position,
        eta_s=live.eta_s,
        stage=live.stage,
        images_done=live.images_done,
        running_images=list(live.running_images),
        image_step=live.image_step,
        image_steps=live.image_steps or image_steps,
    )


def generation_out(studio: Studio, generation: GenerationInfo) -> GenerationOut:
    return GenerationOut(
        id=generation.id,
        status=generation.status.value,
        progress=progress_out(studio, generation),
        seed=generation.seed,
        params=generation.params,
        error=generation.error,
        images=[image_out(image) for image in sorted(generation.images, key=lambda i: i.index)],
        warnings=studio.jobs.warnings(generation),
    )


def history_item_out(item: HistoryItem) -> PromptItemOut:
    generation, prompt = item.generation, item.prompt
    return PromptItemOut(
        generation_id=generation.id,
        prompt_id=prompt.id,
        prompt=prompt.text,
        negative_prompt=prompt.negative_prompt,
        author=generation.username,
        status=generation.status.value,
        seed=generation.seed,
        created_at=generation.created_at,
        favourite=item.favourite,
        parent_prompt_id=prompt.parent_id,
        use_count=prompt.use_count,
        images=[image_out(image) for image in sorted(generation.images, key=lambda i: i.index)],
    )
