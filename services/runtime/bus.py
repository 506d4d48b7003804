"""NATS: a connection that reconnects forever, and the JetStream streams Convoy declares in code."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import nats
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BadRequestError

from schemas.contract import PROCESSES
from schemas.subjects import Subjects
from services.runtime.settings import Settings, SettingsError

log = structlog.get_logger(__name__)

# Messages older than this are dropped by JetStream; far beyond any redelivery backoff.
EVENT_RETENTION_S = 30 * 24 * 3600.0
MESSAGE_RETENTION_S = 24 * 3600.0
"""Notifier messages may carry one-time links: kept no longer than a day (the longest retry)."""
DEDUPE_WINDOW_S = 120.0
DEAD_LETTER_RETENTION_S = 14 * 24 * 3600.0
"""Without ``CONVOY_DEAD_LETTER_DAYS``: a dead letter may hold an address or a link; two weeks to look at it."""


def tls_options(settings: Settings, servers: list[str]) -> dict[str, Any]:
    """nats.connect options for TLS: none for nats:// URLs; for tls:// URLs a verifying context.

    nats-py alone would talk in clear to a server that does not ask for TLS, even on a tls://
    URL, and send the password in its CONNECT; so with tls:// the client opens with the TLS
    handshake (the servers in deploy/ say ``handshake_first: true``) and never says a word in clear.
    """
    schemes = {urlsplit(s if "://" in s else f"nats://{s}").scheme for s in servers}
    if "tls" not in schemes:
        if settings.nats_tls_ca or settings.nats_tls_cert:
            raise SettingsError("CONVOY_NATS_TLS_CA/CERT is set but CONVOY_NATS_URL has no tls:// URL")
        return {}
    if schemes != {"tls"}:
        raise SettingsError("CONVOY_NATS_URL mixes tls:// and nats:// URLs: every server must use tls://")
    if bool(settings.nats_tls_cert) != bool(settings.nats_tls_key):
        raise SettingsError("CONVOY_NATS_TLS_CERT and CONVOY_NATS_TLS_KEY go together")
    context = ssl.create_default_context(cafile=settings.nats_tls_ca or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.nats_tls_cert:
        context.load_cert_chain(settings.nats_tls_cert, settings.nats_tls_key)
    return {"tls": context, "tls_handshake_first": True}


async def connect(
    settings: Settings,
    name: str,
    *,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    attempts_for_s: float = 60.0,
    role: str | None = None,
) -> Client:
    """Connect to NATS, retrying the first connection for ``attempts_for_s``; reconnect forever after.

    The process authenticates with ``CONVOY_NATS_USER``/``CONVOY_NATS_PASSWORD`` (its role's
    credentials) and takes its reply subjects under its role's inbox prefix
    (``Subjects.inbox_prefix``: ``role``, else the NATS user), the only inboxes it may subscribe to.
    """

    async def error_cb(exc: Exception) -> None:
        log.warning("nats error", error=repr(exc))

    async def disconnected_cb() -> None:
        log.warning("nats disconnected")

    async def reconnected_cb() -> None:
        log.info("nats reconnected")
        if on_reconnect is not None:
            await on_reconnect()

    servers = [s.strip() for s in settings.nats_url.split(",") if s.strip()]
    tls = tls_options(settings, servers)
    credentials: dict[str, str] = {}
    if settings.nats_user:
        credentials = {"user": settings.nats_user, "password": settings.nats_password}
    inbox_role = role or settings.nats_user
    if inbox_role:
        credentials["inbox_prefix"] = Subjects(settings.namespace).inbox_prefix(inbox_role)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + attempts_for_s
    delay = 0.2
    while True:
        try:
            return await nats.connect(
                servers=servers,
                name=name,
                connect_timeout=3,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                ping_interval=10,
                max_outstanding_pings=3,
                error_cb=error_cb,
                disconnected_cb=disconnected_cb,
                reconnected_cb=reconnected_cb,
                **tls,
                **credentials,
            )
        except nats.errors.Error as exc:
            if "authorization" in str(exc).lower():
                raise  # wrong or missing credentials: waiting does not help
            if loop.time() + delay > deadline:
                raise
            log.info("waiting for nats", servers=servers, error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        except (OSError, TimeoutError) as exc:
            if loop.time() + delay > deadline:
                raise
            log.info("waiting for nats", servers=servers, error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def ensure_streams(
    js: JetStreamContext,
    subjects: Subjects,
    replicas: int,
    *,
    dead_letter_max_age_s: float = DEAD_LETTER_RETENTION_S,
    update: bool = True,
) -> None:
    """Declare Convoy's streams (idempotent; updates a stream whose settings changed).

    Only the ``admin`` role may update a stream (`convoy up` and `convoy migrate` do, as admin); a
    service process may only create a missing one (``update=False``): one that exists with other
    settings is left as it is, with a warning, until the admin's next run brings it up to date.

    The outbox relay publishes to the events and messages streams in atomic batches (one fsync
    per batch instead of one per message with ``sync_interval: always``), so those allow them.
    """

    def stream(name: str, wildcard: str, max_age: float, allow_atomic: bool | None = None) -> js_api.StreamConfig:
        return js_api.StreamConfig(
            name=name,
            subjects=[wildcard],
            storage=js_api.StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=DEDUPE_WINDOW_S,
            max_age=max_age,
            allow_atomic=allow_atomic,
        )

    for config in (
        stream(subjects.events_stream, subjects.events_wildcard, EVENT_RETENTION_S, allow_atomic=True),
        stream(subjects.messages_stream, subjects.messages_wildcard, MESSAGE_RETENTION_S, allow_atomic=True),
        # dead letters can carry addresses and links: not forever
        stream(subjects.dead_letter_stream, subjects.dead_letter_wildcard, dead_letter_max_age_s),
    ):
        try:
            await js.add_stream(config)
        except BadRequestError:
            # Exists with other settings (e.g. a new retention): bring it to what the code says.
            if not update:
                log.warning("stream settings differ from the code; `convoy migrate` updates them", stream=config.name)
                continue
            await js.update_stream(config)


def manages_streams(settings: Settings) -> bool:
    """Whether this process may update streams: the admin role, or a NATS user that is no process
    role (no credentials at all, a test's superuser)."""
    return settings.nats_user == "admin" or settings.nats_user not in PROCESSES
