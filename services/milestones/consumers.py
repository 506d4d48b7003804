"""Event handlers of services/milestones: the projections everything here is authorized from.

- convoys events (``PROJECTED``): convoys, companies, representatives, facilitators, observers, and
  the charters (each convoy's current version, the version each representative accepted) (read by
  services/milestones/access.py, which reads through to services/convoys on a miss);
- ``person.erased``: an erased person's authorship is remembered as "a former representative of
  <company>" (services/milestones/privacy.py words it) and they drop out of the projections.

Every handler is idempotent (a redelivered event changes nothing more) and runs in the consumer's
transaction (``conn``).
"""

from __future__ import annotations

import asyncpg

from schemas import envelope as env
from schemas import events as ev
from schemas.milestones import Milestones
from services.milestones import repository as repo

PROJECTED = Milestones.CONSUMERS["convoys"]
"""Events from services/convoys that milestones keeps projections of (in stream order)."""


async def on_convoys_event(envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
    """Keep the projections (convoys, companies, members, facilitators) that authorize everything."""
    if isinstance(event, (ev.ConvoyCreated, ev.ConvoyUpdated)):
        start = event.start_date
        if start is None and isinstance(event, ev.ConvoyUpdated):  # keep the start the convoy has here
            known = await repo.projections.convoy(conn, event.convoy_id)
            start = known["start_date"] if known else None
        await repo.projections.upsert_convoy(
            conn,
            convoy_id=event.convoy_id,
            name=event.name,
            timezone=event.timezone,
            language=event.language,
            cadence=event.cadence,
            start_date=start or envelope.occurred_at.date(),
            retention_days=event.retention_days,
        )
        if isinstance(event, ev.ConvoyCreated):
            await repo.projections.set_charter_version(conn, event.convoy_id, 1)  # every convoy starts at 1
            if event.facilitator_id:
                await repo.projections.add_facilitator(conn, event.convoy_id, event.facilitator_id)
    elif isinstance(event, ev.ConvoyStatusChanged):
        await repo.projections.set_convoy_status(conn, event.convoy_id, event.new_status)
    elif isinstance(event, ev.ConvoyFacilitatorAdded):
        await repo.projections.add_facilitator(conn, event.convoy_id, event.person_id)
    elif isinstance(event, ev.CompanyJoined):
        await repo.projections.upsert_company(conn, event.company_id, event.convoy_id, event.name)
    elif isinstance(event, ev.CompanyLeft):
        await repo.projections.remove_company(conn, event.company_id, left_at=envelope.occurred_at)
    elif isinstance(event, ev.PersonJoined):
        await repo.projections.add_member(
            conn,
            event.person_id,
            event.company_id,
            event.convoy_id,
            joined_at=envelope.occurred_at,
            charter_version=event.charter_version,
        )
    elif isinstance(event, ev.CharterUpdated):
        await repo.projections.set_charter_version(conn, event.convoy_id, event.version)
    elif isinstance(event, ev.CharterAccepted):
        await repo.projections.accept_charter(conn, event.person_id, event.convoy_id, event.version)
    elif isinstance(event, ev.PersonRemoved):
        await repo.projections.remove_member(conn, event.person_id, event.company_id)
    elif isinstance(event, ev.ObserverJoined):
        await repo.projections.add_observer(conn, event.person_id, event.convoy_id)
    elif isinstance(event, ev.ObserverRemoved):
        await repo.projections.remove_observer(conn, event.person_id, event.convoy_id)


async def on_person_erased(envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
    """Idempotent: recording a former author twice changes nothing."""
    assert isinstance(event, ev.PersonErased)
    for convoy_id in event.facilitated:
        await repo.privacy.record_former_author(conn, event.person_id, convoy_id, None)
    for m in event.memberships:  # oldest first: the latest company in a convoy wins
        await repo.privacy.record_former_author(conn, event.person_id, m.convoy_id, m.company_id)
    await repo.privacy.forget_person(conn, event.person_id)
