"""scheduler: many convoys loaded into services/reminders, a fifth of them sharing Monday 09:00
(100,000 and 20,000 at scale 1).

The others check in on other days and times and have nothing due at the slot. Their cycles are
materialised as the scheduler would have left them (set up by SQL). A tick one minute before the
slot shows what an idle tick costs; then the tick at the slot: the time until the last of the
``cycle.opened`` events (one per convoy: its prompts) is published on NATS, and the reminders
process's RSS. The notifier is stopped first (this measures the scheduler, not the prompt emails;
the events stay in the stream).
"""

from __future__ import annotations

import asyncio
import time
from datetime import date, timedelta

from bench import data
from bench.measure import Result, Row, cpu_delta
from bench.stack import Stack
from schemas import events as ev
from schemas.values import Cadence
from services.reminders import schedule
from services.runtime import cycles

START = date(2024, 1, 1)
SLOT = data.monday_9(date(2024, 3, 18))
OTHERS = (("tue", "08:00"), ("wed", "10:00"), ("thu", "14:00"), ("fri", "09:00"))


def sizes(scale: float) -> tuple[int, int]:
    total = max(1000, round(100_000 * scale))
    return total, total // 5


async def run(stack: Stack, scale: float) -> Result:
    total, monday = sizes(scale)
    result = Result("scheduler", scale)
    assert stack.pool is not None
    begun = time.perf_counter()
    stack.stop_process("notifier")
    cpu0 = stack.cpu_seconds()
    convoys = await data.create_convoys(
        stack.pool, total, companies=0, tokens=False, start_date=START, in_reminders=True
    )
    groups: list[tuple[Cadence, list]] = [(data.WEEKLY_MONDAY_9, convoys.ids[:monday])]
    rest = convoys.ids[monday:]
    for i, (weekday, at) in enumerate(OTHERS):
        cadence = Cadence(frequency="weekly", weekday=weekday, local_time=at, window_hours=72)  # type: ignore[arg-type]
        groups.append((cadence, rest[i :: len(OTHERS)]))
    before = SLOT - timedelta(minutes=1)
    for cadence, ids in groups:
        if cadence != data.WEEKLY_MONDAY_9:
            await data.set_cadence(stack.pool, ids, cadence)
        plan = schedule.Plan(timezone=data.TIMEZONE, cadence=cadence, start_date=START)
        current = cycles.cycle_at(cadence, data.TIMEZONE, START, before)
        assert current is not None
        k = current.index
        await data.insert_cycles(
            stack.pool,
            ids,
            plan,
            [(k - 1, False, True, True, 2), (k, False, True, False, 2), (k + 1, False, False, False, 0)],
        )
    await data.analyze(stack.pool)

    opened: list[float] = []

    async def seen(_msg: object) -> None:
        opened.append(time.monotonic())

    sub = await stack.nc.subscribe(stack.subjects.of(ev.CycleOpened), cb=seen)
    await stack.nc.flush()
    t = time.monotonic()
    idle = await stack.tick(before)
    idle_s = time.monotonic() - t
    opened.clear()

    t0 = time.monotonic()
    fired = await stack.tick(SLOT)
    tick_s = time.monotonic() - t0
    deadline = time.monotonic() + 300
    while len(opened) < monday and time.monotonic() < deadline:  # noqa: ASYNC110 — counting a subscription
        await asyncio.sleep(0.1)
    await sub.unsubscribe()
    last_s = (max(opened) - t0) if opened else float("nan")
    rss, peak = stack.rss_mb("reminders")
    result.rows += [
        Row(
            "scheduler",
            f"{monday} prompts (cycle.opened) published after the slot, s; {total} convoys",
            last_s,
            None,
            "s",
            "< 10 s",
            len(opened) >= monday and last_s < 10,
            note=f"{len(opened)}/{monday} seen; tick answered after {tick_s:.1f} s",
        ),
        Row(
            "scheduler",
            "reminders process RSS after the slot, MB",
            rss,
            None,
            "MB",
            "< 300 MB",
            peak < 300,
            note=f"peak {peak:.0f} MB",
        ),
        Row("scheduler", f"a tick with nothing due over {total} convoys, s", idle_s, None, "s", note="tick every 5 s"),
    ]
    result.details = {
        "convoys": total,
        "monday_0900": monday,
        "prompts_seen": len(opened),
        "fires_at_slot": len(fired.actions),
        "idle_fires": len(idle.actions),
        "idle_tick_s": round(idle_s, 2),
        "slot_tick_s": round(tick_s, 2),
        "last_prompt_s": round(last_s, 2),
        "first_prompt_s": round(min(opened) - t0, 2) if opened else None,
        "rss_mb": round(rss, 1),
        "peak_rss_mb": round(peak, 1),
    }
    result.cpu_seconds = cpu_delta(cpu0, stack.cpu_seconds())
    result.wall_seconds = time.perf_counter() - begun
    return result
