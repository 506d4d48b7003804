"""Conditional GETs for a convoy's timeline, board and search (issue #21).

services/milestones keeps a change counter per convoy (``convoy_versions``, bumped in the transaction of
every change to what these pages show, membership and visibility included) and sends it with every page
(reply header ``Convoy-Version``) and after every commit on core NATS (``Subjects.convoy_versions``).
Each API process keeps the newest version per convoy here. A page's ETag is a keyed hash of
(page kind, convoy, version, the viewer: person and admin/facilitator flags, the validated query
parameters, and for the board the moment it changes by the clock alone); a request whose
``If-None-Match`` names the ETag the current version gives is answered ``304`` without asking milestones.

Why this never hides a change the viewer may see, and never lets someone revalidate what they may no
longer see:
- the version is read before the page, so a page is never older than its ETag says;
- the viewer is in the ETag, so one person's ETag never validates for another (who may see other things:
  hidden reports, facilitator notes), and the key (``CONVOY_SECRET_KEY``) keeps anyone from making one;
- a removal bumps the version (the projection's rows change) and services/milestones announces it
  before answering its ``ACCESS_REVOKE``; the announcement travels apart from the removal's answer, so
  the API process that forwarded a removal or a hide also forgets the convoy's version before it answers
  (``deps.NARROWING``): the removed member's next request there goes to milestones (404);
- a person who just wrote through this process revalidates against milestones for
  ``WRITER_BYPASS_S``: they read their own write, even before its announcement arrives;
- the token is still resolved for every request (401 for a revoked one, within the token cache);
- a version is trusted only while this process's NATS connection is up and for ``CONVOY_VERSION_MAX_AGE_S``
  after it was last heard of; a reconnect, or a ``reset`` from milestones (its listener was new or
  broken), forgets every version;
- and only while this process hears milestones' announcements: milestones publishes one at least every
  second (a heartbeat when nothing changes), so an API process whose subscription is not (yet) heard —
  after a start or a reconnect, its interest still on its way to the publisher's server — answers
  nothing from its versions, and the first announcement after a silence of ``DEAF_AFTER_S`` forgets
  them all (services/runtime/versions.py ``Hearing``).
What remains is the time an announcement takes to arrive (milliseconds): within it a 304 may still
answer the page as it was a moment before.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import msgspec
import structlog
from litestar import Request, Response
from nats.aio.client import Client
from nats.aio.msg import Msg

from schemas import api
from services.runtime.settings import Settings
from services.runtime.versions import Hearing

log = structlog.get_logger(__name__)

T = TypeVar("T")

VERSION_HEADER = "Convoy-Version"
FRESH_UNTIL_HEADER = "Convoy-Fresh-Until"
ETAG_FORMAT = "1"
"""Part of every ETag: change it when a page's representation changes for the same data (a deploy)."""
MAX_CONVOYS = 100_000
WRITER_BYPASS_S = 5.0
"""After a person's write through this process, their revalidations ask milestones for this long: an
announcement takes milliseconds to arrive, and a writer reading back at once must see their own write."""
CACHE_CONTROL = "private, no-cache"
"""Clients may keep the page but must revalidate it every time (a 304 costs no service round trip)."""

_notice = msgspec.json.Decoder(api.ConvoyVersions)


class Versions:
    """The newest known change counter per convoy, in this API process."""

    def __init__(self, settings: Settings, nc: Client | None = None) -> None:
        self.max_age = settings.version_max_age_s
        secret = settings.secret_key or secrets.token_hex(32)  # no key: this process's own (replicas differ)
        self.key = hashlib.sha256(f"convoy-etag:{secret}".encode()).digest()
        self.nc = nc
        self.hearing = Hearing(subject="versions.convoys")
        self.known: dict[uuid.UUID, tuple[int, float]] = {}
        self.writers: dict[uuid.UUID | None, float] = {}
        """When each person (None: the admin token) last began a write through this process."""
        self.hits = 0
        self.misses = 0

    # --- what the process knows -------------------------------------------------------------------
    def learn(self, convoy_id: uuid.UUID, version: int) -> None:
        """A version heard of (a page's reply, an announcement): the largest counts; hearing it renews it."""
        now = time.monotonic()
        held = self.known.get(convoy_id)
        if held is not None and held[0] > version:
            return
        if held is None and len(self.known) >= MAX_CONVOYS:  # bounded: drop the oldest tenth
            for stale in list(self.known)[: MAX_CONVOYS // 10]:
                del self.known[stale]
        self.known[convoy_id] = (version, now)

    def current(self, convoy_id: uuid.UUID) -> int | None:
        """The version to answer 304 from, or None (unknown, too old, or NATS is down)."""
        if self.max_age <= 0 or (self.nc is not None and not self.nc.is_connected) or not self.hearing.live():
            return None
        held = self.known.get(convoy_id)
        if held is None or time.monotonic() - held[1] > self.max_age:
            return None
        return held[0]

    def wrote(self, person_id: uuid.UUID | None) -> None:
        """``person_id`` begins a write: their own next reads go to milestones (read-your-writes)."""
        now = time.monotonic()
        if len(self.writers) >= MAX_CONVOYS:
            self.writers = {p: t for p, t in self.writers.items() if now - t < WRITER_BYPASS_S}
        self.writers[person_id] = now

    def just_wrote(self, person_id: uuid.UUID | None) -> bool:
        began = self.writers.get(person_id)
        return began is not None and time.monotonic() - began < WRITER_BYPASS_S

    def forget(self, convoy_id: Any) -> None:
        self.known.pop(convoy_id, None)

    def reset(self) -> None:
        self.known.clear()

    async def on_reconnect(self) -> None:
        """Announcements sent while disconnected are lost: forget everything, trust nothing until one arrives."""
        self.reset()
        self.hearing.lost()

    async def on_notice(self, msg: Msg) -> None:
        try:
            notice = _notice.decode(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            log.warning("malformed convoy version announcement dropped")
            return
        if self.hearing.heard() or notice.reset:  # heard again after a silence: a change may have gone unheard
            self.reset()
        for convoy_id, version in notice.versions.items():
            self.learn(convoy_id, version)

    # --- ETags ------------------------------------------------------------------------------------
    def etag(
        self, kind: str, convoy_id: uuid.UUID, version: int, actor: api.Actor, params: tuple[Any, ...], until: int
    ) -> str:
        viewer = f"{actor.person_id}|{int(actor.is_admin)}|{int(actor.is_facilitator)}|{int(actor.is_system)}"
        text = f"{ETAG_FORMAT}|{kind}|{convoy_id}|{version}|{viewer}|{params!r}|{until}"
        mac = hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()[:32]
        return f'W/"{until}.{mac}"' if until else f'W/"{mac}"'

    def revalidates(
        self, header: str, kind: str, convoy_id: uuid.UUID, actor: api.Actor, params: tuple[Any, ...]
    ) -> str | None:
        """The ETag of ``header`` (If-None-Match) that is still the page's, if one is."""
        if self.just_wrote(actor.person_id):
            return None
        version = self.current(convoy_id)
        if version is None:
            return None
        now = time.time()
        for raw in header.split(","):
            tag = raw.strip()
            opaque = tag.removeprefix("W/").strip('"')
            until = 0
            if "." in opaque:
                stamp = opaque.split(".", 1)[0]
                if not stamp.isdigit() or int(stamp) <= now:
                    continue  # a board past the moment it changes by the clock
                until = int(stamp)
            if hmac.compare_digest(self.etag(kind, convoy_id, version, actor, params, until), f'W/"{opaque}"'):
                return tag
        return None


async def page(
    request: Request[Any, Any, Any],
    versions: Versions,
    kind: str,
    convoy_id: uuid.UUID,
    actor: api.Actor,
    params: tuple[Any, ...],
    ask: Callable[[], Awaitable[tuple[T, Mapping[str, str]]]],
) -> Response[T]:
    """Answer ``304`` if the client's copy is the page's current one, else ask milestones (``ask``) and
    answer the page with its ETag."""
    header = request.headers.get("if-none-match")
    if header:
        tag = versions.revalidates(header, kind, convoy_id, actor, params)
        if tag is not None:
            versions.hits += 1
            return Response(None, status_code=304, headers={"ETag": tag, "Cache-Control": CACHE_CONTROL})  # type: ignore[arg-type]
        versions.misses += 1
    reply, headers = await ask()
    raw = headers.get(VERSION_HEADER)
    if raw is None or not raw.isdigit():
        return Response(reply)
    version = int(raw)
    versions.learn(convoy_id, version)
    until_raw = headers.get(FRESH_UNTIL_HEADER, "0")
    until = int(until_raw) if until_raw.isdigit() else 0
    tag = versions.etag(kind, convoy_id, version, actor, params, until)
    if header and any(t.strip().removeprefix("W/") == tag.removeprefix("W/") for t in header.split(",")):
        # Unchanged after all (this process did not know the version: just started, reset, or too old).
        return Response(None, status_code=304, headers={"ETag": tag, "Cache-Control": CACHE_CONTROL})  # type: ignore[arg-type]
    return Response(reply, headers={"ETag": tag, "Cache-Control": CACHE_CONTROL})
