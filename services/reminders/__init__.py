"""services/reminders: check-in cycles; fires prompts, nudges and digests (as events) once, as the leader.

APScheduler (3.x, asyncio) wakes the scheduler up; what is due is a pure function of the
stored cycles and "now" (services/reminders/schedule.py). Only the process holding the
leader lock fires; the work (emails) happens in the notifier, the content comes from milestones.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from schemas import events as ev
from schemas.reminders import Reminders
from services.reminders import consumers
from services.reminders.privacy import PrivacyRules
from services.reminders.service import Scheduler
from services.runtime import metrics
from services.runtime.service import Runtime

NAME = "reminders"
MIGRATIONS = Path(str(resources.files(__name__) / "migrations"))


async def setup(rt: Runtime) -> None:
    reminders = Scheduler(rt)
    metrics.leader_gauge(rt.name, "scheduler", lambda: reminders.leader)
    rt.consumer("convoys", consumers.PROJECTED, consumers.on_convoys_event)
    # --- data protection: the export, and person.erased
    privacy = PrivacyRules(rt)
    rt.consumer("erasure", (ev.PersonErased,), consumers.on_person_erased)
    rt.serve(Reminders, reminders, privacy)

    # APScheduler decides when to wake up; what is due is computed from the stored cycles. The tick
    # job coalesces and never runs twice at once (a busy moment must not stack ticks), and has no
    # misfire grace limit: APScheduler's default of one second would silently skip a late tick.
    scheduler = AsyncIOScheduler(timezone="UTC")

    async def run(stop: asyncio.Event) -> None:
        scheduler.add_job(
            reminders.tick_if_leader,
            "interval",
            seconds=rt.settings.reminders_tick_seconds,
            id="tick",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        scheduler.start()
        leading = asyncio.create_task(reminders.lead(stop))
        try:
            await stop.wait()
        finally:
            scheduler.shutdown(wait=False)
            await asyncio.wait({leading}, timeout=rt.settings.shutdown_timeout)

    async def scheduler_running() -> None:
        if not scheduler.running:
            raise RuntimeError("scheduler not running")

    rt.background(run)
    rt.readiness_check("scheduler", scheduler_running)
