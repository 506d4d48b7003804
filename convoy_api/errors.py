"""Translate errors to HTTP at the edge: a status a client can act on and a message a person reads."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from convoy_api.web import error_page, wants_html
from services.runtime.errors import ConvoyError, Unavailable

log = structlog.get_logger(__name__)


def _body(status: int, detail: str, **extra: Any) -> dict[str, Any]:
    return {"status_code": status, "detail": detail, **extra}


def convoy_error(request: Request[Any, Any, Any], exc: ConvoyError) -> Response[Any]:
    if wants_html(request):
        return error_page(request, exc.status, exc.message)
    headers = {"Retry-After": "5"} if isinstance(exc, Unavailable) else None
    if exc.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return Response(_body(exc.status, exc.message), status_code=exc.status, headers=headers, media_type=MediaType.JSON)


def validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """Name the bad field: "`mood`: Expected `int` <= 5" rather than "Validation failed"."""
    if wants_html(request):  # a page's address with a bad parameter, typed or edited by hand
        return error_page(request, 400)
    problems = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            message = str(item.get("message", "invalid"))
            key = item.get("key")
            message = message.split(" - at `$", 1)[0]
            message = message.replace("Object missing required field", "missing required field")
            message = message.replace("Object contains unknown field", "unknown field")
            # "data" is Litestar's name for the whole body; a field's own name is more useful.
            problems.append(f"`{key}`: {message}" if key and key != "data" else message)
    detail = "; ".join(problems) or (exc.detail or "invalid request")
    return Response(_body(400, detail, errors=exc.extra), status_code=400, media_type=MediaType.JSON)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """JSON for API clients; a browser asking for an unknown address gets a page in its language."""
    if wants_html(request):
        return error_page(request, exc.status_code)
    return Response(
        _body(exc.status_code, exc.detail),
        status_code=exc.status_code,
        headers=exc.headers,
        media_type=MediaType.JSON,
    )


def too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[dict[str, Any]]:
    """msgspec gives up on JSON nested deeper than the interpreter's recursion limit (~1000 levels)."""
    log.warning("request body nested too deeply", path=request.url.path)
    return Response(_body(400, "the request body is nested too deeply"), status_code=400, media_type=MediaType.JSON)


def unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", path=request.url.path)
    if wants_html(request):
        return error_page(request, 500)
    return Response(_body(500, "internal error"), status_code=500, media_type=MediaType.JSON)


HANDLERS = {
    ConvoyError: convoy_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    RecursionError: too_deep,
    Exception: unexpected,
}
