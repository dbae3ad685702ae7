"""One error shape for the whole REST API: `{"error": <kind>, "detail": <why>}` with the right status.

Storage, engine and validation errors are translated here so handlers never build error responses
themselves; anything unexpected becomes a 500 with no internals leaked (the traceback is logged).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error a client caused or may see; `error` is a stable kind, `detail` says why."""

    def __init__(
        self, status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers


def error_response(
    status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _field_of(loc: tuple[Any, ...]) -> str:
    """Pydantic locations look like ("body", "mix", 0, "weight"); clients want "mix.0.weight"."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


_NAMED = re.compile(r"^Value error, ([\w.]+): (.+)$", re.DOTALL)
"""A rule over several fields of a body (webapp.schemas) names its field first: "interpolation: why"."""


def validation_detail(exc: RequestValidationError) -> list[dict[str, str]]:
    detail = []
    for err in exc.errors():
        field, message = _field_of(tuple(err.get("loc", ()))), str(err.get("msg", "invalid"))
        named = _NAMED.match(message) if field == "body" else None
        detail.append(
            {"field": named[1], "message": named[2]} if named else {"field": field, "message": message}
        )
    return detail


def install_error_handlers(app: FastAPI) -> None:
    """Register translations for every error type the handlers can raise."""
    from model.engine.engine_common import EngineClosed, QueueFull, RequestError
    from storage import errors as storage_errors

    storage_status = [
        (storage_errors.PermissionDenied, 403, "forbidden"),
        (storage_errors.NotFound, 404, "not_found"),
        (storage_errors.InvalidState, 409, "invalid_state"),
        (storage_errors.Conflict, 409, "conflict"),
        (storage_errors.ValidationFailed, 422, "invalid_request"),
    ]

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", validation_detail(exc))

    @app.exception_handler(RequestError)
    async def _engine_request(_: Request, exc: RequestError) -> JSONResponse:
        return error_response(
            422,
            "invalid_request",
            [{"field": getattr(exc, "field", "body"), "message": getattr(exc, "message", str(exc))}],
        )

    @app.exception_handler(QueueFull)
    async def _queue_full(_: Request, exc: QueueFull) -> JSONResponse:
        return error_response(429, "queue_full", str(exc), {"Retry-After": "5"})

    @app.exception_handler(EngineClosed)
    async def _engine_closed(_: Request, exc: EngineClosed) -> JSONResponse:
        return error_response(503, "unavailable", "the server is shutting down")

    for exc_type, status, kind in storage_status:
        app.add_exception_handler(exc_type, _storage_handler(status, kind))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }.get(exc.status_code, "http_error")
        return error_response(exc.status_code, kind, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "the server failed; the error is logged")


def _storage_handler(status: int, kind: str):
    async def handle(_: Request, exc: Exception) -> JSONResponse:
        field = getattr(exc, "field", None)
        detail: Any = [{"field": field, "message": str(exc)}] if field else str(exc)
        return error_response(status, kind, detail)

    return handle
