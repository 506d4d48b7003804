"""services/reminders: check-in cycles, prompts, nudges and digest triggers.

Foundation scope: the service runs, owns its schema, keeps its projection of convoys from
``convoy.created`` events and runs an APScheduler (3.x, asyncio) whose liveness is part of
its readiness. Cycles, prompts, nudges and digests are built on this (issue: check-in cycles).
"""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path

import asyncpg
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from schemas import envelope as env
from schemas import events as ev
from services.reminders import repository
from services.runtime.service import Runtime

NAME = "reminders"
MIGRATIONS = Path(str(resources.files(__name__) / "migrations"))


async def setup(rt: Runtime) -> None:
    async def on_convoy_created(envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        assert isinstance(event, ev.ConvoyCreated)
        await repository.upsert_convoy(conn, event)

    rt.consumer("convoys", (ev.ConvoyCreated,), on_convoy_created)

    scheduler = AsyncIOScheduler(timezone="UTC")

    async def run_scheduler(stop: asyncio.Event) -> None:
        scheduler.start()
        try:
            await stop.wait()
        finally:
            scheduler.shutdown(wait=False)

    async def scheduler_running() -> None:
        if not scheduler.running:
            raise RuntimeError("scheduler not running")

    rt.background(run_scheduler)
    rt.readiness_check("scheduler", scheduler_running)
