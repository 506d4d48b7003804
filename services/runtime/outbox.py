"""Transactional outbox: write an event with the state change, relay it to JetStream afterwards.

The relay is the only publisher of domain events. It runs in every replica but works only
while it holds a PostgreSQL advisory lock (and reads and deletes outbox rows on that same
session), so events of one service leave in commit order: rows are published in ``seq`` order
over one NATS connection, and JetStream stores one connection's publishes in the order sent.
Each message carries ``Nats-Msg-Id`` = event id: a row published twice (crash between the
JetStream ack and the DELETE) is dropped by JetStream's duplicate window.

Throughput (issue #9, bench ``scheduler``): while the acks of the batch in flight arrive, the next
rows are already being fetched (issue #21; ``in_flight`` > 1 also publishes further batches, see
``IN_FLIGHT``), so JetStream (``sync_interval: always``: an fsync per
message or atomic batch) is never left waiting on PostgreSQL for long.
A row is deleted once JetStream has acknowledged it, by the relay's next fetch (one statement
for both: issue #21), or ``LINGER_S`` later when no fetch comes sooner; a failed publish stops the
pipeline, the batches already in flight are settled (acked rows to be deleted), and the rest stays
for the next round. An acknowledged row that is not deleted yet (a crash, a lost leadership, or a
delete not yet flushed: the relay's session commits without waiting for the WAL) is published again
later: JetStream drops the copy within its duplicate window, and every consumer records the events it
handled, so a copy after the window has no effect either.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import Counter as Tally
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import APIError, NoStreamResponseError
from prometheus_client import Counter

from schemas import envelope as env
from schemas import events as ev
from schemas.subjects import Subjects
from services.runtime import correlation, lifecycle, metrics, tracing
from services.runtime.db import TRANSIENT_DB_ERRORS
from services.runtime.lifecycle import wait_or_stop
from services.runtime.settings import Settings

log = structlog.get_logger(__name__)

PUBLISHED = Counter("convoy_outbox_published", "Events relayed from the outbox to JetStream", ["service"])
RELAY_ERRORS = Counter("convoy_outbox_relay_errors", "Failed relay rounds (retried)", ["service"])

DB_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError)

BATCH = 500
"""Rows fetched, published and deleted together."""
IN_FLIGHT = 1
"""Batches published and not yet settled at a time. One: an atomic batch is stored whole or not at
all, so with one in flight a failure never leaves a later event stored before an earlier one (with
more, batch k+1 could be stored while k timed out). The next batch's rows are fetched meanwhile and
published once this one is settled. One atomic batch in flight already relays ~20,000 events/s here
(bench: 40,000 rows in 2 s), more than the scheduler's tick writes."""
POLL_S = 1.0

FETCH = (
    # The rows acknowledged since the last fetch ($3) are deleted in the same statement, and the next
    # rows read in outbox_pkey's seq order. Skipped: the batches in flight (their rows stay until their
    # acks are in) and the rows deleted here (the SELECT's snapshot predates the DELETE), both in $1.
    # Not "seq > last": a transaction that took its seq earlier may commit later.
    "WITH gone AS (DELETE FROM outbox WHERE seq = ANY($3::bigint[]))"
    " SELECT seq, event_id::text AS event_id, subject, data FROM outbox"
    " WHERE seq <> ALL($1::bigint[]) ORDER BY seq LIMIT $2"
)
DELETE = "DELETE FROM outbox WHERE seq = ANY($1::bigint[])"
LINGER_S = 0.05
"""How long acknowledged rows wait for the next fetch to delete them before a round is run for them alone.
Under a steady load (a report every few ms) the next wake-up comes first, and the delete costs no round trip
of its own; when the outbox falls quiet, the rows are gone within this."""
ATOMIC_MAX = 1000
"""nats-server's default limit on the messages of one atomic batch."""
ERR_DUPLICATE_IN_BATCH = 10201
"""JetStream err_code: "atomic publish batch contains duplicate message id"."""


async def add(
    conn: asyncpg.Connection,
    subjects: Subjects,
    event: ev.Event,
    *,
    producer: str,
    correlation_id: uuid.UUID | None = None,
    causation_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    subject: str | None = None,
) -> env.Envelope:
    """Record ``event`` in the outbox inside the caller's transaction (once per ``event_id``).

    Correlation and causation default to what the current request or event bound (see correlation.py).
    ``subject``: where it goes, if not its type's subject (a message addressed to a recipient).
    """
    envelope, row = entry(
        subjects,
        event,
        producer=producer,
        correlation_id=correlation_id,
        causation_id=causation_id,
        event_id=event_id,
        subject=subject,
    )
    # One round trip: the row and the relay's wake-up (sent at commit) in one statement.
    await conn.execute(ADD, *row, wake_channel(producer))
    return envelope


ADD = (
    "WITH added AS (INSERT INTO outbox (event_id, subject, data) VALUES ($1, $2, $3)"
    " ON CONFLICT (event_id) DO NOTHING) SELECT pg_notify($4, '')"
)


def entry(
    subjects: Subjects,
    event: ev.Event,
    *,
    producer: str,
    correlation_id: uuid.UUID | None = None,
    causation_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    subject: str | None = None,
) -> tuple[env.Envelope, tuple[uuid.UUID, str, bytes]]:
    """The envelope of ``event`` and its outbox row (event id, subject, data), as :func:`add` writes it:
    for a caller that writes the row inside a statement of its own (then it also sends
    ``pg_notify(wake_channel(producer), '')`` in that statement)."""
    envelope = env.new_envelope(
        event,
        producer=producer,
        correlation_id=correlation_id or correlation.current(),
        causation_id=causation_id or correlation.causation(),
        event_id=event_id,
        trace=tracing.headers(),  # the emitting span: the relay's publish continues it
    )
    return envelope, (envelope.id, subject or subjects.of(type(event)), env.encode(envelope))


def wake_channel(service: str) -> str:
    """The PostgreSQL NOTIFY channel that wakes a service's outbox relay (``add`` sends it on commit)."""
    return f"convoy_outbox_{service}"


class _PubAck(msgspec.Struct):
    """JetStream's answer to a publish: where the message is stored, or why it is not."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    batch: str = ""
    """The atomic batch this acknowledges (its commit), with ``count`` messages."""
    count: int = 0
    error: dict[str, Any] | None = None


_decode_ack = msgspec.json.Decoder(_PubAck).decode


class Publisher:
    """JetStream publishes whose acks arrive on one wildcard inbox (as ``js.publish_async`` does).

    Ours because the relay needs the whole ack (an atomic batch's commit answers with the batch id
    and its message count, checked before rows are deleted) and less per message: ~25 µs of CPU
    against ~35 µs for ``publish_async`` here (raw publishes, 500 in flight). Every publish gets a
    token of its own (a counter under an inbox of its own), so a late ack of an earlier round can
    never settle a later publish.
    """

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.prefix = ""
        self.waiting: dict[str, asyncio.Future[_PubAck]] = {}
        self._tokens = itertools.count()
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self.prefix = self.nc.new_inbox() + "."
        self._sub = await self.nc.subscribe(self.prefix + "*", cb=self._on_ack)

    async def close(self) -> None:
        self.forget(list(self.waiting))
        if self._sub is not None:
            with contextlib.suppress(Exception):  # the connection may be gone: nothing to free
                await self._sub.unsubscribe()
            self._sub = None

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> tuple[str, asyncio.Future[_PubAck]]:
        token = str(next(self._tokens))
        future: asyncio.Future[_PubAck] = asyncio.get_running_loop().create_future()
        self.waiting[token] = future
        try:
            await self.nc.publish(subject, data, reply=self.prefix + token, headers=headers)
        except BaseException:
            self.waiting.pop(token, None)
            raise
        return token, future

    def forget(self, tokens: list[str]) -> None:
        """Stop waiting for these acks (a late one is ignored)."""
        for token in tokens:
            future = self.waiting.pop(token, None)
            if future is not None and not future.done():
                future.cancel()

    async def _on_ack(self, msg: Msg) -> None:
        future = self.waiting.pop(msg.subject[len(self.prefix) :], None)
        if future is None or future.done():
            return
        if not msg.data:  # a status message: 503 no responders (no stream for the subject), ...
            status = (msg.headers or {}).get("Status", "")
            future.set_exception(
                NoStreamResponseError() if status == "503" else APIError(description=f"status {status}")
            )
            return
        try:
            ack = _decode_ack(msg.data)
        except msgspec.DecodeError as exc:
            future.set_exception(APIError(description=f"unreadable publish ack: {exc}"))
            return
        if ack.error is not None or ack.seq <= 0:
            err = ack.error or {}
            future.set_exception(
                APIError(
                    code=err.get("code"),
                    err_code=err.get("err_code"),
                    description=err.get("description", "publish ack without a sequence"),
                )
            )
            return
        future.set_result(ack)


@dataclass
class _Run:
    """Consecutive rows of a batch bound for one stream, published as one atomic batch or one by one."""

    rows: list[asyncpg.Record]
    atomic: bool
    batch_id: str = ""
    tokens: list[str] = field(default_factory=list)
    futures: list[asyncio.Future[_PubAck]] = field(default_factory=list)
    """Atomic: the commit's ack only. One by one: one per row, in row order."""


@dataclass
class _Batch:
    rows: list[asyncpg.Record]
    spans: list[Any]
    runs: list[_Run] = field(default_factory=list)
    error: BaseException | None = None
    """Why publishing stopped part way through the batch (the rows after it were not sent)."""

    @property
    def seqs(self) -> list[int]:
        return [r["seq"] for r in self.rows]


class Relay:
    def __init__(
        self,
        *,
        service: str,
        nc: Client,
        settings: Settings,
        batch: int = BATCH,
        in_flight: int = IN_FLIGHT,
        atomic: bool = True,
    ) -> None:
        self.service = service
        self.nc = nc
        self.settings = settings
        self.subjects = Subjects(settings.namespace)
        self.batch = min(batch, ATOMIC_MAX)
        self.in_flight = in_flight
        self.atomic = atomic
        """Publish each batch as JetStream atomic batches (one fsync per batch); off after a server refused one."""
        self.wake = asyncio.Event()
        self.leader = False
        self.acked: list[int] = []
        """Seqs of rows JetStream acknowledged and not yet deleted (the next fetch deletes them)."""

    async def run(self, stop: asyncio.Event) -> None:
        """Relay while this replica holds the relay lock; stand by while another does; until ``stop``."""
        await lifecycle.lead(self._connect, f"convoy-relay:{self.service}", stop, lambda conn: self._relay(conn, stop))

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self.settings.database_url,
            timeout=self.settings.db_acquire_timeout,
            command_timeout=self.settings.db_command_timeout,
            server_settings={
                "search_path": self.service,
                "application_name": f"convoy-{self.service}-relay",
                # FETCH with a non-empty in-flight list looks dearer to the planner than its generic plan,
                # where that list is a parameter searched linearly per row (not hashed) and LIMIT unknown:
                # 35-430 ms a fetch during a busy slot (issue #21); planned with its values, a few ms
                "plan_cache_mode": "force_custom_plan",
                # This session only reads and deletes relayed rows: a delete lost with the last moments of a
                # crash republishes them (dropped as duplicates), so its commit need not wait for the WAL
                "synchronous_commit": "off",
            },
        )

    async def _relay(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        """The leader's work, on the lock's connection: relay on every commit (NOTIFY) and every ``POLL_S``."""
        publisher = Publisher(self.nc)
        self.leader = True
        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(lambda _: self.wake.set())  # a stop ends the wait for the next round
        try:
            await conn.add_listener(wake_channel(self.service), lambda *_: self.wake.set())
            await publisher.start()
            failures = 0
            while not stop.is_set():
                self.wake.clear()  # a commit from now on wakes the next round
                try:
                    await self.relay_all(conn, publisher, stop)
                    failures = 0
                except DB_ERRORS:
                    raise
                except Exception as exc:  # NATS down or slow: keep the rows, try again
                    RELAY_ERRORS.labels(self.service).inc()
                    failures += 1
                    log.warning("outbox relay round failed", error=repr(exc), failures=failures)
                    await wait_or_stop(stop, min(0.5 * 2**failures, 10.0))
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), LINGER_S if self.acked else POLL_S)
                if conn.is_closed():
                    raise asyncpg.exceptions.ConnectionDoesNotExistError("listener connection closed")
        finally:
            stopping.cancel()
            self.leader = False
            await publisher.close()
            if self.acked and not conn.is_closed():  # stopping: what is acknowledged leaves the outbox now
                with contextlib.suppress(Exception):
                    await conn.execute(DELETE, self.acked, timeout=2)
                    self.acked = []

    async def relay_all(self, conn: asyncpg.Connection, publisher: Publisher, stop: asyncio.Event) -> int:
        """Publish what the outbox holds, up to ``in_flight`` batches at a time, until it is empty.

        ``conn`` is the session holding the relay lock. Returns the number of events published;
        raises once the batches in flight are settled if any publish failed (those rows stay).
        """
        flying: deque[_Batch] = deque()
        ahead: asyncio.Task[list[asyncpg.Record]] | None = None
        """The rows after those in flight, fetched while the oldest batch's acks come in."""
        sent = 0
        more = True
        try:
            while True:
                while more and len(flying) < self.in_flight and not stop.is_set():
                    if ahead is not None:
                        rows, ahead = await ahead, None
                    else:
                        rows = await self._fetch(conn, _seqs(flying))
                    more = len(rows) == self.batch
                    if not rows:
                        break
                    batch = await self._publish(publisher, rows)
                    flying.append(batch)
                    if batch.error is not None:
                        raise batch.error
                if not flying:
                    return sent
                if more and not stop.is_set():
                    # The next rows travel from PostgreSQL while JetStream stores and acks the oldest batch
                    # (issue #21: the relay keeps up with a busy slot). They are published only once that
                    # batch is settled, so a failed batch is never followed by a later one.
                    ahead = asyncio.ensure_future(self._fetch(conn, _seqs(flying)))  # taken now: not after popleft
                sent += await self._settle(publisher, flying.popleft())
                # ``more`` stays what the last look found: after a full batch, look again (``ahead``); after
                # a short one, stop. Rows committed meanwhile woke the relay for its next round (their
                # NOTIFY comes after ``wake`` was cleared for this one; POLL_S catches anything else), so a
                # look here, empty under a steady load, would be one more round trip per wake-up.
        except Exception:
            # Publish nothing more; settle what is in flight (what JetStream acknowledged is deleted by the
            # next fetch).
            # (Cancelled: the rows simply stay; their next publish is a duplicate JetStream drops.)
            if ahead is not None:
                with contextlib.suppress(Exception):
                    await ahead  # the connection is free again (its rows are not published)
                ahead = None
            while flying:
                with contextlib.suppress(Exception):
                    await self._settle(publisher, flying.popleft())
            raise
        finally:
            if ahead is not None:  # cancelled while fetching ahead
                ahead.cancel()

    async def _fetch(self, conn: asyncpg.Connection, in_flight: list[int]) -> list[asyncpg.Record]:
        """The next rows in seq order, leaving out those in flight (``in_flight``: their seqs); deletes the
        rows acknowledged so far (:attr:`acked`)."""
        if conn.is_closed():
            raise asyncpg.exceptions.ConnectionDoesNotExistError("relay connection closed")
        gone, self.acked = self.acked, []
        try:
            return await conn.fetch(FETCH, in_flight + gone, self.batch, gone)
        except BaseException:
            self.acked = gone + self.acked  # not known to be deleted: the next fetch deletes them again
            raise

    async def _publish(self, publisher: Publisher, rows: list[asyncpg.Record]) -> _Batch:
        # One PRODUCER span per event when tracing is on, continuing the context stored in its
        # envelope; the message carries the span's own context for the consumers.
        spans: list[Any] = (
            [
                tracing.start(
                    f"{Subjects.name_of(r['subject'])} publish",
                    kind=tracing.SpanKind.PRODUCER,
                    carrier=env.trace_of(bytes(r["data"])) or {},
                    attributes={"convoy.service": self.service, "messaging.destination.name": r["subject"]},
                )
                for r in rows
            ]
            if tracing.enabled()
            else [None] * len(rows)
        )
        batch = _Batch(rows=rows, spans=spans)
        at = 0
        try:
            for stream_rows in _by_stream(rows, self.subjects):
                run = _Run(rows=stream_rows, atomic=self.atomic and len(stream_rows) > 1)
                batch.runs.append(run)
                headers = [{"Nats-Msg-Id": r["event_id"]} for r in stream_rows]
                for h, span in zip(headers, spans[at : at + len(stream_rows)], strict=True):
                    if span is not None:
                        h.update(tracing.headers_of(span))
                at += len(stream_rows)
                if run.atomic:
                    run.batch_id = uuid.uuid4().hex
                    last = len(stream_rows) - 1
                    for i, (r, h) in enumerate(zip(stream_rows, headers, strict=True)):
                        h["Nats-Batch-Id"] = run.batch_id
                        h["Nats-Batch-Sequence"] = str(i + 1)
                        if i < last:
                            await self.nc.publish(r["subject"], r["data"], headers=h)
                        else:
                            h["Nats-Batch-Commit"] = "1"
                            token, future = await publisher.publish(r["subject"], r["data"], h)
                            run.tokens.append(token)
                            run.futures.append(future)
                else:
                    await self._publish_each(publisher, run, headers)
        except Exception as exc:  # e.g. the connection closed: the rest of the batch was not sent
            batch.error = exc
        return batch

    async def _publish_each(self, publisher: Publisher, run: _Run, headers: list[dict[str, str]]) -> None:
        run.atomic = False
        run.tokens, run.futures = [], []
        for r, h in zip(run.rows, headers, strict=True):
            token, future = await publisher.publish(r["subject"], r["data"], h)
            run.tokens.append(token)
            run.futures.append(future)

    async def _settle(self, publisher: Publisher, batch: _Batch) -> int:
        """Wait for the batch's acks; leave the acknowledged rows to the next fetch's delete (:attr:`acked`);
        raise if any publish failed."""
        results: list[object] = []
        for run in batch.runs:
            outcome = await self._outcome(publisher, run)
            if run.atomic and isinstance(outcome[0], APIError) and outcome[0].code == 400:
                # Refused as a whole, so nothing of it is stored: a duplicate id (published before a
                # crash, within the duplicate window), or a server without atomic batches. One by
                # one instead: a duplicate is then dropped on its own. Nothing else is in flight
                # from this batch on (see _settle's caller), so the order stays.
                if outcome[0].err_code != ERR_DUPLICATE_IN_BATCH:
                    log.warning("JetStream refused an atomic batch; publishing one by one", error=repr(outcome[0]))
                    self.atomic = False
                await self._publish_each(publisher, run, [{"Nats-Msg-Id": r["event_id"]} for r in run.rows])
                outcome = await self._outcome(publisher, run)
            results += outcome
        unsent = batch.error or RuntimeError("not published")
        results += [unsent] * (len(batch.rows) - len(results))
        for span, res in zip(batch.spans, results, strict=True):
            if span is not None:
                if isinstance(res, BaseException):
                    tracing.record_error(res, span)
                span.end()
        acked = [r for r, res in zip(batch.rows, results, strict=True) if not isinstance(res, BaseException)]
        if acked:
            self.acked += [r["seq"] for r in acked]
            PUBLISHED.labels(self.service).inc(len(acked))
            for event_type, n in Tally(Subjects.name_of(r["subject"]) for r in acked).items():
                metrics.EVENTS_PUBLISHED.labels(self.service, event_type).inc(n)
        failed = [res for res in results if isinstance(res, BaseException)]
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(batch.rows)} publishes failed: {failed[0]!r}")
        return len(acked)

    async def _outcome(self, publisher: Publisher, run: _Run) -> list[object]:
        """One result per row of the run sent: its ack, or why it is not known to be stored."""
        if not run.futures:
            return []
        try:
            acks: list[object] = await asyncio.wait_for(
                asyncio.gather(*run.futures, return_exceptions=True), self.settings.nats_request_timeout
            )
        except TimeoutError as exc:
            acks = [
                f.result() if f.done() and not f.cancelled() and f.exception() is None else exc for f in run.futures
            ]
        finally:
            publisher.forget(run.tokens)
        if not run.atomic:
            return acks
        ack = acks[0]
        if isinstance(ack, _PubAck) and (ack.batch != run.batch_id or ack.count != len(run.rows)):
            # A server that does not know atomic batches stored them one by one, unacknowledged:
            # say so, so that they are published (and their duplicates dropped) one by one.
            ack = APIError(code=400, description=f"not an atomic batch ack: {ack!r}")
        return [ack] * len(run.rows)


def _seqs(flying: deque[_Batch]) -> list[int]:
    return [s for b in flying for s in b.seqs]


def _by_stream(rows: list[asyncpg.Record], subjects: Subjects) -> list[list[asyncpg.Record]]:
    """Consecutive rows of one stream together (an atomic batch is for one stream)."""
    runs: list[list[asyncpg.Record]] = []
    last = ""
    for r in rows:
        stream = subjects.stream_of_subject(r["subject"])
        if not runs or stream != last:
            runs.append([])
            last = stream
        runs[-1].append(r)
    return runs
