"""REST API `/api/v1`: one module per resource, each building its router around the shared Studio."""

from __future__ import annotations

from fastapi import APIRouter

from webapp.api import exports, generations, health, images, me, prompts, uploads, users
from webapp.context import Studio
from webapp.errors import ApiError
from webapp.schemas import ERROR_RESPONSES

PREFIX = "/api/v1"


def build_api_router(studio: Studio) -> APIRouter:
    api = APIRouter(prefix=PREFIX, responses=ERROR_RESPONSES)
    for module in (health, me, uploads, generations, images, prompts, exports, users):
        api.include_router(module.router(studio))

    @api.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    def unknown(path: str) -> None:
        """Without this, unknown API paths would fall through to the UI mounted at `/`."""
        raise ApiError(404, "not_found", f"no API endpoint /api/v1/{path}")

    return api
