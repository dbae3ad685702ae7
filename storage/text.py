"""Rules for the user text storage keeps (prompts, comments, names, labels, tags), shared with the web layer."""

from __future__ import annotations

from .errors import ValidationFailed

BIDI_CONTROLS = frozenset(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))
"""Unicode's embedding, override and isolate controls: they reorder how text around them is shown (a comment
that reads differently from what it says); other format characters (ZWJ in emoji) stay allowed."""


def bidi_control_in(value: str) -> str | None:
    """The first bidirectional control character in `value`, or None."""
    return next((ch for ch in value if ch in BIDI_CONTROLS), None)


def checked_text(value: str, field: str) -> str:
    """The one check for stored user text (prompts, comments, names, labels, tags): no NUL (PostgreSQL text
    cannot hold one) and no bidirectional controls, on either database."""
    if "\x00" in value:
        raise ValidationFailed(field, "Must not contain a NUL character.")
    control = bidi_control_in(value)
    if control:
        raise ValidationFailed(field, f"Must not contain the bidirectional control character U+{ord(control):04X}.")
    return value
