"""Signed, expiring tokens for links that work without signing in (unsubscribe, email replies).

itsdangerous (Pallets) signs a small JSON payload with ``CONVOY_SECRET_KEY``; a salt per purpose
keeps a token of one kind from being used as another.
"""

from __future__ import annotations

import functools
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from services.runtime.errors import Gone, NotFound
from services.runtime.settings import Settings


def _serializer(settings: Settings, purpose: str) -> URLSafeTimedSerializer:
    if not settings.secret_key:
        raise RuntimeError("CONVOY_SECRET_KEY is not set (convoy up generates one into the data folder)")
    return _cached_serializer(settings.secret_key, purpose)


@functools.lru_cache(maxsize=64)
def _cached_serializer(secret_key: str, purpose: str) -> URLSafeTimedSerializer:
    """One serializer per key and purpose (a fan-out signs an unsubscribe link per recipient); it keeps
    no state between calls (the time is read on every ``dumps``)."""
    return URLSafeTimedSerializer(secret_key, salt=f"convoy-{purpose}")


def sign(settings: Settings, purpose: str, payload: dict[str, Any]) -> str:
    return str(_serializer(settings, purpose).dumps(payload))


def verify(settings: Settings, purpose: str, token: str, max_age_s: int) -> dict[str, Any]:
    try:
        payload: dict[str, Any] = _serializer(settings, purpose).loads(token, max_age=max_age_s)
    except SignatureExpired as exc:
        raise Gone("this link has expired") from exc
    except BadSignature as exc:
        raise NotFound("this link is not valid") from exc
    return payload
