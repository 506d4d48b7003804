"""Faults against real processes (issue #10): each scenario prints what it did and what it counted.

Every scenario runs CI-sized in `make test` and full-sized (marker ``chaos``) in `make chaos`,
which also writes the counts into docs/reliability.md. Counts, never milliseconds: the
assertions are about what was lost, doubled or answered, not about how fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import nats
import nats.errors
import pytest

from schemas import events as ev
from schemas.subjects import Subjects
from services import embedded
from services.registry import PROCESSES
from services.runtime.settings import Settings
from tests.chaos import (
    SIZES,
    Processes,
    Tally,
    dead_letters,
    deliveries,
    ensure_ready,
    ids_in,
    message_id,
    settled,
    stack_and_client,
    tick,
)
from tests.conftest import NatsServer, SlackStub, SmtpSink, eventually, settings_declared, wait_ready
from tests.world import World, build_world, invite_and_accept

pytestmark = pytest.mark.slow
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def label(full: bool) -> str:
    return "full" if full else "ci"


async def checking_in_today(client: httpx.AsyncClient, sink: SmtpSink, companies: int, slack: SlackStub) -> World:
    """A convoy of ``companies`` whose cycle 0 opened today at 00:00 Berlin time (so reports posted
    now belong to it), active, posting reports and digests to the Slack stand-in."""
    world = await build_world(client, sink, companies=min(companies, 3))
    tag = uuid.uuid4().hex[:6]
    for i in range(3, companies):
        r = await client.post(
            f"/api/v1/convoys/{world.convoy_id}/companies", json={"name": f"Firma {i}"}, headers=world.facilitator
        )
        assert r.status_code == 201, r.text
        world.companies[f"x{i}"] = r.json()
        world.reps[f"x{i}"] = await invite_and_accept(
            client, sink, world.facilitator, world.convoy_id, r.json()["id"], f"Rep {i}", f"rep{i}-{tag}@firma.example"
        )
    today = datetime.now(BERLIN).date()
    cadence = {"frequency": "weekly", "weekday": WEEKDAYS[today.weekday()], "local_time": "00:00", "window_hours": 72}
    r = await client.patch(
        f"/api/v1/convoys/{world.convoy_id}",
        json={"cadence": cadence, "timezone": "Europe/Berlin", "start_date": today.isoformat()},
        headers=world.facilitator,
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/status", json={"status": "active"}, headers=world.facilitator
    )
    assert r.status_code == 200, r.text
    r = await client.put(
        f"/api/v1/convoys/{world.convoy_id}/slack",
        json={"webhook_url": slack.url(), "post_reports": True},
        headers=world.facilitator,
    )
    assert r.status_code == 200, r.text

    async def scheduler_knows() -> bool:
        r = await client.get(f"/api/v1/convoys/{world.convoy_id}/schedule", headers=world.facilitator)
        return r.status_code == 200 and r.json()["status"] == "active"

    await eventually(scheduler_knows, timeout=30)
    return world


def midnight(days: int = 0) -> datetime:
    today = datetime.now(BERLIN).date() + timedelta(days=days)
    return datetime(today.year, today.month, today.day, 0, 0, 30, tzinfo=BERLIN)


# --- 1. kill -9 any service ----------------------------------------------------------------------
@SIZES
@pytest.mark.timeout(900)
async def test_kill_9_of_any_service_during_load_and_a_digest_loses_and_doubles_nothing(
    full: bool, settings: Settings, smtp_sink: SmtpSink, slack_stub: SlackStub, tmp_path: Path
) -> None:
    companies, kills = (6, 16) if full else (4, 5)
    s = settings.with_(http_port=embedded.free_port(), inbound_smtp_port=0, client_requests_per_minute=100000)
    tally = Tally("1. kill -9 any service", label(full))
    procs = Processes(s, tmp_path / "logs")
    subjects = Subjects(s.namespace)
    await settings_declared(s)  # as `convoy up` does before it starts the services
    procs.start_all()
    nc = await nats.connect(s.nats_url)
    seed = int(os.environ.get("CHAOS_SEED") or random.randrange(2**31))
    rng = random.Random(seed)  # printed with the counts: the same seed kills in the same order
    tally.set("seed", seed)
    try:
        await procs.healthy()
        async with httpx.AsyncClient(base_url=procs.api_url, timeout=30) as client:
            world = await checking_in_today(client, smtp_sink, companies, slack_stub)
            await tick(nc, subjects, midnight())  # cycle 0 opens: a prompt to every company

            created: list[tuple[str, dict[str, str]]] = []
            killing = asyncio.Event()
            killing.set()

            # Each process in turn, in a random order each round: all five die even in the CI size.
            victims = [
                name for _ in range(kills // len(PROCESSES) + 1) for name in rng.sample(PROCESSES, len(PROCESSES))
            ]

            async def killer() -> None:
                for victim in victims[:kills]:
                    await asyncio.sleep(rng.uniform(1.0, 3.0))
                    procs.kill(victim)
                    await asyncio.sleep(0.3)
                    procs.start(victim)
                    procs.check()
                killing.clear()

            async def call(method: str, url: str, what: str, **kw: Any) -> httpx.Response | None:
                try:
                    r = await client.request(method, url, **kw)
                except httpx.TransportError:
                    tally.add(f"{what} connection lost")  # the API was killed under the request
                    return None
                tally.add(f"{what} {r.status_code}")
                assert r.status_code < 500 or (r.status_code == 503 and "Retry-After" in r.headers), r.text
                return r

            async def report(key: str) -> None:
                await asyncio.sleep(rng.uniform(0, 2.0 * kills / 2))
                rep = world.reps[key]
                while True:
                    r = await call(
                        "POST",
                        f"/api/v1/convoys/{world.convoy_id}/reports",
                        "report",
                        json={"done": f"Fortschritt von {key}", "mood": 4},
                        headers=rep.auth,
                    )
                    if r is not None and r.status_code == 201:
                        created.append((r.json()["id"], rep.auth))
                        return
                    if r is not None and r.status_code == 409:  # an earlier attempt got through unanswered
                        return
                    assert r is None or r.status_code == 503, r.text
                    await asyncio.sleep(0.5)

            async def comments() -> None:
                n = 0
                while killing.is_set():
                    if created:
                        report_id, _ = rng.choice(created)
                        rep = rng.choice(list(world.reps.values()))
                        n += 1
                        await call(
                            "POST",
                            f"/api/v1/reports/{report_id}/comments",
                            "comment",
                            json={"body": f"#{n}"},
                            headers=rep.auth,
                        )
                    await asyncio.sleep(0.2)

            kill_task = asyncio.create_task(killer())
            load = asyncio.create_task(comments())
            await asyncio.gather(*(report(k) for k in world.reps))
            # The digest cycle, while processes keep dying: cycle 0 closes, cycle 1 opens.
            fired = await tick(nc, subjects, midnight(7), within=120)
            tally.set("digest tick actions", len([a for a in fired.actions if a.startswith(world.convoy_id)]))
            await kill_task
            await load
            for name, n in procs.kills.items():
                tally.set(f"kills {name}", n)

            await procs.healthy()
            # What a killed process had fetched comes back after the consumer's ack_wait (60 s).
            await settled(s.database_url, nc, subjects, timeout=180)
            procs.check()

            # Every report that got a 201 exists; each company has exactly one.
            for report_id, auth in created:
                r = await client.get(f"/api/v1/reports/{report_id}", headers=auth)
                assert r.status_code == 200, r.text
            conn = await asyncpg.connect(s.database_url)
            try:
                stored = await conn.fetchval(
                    "SELECT count(*) FROM milestones.reports WHERE convoy_id = $1", uuid.UUID(world.convoy_id)
                )
            finally:
                await conn.close()
            tally.set("reports 201", len(created))
            tally.set("reports stored", stored)
            assert stored == companies

        # Every event processed: no consumer behind, nothing dead-lettered.
        tally.set("dead letters", await dead_letters(nc, subjects))
        assert tally.counts["dead letters"] == 0

        # Every email at most once (count by delivery key = Message-ID), each sent one exactly once;
        # only a send in flight at a kill may be uncertain (detected, not re-sent).
        sink = ids_in(smtp_sink.messages)
        rows = await deliveries(s.database_url)
        emails = [d for d in rows if d["channel"] == "email"]
        by_status = {st: [d for d in emails if d["status"] == st] for st in ("sent", "uncertain", "failed")}
        assert max(sink.values()) == 1, [k for k, v in sink.items() if v > 1]
        assert all(sink[message_id(d["key"])] == 1 for d in by_status["sent"])
        uncertain_arrived = sum(sink[message_id(d["key"])] for d in by_status["uncertain"])
        reports_mailed = [d for d in emails if d["key"].startswith("report:")]
        digests = [d for d in emails if d["key"].startswith(f"digest:{world.convoy_id}:0:")]
        assert len(reports_mailed) == companies * (companies - 1)
        assert len(digests) == companies
        assert not by_status["failed"]
        assert len(by_status["uncertain"]) <= procs.kills["notifier"] * s.smtp_pool_size
        tally.set("emails", len(smtp_sink.messages))
        tally.set("duplicate emails", sum(v - 1 for v in sink.values()))
        tally.set("report emails", len(reports_mailed))
        tally.set("digest emails", len(digests))
        tally.set("uncertain (in flight at a kill)", len(by_status["uncertain"]))
        tally.set("uncertain that did arrive", uncertain_arrived)

        # Slack: one post per report and one digest, none twice.
        texts = [str(p.get("text")) + str(p.get("blocks")) for p in slack_stub.posts]
        slack_rows = [d for d in rows if d["channel"] == "slack"]
        tally.set("slack posts", len(slack_stub.posts))
        tally.set("duplicate slack posts", len(texts) - len(set(texts)))
        assert len(texts) == len(set(texts))
        assert len([d for d in slack_rows if d["status"] == "sent"]) <= len(slack_stub.posts) <= len(slack_rows)
        assert len(slack_rows) == companies + 1
        for name, n in procs.crashes.items():
            tally.set(f"crashed by itself {name}", n)
        assert not procs.crashes
    finally:
        tally.report("test_kill_9_of_any_service_during_load_and_a_digest_loses_and_doubles_nothing")
        procs.stop_all()
        with contextlib.suppress(Exception):
            from tests.conftest import delete_streams

            await delete_streams(nc, subjects)
        await nc.close()


# --- 7. acknowledged means stored -----------------------------------------------------------------
async def _stream_ids(nc: nats.NATS, subjects: Subjects, subject: str) -> Counter[str]:
    """Nats-Msg-Id of every message in the events stream on ``subject``, with how often it is there."""
    js = nc.jetstream(timeout=10)
    sub = await js.pull_subscribe(subject, stream=subjects.events_stream)
    found: Counter[str] = Counter()
    with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
        while True:
            for msg in await sub.fetch(500, timeout=2):
                found[(msg.headers or {}).get("Nats-Msg-Id", "")] += 1
                await msg.ack()
    await sub.unsubscribe()
    return found


@SIZES
@pytest.mark.timeout(900)
async def test_kill_9_of_nats_right_after_acks_keeps_every_acknowledged_event(
    full: bool, settings: Settings, own_nats_server: NatsServer
) -> None:
    from schemas import envelope as env
    from services.runtime import bus
    from tests.test_runtime import created, start_probe

    tally = Tally("7. acknowledged means stored", label(full))
    direct, emitted_total = (3000, 600) if full else (500, 150)
    s = settings.with_(nats_url=own_nats_server.url)
    subjects = Subjects(s.namespace)
    subject = subjects.event(ev.ConvoyCreated.TYPE)
    try:
        # (a) Publishes acknowledged by JetStream, then kill -9 at once: all still there after a restart.
        nc = await nats.connect(s.nats_url)
        js = nc.jetstream(timeout=10)
        await bus.ensure_streams(js, subjects, 1)
        acked: list[str] = []
        for start in range(0, direct, 250):
            ids = [str(uuid.uuid4()) for _ in range(start, min(direct, start + 250))]
            futures = [
                await js.publish_async(
                    subject, env.encode(env.new_envelope(created(i), producer="chaos")), headers={"Nats-Msg-Id": i}
                )
                for i in ids
            ]
            for i, ack in zip(ids, await asyncio.gather(*futures), strict=True):
                assert ack.seq > 0
                acked.append(i)
        own_nats_server.proc.kill()  # type: ignore[union-attr]
        own_nats_server.proc.wait(10)  # type: ignore[union-attr]
        await nc.close()
        own_nats_server.start()
        nc = await nats.connect(s.nats_url)
        stored = await _stream_ids(nc, subjects, subject)
        tally.set("acked publishes", len(acked))
        tally.set("acked but missing after kill -9", len(set(acked) - set(stored)))
        assert set(acked) <= set(stored)
        await nc.close()

        # (b) The outbox relay under kill -9: a row leaves the outbox only for an acknowledged publish.
        s = s.with_(namespace=s.namespace + "b")  # streams of their own, without (a)'s messages
        subjects = Subjects(s.namespace)
        subject = subjects.event(ev.ConvoyCreated.TYPE)
        async with start_probe(s) as running:
            names = [f"e{i}" for i in range(emitted_total)]
            emitted: list[str] = []

            async def emit_all() -> None:
                for name in names:
                    emitted.append(str((await running.emit(name)).id))
                    await asyncio.sleep(0.005)

            emitting = asyncio.create_task(emit_all())
            await eventually(lambda: _true(len(emitted) >= emitted_total // 3), timeout=60)
            own_nats_server.proc.kill()  # type: ignore[union-attr]
            own_nats_server.proc.wait(10)  # type: ignore[union-attr]
            tally.set("kill -9 of nats-server", 1)
            await asyncio.sleep(1.0)
            own_nats_server.start()
            await emitting

            async def all_seen() -> bool:
                seen = len(await running.seen())
                tally.set("handled", seen)
                return seen == emitted_total

            await eventually(all_seen, timeout=90, interval=0.3)
            in_stream = await _stream_ids(running.nc, subjects, subject)
            missing = set(emitted) - set(in_stream)
            tally.set("events via outbox", emitted_total)
            tally.set("missing from stream", len(missing))
            tally.set("stored twice in stream", sum(1 for i in emitted if in_stream[i] > 1))
            tally.set("handled twice", sum(1 for n in running.probe.attempts.values() if n > 1))
            assert not missing
            assert sorted(await running.seen()) == sorted(names)
            assert all(n == 1 for n in running.probe.attempts.values())
    finally:
        tally.report("test_kill_9_of_nats_right_after_acks_keeps_every_acknowledged_event")


async def _true(value: bool) -> bool:
    return value


# --- 9. slow consumer -----------------------------------------------------------------------------
@SIZES
@pytest.mark.timeout(900)
async def test_a_consumer_far_behind_catches_up_without_a_redelivery_storm(
    full: bool, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from schemas import envelope as env
    from services.runtime import bus
    from services.runtime.consumer import Consumer
    from tests.test_runtime import created, start_probe

    tally = Tally("9. slow consumer", label(full))
    pending = 10_000 if full else 1_500
    subjects = Subjects(settings.namespace)
    deliveries_seen: Counter[int] = Counter()
    process = Consumer.process

    async def counted(self: Consumer, msg: Any) -> None:
        deliveries_seen[msg.metadata.num_delivered] += 1
        await process(self, msg)

    monkeypatch.setattr(Consumer, "process", counted)
    nc = await nats.connect(settings.nats_url)
    try:
        js = nc.jetstream(timeout=10)
        await bus.ensure_streams(js, subjects, 1)
        subject = subjects.event(ev.ConvoyCreated.TYPE)
        for start in range(0, pending, 500):
            futures = [
                await js.publish_async(subject, env.encode(env.new_envelope(created(f"p{i}"), producer="chaos")))
                for i in range(start, min(pending, start + 500))
            ]
            await asyncio.gather(*futures)
        tally.set("pending before the consumer starts", pending)
        async with start_probe(settings) as running:
            conn = await asyncpg.connect(settings.database_url)
            try:

                async def caught_up() -> bool:
                    return await conn.fetchval("SELECT count(*) FROM probe.seen") == pending

                await eventually(caught_up, timeout=800, interval=1.0)
            finally:
                await conn.close()
            info = await js.consumer_info(subjects.events_stream, subjects.consumer("probe", "probe"))
            tally.set("handled", sum(deliveries_seen.values()))
            tally.set("redelivered (client)", sum(n for d, n in deliveries_seen.items() if d > 1))
            tally.set("redelivered (server)", info.num_redelivered or 0)
            tally.set("max_ack_pending", info.config.max_ack_pending or 0)
            tally.set("ack_wait_s", int(info.config.ack_wait or 0))
            tally.set("handled twice", sum(1 for n in running.probe.attempts.values() if n > 1))
            assert sum(n for d, n in deliveries_seen.items() if d > 1) == 0
            assert (info.num_redelivered or 0) == 0
            assert all(n == 1 for n in running.probe.attempts.values())
    finally:
        tally.report("test_a_consumer_far_behind_catches_up_without_a_redelivery_storm")
        await nc.close()


# --- 2. and 3.: a server away during load -----------------------------------------------------------
class Load:
    """Comments numbered 1, 2, 3 … on one report, one after the other (retried after a 503), and
    reads of the timeline, until stopped; every answer counted."""

    def __init__(self, client: httpx.AsyncClient, world: World, report_id: str, tally: Tally) -> None:
        self.client = client
        self.world = world
        self.report_id = report_id
        self.tally = tally
        self.stop = asyncio.Event()
        self.acknowledged: list[tuple[int, str]] = []
        """(number, comment id) of every comment answered 201."""

    async def _call(self, what: str, method: str, url: str, **kw: Any) -> httpx.Response:
        r = await self.client.request(method, url, **kw)
        self.tally.add(f"{what} {r.status_code}")
        if r.status_code == 503:
            assert r.headers.get("Retry-After"), "a 503 without Retry-After"
        assert r.status_code in (200, 201, 503), r.text  # never a 500, nothing else
        return r

    async def comments(self) -> None:
        auth = self.world.reps["b"].auth
        n = 1
        while not self.stop.is_set():
            r = await self._call(
                "comment", "POST", f"/api/v1/reports/{self.report_id}/comments", json={"body": f"#{n}"}, headers=auth
            )
            if r.status_code == 201:
                self.acknowledged.append((n, r.json()["id"]))
                n += 1
            await asyncio.sleep(0.1 if r.status_code == 201 else 0.3)

    async def reads(self) -> None:
        auth = self.world.reps["c"].auth
        while not self.stop.is_set():
            await self._call("timeline read", "GET", f"/api/v1/convoys/{self.world.convoy_id}/timeline", headers=auth)
            await asyncio.sleep(0.2)

    async def run(self) -> None:
        await asyncio.gather(self.comments(), self.reads())

    async def check(self, st: Any) -> None:
        """Every acknowledged comment is there; comment events reached the stream in the order written."""
        r = await self.client.get(f"/api/v1/reports/{self.report_id}/comments", headers=self.world.reps["b"].auth)
        assert r.status_code == 200, r.text
        stored = _comment_bodies(r.json())
        missing = [n for n, cid in self.acknowledged if cid not in stored]
        self.tally.set("comments acknowledged", len(self.acknowledged))
        self.tally.set("acknowledged but missing", len(missing))
        self.tally.set("written though answered 503", len(stored) - len(self.acknowledged))
        assert not missing
        number = dict((cid, n) for n, cid in self.acknowledged)
        order = [number[c] for c in await _comment_events(st, self.world.convoy_id) if c in number]
        self.tally.set("comment events out of order", sum(1 for a, b in itertools.pairwise(order) if b <= a))
        assert order == sorted(order) and len(order) == len(self.acknowledged)


def _comment_bodies(body: Any) -> dict[str, str]:
    found: dict[str, str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "id" in node and "body" in node:
                found[str(node["id"])] = str(node["body"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(body)
    return found


async def _comment_events(st: Any, convoy_id: str) -> list[str]:
    """comment_id of every comment.added event of this convoy, in stream order."""
    from schemas import envelope as env

    js = st.nc.jetstream(timeout=10)
    sub = await js.pull_subscribe(st.subjects.event(ev.CommentAdded.TYPE), stream=st.subjects.events_stream)
    out: list[str] = []
    with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
        while True:
            for msg in await sub.fetch(200, timeout=2):
                _, event = env.decode(msg.data)
                assert isinstance(event, ev.CommentAdded)
                if str(event.convoy_id) == convoy_id:
                    out.append(str(event.comment_id))
                await msg.ack()
    await sub.unsubscribe()
    return out


async def _report(client: httpx.AsyncClient, world: World, key: str, tally: Tally) -> str:
    """Post ``key``'s report, retrying after 503s; its id."""
    while True:
        r = await client.post(
            f"/api/v1/convoys/{world.convoy_id}/reports",
            json={"done": f"Fortschritt von {key}"},
            headers=world.reps[key].auth,
        )
        tally.add(f"report {r.status_code}")
        assert r.status_code in (201, 503), r.text
        if r.status_code == 201:
            return str(r.json()["id"])
        assert r.headers.get("Retry-After")
        await asyncio.sleep(0.5)


@SIZES
@pytest.mark.timeout(600)
async def test_nats_down_during_load_answers_503_and_delivers_everything_in_order_after(
    full: bool, settings: Settings, own_nats_server: NatsServer, smtp_sink: SmtpSink
) -> None:
    outage = 30.0 if full else 4.0
    tally = Tally("2. NATS down during load", label(full))
    s = settings.with_(nats_url=own_nats_server.url, inbound_smtp_port=0, client_requests_per_minute=100000)
    try:
        async with stack_and_client(s) as (st, client, crashed):
            world = await build_world(client, smtp_sink, companies=3)
            report_id = await _report(client, world, "a", tally)
            load = Load(client, world, report_id, tally)
            running = asyncio.create_task(load.run())
            await eventually(lambda: _true(len(load.acknowledged) >= 5), timeout=30)
            own_nats_server.stop()
            tally.set("nats down (s)", int(outage))
            during = asyncio.create_task(_report(client, world, "b", tally))  # retried until NATS is back
            await asyncio.sleep(outage)
            own_nats_server.start()
            await asyncio.wait_for(during, 120)
            before = len(load.acknowledged)
            await eventually(lambda: _true(len(load.acknowledged) >= before + 5), timeout=60)
            load.stop.set()
            await running
            await ensure_ready(st)
            await settled(s.database_url, st.nc, st.subjects)
            await load.check(st)
            # Both reports were mailed to their peers, once each.
            ids = ids_in(smtp_sink.messages)
            assert max(ids.values()) == 1
            for key, peers in (("a", ("b", "c")), ("b", ("a", "c"))):
                for peer in peers:
                    subject_part = world.companies[key]["name"]
                    got = [m for m in smtp_sink.to(world.reps[peer].email) if subject_part in str(m["Subject"])]
                    assert len(got) == 1, (key, peer, [str(m["Subject"]) for m in got])
            tally.set("report emails", 4)
            tally.set("duplicate emails", sum(v - 1 for v in ids.values()))
            tally.set("dead letters", await dead_letters(st.nc, st.subjects))
            assert tally.counts["dead letters"] == 0
        tally.set("service tasks crashed", len(crashed))
        assert not crashed
    finally:
        tally.report("test_nats_down_during_load_answers_503_and_delivers_everything_in_order_after")


@SIZES
@pytest.mark.timeout(600)
async def test_a_postgresql_restart_during_load_answers_503_and_loses_no_acknowledged_write(
    full: bool, settings: Settings, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    from services.registry import BACKEND_MODULES, backend
    from services.runtime import db

    gap = 15.0 if full else 3.0
    tally = Tally("3. PostgreSQL restart during load", label(full))
    pg = await asyncio.to_thread(embedded.start_postgres, tmp_path / "pg" / "data")
    try:
        admin = await asyncpg.connect(pg.uri("postgres"))
        await admin.execute("CREATE DATABASE convoy")
        await admin.close()
        for name in BACKEND_MODULES:
            module = backend(name)
            await db.migrate(pg.uri("convoy"), module.NAME, module.MIGRATIONS)
        s = settings.with_(database_url=pg.uri("convoy"), inbound_smtp_port=0, client_requests_per_minute=100000)
        async with stack_and_client(s) as (st, client, crashed):
            world = await build_world(client, smtp_sink, companies=3)
            report_id = await _report(client, world, "a", tally)
            load = Load(client, world, report_id, tally)
            running = asyncio.create_task(load.run())
            await eventually(lambda: _true(len(load.acknowledged) >= 5), timeout=30)
            await asyncio.to_thread(pg.stop)
            tally.set("postgresql down (s)", int(gap))
            during = asyncio.create_task(_report(client, world, "b", tally))
            await asyncio.sleep(gap)
            await asyncio.to_thread(_start_again, pg)
            await asyncio.wait_for(during, 120)
            before = len(load.acknowledged)
            await eventually(lambda: _true(len(load.acknowledged) >= before + 5), timeout=60)
            load.stop.set()
            await running
            await ensure_ready(st)
            await settled(s.database_url, st.nc, st.subjects)
            await load.check(st)
            tally.set("service tasks ended", len([t for t in st.tasks.values() if t.done()]))
            assert not [t for t in st.tasks.values() if t.done()], "a service ended (a crash loop under a supervisor)"
            ids = ids_in(smtp_sink.messages)
            assert max(ids.values()) == 1
            for peer in ("a", "c"):
                got = [
                    m for m in smtp_sink.to(world.reps[peer].email) if world.companies["b"]["name"] in str(m["Subject"])
                ]
                assert len(got) == 1
            tally.set("duplicate emails", sum(v - 1 for v in ids.values()))
            tally.set("dead letters", await dead_letters(st.nc, st.subjects))
            assert tally.counts["dead letters"] == 0
        tally.set("service tasks crashed", len(crashed))
        assert not crashed
    finally:
        tally.report("test_a_postgresql_restart_during_load_answers_503_and_loses_no_acknowledged_write")
        await asyncio.to_thread(pg.stop)


def _start_again(pg: embedded.EmbeddedPostgres) -> None:
    """Start the stopped embedded PostgreSQL again (pgserver keeps one handle per data folder)."""
    server = embedded._pgserver().get_server(pg.pgdata, cleanup_mode=None)
    server.ensure_postgres_running()


# --- 6. and 8.: mail and Slack servers misbehaving; a notifier killed mid-send -------------------
@dataclass
class FaultySink(SmtpSink):
    """The test mail server, with faults to play once per address: hang past the client's timeout
    and never answer, drop the connection, or (``kill``) kill -9 the notifier after it sent the
    message and before it hears the 250 — then accept the message anyway."""

    hang_once: set[str] = field(default_factory=set)
    drop_once: set[str] = field(default_factory=set)
    kill_next: int | None = None
    """pid of the notifier to kill -9 when the next message arrives."""
    hang_s: float = 3.0
    attempts: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        for address in envelope.rcpt_tos:
            if address in self.hang_once:
                self.hang_once.discard(address)
                await asyncio.sleep(self.hang_s)  # the client gave up long ago
                return "451 4.4.2 too late"
            if address in self.drop_once:
                self.drop_once.discard(address)
                server.transport.abort()
                return "421 4.4.2 gone"
        if self.kill_next is not None:
            os.kill(self.kill_next, signal.SIGKILL)
            self.kill_next = None
        return await super().handle_DATA(server, session, envelope)


@contextlib.asynccontextmanager
async def faulty_sink() -> AsyncIterator[FaultySink]:
    from aiosmtpd.smtp import SMTP

    sink = FaultySink()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(sink, hostname="faulty"), "127.0.0.1", 0)
    sink.port = server.sockets[0].getsockname()[1]
    try:
        yield sink
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class FaultySlack:
    """Slack's incoming webhook, answering from a script first: ("hang", s) answers only after the
    client's timeout (and posts nothing), (status, headers) answers so; then 200 "ok"."""

    port: int = 0
    script: list[tuple[Any, dict[str, str]]] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/T000/B000/XXXX"


@contextlib.asynccontextmanager
async def faulty_slack() -> AsyncIterator[FaultySlack]:
    from aiohttp import web

    stub = FaultySlack()

    async def webhook(request: web.Request) -> web.Response:
        stub.requests += 1
        body = await request.json()
        if stub.script:
            what, headers = stub.script.pop(0)
            if what == "hang":
                await asyncio.sleep(3.0)
                return web.Response(status=504, text="too late")
            return web.Response(status=int(what), headers=headers, text="error")
        stub.posts.append(body)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/services/{rest:.*}", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    stub.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield stub
    finally:
        await runner.cleanup()


@SIZES
@pytest.mark.timeout(900)
async def test_smtp_hanging_and_dropping_and_slack_timing_out_still_deliver_each_once(
    full: bool, settings: Settings
) -> None:
    rounds = 3 if full else 1
    tally = Tally("6. SMTP hangs/drops, Slack times out", label(full))
    try:
        async with faulty_sink() as sink, faulty_slack() as slack:
            s = settings.with_(
                smtp_url=f"smtp://127.0.0.1:{sink.port}",
                smtp_timeout=1.0,  # the client's limit for each SMTP step; Slack's timeout too
                consumer_max_deliver=6,
                inbound_smtp_port=0,
                client_requests_per_minute=100000,
            )
            async with stack_and_client(s) as (st, client, crashed):
                world = await build_world(client, sink, companies=3)
                r = await client.put(
                    f"/api/v1/convoys/{world.convoy_id}/slack",
                    json={"webhook_url": slack.url(), "post_reports": True},
                    headers=world.facilitator,
                )
                assert r.status_code == 200, r.text
                keys = list(world.reps)
                for i in range(rounds):
                    author = keys[i % 3]
                    peers = [k for k in keys if k != author]
                    sink.hang_once.add(world.reps[peers[0]].email)
                    sink.drop_once.add(world.reps[peers[1]].email)
                    slack.script += [("hang", {}), ("500", {}), ("429", {"Retry-After": "1"})]
                    if i:  # one report per company and cycle: a new cycle for each round
                        await _next_cycle(s, world)
                    await _report(client, world, author, tally)
                    for peer in peers:
                        await sink.wait_for_subject(world.reps[peer].email, world.companies[author]["name"], timeout=60)
                    await eventually(lambda i=i: _true(len(slack.posts) >= i + 1), timeout=60)
                await settled(s.database_url, st.nc, st.subjects)
                ids = ids_in(sink.messages)
                assert max(ids.values()) == 1
                texts = [str(p.get("blocks")) for p in slack.posts]
                tally.set("reports", rounds)
                tally.set("smtp hangs", rounds)
                tally.set("smtp drops", rounds)
                tally.set("smtp DATA attempts", sink.attempts)
                tally.set("emails delivered", len(sink.messages))
                tally.set("duplicate emails", sum(v - 1 for v in ids.values()))
                tally.set("slack requests", slack.requests)
                tally.set("slack posts", len(slack.posts))
                tally.set("duplicate slack posts", len(texts) - len(set(texts)))
                assert len(slack.posts) == rounds and len(set(texts)) == rounds
                rows = await deliveries(s.database_url)
                tally.set("deliveries not sent", len([d for d in rows if d["status"] != "sent"]))
                assert all(d["status"] == "sent" for d in rows)
                tally.set("dead letters", await dead_letters(st.nc, st.subjects))
                assert tally.counts["dead letters"] == 0
            assert not crashed
    finally:
        tally.report("test_smtp_hanging_and_dropping_and_slack_timing_out_still_deliver_each_once")


async def _next_cycle(s: Settings, world: World) -> None:
    """Move this convoy's reports to an earlier cycle, so each company may report again."""
    conn = await asyncpg.connect(s.database_url)
    try:
        await conn.execute(
            "UPDATE milestones.reports SET cycle_index = cycle_index - 1000 WHERE convoy_id = $1",
            uuid.UUID(world.convoy_id),
        )
    finally:
        await conn.close()


@SIZES
@pytest.mark.timeout(900)
async def test_a_notifier_killed_between_the_250_and_the_record_leaves_one_uncertain_never_resent(
    full: bool, settings: Settings, tmp_path: Path
) -> None:
    rounds = 3 if full else 1
    tally = Tally("8. ambiguous sends", label(full))
    procs: Processes | None = None
    try:
        async with faulty_sink() as sink:
            s = settings.with_(
                smtp_url=f"smtp://127.0.0.1:{sink.port}", inbound_smtp_port=0, client_requests_per_minute=100000
            )
            async with stack_and_client(s) as (st, client, crashed):
                world = await build_world(client, sink, companies=3)
                await st.stop_service("notifier")
                # The notifier as its own process, one SMTP connection: one send in flight at a time.
                procs = Processes(s.with_(smtp_pool_size=1), tmp_path / "logs")
                procs.start("notifier")
                await wait_ready(st.nc, st.subjects, "notifier", timeout=60)
                keys = list(world.reps)
                for i in range(rounds):
                    author = keys[i % 3]
                    sink.kill_next = procs.procs["notifier"].pid
                    if i:
                        await _next_cycle(s, world)
                    await _report(client, world, author, tally)
                    await eventually(lambda: _true(procs.procs["notifier"].poll() is not None), timeout=60)
                    procs.kills["notifier"] += 1
                    procs.start("notifier")
                    await wait_ready(st.nc, st.subjects, "notifier", timeout=60)
                    for peer in (k for k in keys if k != author):
                        await sink.wait_for_subject(world.reps[peer].email, world.companies[author]["name"], timeout=60)
                await settled(s.database_url, st.nc, st.subjects)
                rows = await deliveries(s.database_url)
                uncertain = [d for d in rows if d["status"] == "uncertain"]
                ids = ids_in(sink.messages)
                tally.set("notifier killed mid-send", procs.kills["notifier"])
                tally.set("uncertain", len(uncertain))
                tally.set("uncertain that had arrived", sum(ids[message_id(d["key"])] for d in uncertain))
                tally.set("sent", len([d for d in rows if d["status"] == "sent"]))
                tally.set("duplicate emails", sum(v - 1 for v in ids.values()))
                assert max(ids.values()) == 1, "an uncertain delivery was sent again"
                assert len(uncertain) == rounds  # exactly the one in flight at each kill
                assert all(ids[message_id(d["key"])] == 1 for d in uncertain)
                assert all(d["status"] in ("sent", "uncertain") for d in rows)
                listed = await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, "-m", "services.cli", "deliveries", "--uncertain"],
                    env={**os.environ, "CONVOY_DATABASE_URL": s.database_url},
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
                assert listed.returncode == 0, listed.stderr
                assert all(d["key"] in listed.stdout.decode() for d in uncertain)
                tally.set("listed by `convoy deliveries --uncertain`", len(uncertain))
            assert not crashed
    finally:
        tally.report("test_a_notifier_killed_between_the_250_and_the_record_leaves_one_uncertain_never_resent")
        if procs is not None:
            procs.stop_all()


# --- 4. a three-node NATS cluster losing nodes --------------------------------------------------------
@SIZES
@pytest.mark.timeout(900)
# While nodes are down, nats-py's reconnect loop can reach a port that another server now holds (the
# suite runs in parallel workers) and be refused ('Authorization Violation'); nats-py then drops that
# attempt's stream writer without closing it, and its __del__ may run after the test's loop closed.
# That is the client library's leak, not a lost or doubled message: the counts below decide.
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function StreamWriter.__del__:pytest.PytestUnraisableExceptionWarning"
)
async def test_a_three_node_nats_cluster_losing_two_nodes_loses_and_doubles_nothing(
    full: bool, settings: Settings, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    from tests.chaos import nats_cluster, wait_for_quorum
    from tests.world import appoint_facilitator

    invitations = 24 if full else 8
    tally = Tally("4. NATS cluster, R3 streams, two of three nodes killed", label(full))
    try:
        with nats_cluster(tmp_path / "cluster") as cluster:
            await wait_for_quorum(cluster.url)
            s = settings.with_(
                nats_url=cluster.url, stream_replicas=3, inbound_smtp_port=0, client_requests_per_minute=100000
            )
            async with stack_and_client(s) as (st, client, crashed):
                facilitator = await appoint_facilitator(client, smtp_sink, f"frieda-{uuid.uuid4().hex[:6]}@z.example")
                r = await client.post(
                    "/api/v1/convoys", json={"name": "Geclustert", "theme": "Webshop"}, headers=facilitator
                )
                assert r.status_code == 201, r.text
                convoy = r.json()["id"]
                answered: dict[str, int] = {}
                progress = asyncio.Event()
                done_count = 0

                async def call(method: str, url: str, **kw: Any) -> httpx.Response:
                    r = await client.request(method, url, headers=facilitator, **kw)
                    assert r.status_code in (201, 503), r.text
                    if r.status_code == 503:
                        assert r.headers.get("Retry-After")
                    return r

                async def load() -> None:
                    nonlocal done_count
                    for i in range(invitations):
                        while (
                            r := await call("POST", f"/api/v1/convoys/{convoy}/companies", json={"name": f"F{i}"})
                        ).status_code != 201:
                            tally.add("company 503")
                            await asyncio.sleep(0.5)
                        email = f"rep-{i}-{uuid.uuid4().hex[:6]}@firma.example"
                        r = await call(
                            "POST",
                            f"/api/v1/convoys/{convoy}/companies/{r.json()['id']}/invitations",
                            json={"email": email, "name": f"Rep {i}", "language": "de"},
                        )
                        answered[email] = r.status_code
                        tally.add(f"invitation {r.status_code}")
                        done_count += 1
                        progress.set()
                        await asyncio.sleep(0.3)

                async def reached(n: int) -> None:
                    await eventually(lambda: _true(done_count >= n), timeout=120)

                loading = asyncio.create_task(load())
                nodes = cluster.nodes
                await reached(invitations // 4)
                nodes[0].kill()
                tally.add("node killed")
                await reached(invitations // 2)
                nodes[1].kill()  # quorum lost: streams refuse writes; the outboxes hold the events
                tally.add("node killed")
                await asyncio.sleep(10.0 if full else 3.0)  # requests go on meanwhile
                await reached(3 * invitations // 4)
                nodes[1].start()
                nodes[0].start()
                tally.add("node restarted", 2)
                await loading
                await wait_for_quorum(cluster.url, timeout=120)
                await ensure_ready(st, timeout=120)
                await settled(s.database_url, st.nc, st.subjects, timeout=180)
                acked = [e for e, code in answered.items() if code == 201]
                for email in acked:
                    await smtp_sink.wait_for_mail_to(email, timeout=60)
                ids = ids_in(smtp_sink.messages)
                tally.set("invitations mailed", sum(1 for e in answered if smtp_sink.to(e)))
                tally.set("acknowledged but not mailed", sum(1 for e in acked if not smtp_sink.to(e)))
                tally.set("duplicate emails", sum(v - 1 for v in ids.values()))
                assert all(len(smtp_sink.to(e)) == 1 for e in acked)
                assert all(len(smtp_sink.to(e)) <= 1 for e in answered)
                assert max(ids.values()) == 1
                info = await st.nc.jetstream(timeout=10).stream_info(st.subjects.events_stream)
                tally.set("stream replicas", info.config.num_replicas or 0)
                tally.set("dead letters", await dead_letters(st.nc, st.subjects))
                assert tally.counts["dead letters"] == 0
            tally.set("service tasks crashed", len(crashed))
            assert not crashed
    finally:
        tally.report("test_a_three_node_nats_cluster_losing_two_nodes_loses_and_doubles_nothing")
