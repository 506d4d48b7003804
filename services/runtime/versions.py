"""Per-convoy versions announced on core NATS, and answers kept while their version is the newest heard.

The pattern of the API's conditional GETs (docs/performance.md "Conditional GETs"), for any service:

- the owning service keeps a counter per convoy, bumped by deferred constraint triggers in the transaction
  of every change to what an answer shows, and NOTIFYing the convoy at the commit (a migration of its own);
- :class:`VersionForwarder` (in the owner) LISTENs on its own connection and publishes the new versions on
  a core NATS subject (``schemas.api.ConvoyVersions``), and ``reset`` whenever its listener (re)connects
  (notifications lost while it was away cannot be replayed) and whenever the owner's NATS connection has
  reconnected (the forwards are not flushed one by one: what a broken connection lost is covered by it);
- :func:`announce` publishes a convoy's version at once: a removal calls it before it answers;
- the owner's answer carries the version it read *before* the answer's data (the data is never older);
- :class:`VersionedCache` (in the reader) keeps convoy → (version, answer) and gives the answer back only
  while no newer version was heard of, the NATS connection is up and has not reconnected since the
  answer was kept, the subscription is heard (:class:`Hearing`), and for at most ``max_age`` seconds;
- the forwarder publishes an empty announcement every ``HEARTBEAT_S`` while nothing changes, so a reader
  knows its subscription works: a reader that has heard nothing for ``DEAF_AFTER_S`` (a subscription whose
  interest has not reached the publisher's server yet, after a subscribe, a reconnect or in a cluster; a
  forwarder that stopped) trusts nothing it keeps, and the first announcement after such a silence
  forgets everything (what changed meanwhile may have gone unheard).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import asyncpg
import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg

from schemas import api
from services.runtime.lifecycle import wait_or_stop

log = structlog.get_logger(__name__)

T = TypeVar("T")

BATCH = 1000
"""Convoys per announcement (a bulk change of many convoys becomes several messages)."""
POLL_S = 1.0
"""How often the forwarder checks that its connection is alive while no change arrives."""
HEARTBEAT_S = POLL_S
"""The forwarder publishes an empty announcement after this long without one (readers know they hear it)."""
DEAF_AFTER_S = 10.0
"""A reader that has heard no announcement for this long trusts nothing it keeps (ten heartbeats missed)."""
MAX_CONVOYS = 100_000
"""Convoys a cache keeps by default (answers; heard versions always up to this); beyond it the expired, then
the oldest tenth are dropped."""

_encoder = msgspec.json.Encoder()
_notice = msgspec.json.Decoder(api.ConvoyVersions)

ReadVersions = Callable[[asyncpg.Connection, list[uuid.UUID]], Awaitable[dict[uuid.UUID, int]]]


class VersionForwarder:
    """Listen on ``channel`` and publish the convoys' new versions on ``subject``. A notification's payload
    is ``<convoy id> <version>`` (published as it is, the largest per convoy) or a convoy id alone (its
    version read with ``read``). Every replica forwards (duplicates are harmless: readers keep the largest)."""

    def __init__(
        self,
        *,
        nc: Callable[[], Client],
        database_url: str,
        schema: str,
        channel: str,
        subject: str,
        read: ReadVersions,
        timeouts: tuple[float, float] = (5.0, 5.0),
    ) -> None:
        self.nc = nc
        self.database_url = database_url
        self.schema = schema
        self.channel = channel
        self.subject = subject
        self.read = read
        self.timeouts = timeouts
        self.forwarded = 0

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self.database_url,
                    timeout=self.timeouts[0],
                    command_timeout=self.timeouts[1],
                    server_settings={"search_path": self.schema, "application_name": f"convoy-{self.schema}-versions"},
                )
                await self._forward(conn, stop)
                failures = 0
            except Exception as exc:  # database or NATS away: connect again, then reset the readers
                failures += 1
                log.warning("version forwarder restarts", channel=self.channel, error=repr(exc), failures=failures)
                await wait_or_stop(stop, min(0.5 * 2**failures, 10.0))
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)

    async def _forward(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        pending: set[uuid.UUID] = set()
        """Convoys notified without their version (``<convoy id>``): read back with ``read``."""
        known: dict[uuid.UUID, int] = {}
        """Convoys notified with it (``<convoy id> <version>``): the largest heard, published as it is."""
        wake = asyncio.Event()

        def on_notify(_c: object, _pid: int, _channel: str, payload: object) -> None:
            convoy, _sep, version = str(payload).partition(" ")
            with contextlib.suppress(ValueError):
                convoy_id = uuid.UUID(convoy)
                if version:
                    number = int(version)
                    if number > known.get(convoy_id, -1):
                        known[convoy_id] = number
                else:
                    pending.add(convoy_id)
                wake.set()

        await conn.add_listener(self.channel, on_notify)
        # Listening from here on: whatever committed before is in a version the readers ask for anew.
        await self._publish(api.ConvoyVersions(reset=True))
        published = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), POLL_S)
            wake.clear()
            if conn.is_closed():
                raise asyncpg.exceptions.ConnectionDoesNotExistError("version listener connection closed")
            if not (known or pending) and time.monotonic() - published >= HEARTBEAT_S:
                # Nothing changed: the readers still hear that their subscription works (:class:`Hearing`).
                await self._publish(api.ConvoyVersions(), flush=False)
                published = time.monotonic()
            while known or pending:
                if known:  # the versions came with their notifications: no read (migration 0013 of milestones)
                    found = {c: known.pop(c) for c in list(itertools.islice(known, BATCH))}
                else:
                    batch = [pending.pop() for _ in range(min(BATCH, len(pending)))]
                    found = await self.read(conn, batch)
                # Not flushed (a PING and its PONG per commit, issue #21): a message lost on the way goes with
                # its connection, and after every reconnect a reset follows (on_reconnect).
                await self._publish(api.ConvoyVersions(versions=found), flush=False)
                published = time.monotonic()
                self.forwarded += len(found)

    async def on_reconnect(self) -> None:
        """After a NATS reconnect (``Runtime.on_reconnect``): ``reset``, because announcements published before
        the connection broke may not have reached the server, and a reader trusts what it has not heard of."""
        try:
            await self._publish(api.ConvoyVersions(reset=True))
        except Exception as exc:  # the connection broke again: the next reconnect resets once more
            log.warning("version reset after reconnect failed", subject=self.subject, error=repr(exc))

    async def _publish(self, notice: api.ConvoyVersions, *, flush: bool = True) -> None:
        nc = self.nc()
        await nc.publish(self.subject, _encoder.encode(notice))
        if flush:
            await nc.flush()


async def announce(nc: Client, subject: str, versions: dict[uuid.UUID, int]) -> None:
    """Publish ``versions`` at once and wait until the server has them: a removal calls this before it
    answers, so a reader on the same NATS server hears the new version before anything that follows
    the answer (one server hands a connection's messages on in order)."""
    if versions:
        await nc.publish(subject, _encoder.encode(api.ConvoyVersions(versions=versions)))
        await nc.flush()


class Hearing:
    """Whether a subscription to announcements is known to work: heard within ``deaf_after`` seconds.

    A SUB reaches the server before anything this connection sends next, but not necessarily before a
    message another connection publishes a moment later (measured on one nats-server: 1 in 30 within
    milliseconds; in a cluster the interest travels over routes). An announcement lost that way is a
    change nobody forgets. So a reader trusts what it keeps only once it has heard the forwarder (any
    announcement, the heartbeat included) since it subscribed or reconnected and within the last
    ``deaf_after`` seconds; the first announcement after a silence tells the reader to forget what it
    kept (:meth:`heard` returns True), since a change may have gone unheard meanwhile.
    """

    def __init__(self, deaf_after: float = DEAF_AFTER_S, *, subject: str = "") -> None:
        self.deaf_after = deaf_after
        self.subject = subject
        """For the log line of a silence (the subscription's subject, where known)."""
        self.heard_at: float | None = None
        self.silences = 0
        """Times a reader heard again after a silence (or first): each one forgot what it kept."""

    def heard(self) -> bool:
        """An announcement arrived. True when it ends a silence: forget what was kept (and asked for) before."""
        now = time.monotonic()
        ends_silence = self.heard_at is None or now - self.heard_at > self.deaf_after
        if self.heard_at is not None and ends_silence:  # not the first after a start or a reconnect
            log.warning(
                "version announcements heard again after a silence: kept answers forgotten",
                subject=self.subject,
                silent_s=round(now - self.heard_at, 1),
            )
        self.heard_at = now
        if ends_silence:
            self.silences += 1
        return ends_silence

    def live(self) -> bool:
        return self.heard_at is not None and time.monotonic() - self.heard_at <= self.deaf_after

    def lost(self) -> None:
        """The connection reconnected (or subscribed anew): nothing is trusted until an announcement arrives."""
        self.heard_at = None


class VersionedCache(Generic[T]):
    """convoy → (version, answer), given back only while it is the newest version heard of.

    ``nc``: the connection the announcements arrive on. Nothing is given back while it is not connected
    or while nothing was heard on it for ``deaf_after`` seconds (:class:`Hearing`), and everything is
    forgotten when it has reconnected since (announcements sent meanwhile are lost), on a ``reset``
    announcement, and at the first announcement after a silence. ``max_age`` bounds how long an answer is
    kept at all (a lost announcement without a reset); 0 keeps nothing. Not started (:meth:`subscribe` not
    called): keeps nothing.
    """

    def __init__(
        self,
        max_age: float,
        nc: Client | None = None,
        *,
        max_entries: int = MAX_CONVOYS,
        deaf_after: float = DEAF_AFTER_S,
    ) -> None:
        self.max_age = max_age
        self.max_entries = max(10, max_entries)
        self.nc = nc
        self.hearing = Hearing(deaf_after)
        self.listening = False
        self.entries: dict[uuid.UUID, tuple[int, float, T]] = {}
        self.heard: dict[uuid.UUID, int] = {}
        self.epoch = self._epoch()
        self.generation = 0
        """Moves on every reset: an answer asked for before one is not kept (it may predate a lost change)."""
        self.hits = 0
        self.misses = 0

    async def subscribe(self, nc: Client, subject: str) -> None:
        """Listen to the announcements on ``subject``: from here on answers are kept."""
        self.nc = nc
        self.epoch = self._epoch()
        self.hearing.subject = subject
        self.hearing.lost()  # trusted once the first announcement arrives on this subscription
        # No client-side limit: a message nats-py drops for a slow subscriber would be a lost change that no
        # reconnect reveals (the server's own slow-consumer cut-off disconnects us: a reconnect, a reset).
        await nc.subscribe(subject, cb=self.on_notice, pending_msgs_limit=0, pending_bytes_limit=0)
        self.listening = True

    def _epoch(self) -> int:
        return int(self.nc.stats["reconnects"]) if self.nc is not None else 0

    def _usable(self) -> bool:
        if not self.listening or self.max_age <= 0 or self.nc is None or not self.nc.is_connected:
            return False
        if self._epoch() != self.epoch:  # reconnected since: announcements may have been lost
            self.reset()
            self.hearing.lost()
            self.epoch = self._epoch()
        # Not heard lately: nothing kept is given back, nothing asked now is kept (the first announcement
        # after the silence resets: on_notice).
        return self.hearing.live()

    def get(self, convoy_id: uuid.UUID) -> T | None:
        if not self._usable():
            self.misses += 1
            return None
        held = self.entries.get(convoy_id)
        if held is None:
            self.misses += 1
            return None
        version, kept_at, value = held
        if version < self.heard.get(convoy_id, version) or time.monotonic() - kept_at > self.max_age:
            del self.entries[convoy_id]
            self.misses += 1
            return None
        self.hits += 1
        return value

    def ticket(self) -> int:
        """Taken before asking for an answer, handed to :meth:`put` with it."""
        self._usable()  # a reconnect noticed now resets before the question, not after the answer
        return self.generation

    def put(self, convoy_id: uuid.UUID, version: int | None, value: T, ticket: int) -> None:
        """Keep ``value``, read at ``version`` (None: not kept), asked for with ``ticket``. Not kept either:
        an answer older than a version already heard of (that version's announcement came first), or one
        asked for before a reset (a change it predates may have gone unannounced)."""
        if version is None or not self._usable() or ticket != self.generation:
            return
        if version < self.heard.get(convoy_id, version):
            return
        if convoy_id not in self.entries and len(self.entries) >= self.max_entries:
            now = time.monotonic()  # full: drop what is too old anyway, else the oldest tenth
            for stale in [c for c, held in self.entries.items() if now - held[1] > self.max_age]:
                del self.entries[stale]
            if len(self.entries) >= self.max_entries:
                for stale in list(self.entries)[: self.max_entries // 10]:
                    del self.entries[stale]
        self.entries[convoy_id] = (version, time.monotonic(), value)

    def learn(self, convoy_id: uuid.UUID, version: int) -> None:
        if version <= self.heard.get(convoy_id, -1):
            return
        if convoy_id not in self.heard and len(self.heard) >= MAX_CONVOYS:
            for stale in list(self.heard)[: MAX_CONVOYS // 10]:
                del self.heard[stale]
        self.heard[convoy_id] = version
        held = self.entries.get(convoy_id)
        if held is not None and held[0] < version:
            del self.entries[convoy_id]

    def reset(self) -> None:
        self.entries.clear()
        self.heard.clear()
        self.generation += 1

    async def on_reconnect(self) -> None:
        self.reset()
        self.hearing.lost()
        self.epoch = self._epoch()

    async def on_notice(self, msg: Msg) -> None:
        try:
            notice = _notice.decode(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            log.warning("malformed version announcement dropped", subject=msg.subject)
            return
        if self.hearing.heard() or notice.reset:  # heard again after a silence: a change may have gone unheard
            self.reset()
        for convoy_id, version in notice.versions.items():
            self.learn(convoy_id, version)
