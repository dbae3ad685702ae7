"""Export: a zip of the images in one review status (approved by default) with manifest.csv and
manifest.json describing each (prompt, parameters, seed, author, reviewer, decision, time).

manifest.csv is opened in spreadsheets, which run a cell starting with `=`, `+`, `-`, `@`, tab or carriage
return as a formula: such text cells get a leading `'` (OWASP's CSV-injection rule). manifest.json keeps
every value exactly as stored.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from ..db import Database
from ..errors import ValidationFailed
from ..images import ImageStore, write_atomically
from ..models import Generation, Image, Prompt, Review, User
from ..types import Actor, ExportSummary, ReviewStatus
from .helpers import STAFF, Service, acting_user, audit

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

FIELDS = (
    "image_id",
    "file",
    "sha256",
    "width",
    "height",
    "generation_id",
    "image_index",
    "prompt",
    "negative_prompt",
    "parameters",
    "seed",
    "model",
    "model_hash",
    "author",
    "created_at",
    "review_status",
    "reviewer",
    "decision",
    "comment",
    "decided_at",
)


class ExportService(Service):
    def __init__(self, db: Database, store: ImageStore) -> None:
        super().__init__(db)
        self.store = store

    def write_zip(
        self, actor: Actor, target: Path | BinaryIO, status: ReviewStatus | str = ReviewStatus.APPROVED
    ) -> ExportSummary:
        """Write the zip to a path (atomically) or an open binary file. Reviewers, admins and the CLI only."""
        try:
            status = ReviewStatus(status)
        except ValueError:
            raise ValidationFailed("status", "Use draft, pending, approved or rejected.") from None
        with self.db.read() as session:
            acting_user(session, actor, *STAFF, operator=True)
            rows = self._rows(session, status)
        missing = tuple(row["image_id"] for row in rows if not self.store.exists(row["sha256"]))
        gone = set(missing)
        rows = [row for row in rows if row["image_id"] not in gone]
        if isinstance(target, Path):
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(target, lambda handle: self._zip(handle, rows), prefix=f".{target.name}.")
        else:
            self._zip(target, rows)
        with self.write() as session:
            user = acting_user(session, actor, *STAFF, operator=True)
            audit(
                session,
                user,
                "export",
                "images",
                None,
                status=status.value,
                count=len(rows),
                missing=list(missing),
            )
        return ExportSummary(len(rows), missing)

    @staticmethod
    def _rows(session: Session, status: ReviewStatus) -> list[dict[str, Any]]:
        latest = (
            select(Review.image_id, func.max(Review.id).label("review_id"))
            .group_by(Review.image_id)
            .subquery()
        )
        author, reviewer = aliased(User), aliased(User)
        result = session.execute(
            select(Image, Generation, Prompt, author.username, Review, reviewer.username)
            .join(Generation, Image.generation_id == Generation.id)
            .join(Prompt, Generation.prompt_id == Prompt.id)
            .join(author, Generation.user_id == author.id)
            .outerjoin(latest, latest.c.image_id == Image.id)
            .outerjoin(Review, Review.id == latest.c.review_id)
            .outerjoin(reviewer, Review.reviewer_id == reviewer.id)
            .where(Image.review_status == status.value)
            .order_by(Image.id)
        )
        rows = []
        for image, generation, prompt, author_name, review, reviewer_name in result:
            rows.append(
                {
                    "image_id": image.id,
                    "file": f"images/{generation.id}-{image.index}-{image.sha256[:12]}.png",
                    "sha256": image.sha256,
                    "width": image.width,
                    "height": image.height,
                    "generation_id": generation.id,
                    "image_index": image.index,
                    "prompt": prompt.text,
                    "negative_prompt": prompt.negative_prompt,
                    "parameters": generation.params,
                    "seed": image.seed,
                    "model": generation.model_id,
                    "model_hash": generation.model_hash,
                    "author": author_name,
                    "created_at": image.created_at.isoformat(),
                    "review_status": image.review_status,
                    "reviewer": reviewer_name,
                    "decision": review.decision if review else None,
                    "comment": review.comment if review else None,
                    "decided_at": review.created_at.isoformat() if review else None,
                }
            )
        return rows

    def _zip(self, handle: BinaryIO, rows: list[dict[str, Any]]) -> None:
        with zipfile.ZipFile(handle, "w") as archive:
            for row in rows:  # PNGs are compressed already: store them as they are
                archive.writestr(
                    row["file"], self.store.read(row["sha256"]), compress_type=zipfile.ZIP_STORED
                )
            archive.writestr(
                "manifest.json",
                json.dumps(rows, indent=2, ensure_ascii=False),
                compress_type=zipfile.ZIP_DEFLATED,
            )
            archive.writestr("manifest.csv", _csv(rows), compress_type=zipfile.ZIP_DEFLATED)


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    writer.writeheader()
    for row in rows:
        cells = {**row, "parameters": json.dumps(row["parameters"], sort_keys=True)}
        writer.writerow({name: neutralise_formula(value) for name, value in cells.items()})
    return buffer.getvalue()


def neutralise_formula(value: object) -> object:
    """A text cell a spreadsheet would run as a formula, prefixed with `'` so it shows as typed."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
