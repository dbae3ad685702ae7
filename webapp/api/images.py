"""`GET /images/{id}` (the PNG with its recipe chunks), submit for review (optionally as a revision of an
earlier image), review decisions, and an image's lineage."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from storage.errors import NotFound
from storage.types import UserInfo
from webapp.auth import STAFF
from webapp.context import Studio
from webapp.schemas import ImageOut, ReviewBody, ReviewOut, SubmitBody
from webapp.views import image_out


def router(studio: Studio) -> APIRouter:
    api = APIRouter(tags=["images"])
    caller = studio.auth.require()
    reviewer = studio.auth.require(*STAFF)
    storage = studio.storage

    @api.get(
        "/images/{image_id}",
        response_class=FileResponse,
        responses={200: {"content": {"image/png": {}}, "description": "the PNG, metadata included"}},
    )
    def get(image_id: int, user: UserInfo = caller) -> FileResponse:
        image = storage.generations.image(user.id, image_id)
        path = storage.images.path_for(image.sha256)
        if image.file_missing or not path.is_file():
            raise NotFound(f"The file of image {image_id} is missing.")
        return FileResponse(
            path,
            media_type="image/png",
            filename=f"draftroom-{image_id}.png",
            content_disposition_type="inline",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    @api.post("/images/{image_id}/submit", response_model=ImageOut)
    def submit(image_id: int, body: SubmitBody | None = None, user: UserInfo = caller) -> ImageOut:
        revision_of = body.revision_of if body is not None else None
        return image_out(storage.reviews.submit(user.id, image_id, revision_of=revision_of))

    @api.get("/images/{image_id}/lineage", response_model=list[ImageOut])
    def lineage(image_id: int, user: UserInfo = caller) -> list[ImageOut]:
        """The images this one revises, the nearest first."""
        return [image_out(image) for image in storage.reviews.lineage(user.id, image_id)]

    @api.post("/images/{image_id}/reviews", status_code=201, response_model=ReviewOut)
    def review(image_id: int, body: ReviewBody, user: UserInfo = reviewer) -> ReviewOut:
        decision = storage.reviews.decide(user.id, image_id, body.decision, body.comment)
        image = storage.generations.image(user.id, image_id)
        return ReviewOut(
            id=decision.id,
            image_id=image_id,
            decision=decision.decision.value,
            comment=decision.comment,
            reviewer=decision.reviewer,
            review_status=image.review_status.value,
        )

    @api.get("/images/{image_id}/reviews", response_model=list[ReviewOut])
    def reviews(image_id: int, user: UserInfo = caller) -> list[ReviewOut]:
        image = storage.generations.image(user.id, image_id)
        return [
            ReviewOut(
                id=r.id,
                image_id=image_id,
                decision=r.decision.value,
                comment=r.comment,
                reviewer=r.reviewer,
                review_status=image.review_status.value,
            )
            for r in storage.reviews.history(user.id, image_id)
        ]

    return api
