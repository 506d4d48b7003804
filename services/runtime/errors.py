"""A small error family carrying its own status; translated to HTTP or NATS only at the edge."""

from __future__ import annotations


class ConvoyError(Exception):
    status: int = 500
    code: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ConvoyError):
    status = 400
    code = "invalid"


class Unauthenticated(ConvoyError):
    status = 401
    code = "unauthenticated"


class Forbidden(ConvoyError):
    status = 403
    code = "forbidden"


class NotFound(ConvoyError):
    status = 404
    code = "not_found"


class Conflict(ConvoyError):
    status = 409
    code = "conflict"


class Gone(ConvoyError):
    """It existed, but cannot be used any more (an expired or used link)."""

    status = 410
    code = "gone"


class TooManyRequests(ConvoyError):
    status = 429
    code = "too_many_requests"


class Unavailable(ConvoyError):
    """A dependency (database, NATS, another service) did not answer in time: retry later."""

    status = 503
    code = "unavailable"


BY_STATUS: dict[int, type[ConvoyError]] = {
    cls.status: cls
    for cls in (
        InvalidInput,
        Unauthenticated,
        Forbidden,
        NotFound,
        Conflict,
        Gone,
        TooManyRequests,
        Unavailable,
    )
}


def from_status(status: int, message: str) -> ConvoyError:
    return BY_STATUS.get(status, ConvoyError)(message)
