"""`GET /prompts`: the shared history, searchable; each item is a generation with its prompt."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Query

from storage.types import GenerationStatus, HistoryQuery, ReviewStatus, UserInfo
from webapp.context import Studio
from webapp.errors import ApiError
from webapp.schemas import PromptPage
from webapp.views import history_item_out

STATUSES = [s.value for s in ReviewStatus] + [s.value for s in GenerationStatus]


def _utc(moment: datetime | None) -> datetime | None:
    """Dates without a zone are read as UTC, the zone everything is stored in."""
    return None if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


def history_query(
    q: str,
    author: str | None,
    status: str | None,
    mine: bool,
    favourites: bool,
    created_from: datetime | None,
    created_to: datetime | None,
    page: int,
    page_size: int,
) -> HistoryQuery:
    """`status` is a review status (draft, pending, approved, rejected) or a generation status."""
    review_status = generation_status = None
    if status in {s.value for s in ReviewStatus}:
        review_status = ReviewStatus(status)
    elif status in {s.value for s in GenerationStatus}:
        generation_status = GenerationStatus(status)
    elif status:
        raise ApiError(
            422, "invalid_request", [{"field": "status", "message": f"use one of {', '.join(STATUSES)}"}]
        )
    return HistoryQuery(
        text=q,
        author=author or None,
        mine=mine,
        review_status=review_status,
        status=generation_status,
        created_from=_utc(created_from),
        created_to=_utc(created_to),
        favourites_only=favourites,
        page=page,
        page_size=page_size,
    )


def router(studio: Studio) -> APIRouter:
    api = APIRouter(tags=["prompts"])
    caller = studio.auth.require()

    @api.get("/prompts", response_model=PromptPage)
    def search(
        q: str = Query("", max_length=500, description="words that must all appear in the prompt"),
        author: str | None = Query(None, max_length=64),
        status: str | None = Query(None, description=f"one of {', '.join(STATUSES)}"),
        mine: bool = False,
        favourites: bool = False,
        created_from: datetime | None = Query(None, description="ISO date or time, UTC if no zone"),
        created_to: datetime | None = Query(None),
        page: int = Query(1, ge=1, le=100_000),
        page_size: int = Query(20, ge=1, le=100),
        user: UserInfo = caller,
    ) -> PromptPage:
        query = history_query(q, author, status, mine, favourites, created_from, created_to, page, page_size)
        found = studio.storage.history.search(user.id, query)
        return PromptPage(
            items=[history_item_out(item) for item in found.items],
            total=found.total,
            page=found.page,
            page_size=found.page_size,
        )

    return api
