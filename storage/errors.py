"""Errors the storage services raise. Each message is written for the person who caused it."""

from __future__ import annotations


class StorageError(Exception):
    """Base class: `str(error)` is a sentence a user can read."""


class PermissionDenied(StorageError):
    """The acting user may not do this (role, ownership, four-eyes rule, disabled account)."""


class NotFound(StorageError):
    """The thing asked for does not exist, or the acting user may not see it."""


class InvalidState(StorageError):
    """The thing exists but is in a state that does not allow this action."""


class Conflict(StorageError):
    """The action collides with existing data (a taken username, an ambiguous token prefix)."""


class ValidationFailed(StorageError, ValueError):
    """Bad input; `field` names the offending field so a form can highlight it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
