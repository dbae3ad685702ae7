"""`GET /export?status=approved`: a zip of images with manifest.csv and manifest.json (reviewers, admins)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from storage.types import ReviewStatus, UserInfo
from webapp.auth import STAFF
from webapp.context import Studio


def router(studio: Studio) -> APIRouter:
    api = APIRouter(tags=["export"])
    reviewer = studio.auth.require(*STAFF)

    @api.get(
        "/export",
        response_class=FileResponse,
        responses={200: {"content": {"application/zip": {}}, "description": "the zip"}},
    )
    def export(
        status: Literal["draft", "pending", "approved", "rejected"] = "approved", user: UserInfo = reviewer
    ) -> FileResponse:
        descriptor, name = tempfile.mkstemp(prefix="draftroom-export-", suffix=".zip")
        path = Path(name)
        try:
            with open(descriptor, "wb") as handle:
                summary = studio.storage.export.write_zip(user.id, handle, ReviewStatus(status))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return FileResponse(
            path,
            media_type="application/zip",
            filename=f"draftroom-{status}.zip",
            headers={"X-Draftroom-Count": str(summary.count)},
            background=BackgroundTask(path.unlink, missing_ok=True),
        )

    return api
