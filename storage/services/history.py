"""The shared history: find past generations by prompt text, author, status and date; most-reused prompts.

Full-text search uses the database's own index: FTS5 on SQLite, `to_tsvector('simple', ...)` with
a GIN index on PostgreSQL. Both tokenise on letters and digits without stemming, and every word
of the query must appear (as a word or the start of one), so results agree across backends.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, Select, TextClause, exists, func, or_, select, text
from sqlalchemy.orm import selectinload

from ..errors import NotFound, ValidationFailed
from ..models import Favourite, Generation, Image, Prompt, User
from ..types import (
    Actor,
    GenerationStatus,
    HistoryItem,
    HistoryQuery,
    HistorySort,
    Page,
    PromptInfo,
    ReviewStatus,
)
from .helpers import Service, acting_person, check_page, generation_info, is_staff, prompt_info
from .users import lookup_key

_WORD = re.compile(r"[^\W_]+")
MAX_QUERY_WORDS = 16


def search_words(query: str) -> list[str]:
    """The words of a search box entry; punctuation and FTS syntax are dropped, never interpreted."""
    return _WORD.findall(query.casefold())[:MAX_QUERY_WORDS]


def text_match(dialect: str, words: list[str]) -> ColumnElement[bool] | TextClause:
    """A condition on `prompts` that is true when every word (or a word starting with it) is in its text."""
    if dialect == "sqlite":
        match = " ".join(f'"{word}"*' for word in words)
        return Prompt.id.in_(
            select(text("rowid"))
            .select_from(text("prompts_fts"))
            .where(text("prompts_fts MATCH :match").bindparams(match=match))
        )
    query = " & ".join(f"{word}:*" for word in words)
    return text("to_tsvector('simple', prompts.text) @@ to_tsquery('simple', :tsquery)").bindparams(
        tsquery=query
    )


class HistoryService(Service):
    def search(self, actor: Actor, query: HistoryQuery | None = None) -> Page[HistoryItem]:
        """One page of generations the actor may see, with prompt and images, matching `query`."""
        query = query or HistoryQuery()
        check_page(query.page, query.page_size)
        try:
            sort = HistorySort(query.sort)
            review_status = None if query.review_status is None else ReviewStatus(query.review_status)
            status = None if query.status is None else GenerationStatus(query.status)
        except ValueError as exc:
            raise ValidationFailed("query", str(exc)) from None
        for name in ("created_from", "created_to"):
            moment = getattr(query, name)
            if moment is not None and moment.tzinfo is None:
                raise ValidationFailed(name, "Give a date with its time zone (UTC if unsure).")
        if query.created_from and query.created_to and query.created_from > query.created_to:
            raise ValidationFailed("created_to", "The end date is before the start date.")
        with self.db.read() as session:
            user = acting_person(session, actor)
            conditions: list[ColumnElement[bool] | TextClause] = []
            if not is_staff(user):
                conditions.append(
                    or_(Prompt.shared, Prompt.author_id == user.id, Generation.user_id == user.id)
                )
            if query.mine:
                conditions.append(Generation.user_id == user.id)
            if query.author:
                key = lookup_key(query.author)
                author_id = session.scalar(select(User.id).where(User.username_key == key)) if key else None
                if author_id is None:
                    raise NotFound(f"There is no user {query.author!r}.")
                conditions.append(Generation.user_id == author_id)
            words = search_words(query.text)
            if words:
                conditions.append(text_match(self.db.dialect, words))
            if review_status is not None:
                conditions.append(
                    exists().where(
                        Image.generation_id == Generation.id, Image.review_status == review_status.value
                    )
                )
            if status is not None:
                conditions.append(Generation.status == status.value)
            if query.created_from is not None:
                conditions.append(Generation.created_at >= query.created_from)
            if query.created_to is not None:
                conditions.append(Generation.created_at < query.created_to)
            if query.favourites_only:
                conditions.append(
                    exists().where(Favourite.user_id == user.id, Favourite.prompt_id == Prompt.id)
                )
            base: Select = (
                select(Generation).join(Prompt, Generation.prompt_id == Prompt.id).where(*conditions)
            )
            total = (
                session.scalar(
                    select(func.count()).select_from(base.with_only_columns(Generation.id).subquery())
                )
                or 0
            )
            order: tuple[Any, ...] = {
                HistorySort.NEWEST: (Generation.created_at.desc(), Generation.id.desc()),
                HistorySort.OLDEST: (Generation.created_at.asc(), Generation.id.asc()),
                HistorySort.MOST_USED: (Prompt.use_count.desc(), Generation.id.desc()),
            }[sort]
            generations = session.scalars(
                base.options(
                    selectinload(Generation.images),
                    selectinload(Generation.user),
                    selectinload(Generation.prompt).selectinload(Prompt.author),
                )
                .order_by(*order)
                .limit(query.page_size)
                .offset((query.page - 1) * query.page_size)
            ).all()
            favourites = set(
                session.scalars(
                    select(Favourite.prompt_id).where(
                        Favourite.user_id == user.id,
                        Favourite.prompt_id.in_({g.prompt_id for g in generations}),
                    )
                )
            )
            items = tuple(
                HistoryItem(generation_info(g), prompt_info(g.prompt), g.prompt_id in favourites)
                for g in generations
            )
            return Page(items, total, query.page, query.page_size)

    def most_reused(self, actor: Actor, limit: int = 10) -> list[PromptInfo]:
        """The prompts used most often (generations plus remixes) among those the actor may see."""
        check_page(1, limit)
        with self.db.read() as session:
            user = acting_person(session, actor)
            stmt = select(Prompt).where(Prompt.use_count > 0)
            if not is_staff(user):
                stmt = stmt.where(or_(Prompt.shared, Prompt.author_id == user.id))
            prompts = session.scalars(
                stmt.options(selectinload(Prompt.author))
                .order_by(Prompt.use_count.desc(), Prompt.id.desc())
                .limit(limit)
            )
            return [prompt_info(p) for p in prompts]
