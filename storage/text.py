"""Rules for the user text storage keeps (prompts, comments, names, labels, tags), shared with the web layer."""

from __future__ import annotations

from model.engine.request_fields import bidi_control_in

from .errors import ValidationFailed


def checked_text(value: str, field: str) -> str:
    """The one check for stored user text (prompts, comments, names, labels, tags): no NUL (PostgreSQL text
    cannot hold one) and no bidirectional controls, on either database."""
    if "\x00" in value:
        raise ValidationFailed(field, "Must not contain a NUL character.")
    control = bidi_control_in(value)
    if control:
        raise ValidationFailed(
            field, f"Must not contain the bidirectional control character U+{ord(control):04X}."
        )
    return value
