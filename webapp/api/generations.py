"""`POST /generations`, `GET /generations/{id}`, `DELETE /generations/{id}` (cancel)."""

from __future__ import annotations

from fastapi import APIRouter

from storage.types import UserInfo
from webapp.context import Studio
from webapp.jobs import Ingredient, JobSpec
from webapp.schemas import Accepted, GenerationBody, GenerationOut
from webapp.views import generation_out


def spec_from_body(body: GenerationBody) -> JobSpec:
    return JobSpec(
        prompt=body.prompt, negative_prompt=body.negative_prompt, seed=body.seed, steps=body.steps,
        guidance_scale=body.guidance_scale, width=body.width, height=body.height, num_images=body.num_images,
        scheduler=body.scheduler, candidates=body.candidates,
        guidance_upload_id=None if body.guidance_image is None else int(body.guidance_image),
        image_guidance_scale=body.image_guidance_scale, image_guidance_decay=body.image_guidance_decay,
        mix=tuple(Ingredient(weight=item.weight, text=item.text,
                             upload_id=None if item.image is None else int(item.image)) for item in body.mix),
        interpolation=body.interpolation)


def router(studio: Studio) -> APIRouter:
    api = APIRouter(tags=["generations"])
    caller = studio.auth.require()

    @api.post("/generations", status_code=202, response_model=Accepted)
    def create(body: GenerationBody, user: UserInfo = caller) -> Accepted:
        generation = studio.runner.submit(user, spec_from_body(body))
        return Accepted(id=generation.id, status=generation.status.value)

    @api.get("/generations/{generation_id}", response_model=GenerationOut)
    def get(generation_id: int, user: UserInfo = caller) -> GenerationOut:
        return generation_out(studio, studio.storage.generations.get(user.id, generation_id))

    @api.delete("/generations/{generation_id}", response_model=GenerationOut)
    def cancel(generation_id: int, user: UserInfo = caller) -> GenerationOut:
        return generation_out(studio, studio.runner.cancel(user, generation_id))

    return api
