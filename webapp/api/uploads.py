"""`POST /uploads`: a guidance image or mix ingredient, checked before it is kept.

The request body's size is capped by the server's body-limit middleware before it is parsed; the
file itself is capped again while read, then `check_image` proves it is a real, small enough image.
"""

from __future__ import annotations

from fastapi import APIRouter, File, UploadFile

from storage.types import UserInfo
from webapp.context import Studio
from webapp.schemas import UploadOut
from webapp.uploads import check_image, read_capped


def router(studio: Studio) -> APIRouter:
    api = APIRouter(tags=["uploads"])
    caller = studio.auth.require()

    @api.post("/uploads", status_code=201, response_model=UploadOut)
    def upload(file: UploadFile = File(...), user: UserInfo = caller) -> UploadOut:
        checked = check_image(read_capped(file.file))
        stored = studio.storage.uploads.add(user.id, checked.data)
        return UploadOut(id=stored.id, sha256=stored.sha256, width=stored.width, height=stored.height)

    return api
