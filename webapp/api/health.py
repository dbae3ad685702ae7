"""`GET /health`: liveness for monitors; the only endpoint that needs no token."""

from __future__ import annotations

from fastapi import APIRouter

from webapp.context import Studio
from webapp.schemas import HealthOut


def router(studio: Studio) -> APIRouter:
    api = APIRouter(tags=["health"])

    @api.get("/health", response_model=HealthOut)
    def health() -> HealthOut:
        info = studio.engine.model_info
        return HealthOut(status="ok", model=info.name, family=info.family, auth=studio.auth.enabled)

    return api
