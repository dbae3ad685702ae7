"""Properties of the PNG recipe parser: any bytes give a Recipe of the declared types or a
ValidationFailed (never another exception), and every recipe Draftroom writes reads back equal."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from storage.errors import ValidationFailed
from storage.metadata import Recipe, encode_png, read_png_metadata

TYPES = {
    "prompt": str,
    "negative_prompt": str,
    "steps": (int, type(None)),
    "sampler": (str, type(None)),
    "cfg_scale": (int, float, type(None)),
    "seed": (int, type(None)),
    "width": (int, type(None)),
    "height": (int, type(None)),
    "model_hash": (str, type(None)),
    "model_name": (str, type(None)),
    "mix": tuple,
    "guidance": (dict, type(None)),
    "generation_id": (int, type(None)),
    "image_index": (int, type(None)),
    "params": dict,
    "extra": dict,
}


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def plain_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, format="PNG")
    return buffer.getvalue()


PLAIN = plain_png()
IHDR_END = 8 + 25


def with_chunks(*chunks: bytes) -> bytes:
    """A valid PNG with `chunks` before its pixel data, where Pillow reads text chunks on open."""
    return PLAIN[:IHDR_END] + b"".join(chunks) + PLAIN[IHDR_END:]


def draftroom_chunk(text: bytes, compressed: bool = False) -> bytes:
    body = zlib.compress(text) if compressed else text
    return chunk(
        b"iTXt", b"draftroom\x00" + (b"\x01\x00" if compressed else b"\x00\x00") + b"\x00\x00" + body
    )


def read_or_refuse(data: bytes) -> Recipe | None:
    """The parser's contract: a Recipe whose fields have their declared types, or ValidationFailed."""
    try:
        recipe = read_png_metadata(data)
    except ValidationFailed as exc:
        assert exc.field == "image"
        return None
    for name, kind in TYPES.items():
        assert isinstance(getattr(recipe, name), kind), (name, getattr(recipe, name))
    return recipe


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
recipe_keys = st.sampled_from([*TYPES, "version", "unknown"])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
@example(PLAIN[:40])
@example(b"\x89PNG\r\n\x1a\n")
def test_any_bytes_give_a_recipe_or_a_refusal(data: bytes) -> None:
    read_or_refuse(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(0, 255), st.booleans())
def test_a_damaged_recipe_png_gives_a_recipe_or_a_refusal(position: int, value: int, truncate: bool) -> None:
    data = bytearray(encode_png(Image.new("RGB", (8, 8)), Recipe(prompt="a red circle", seed=3, steps=2)))
    position %= len(data)
    damaged = (
        bytes(data[:position]) if truncate else bytes(data[:position] + bytes([value]) + data[position + 1 :])
    )
    read_or_refuse(damaged)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, st.dictionaries(recipe_keys, json_values, max_size=8)))
@example([1, 2])
@example(3)
@example({"prompt": 3})
@example({"prompt": "a", "mix": 5})
@example({"prompt": "a", "mix": [1]})
@example({"prompt": "a", "cfg_scale": float("nan")})
def test_any_json_in_the_draftroom_chunk_gives_a_recipe_or_a_refusal(value: object) -> None:
    read_or_refuse(with_chunks(draftroom_chunk(json.dumps(value).encode())))


@pytest.mark.parametrize("key", [b"draftroom", b"parameters"])
def test_a_text_chunk_that_decompresses_huge_is_refused(key: bytes) -> None:
    """A small file whose compressed text chunk inflates past Pillow's limit (a zip bomb in a chunk)."""
    bomb = chunk(b"zTXt", key + b"\x00\x00" + zlib.compress(b"a" * 3_000_000))
    with pytest.raises(ValidationFailed) as refused:
        read_png_metadata(with_chunks(bomb))
    assert refused.value.field == "image"


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
small_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | text
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
optional_int = st.none() | st.integers(0, 2**63 - 1)
recipes = st.builds(
    Recipe,
    prompt=text,
    negative_prompt=text,
    steps=st.none() | st.integers(1, 500),
    sampler=st.none() | text,
    cfg_scale=st.none() | st.floats(0, 50),
    seed=optional_int,
    width=st.none() | st.integers(1, 4096),
    height=st.none() | st.integers(1, 4096),
    model_hash=st.none() | text,
    model_name=st.none() | text,
    mix=st.lists(st.fixed_dictionaries({"weight": st.floats(-10, 10), "text": text}), max_size=3).map(tuple),
    guidance=st.none()
    | st.fixed_dictionaries(
        {
            "upload_sha256": st.text("0123456789abcdef", min_size=64, max_size=64),
            "scale": st.floats(0, 1),
            "decay": st.sampled_from(["none", "cosine"]),
        }
    ),
    generation_id=optional_int,
    image_index=st.none() | st.integers(0, 63),
    params=st.dictionaries(text, small_json, max_size=5),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipes)
def test_every_recipe_draftroom_writes_reads_back_equal(recipe: Recipe) -> None:
    assert read_or_refuse(encode_png(Image.new("RGB", (4, 4)), recipe)) == recipe
