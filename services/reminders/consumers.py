"""Event handlers of services/reminders: its projection of the convoys (name, time zone, cadence,
status, companies) from services/convoys' events, and ``person.erased``.

Each runs in the consumer's transaction together with its processed-event row (once per event).
"""

from __future__ import annotations

import asyncpg

from schemas import envelope as env
from schemas import events as ev
from schemas.reminders import Reminders
from services.reminders import repository as repo

PROJECTED = Reminders.CONSUMERS["convoys"]
"""The convoys' events the schedule is planned from."""


async def on_convoys_event(envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
    if isinstance(event, ev.ConvoyCreated | ev.ConvoyUpdated):
        known = await repo.convoy(conn, event.convoy_id)
        start = event.start_date or (known["start_date"] if known else envelope.occurred_at.date())
        await repo.upsert_convoy(
            conn,
            convoy_id=event.convoy_id,
            name=event.name,
            timezone=event.timezone,
            language=event.language,
            cadence=event.cadence,
            start_date=start,
        )
    elif isinstance(event, ev.ConvoyStatusChanged):
        await repo.set_status(conn, event.convoy_id, event.new_status)
    elif isinstance(event, ev.CompanyJoined):
        await repo.upsert_company(conn, event.company_id, event.convoy_id, event.name)
    elif isinstance(event, ev.CompanyLeft):
        await repo.deactivate_company(conn, event.company_id)


async def on_person_erased(envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
    """The only personal datum kept here is who marked an absence: forget the id (idempotent)."""
    assert isinstance(event, ev.PersonErased)
    await repo.forget_person(conn, event.person_id)
