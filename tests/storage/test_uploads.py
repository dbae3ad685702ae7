"""Uploads are checked (size, pixels, real image) and normalised to PNG."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from storage import Storage
from storage.errors import PermissionDenied, ValidationFailed
from storage.services import uploads as upload_rules

from .conftest import People
from .helpers import plain_png


def test_an_upload_is_stored_as_png_in_its_own_store(storage: Storage, people: People) -> None:
    info = storage.uploads.add(people.alice, plain_png(5, 3, fmt="JPEG"))
    assert (info.width, info.height, info.uploader_id) == (5, 3, people.alice)
    path = storage.upload_store.path_for(info.sha256)
    assert path.is_relative_to(storage.data_dir / "uploads")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (5, 3)
    assert storage.uploads.get(people.bob, info.id) == info


def test_the_same_picture_twice_is_one_upload_per_user(storage: Storage, people: People) -> None:
    first = storage.uploads.add(people.alice, plain_png())
    assert storage.uploads.add(people.alice, plain_png()).id == first.id
    other = storage.uploads.add(people.bob, plain_png())
    assert other.id != first.id and other.sha256 == first.sha256


def test_metadata_is_stripped(storage: Storage, people: People) -> None:
    image = Image.new("RGB", (4, 4))
    exif = image.getexif()
    exif[0x010F] = "SecretCam"  # camera maker
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    info = storage.uploads.add(people.alice, buffer.getvalue())
    assert b"SecretCam" not in storage.upload_store.read(info.sha256)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"not an image at all", "not a readable"),
        (plain_png(fmt="GIF"), "not a readable"),
        (plain_png()[:40], "not a readable"),
    ],
)
def test_bad_uploads_are_refused_by_field(
    storage: Storage, people: People, data: bytes, message: str
) -> None:
    with pytest.raises(ValidationFailed, match=message) as error:
        storage.uploads.add(people.alice, data)
    assert error.value.field == "image"
    assert not any(storage.upload_store.root.rglob("*.png"))


def test_size_and_pixel_limits(storage: Storage, people: People, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upload_rules, "MAX_PIXELS", 100)
    with pytest.raises(ValidationFailed, match="more than 100 pixels"):
        storage.uploads.add(people.alice, plain_png(11, 10))
    monkeypatch.setattr(upload_rules, "MAX_UPLOAD_BYTES", 50)
    with pytest.raises(ValidationFailed, match="larger than"):
        storage.uploads.add(people.alice, plain_png(2, 2) + b"\0" * 60)


def test_disabled_users_cannot_upload(storage: Storage, people: People) -> None:
    storage.users.set_active(people.ada, people.bob, False)
    with pytest.raises(PermissionDenied, match="disabled"):
        storage.uploads.add(people.bob, plain_png())


@pytest.mark.parametrize(
    ("size", "message"), [((16_000_000, 1), "4096 pixels per side"), ((9, 1), "aspect ratio limit is 1:8")]
)
def test_extreme_shapes_are_refused_before_decoding(
    storage: Storage, people: People, size: tuple[int, int], message: str
) -> None:
    with pytest.raises(ValidationFailed, match=message) as error:
        storage.uploads.add(people.alice, plain_png(*size))
    assert error.value.field == "image"
    assert storage.uploads.add(people.alice, plain_png(8, 1)).width == 8
