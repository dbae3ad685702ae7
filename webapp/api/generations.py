"""`POST /generations`, `GET /generations/{id}`, `DELETE /generations/{id}` (cancel): parse, call the
generation job service, render."""

from __future__ import annotations

from fastapi import APIRouter

from storage.types import MixIngredientRef, UserInfo
from webapp.context import Studio
from webapp.schemas import Accepted, GenerationBody, GenerationOut
from webapp.services.generation_jobs import JobRequest
from webapp.views import generation_out


def job_request(body: GenerationBody) -> JobRequest:
    """The body as the job service's request; upload ids stay references."""
    return JobRequest(
        prompt=body.prompt,
        negative_prompt=body.negative_prompt,
        seed=body.seed,
        steps=body.steps,
        guidance_scale=body.guidance_scale,
        width=body.width,
        height=body.height,
        num_images=body.num_images,
        scheduler=body.scheduler,
        candidates=body.candidates,
        guidance_upload_id=None if body.guidance_image is None else int(body.guidance_image),
        image_guidance_scale=body.image_guidance_scale,
        image_guidance_decay=body.image_guidance_decay,
        mix=tuple(
            MixIngredientRef(
                weight=item.weight, text=item.text, upload_id=None if item.image is None else int(item.image)
            )
            for item in body.mix
        ),
        interpolation=body.interpolation,
        mix_space=body.mix_space,
        upscale=body.upscale,
    )


def router(studio: Studio) -> APIRouter:
    api = APIRouter(tags=["generations"])
    caller = studio.auth.require()

    @api.post("/generations", status_code=202, response_model=Accepted)
    def create(body: GenerationBody, user: UserInfo = caller) -> Accepted:
        generation = studio.jobs.submit(user, job_request(body))
        return Accepted(
            id=generation.id, status=generation.status.value, warnings=studio.jobs.warnings(generation)
        )

    @api.get("/generations/{generation_id}", response_model=GenerationOut)
    def get(generation_id: int, user: UserInfo = caller) -> GenerationOut:
        return generation_out(studio, studio.storage.generations.get(user.id, generation_id))

    @api.delete("/generations/{generation_id}", response_model=GenerationOut)
    def cancel(generation_id: int, user: UserInfo = caller) -> GenerationOut:
        return generation_out(studio, studio.jobs.cancel(user, generation_id))

    return api
