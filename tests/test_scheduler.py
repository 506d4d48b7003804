"""The scheduler: what is due as a pure function, and the reminders service firing cycle events
once, across DST, skips, holidays, absences, outages and a change of leader (fake clock)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

import httpx
import msgspec
import nats.errors
import pytest
from prometheus_client import REGISTRY

from schemas import api
from schemas import envelope as env
from schemas.convoys import Convoys
from schemas.reminders import Reminders
from schemas.values import Cadence
from services.registry import backend
from services.reminders import schedule as sch
from services.runtime.service import serve
from tests.conftest import SmtpSink, Stack, eventually, settled
from tests.world import World, build_world

BERLIN_MONDAY_9 = Cadence(frequency="weekly", weekday="mon", local_time="09:00", window_hours=72)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# --- the pure rules ---------------------------------------------------------------------------
def state(**kw: Any) -> sch.CycleState:
    base = dict(
        index=0,
        opens_at=at("2026-10-19T09:00+02:00"),
        due_at=at("2026-10-22T09:00+02:00"),
        closes_at=at("2026-10-26T09:00+01:00"),
        skipped=False,
        opened=False,
        nudges_done=0,
        closed=False,
    )
    return sch.CycleState(**{**base, **kw})


def kinds(actions: list[sch.Action]) -> list[str]:
    return [f"{a.kind}{a.nudge or ''}" for a in actions]


def test_due_actions_over_a_cycle() -> None:
    offsets = (24, 2)
    assert kinds(sch.due_actions(state(), offsets, at("2026-10-19T08:59+02:00"))) == []
    assert kinds(sch.due_actions(state(), offsets, at("2026-10-19T09:00+02:00"))) == ["open"]
    opened = state(opened=True)
    assert kinds(sch.due_actions(opened, offsets, at("2026-10-21T09:00+02:00"))) == ["nudge1"]
    assert kinds(sch.due_actions(state(opened=True, nudges_done=1), offsets, at("2026-10-22T07:00+02:00"))) == [
        "nudge2"
    ]
    assert kinds(sch.due_actions(state(opened=True, nudges_done=2), offsets, at("2026-10-26T09:00+01:00"))) == ["close"]
    assert kinds(sch.due_actions(state(skipped=True), offsets, at("2026-10-30T09:00+01:00"))) == []


def test_catch_up_after_an_outage_sends_no_burst() -> None:
    offsets = (24, 2)
    # Down from before the check-in until an hour before due: one prompt, then only the latest nudge.
    assert kinds(sch.due_actions(state(), offsets, at("2026-10-22T08:00+02:00"))) == ["open", "drop_nudge1", "nudge2"]
    # Down past the due time: the prompt still goes out (the cycle is open), stale nudges do not.
    assert kinds(sch.due_actions(state(), offsets, at("2026-10-23T09:00+02:00"))) == [
        "open",
        "drop_nudge1",
        "drop_nudge2",
    ]
    # Down past the close: no prompt for a closed cycle, but the digest always goes out.
    assert kinds(sch.due_actions(state(), offsets, at("2026-10-27T09:00+01:00"))) == [
        "drop_open",
        "drop_nudge1",
        "drop_nudge2",
        "close",
    ]


def test_public_holidays_skip_or_move_the_check_in() -> None:
    # 6 January 2026 (Heilige Drei Könige) is a holiday in Bavaria, not in Berlin; it is a Tuesday.
    cadence = Cadence(frequency="weekly", weekday="tue", local_time="09:00", window_hours=48)
    plan = sch.Plan(timezone="Europe/Berlin", cadence=cadence, start_date=date(2026, 1, 6), holiday_region="BY")
    first = sch.plan_cycle(plan, 0)
    assert first.skipped
    assert "Heilige Drei Könige" in first.skip_reason or "Epiphany" in first.skip_reason
    moved = sch.plan_cycle(sch.Plan(**{**plan.__dict__, "holiday_policy": "move"}), 0)
    assert not moved.skipped and moved.opens_at == at("2026-01-07T09:00+01:00")
    assert moved.due_at == at("2026-01-09T09:00+01:00")
    assert not sch.plan_cycle(sch.Plan(**{**plan.__dict__, "holiday_region": "BE"}), 0).skipped
    assert not sch.plan_cycle(plan, 1).skipped


# --- the service, on the real stack, with a fake clock ---------------------------------------
async def active_convoy(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> World:
    world = await build_world(client, smtp_sink, companies=2)
    r = await client.patch(
        f"/api/v1/convoys/{world.convoy_id}",
        json={"cadence": msgspec.to_builtins(BERLIN_MONDAY_9), "timezone": "Europe/Berlin", "start_date": "2026-10-19"},
        headers=world.facilitator,
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/status", json={"status": "active"}, headers=world.facilitator
    )
    assert r.status_code == 200, r.text

    async def scheduler_knows() -> bool:  # the reminders' projection follows the convoy events
        r = await client.get(f"/api/v1/convoys/{world.convoy_id}/schedule", headers=world.facilitator)
        return r.status_code == 200 and r.json()["status"] == "active"

    await eventually(scheduler_knows)
    return world


async def tick(stack: Stack, now: str, within: float = 20.0, summary: bool = False) -> api.Fired:
    async def leader_answer() -> api.Fired | None:
        try:
            msg = await stack.nc.request(
                stack.subjects.operation(Reminders.TICK),
                msgspec.json.encode(api.Tick(now=at(now), summary=summary)),
                timeout=10,
            )
        except nats.errors.NoRespondersError:  # a reminders process is still starting
            return None
        fired = msgspec.json.decode(msg.data, type=api.Fired)
        return fired if fired.leader else None

    result = await eventually(leader_answer, timeout=within, interval=0.3)
    assert result is not None
    return result


async def cycle_events(stack: Stack, convoy_id: str) -> list[str]:
    """Every cycle event in the stream for this convoy, as 'type:cycle[:nudge]'."""
    js = stack.nc.jetstream()
    sub = await js.pull_subscribe(f"{stack.subjects.namespace}.events.cycle.>", stream=stack.subjects.events_stream)
    out: list[str] = []
    with contextlib.suppress(TimeoutError):
        while True:
            for msg in await sub.fetch(100, timeout=1):
                envelope, event = env.decode(msg.data)
                if str(getattr(event, "convoy_id", "")) == convoy_id:
                    label = f"{envelope.type}:{getattr(event, 'cycle_index', '')}"
                    nudge = getattr(event, "nudge", None)
                    out.append(f"{label}:{nudge}" if nudge else label)
                await msg.ack()
    await sub.unsubscribe()
    return out


async def test_three_cycles_across_the_dst_change_fire_once_each(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await active_convoy(client, smtp_sink)
    cid = world.convoy_id
    steps = [
        ("2026-10-19T09:00:30+02:00", ["open"]),
        ("2026-10-19T10:00+02:00", []),  # nothing new
        ("2026-10-21T09:00+02:00", ["nudge"]),  # 24 h before due
        ("2026-10-22T07:30+02:00", ["nudge"]),  # 2 h before due
        ("2026-10-26T09:00:30+01:00", ["close", "open"]),  # after the clocks went back: still 09:00 local
        ("2026-10-28T09:00+01:00", ["nudge"]),
        ("2026-10-29T07:00+01:00", ["nudge"]),
        ("2026-11-02T09:00:30+01:00", ["close", "open"]),
        ("2026-11-09T09:01+01:00", ["drop_nudge", "drop_nudge", "close", "open"]),  # an outage over cycle 2's nudges
    ]
    for now, expected in steps:
        fired = await tick(stack, now)
        assert [a.split(":")[2] for a in fired.actions if a.startswith(cid)] == expected, now
    schedule = (await client.get(f"/api/v1/convoys/{cid}/schedule", headers=world.facilitator)).json()
    assert schedule["timezone"] == "Europe/Berlin"

    async def all_events() -> list[str]:
        events = await cycle_events(stack, cid)
        return events if len(events) >= 11 else []

    events = await eventually(all_events, timeout=20)
    assert events == [
        "cycle.opened:0",
        "cycle.nudge_due:0:1",
        "cycle.nudge_due:0:2",
        "cycle.closed:0",
        "cycle.opened:1",
        "cycle.nudge_due:1:1",
        "cycle.nudge_due:1:2",
        "cycle.closed:1",
        "cycle.opened:2",
        "cycle.closed:2",
        "cycle.opened:3",
    ]


async def test_a_close_that_cannot_seal_its_round_is_reported_failed_and_fires_at_the_next_tick(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    """A round closes only once services/milestones has sealed it: with milestones down the close waits,
    the tick says how many convoys failed (the chaos tests' clock ticks again, as the real one does)."""
    world = await active_convoy(client, smtp_sink)
    cid = world.convoy_id
    fired = await tick(stack, "2026-10-19T09:00:30+02:00")
    assert [a.split(":")[2] for a in fired.actions if a.startswith(cid)] == ["open"]
    failures = REGISTRY.get_sample_value("convoy_scheduler_failures_total", {"stage": "fire"}) or 0
    await stack.stop_service("milestones")
    try:
        fired = await tick(stack, "2026-10-26T09:00:30+01:00")
        assert not [a for a in fired.actions if a.startswith(cid)]
        assert fired.failed >= 1
        # the stack's services run in this process: their counters are in its registry
        assert (REGISTRY.get_sample_value("convoy_scheduler_failures_total", {"stage": "fire"}) or 0) > failures
    finally:
        await stack.start_service("milestones")
    fired = await tick(stack, "2026-10-26T09:00:30+01:00")
    kinds = [a.split(":")[2] for a in fired.actions if a.startswith(cid)]
    assert kinds == ["drop_nudge", "drop_nudge", "close", "open"]  # the nudges' times passed while it waited
    assert fired.failed == 0


async def test_skips_absences_and_settings(client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack) -> None:
    world = await active_convoy(client, smtp_sink)
    cid, f = world.convoy_id, world.facilitator
    await tick(stack, "2026-10-19T09:00:30+02:00")
    r = await client.post(f"/api/v1/convoys/{cid}/cycles/1/skip", json={"reason": "Herbstferien"}, headers=f)
    assert r.status_code == 200, r.text
    assert (await client.post(f"/api/v1/convoys/{cid}/cycles/0/skip", json={}, headers=f)).status_code == 409
    r = await client.post(f"/api/v1/convoys/{cid}/cycles/2/skip", json={}, headers=world.reps["a"].auth)
    assert r.status_code == 403
    away = world.reps["a"].company_id
    r = await client.post(
        f"/api/v1/convoys/{cid}/companies/{away}/away",
        json={"from_date": "2026-11-01", "until_date": "2026-11-03", "reason": "Urlaub"},
        headers=f,
    )
    assert r.status_code == 200
    r = await client.post(
        f"/api/v1/convoys/{cid}/companies/{world.reps['b'].company_id}/skips",
        json={"cycle_index": 2, "reason": "Hochsaison"},
        headers=world.reps["b"].auth,
    )
    assert r.status_code == 200
    r = await client.post(
        f"/api/v1/convoys/{cid}/companies/{away}/skips",
        json={"cycle_index": 2, "reason": "x"},
        headers=world.reps["b"].auth,
    )
    assert r.status_code == 403

    fired = await tick(stack, "2026-10-26T09:00:30+01:00")
    assert [a.split(":")[1:3] for a in fired.actions if a.startswith(cid)] == [
        ["0", "drop_nudge"],
        ["0", "drop_nudge"],
        ["0", "close"],  # no tick at nudge times; cycle 1 is skipped
    ]
    fired = await tick(stack, "2026-11-02T09:00:30+01:00")
    assert [a.split(":")[1:3] for a in fired.actions if a.startswith(cid)] == [["2", "open"]]

    js = stack.nc.jetstream()

    async def cycle_2_opened() -> Any:  # the outbox relay publishes after the tick's commit
        last = await js.get_last_msg(stack.subjects.events_stream, stack.subjects.event("cycle.opened"))
        _, opened = env.decode(last.data)
        return opened if opened.cycle_index == 2 else None  # type: ignore[attr-defined]

    event = await eventually(cycle_2_opened)
    assert {(str(a.company_id), a.kind, a.reason) for a in event.absences} == {  # type: ignore[attr-defined]
        (away, "away", "Urlaub"),
        (world.reps["b"].company_id, "skipped", "Hochsaison"),
    }
    schedule = (await client.get(f"/api/v1/convoys/{cid}/schedule", headers=world.reps["a"].auth)).json()
    assert len(schedule["absences"]) == 2

    r = await client.put(
        f"/api/v1/convoys/{cid}/schedule/settings",
        json={"holiday_region": "BY", "holiday_policy": "move", "nudge_offsets_hours": [48]},
        headers=f,
    )
    assert r.status_code == 200 and r.json()["settings"]["nudge_offsets_hours"] == [48]
    r = await client.put(f"/api/v1/convoys/{cid}/schedule/settings", json={"holiday_region": "XX"}, headers=f)
    assert r.status_code == 400


async def test_a_paused_convoy_gets_nothing(client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack) -> None:
    world = await active_convoy(client, smtp_sink)
    await client.post(f"/api/v1/convoys/{world.convoy_id}/status", json={"status": "paused"}, headers=world.facilitator)

    async def paused_known() -> bool:
        fired = await tick(stack, "2026-10-19T09:00:30+02:00")
        return not [a for a in fired.actions if a.startswith(world.convoy_id)]

    assert await eventually(paused_known)


async def test_a_standby_replica_takes_over_from_a_stopped_leader(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await active_convoy(client, smtp_sink)
    stop_second = asyncio.Event()
    second = asyncio.create_task(serve(backend("reminders"), stack.settings, stop_second))
    try:
        await asyncio.sleep(1.0)
        fired = await tick(stack, "2026-10-19T09:00:30+02:00")
        assert [a.split(":")[2] for a in fired.actions if a.startswith(world.convoy_id)] == ["open"]
        await stack.stop_service("reminders")  # the first replica, which took the lock first, leads
        fired = await tick(stack, "2026-10-21T09:00+02:00", within=15)  # the standby leads within 15 s
        assert [a.split(":")[2] for a in fired.actions if a.startswith(world.convoy_id)] == ["nudge"]
    finally:
        stop_second.set()
        await asyncio.wait_for(second, 15)
        await stack.start_service("reminders")


def test_fire_ids_are_deterministic() -> None:
    from services.reminders.service import fire_id

    convoy = uuid.uuid4()
    assert fire_id(convoy, 3, "open") == fire_id(convoy, 3, "open")
    assert (
        len(
            {
                fire_id(convoy, 3, "open"),
                fire_id(convoy, 3, "close"),
                fire_id(convoy, 4, "open"),
                fire_id(convoy, 3, "nudge", 1),
                fire_id(convoy, 3, "nudge", 2),
            }
        )
        == 5
    )
    # the tick's own uuid5 (issue #21) gives the ids uuid.uuid5 gives: an upgrade mid-slot fires nothing twice
    from services.reminders.service import FIRE_NAMESPACE

    for n, kind in enumerate(["open", "close", "nudge", "nudge"]):
        assert fire_id(convoy, 3, kind, n) == uuid.uuid5(FIRE_NAMESPACE, f"{convoy}:3:{kind}:{n}")


def test_the_facilitator_digest_is_due_from_monday_seven_in_berlin() -> None:
    assert sch.facilitator_digest_due(at("2026-11-23T06:59+01:00")) is None
    assert sch.facilitator_digest_due(at("2026-11-23T07:00+01:00")) == "2026-W48"
    assert sch.facilitator_digest_due(at("2026-11-29T23:59+01:00")) == "2026-W48"
    assert sch.facilitator_digest_due(at("2026-11-30T07:00+01:00")) == "2026-W49"
    assert sch.facilitator_digest_due(at("2027-01-04T08:00+01:00")) == "2027-W01"


async def test_the_facilitator_digest_fires_once_a_week(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await active_convoy(client, smtp_sink)
    first = await tick(stack, "2026-10-19T09:00:30+02:00")
    assert "facilitator_digest:2026-W43" in first.actions
    again = await tick(stack, "2026-10-20T09:00+02:00")
    assert not [a for a in again.actions if a.startswith("facilitator_digest")]
    msg = await stack.nc.request(stack.subjects.operation(Convoys.FACILITATORS), b"{}", timeout=5)
    listed = msgspec.json.decode(msg.data, type=api.Facilitators).facilitators
    me = (await client.get("/api/v1/me", headers=world.facilitator)).json()["person"]["id"]
    [mine] = [f for f in listed if str(f.person_id) == me]
    assert [str(c) for c in mine.convoy_ids] == [world.convoy_id]


async def test_prompt_now_and_close_now_fire_once(client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack) -> None:
    world = await active_convoy(client, smtp_sink)
    url = f"/api/v1/convoys/{world.convoy_id}"
    assert (await client.post(f"{url}/prompt-now", headers=world.reps["a"].auth)).status_code == 403
    first = (await client.post(f"{url}/prompt-now", headers=world.facilitator)).json()
    assert len(first["actions"]) == 1 and first["actions"][0].startswith("open cycle")
    assert (await client.post(f"{url}/prompt-now", headers=world.facilitator)).json()["actions"] == []
    await smtp_sink.wait_for_subject(world.reps["a"].email, "Check-in")
    closed = (await client.post(f"{url}/close-now", headers=world.facilitator)).json()
    assert closed["actions"] == [first["actions"][0].replace("open", "close")]
    assert (await client.post(f"{url}/close-now", headers=world.facilitator)).json()["actions"] == []
    await settled(stack)
    assert len([m for m in smtp_sink.to(world.reps["a"].email) if "Check-in" in str(m["Subject"])]) == 1


@pytest.mark.slow  # a reminders process of its own, killed
async def test_a_killed_leader_is_replaced_and_nothing_fires_twice(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    """kill -9 of the leading reminders process: PostgreSQL frees its lock, the standby leads."""
    import os
    import signal
    import subprocess
    import sys

    world = await active_convoy(client, smtp_sink)
    await stack.stop_service("reminders")
    env = _reminders_process_env(stack, "WARNING")
    leader = subprocess.Popen([sys.executable, "-m", "services.cli", "run", "reminders"], env=env)  # noqa: ASYNC220
    try:
        first = await tick(stack, "2026-10-19T09:00:30+02:00", within=30)  # answered by the process, which leads
        assert [a.split(":")[2] for a in first.actions if a.startswith(world.convoy_id)] == ["open"]
        await stack.start_service("reminders")  # a standby in this process
        os.kill(leader.pid, signal.SIGKILL)
        leader.wait(10)
        fired = await tick(stack, "2026-10-21T09:00+02:00", within=15)  # the standby took over
        assert [a.split(":")[2] for a in fired.actions if a.startswith(world.convoy_id)] == ["nudge"]
        again = await tick(stack, "2026-10-21T09:00+02:00")
        assert [a for a in again.actions if a.startswith(world.convoy_id)] == []
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait(10)
    events = await eventually(lambda: _events_of(stack, world.convoy_id, 2))
    assert events == ["cycle.opened:0", "cycle.nudge_due:0:1"]


@pytest.mark.slow  # a reminders process of its own
async def test_a_service_process_sets_its_startup_heap_aside_once_ready(stack: Stack) -> None:
    """``convoy run <service>`` freezes what it built to start (services/runtime/lifecycle.py
    ``freeze_startup_heap``), so the garbage collector's full collections no longer visit it (issue #21)."""
    import re
    import sys

    env = _reminders_process_env(stack, "INFO")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "run", "reminders", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stderr is not None  # where the logs go
        ready = ""
        while "service ready" not in ready:  # the start takes a few seconds; the line comes once it is ready
            ready = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
            assert ready, "the process ended before it was ready"
        frozen = re.search(r"startup_objects\W+(\d+)", ready)
        assert frozen is not None, ready
        assert int(frozen.group(1)) > 10_000  # modules, classes, functions: a service's start-up heap
    finally:
        proc.terminate()
        await proc.wait()


def _reminders_process_env(stack: Stack, log_level: str) -> dict[str, str]:
    """The environment of a `convoy run reminders` process of its own on the test stack (manual clock)."""
    import os

    settings = stack.settings
    return {
        **os.environ,
        "CONVOY_DATABASE_URL": settings.database_url,
        "CONVOY_NATS_URL": settings.nats_url,
        "CONVOY_NAMESPACE": settings.namespace,
        "CONVOY_REMINDERS_MANUAL_CLOCK": "true",
        "CONVOY_LOG_LEVEL": log_level,
    }


def _executed_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The nodes of an EXPLAIN (ANALYZE, FORMAT JSON) plan that ran at least once."""
    out = [node] if node.get("Actual Loops", 0) > 0 else []
    for child in node.get("Plans", []):
        out += _executed_nodes(child)
    return out


async def _events_of(stack: Stack, convoy_id: str, count: int) -> list[str]:
    events = await cycle_events(stack, convoy_id)
    return events if len(events) >= count else []


# --- the set-based tick (issue #9) --------------------------------------------------------------
def test_next_action_at_is_when_due_actions_first_has_something() -> None:
    """The stored ``next_at`` (what the due query's index holds) agrees with ``due_actions`` at every
    hour around a cycle, for every state a cycle can be in, and nothing is due again once recorded."""
    from datetime import timedelta

    start = at("2026-10-18T00:00+02:00")
    hours = [start + timedelta(hours=h) for h in range(0, 9 * 24)]
    for offsets in ((24, 2), (2, 24), (48,), (), (200,), (0,), (3, 3)):
        for opened in (False, True):
            for nudges_done in range(len(offsets) + 1):
                for skipped, closed in ((False, False), (True, False), (False, True)):
                    s = state(opened=opened, nudges_done=nudges_done, skipped=skipped, closed=closed)
                    first = sch.next_action_at(s, offsets)
                    for now in hours:
                        actions = sch.due_actions(s, offsets, now)
                        assert bool(actions) == (first is not None and now >= first), (s, offsets, now)
                        assert sch.due_actions(sch.after(s, actions), offsets, now) == []
                        if actions:
                            later = sch.next_action_at(sch.after(s, actions), offsets)
                            assert later is None or later > now


def test_plan_horizon_is_when_the_cycles_to_keep_change() -> None:
    from datetime import timedelta

    plan = sch.Plan(timezone="Europe/Berlin", cadence=BERLIN_MONDAY_9, start_date=date(2026, 10, 19))
    before_start = at("2026-10-01T12:00+02:00")
    assert sch.plan_horizon(plan, before_start) == at("2026-10-19T09:00+02:00")
    for now in (before_start, at("2026-10-19T09:00+02:00"), at("2026-10-25T12:00+01:00")):
        horizon = sch.plan_horizon(plan, now)
        assert horizon > now
        assert sch.cycles_to_keep(plan, horizon - timedelta(seconds=1)) == sch.cycles_to_keep(plan, now)
        assert sch.cycles_to_keep(plan, horizon) != sch.cycles_to_keep(plan, now)
    assert sch.plan_horizon(plan, at("2026-10-19T09:00+02:00")) == at("2026-10-26T09:00+01:00")  # across the DST change


async def test_a_thousand_convoys_at_one_slot_fire_once_each_and_an_idle_tick_finds_nothing(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """1,000 convoys sharing Monday 09:00: one prompt each at the slot, nothing on a second tick, a
    close and the next prompt (in that order) a week later; after a tick nothing is due or left to
    re-plan at that instant, and each question is an empty range of its index (no row read)."""
    import asyncpg

    from bench import data
    from services.reminders import repository as repo

    slot, next_slot = "2025-03-03T09:00:30+01:00", "2025-03-10T09:00:30+01:00"  # before every other test's convoys
    pool = await asyncpg.create_pool(stack.settings.database_url, min_size=1, max_size=2)
    assert pool is not None
    convoys = await data.create_convoys(
        pool, 1000, companies=0, tokens=False, start_date=date(2025, 3, 3), in_reminders=True
    )
    mine = {str(c) for c in convoys.ids}

    def per_convoy(fired: api.Fired) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for action in fired.actions:
            convoy, *rest = action.split(":")
            if convoy in mine:
                out.setdefault(convoy, []).append(f"{rest[1]}{rest[0]}")
        return out

    try:
        first = await tick(stack, slot)
        assert first.count == len(first.actions) >= 1000
        assert per_convoy(first) == {c: ["open0"] for c in mine}
        assert per_convoy(await tick(stack, slot)) == {}
        assert per_convoy(await tick(stack, next_slot)) == {
            c: ["drop_nudge0", "drop_nudge0", "close0", "open1"]
            for c in mine  # no tick at the nudge times
        }
        conn = await asyncpg.connect(stack.settings.database_url, server_settings={"search_path": "reminders"})
        try:
            now = at(next_slot)
            assert await repo.due_cycles(conn, now) == []
            assert await repo.convoys_changed(conn, uuid.UUID(int=0), 10) == []
            assert await repo.convoys_expired(conn, now, repo.EXPIRED_FROM, 10) == []
            await conn.execute("ANALYZE convoys")  # statistics as autovacuum keeps them
            await conn.execute("ANALYZE cycles")
            # An idle tick reads no convoy and no cycle (issue #21): each of its questions is answered
            # by an empty range of its index; no scan of a table, no row read and thrown away.
            for sql, args, index in (
                (repo.CONVOYS_CHANGED, (uuid.UUID(int=0), 2000), "convoys_unplanned"),
                (repo.DUE_CYCLES, (now,), "cycles_next_at"),
                (repo.CONVOYS_EXPIRED, (now, *repo.EXPIRED_FROM, 2000), "convoys_plan_expiry"),
            ):
                explained = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
                nodes = _executed_nodes(json.loads(explained)[0]["Plan"])
                assert {n.get("Index Name") for n in nodes} >= {index}, explained
                for n in nodes:
                    assert "Seq Scan" not in n["Node Type"], explained
                    assert n["Actual Rows"] == 0 and not n.get("Rows Removed by Filter"), explained
            # A writer that leaves next_at NULL (a replica of the version before 0004 during a rolling
            # update) still gets its cycle fired at the opening, as coalesce(next_at, opens_at) did.
            stray = uuid.uuid4()
            await conn.execute(
                "INSERT INTO cycles (convoy_id, cycle_index, opens_at, due_at, closes_at) VALUES ($1, 0, $2, $2, $2)",
                stray,
                now,
            )
            assert await conn.fetchval("SELECT next_at FROM cycles WHERE convoy_id = $1", stray) == now
            await conn.execute("DELETE FROM cycles WHERE convoy_id = $1", stray)
        finally:
            await conn.close()

        async def every_event() -> dict[str, list[str]] | None:  # each once, in order, per convoy
            events: dict[str, list[str]] = {}
            js = stack.nc.jetstream()
            sub = await js.pull_subscribe(
                f"{stack.subjects.namespace}.events.cycle.>", stream=stack.subjects.events_stream
            )
            with contextlib.suppress(TimeoutError):
                while True:
                    for msg in await sub.fetch(1000, timeout=1):
                        envelope, event = env.decode(msg.data)
                        convoy = str(getattr(event, "convoy_id", ""))
                        if convoy in mine:
                            events.setdefault(convoy, []).append(f"{envelope.type}:{getattr(event, 'cycle_index', '')}")
                        await msg.ack()
            await sub.unsubscribe()
            expected = ["cycle.opened:0", "cycle.closed:0", "cycle.opened:1"]
            return events if events == {c: expected for c in mine} else None

        assert await eventually(every_event, timeout=30, interval=1)
        # A tick may answer with the number of actions only (a slot of a million convoys lists more
        # than a NATS message holds): the first nudge of cycle 1, a day before it is due.
        nudges = await tick(stack, "2025-03-12T09:00:30+01:00", summary=True)
        assert nudges.actions == [] and nudges.count >= 1000
    finally:
        async with pool.acquire() as conn:  # out of the way of later ticks
            await conn.execute(
                "UPDATE reminders.convoys SET status = 'paused' WHERE convoy_id = ANY($1::uuid[])", convoys.ids
            )
        await pool.close()
