"""The upload checks on their own: byte cap while reading, pixel cap from the header, real decode."""

from __future__ import annotations

import io

import pytest

from tests.webapp.helpers import png_bytes, png_declaring
from webapp.errors import ApiError
from webapp.uploads import check_image, read_capped


def test_read_capped_stops_one_byte_past_the_cap() -> None:
    assert read_capped(io.BytesIO(b"x" * 100), max_bytes=100) == b"x" * 100
    with pytest.raises(ApiError) as refused:
        read_capped(io.BytesIO(b"x" * 101), max_bytes=100)
    assert refused.value.status == 413


def test_the_pixel_cap_is_checked_from_the_header() -> None:
    assert check_image(png_bytes(size=(10, 10)), max_pixels=100).width == 10
    with pytest.raises(ApiError) as refused:
        check_image(png_bytes(size=(10, 11)), max_pixels=100)
    assert (refused.value.status, refused.value.error) == (413, "image_too_large")


def test_a_header_only_bomb_is_refused_by_size_not_by_decoding() -> None:
    """The file holds almost no pixel data; a decode would fail with 422, the header check says 413."""
    with pytest.raises(ApiError) as refused:
        check_image(png_declaring(20000, 20000))
    assert (refused.value.status, refused.value.error) == (413, "image_too_large")


def test_a_checked_image_is_decoded_and_hashed() -> None:
    data = png_bytes("red", (7, 5), "WEBP")
    checked = check_image(data)
    assert (checked.format, checked.width, checked.height) == ("WEBP", 7, 5)
    assert checked.image.mode == "RGB" and checked.image.size == (7, 5) and checked.data == data
    assert len(checked.sha256) == 64


def test_a_16_million_by_1_strip_is_refused_by_the_per_side_limit() -> None:
    """Under the pixel cap (16,000,000 < 4096 x 4096), yet a model resizing it runs out of memory."""
    with pytest.raises(ApiError) as refused:
        check_image(png_bytes("white", (16_000_000, 1)))
    assert (refused.value.status, refused.value.error) == (413, "image_too_large")
    assert "4096 pixels per side" in refused.value.detail


@pytest.mark.parametrize("size", [(900, 100), (100, 900)])
def test_an_image_more_elongated_than_1_to_8_is_refused_naming_the_ratio(size: tuple[int, int]) -> None:
    with pytest.raises(ApiError) as refused:
        check_image(png_bytes("white", size))
    assert (refused.value.status, refused.value.error) == (422, "invalid_image")
    assert "aspect ratio limit is 1:8" in refused.value.detail
    assert check_image(png_bytes("white", (800, 100))).width == 800
