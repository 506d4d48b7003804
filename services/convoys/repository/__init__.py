"""SQL of services/convoys: people, convoys, companies, memberships, observers, invitations, join
requests, the audit log, data protection and the charter. Sign-in, sessions and tokens: ``auth.py`` in
this folder (``from services.convoys.repository import auth as auth_repo``); the check: check/repository.py.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from schemas import api
from schemas.values import Cadence
from services.runtime.db import struct, structs

Conn = asyncpg.Connection

_cadence = msgspec.json.Decoder(Cadence)


# --- people --------------------------------------------------------------------------------------
async def person_by_email(conn: Conn, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM people WHERE lower(email) = lower($1)", email)


async def person_by_id(conn: Conn, person_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM people WHERE id = $1", person_id)


async def insert_person(
    conn: Conn, *, name: str, email: str, language: str, timezone: str, is_facilitator: bool = False
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO people (id, name, email, language, timezone, is_facilitator)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        uuid.uuid4(),
        name,
        email,
        language,
        timezone,
        is_facilitator,
    )
    assert row is not None
    return row


async def make_facilitator(conn: Conn, person_id: uuid.UUID) -> None:
    await conn.execute("UPDATE people SET is_facilitator = true, updated_at = now() WHERE id = $1", person_id)


async def update_person(conn: Conn, person_id: uuid.UUID, changes: dict[str, Any]) -> asyncpg.Record:
    sets = ", ".join(f"{column} = ${i}" for i, column in enumerate(changes, start=2))
    row = await conn.fetchrow(
        f"UPDATE people SET {sets}, updated_at = now() WHERE id = $1 RETURNING *",
        person_id,
        *changes.values(),
    )
    assert row is not None
    return row


def person(row: asyncpg.Record) -> api.Person:
    return struct(row, api.Person)


async def my_convoys(conn: Conn, person_id: uuid.UUID) -> list[api.MyConvoy]:
    rows = await conn.fetch(
        "SELECT c.id AS convoy_id, c.name, c.status, 'facilitator' AS role, NULL::uuid AS company_id,"
        "       '' AS company_name, true AS charter_accepted, c.created_at"
        " FROM convoy_facilitators f JOIN convoys c ON c.id = f.convoy_id WHERE f.person_id = $1"
        " UNION ALL"
        " SELECT c.id, c.name, c.status, 'representative', co.id, co.name, m.charter_version >= c.charter_version,"
        " c.created_at"
        " FROM memberships m JOIN convoys c ON c.id = m.convoy_id JOIN companies co ON co.id = m.company_id"
        " WHERE m.person_id = $1 AND m.removed_at IS NULL"
        " UNION ALL"
        " SELECT c.id, c.name, c.status, 'observer', NULL, '', true, c.created_at"
        " FROM observers o JOIN convoys c ON c.id = o.convoy_id WHERE o.person_id = $1 AND o.removed_at IS NULL"
        " ORDER BY created_at DESC",
        person_id,
    )
    return structs(rows, api.MyConvoy)


async def facilitators(conn: Conn) -> list[api.FacilitatorConvoys]:
    """Every facilitator with the active and paused convoys they facilitate (one query)."""
    rows = await conn.fetch(
        "SELECT p.id AS person_id, p.name, p.email, p.language, p.timezone,"
        " coalesce(array_agg(c.id ORDER BY c.created_at) FILTER (WHERE c.status IN ('active', 'paused')),"
        " '{}') AS convoy_ids"
        " FROM people p LEFT JOIN convoy_facilitators f ON f.person_id = p.id LEFT JOIN convoys c ON c.id = f.convoy_id"
        " WHERE p.is_facilitator GROUP BY p.id ORDER BY p.name"
    )
    return structs(rows, api.FacilitatorConvoys)


# --- convoys -------------------------------------------------------------------------------------
async def insert_convoy(conn: Conn, convoy_id: uuid.UUID, c: api.NewConvoy) -> None:
    await conn.execute(
        "INSERT INTO convoys (id, name, theme, description, timezone, language, cadence, start_date, end_date,"
        " open_for_requests, retention_days, share_anonymised_results)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11, $12)",
        convoy_id,
        c.name,
        c.theme,
        c.description,
        c.timezone,
        c.language,
        msgspec.json.encode(c.cadence).decode(),
        c.start_date,
        c.end_date,
        c.open_for_requests,
        c.retention_days,
        c.share_anonymised_results,
    )


async def convoy_row(conn: Conn, convoy_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM convoys WHERE id = $1" + (" FOR UPDATE" if lock else ""), convoy_id)


async def update_convoy(conn: Conn, convoy_id: uuid.UUID, changes: dict[str, Any]) -> None:
    if "cadence" in changes:
        changes["cadence"] = msgspec.json.encode(changes["cadence"]).decode()
    sets = ", ".join(
        f"{column} = ${i}{'::jsonb' if column == 'cadence' else ''}" for i, column in enumerate(changes, start=2)
    )
    await conn.execute(f"UPDATE convoys SET {sets}, updated_at = now() WHERE id = $1", convoy_id, *changes.values())


async def set_chat(
    conn: Conn,
    convoy_id: uuid.UUID,
    channel: str,
    url: str | None,
    post_reports: bool = False,
    *,
    only_if_url: str | None = None,
) -> bool:
    """Set (``url``) or remove (None; with ``only_if_url`` only if that is still the URL) one chat
    channel's webhook. True if something changed."""
    if url is None:
        status = await conn.execute(
            "DELETE FROM chat_webhooks WHERE convoy_id = $1 AND channel = $2"
            " AND ($3::text IS NULL OR webhook_url = $3)",
            convoy_id,
            channel,
            only_if_url,
        )
        changed = status != "DELETE 0"
    else:
        await conn.execute(
            "INSERT INTO chat_webhooks (convoy_id, channel, webhook_url, post_reports) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (convoy_id, channel) DO UPDATE"
            " SET webhook_url = excluded.webhook_url, post_reports = excluded.post_reports, updated_at = now()",
            convoy_id,
            channel,
            url,
            post_reports,
        )
        changed = True
    if changed:
        await conn.execute("UPDATE convoys SET updated_at = now() WHERE id = $1", convoy_id)
    return changed


async def chat_targets(conn: Conn, convoy_id: uuid.UUID) -> list[api.ChatTarget]:
    rows = await conn.fetch(
        "SELECT channel, webhook_url, post_reports FROM chat_webhooks WHERE convoy_id = $1 ORDER BY channel",
        convoy_id,
    )
    return structs(rows, api.ChatTarget)


async def set_status(conn: Conn, convoy_id: uuid.UUID, status: str) -> None:
    await conn.execute("UPDATE convoys SET status = $2, updated_at = now() WHERE id = $1", convoy_id, status)


def cadence(row: asyncpg.Record) -> Cadence:
    raw = row["cadence"]
    return _cadence.decode(raw.encode() if isinstance(raw, str) else raw)


async def convoy(conn: Conn, row: asyncpg.Record, *, with_members: bool) -> api.Convoy:
    """The convoy with its facilitators and companies (representatives only ``with_members``)."""
    facilitators = await conn.fetch(
        "SELECT p.id AS person_id, p.name FROM convoy_facilitators f JOIN people p ON p.id = f.person_id"
        " WHERE f.convoy_id = $1 ORDER BY f.added_at",
        row["id"],
    )
    companies = await conn.fetch(
        "SELECT * FROM companies WHERE convoy_id = $1 AND removed_at IS NULL ORDER BY created_at, name",
        row["id"],
    )
    channels = {
        r["channel"] for r in await conn.fetch("SELECT channel FROM chat_webhooks WHERE convoy_id = $1", row["id"])
    }
    reps: dict[uuid.UUID, list[api.PersonRef]] = {}
    if with_members:
        for r in await conn.fetch(
            "SELECT m.company_id, p.id, p.name FROM memberships m JOIN people p ON p.id = m.person_id"
            " WHERE m.convoy_id = $1 AND m.removed_at IS NULL ORDER BY m.created_at",
            row["id"],
        ):
            reps.setdefault(r["company_id"], []).append(api.PersonRef(person_id=r["id"], name=r["name"]))
    observers = await conn.fetch(
        "SELECT o.person_id, p.name, o.note, o.company_id, coalesce(co.name, '') AS company_name"
        " FROM observers o JOIN people p ON p.id = o.person_id LEFT JOIN companies co ON co.id = o.company_id"
        " WHERE o.convoy_id = $1 AND o.removed_at IS NULL ORDER BY o.created_at",
        row["id"],
    )
    return struct(
        row,
        api.Convoy,
        cadence=cadence(row),
        slack_configured="slack" in channels,
        teams_configured="teams" in channels,
        facilitators=structs(facilitators, api.PersonRef),
        companies=[company(c, reps.get(c["id"], [])) for c in companies],
        observers=structs(observers, api.ObserverRef) if with_members else [],
    )


async def open_convoys(conn: Conn) -> list[api.OpenConvoy]:
    rows = await conn.fetch(
        "SELECT c.id, c.name, c.theme, c.description, c.language, c.status,"
        " (SELECT count(*) FROM companies co WHERE co.convoy_id = c.id AND co.removed_at IS NULL) AS companies"
        " FROM convoys c WHERE c.open_for_requests AND c.status IN ('forming', 'active')"
        " ORDER BY c.created_at DESC LIMIT 500"
    )
    return structs(rows, api.OpenConvoy)


async def add_facilitator(conn: Conn, convoy_id: uuid.UUID, person_id: uuid.UUID) -> bool:
    added = await conn.fetchval(
        "INSERT INTO convoy_facilitators (convoy_id, person_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        convoy_id,
        person_id,
    )
    return bool(added)


async def facilitates(conn: Conn, person_id: uuid.UUID, convoy_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM convoy_facilitators WHERE person_id = $1 AND convoy_id = $2",
            person_id,
            convoy_id,
        )
    )


async def convoy_facilitators(conn: Conn, convoy_id: uuid.UUID) -> api.ConvoyFacilitators | None:
    """The convoy's name, language and status with its facilitators' contacts, in one query
    (a convoy without facilitators gives one row whose person columns are null)."""
    rows = await conn.fetch(
        "SELECT v.name AS convoy_name, v.language AS convoy_language, v.status,"
        " p.id AS person_id, p.name, p.email, p.language, p.timezone"
        " FROM convoys v LEFT JOIN (convoy_facilitators f JOIN people p ON p.id = f.person_id)"
        " ON f.convoy_id = v.id WHERE v.id = $1 ORDER BY f.added_at, p.id",
        convoy_id,
    )
    if not rows:
        return None
    first = rows[0]
    return api.ConvoyFacilitators(
        convoy_id=convoy_id,
        convoy_name=first["convoy_name"],
        language=first["convoy_language"],
        status=first["status"],
        facilitators=structs((r for r in rows if r["person_id"] is not None), api.FacilitatorContact),
    )


async def facilitator_contacts(conn: Conn, convoy_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT p.id, p.name, p.email, p.language FROM convoy_facilitators f JOIN people p ON p.id = f.person_id"
        " WHERE f.convoy_id = $1",
        convoy_id,
    )


# --- companies and memberships -------------------------------------------------------------------
async def insert_company(conn: Conn, company_id: uuid.UUID, convoy_id: uuid.UUID, c: api.NewCompany) -> api.Company:
    row = await conn.fetchrow(
        "INSERT INTO companies (id, convoy_id, name, sector, size_class, region)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        company_id,
        convoy_id,
        c.name,
        c.sector,
        c.size_class,
        c.region,
    )
    return company(row, [])


async def company_row(conn: Conn, company_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM companies WHERE id = $1 AND removed_at IS NULL", company_id)


async def remove_company(conn: Conn, company_id: uuid.UUID, reason: str) -> list[uuid.UUID]:
    """Mark the company and its memberships removed; return the people who left with it."""
    await conn.execute("UPDATE companies SET removed_at = now(), removed_reason = $2 WHERE id = $1", company_id, reason)
    rows = await conn.fetch(
        "UPDATE memberships SET removed_at = now(), removed_reason = $2"
        " WHERE company_id = $1 AND removed_at IS NULL RETURNING person_id",
        company_id,
        reason,
    )
    await conn.execute(
        "UPDATE invitations SET revoked_at = now() WHERE company_id = $1 AND accepted_at IS NULL"
        " AND revoked_at IS NULL",
        company_id,
    )
    return [r["person_id"] for r in rows]


def company(row: asyncpg.Record | None, reps: list[api.PersonRef]) -> api.Company:
    assert row is not None
    return struct(row, api.Company, representatives=reps)


async def active_membership(conn: Conn, person_id: uuid.UUID, convoy_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM memberships WHERE person_id = $1 AND convoy_id = $2 AND removed_at IS NULL",
        person_id,
        convoy_id,
    )


async def insert_membership(
    conn: Conn, person_id: uuid.UUID, company_id: uuid.UUID, convoy_id: uuid.UUID, *, charter_version: int = 0
) -> None:
    """A new membership; ``charter_version``: the charter version accepted with it (0: none)."""
    await conn.execute(
        "INSERT INTO memberships (person_id, company_id, convoy_id, charter_version, charter_accepted_at)"
        " VALUES ($1, $2, $3, $4, CASE WHEN $4 > 0 THEN now() END)",
        person_id,
        company_id,
        convoy_id,
        charter_version,
    )


async def remove_membership(conn: Conn, membership_id: int, reason: str) -> None:
    await conn.execute(
        "UPDATE memberships SET removed_at = now(), removed_reason = $2 WHERE id = $1", membership_id, reason
    )


async def active_observer(conn: Conn, person_id: uuid.UUID, convoy_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM observers WHERE person_id = $1 AND convoy_id = $2 AND removed_at IS NULL",
        person_id,
        convoy_id,
    )


async def insert_observer(
    conn: Conn,
    person_id: uuid.UUID,
    convoy_id: uuid.UUID,
    *,
    company_id: uuid.UUID | None,
    note: str,
    invited_by: uuid.UUID | None,
) -> None:
    await conn.execute(
        "INSERT INTO observers (person_id, convoy_id, company_id, note, invited_by) VALUES ($1, $2, $3, $4, $5)",
        person_id,
        convoy_id,
        company_id,
        note,
        invited_by,
    )


async def remove_observer(conn: Conn, observer_id: int, reason: str) -> None:
    await conn.execute(
        "UPDATE observers SET removed_at = now(), removed_reason = $2 WHERE id = $1", observer_id, reason
    )


async def remove_company_observers(conn: Conn, company_id: uuid.UUID, reason: str) -> list[uuid.UUID]:
    """End the seats of the company's second readers (it left); return the people."""
    rows = await conn.fetch(
        "UPDATE observers SET removed_at = now(), removed_reason = $2"
        " WHERE company_id = $1 AND removed_at IS NULL RETURNING person_id",
        company_id,
        reason,
    )
    return [r["person_id"] for r in rows]


async def recipient_versions(conn: Conn, convoy_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The convoys' recipients versions (migration 0013; 0 before a convoy's first change)."""
    rows = await conn.fetch(
        "SELECT convoy_id, version FROM recipient_versions WHERE convoy_id = ANY($1::uuid[])", convoy_ids
    )
    found = {r["convoy_id"]: int(r["version"]) for r in rows}
    return {c: found.get(c, 0) for c in convoy_ids}


RECIPIENTS_OF = (
    "SELECT v.id AS convoy_id,"
    " (SELECT coalesce(max(version), 0) FROM recipient_versions WHERE convoy_id = v.id) AS version,"
    " v.name AS convoy_name, v.language AS convoy_language,"
    " (SELECT jsonb_agg(jsonb_build_object('channel', w.channel, 'webhook_url', w.webhook_url,"
    " 'post_reports', w.post_reports) ORDER BY w.channel) FROM chat_webhooks w WHERE w.convoy_id = v.id) AS chats,"
    " (SELECT jsonb_agg(jsonb_build_object('person_id', op.id, 'name', op.name, 'email', op.email,"
    " 'language', op.language) ORDER BY op.name) FROM observers o JOIN people op ON op.id = o.person_id"
    " WHERE o.convoy_id = v.id AND o.removed_at IS NULL) AS observers,"
    " p.id AS person_id, m.company_id, c.name AS company_name, p.name, p.email, p.language"
    " FROM convoys v LEFT JOIN (memberships m JOIN people p ON p.id = m.person_id"
    " JOIN companies c ON c.id = m.company_id) ON m.convoy_id = v.id AND m.removed_at IS NULL"
)


async def recipients(conn: Conn, convoy_id: uuid.UUID) -> api.Recipients | None:
    """The convoy's name, language, chat channels and observers with its representatives' contacts, in one
    statement (a convoy without representatives gives one row whose member columns are null; one snapshot
    for all of it), and the recipients version read before them (migration 0013: the answer is at least
    that new)."""
    rows = await conn.fetch(RECIPIENTS_OF + " WHERE v.id = $1 ORDER BY c.name, p.name", convoy_id)
    return _recipients(rows) if rows else None


async def recipients_of(conn: Conn, convoy_ids: list[uuid.UUID]) -> dict[uuid.UUID, api.Recipients]:
    """:func:`recipients` of several convoys in one statement (one snapshot); the convoys that exist."""
    rows = await conn.fetch(
        RECIPIENTS_OF + " WHERE v.id = ANY($1::uuid[]) ORDER BY v.id, c.name, p.name", list(dict.fromkeys(convoy_ids))
    )
    by_convoy: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for row in rows:
        by_convoy.setdefault(row["convoy_id"], []).append(row)
    return {convoy_id: _recipients(found) for convoy_id, found in by_convoy.items()}


def _recipients(rows: list[asyncpg.Record]) -> api.Recipients:
    first = rows[0]
    return api.Recipients(
        convoy_id=first["convoy_id"],
        version=int(first["version"]),
        convoy_name=first["convoy_name"],
        language=first["convoy_language"],
        chats=msgspec.json.decode(first["chats"] or "[]", type=list[api.ChatTarget]),
        members=structs((r for r in rows if r["person_id"] is not None), api.Recipient),
        observers=msgspec.json.decode(first["observers"] or "[]", type=list[api.ObserverRecipient]),
    )


async def claim_form_key(conn: Conn, person_id: uuid.UUID, form_key: uuid.UUID, convoy_id: uuid.UUID) -> uuid.UUID:
    """Record that ``form_key`` creates ``convoy_id``; if it was sent before, the convoy it created then."""
    claimed = await conn.fetchval(
        "INSERT INTO convoy_form_keys (person_id, form_key, convoy_id) VALUES ($1, $2, $3)"
        " ON CONFLICT (person_id, form_key) DO NOTHING RETURNING convoy_id",
        person_id,
        form_key,
        convoy_id,
    )
    if claimed is not None:
        return uuid.UUID(str(claimed))
    first = await conn.fetchval(
        "SELECT convoy_id FROM convoy_form_keys WHERE person_id = $1 AND form_key = $2", person_id, form_key
    )
    return uuid.UUID(str(first))


# --- invitations ---------------------------------------------------------------------------------
async def invitations_to(conn: Conn, email: str, since: datetime) -> int:
    count = await conn.fetchval(
        "SELECT count(*) FROM invitations WHERE lower(email) = lower($1) AND created_at > $2", email, since
    )
    return int(count)


async def revoke_pending_invitations(conn: Conn, convoy_id: uuid.UUID, email: str) -> None:
    await conn.execute(
        "UPDATE invitations SET revoked_at = now() WHERE convoy_id = $1 AND lower(email) = lower($2)"
        " AND accepted_at IS NULL AND revoked_at IS NULL",
        convoy_id,
        email,
    )


async def insert_invitation(
    conn: Conn,
    *,
    token_hash: bytes,
    convoy_id: uuid.UUID,
    company_id: uuid.UUID | None,
    invitation: api.NewInvitation | api.NewObserverInvitation,
    invited_by: uuid.UUID | None,
    expires_at: datetime,
) -> api.Invitation:
    observer = isinstance(invitation, api.NewObserverInvitation)
    row = await conn.fetchrow(
        "INSERT INTO invitations (id, token_hash, convoy_id, company_id, email, name, language, invited_by,"
        " expires_at, role, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *",
        uuid.uuid4(),
        token_hash,
        convoy_id,
        company_id,
        invitation.email,
        invitation.name,
        invitation.language,
        invited_by,
        expires_at,
        "observer" if observer else "representative",
        invitation.note if isinstance(invitation, api.NewObserverInvitation) else "",
    )
    assert row is not None
    return struct(row, api.Invitation)


async def invitation_by_token(conn: Conn, token_hash: bytes, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT i.*, c.name AS convoy_name, c.status AS convoy_status, coalesce(co.name, '') AS company_name,"
        " co.removed_at AS company_removed_at, c.language AS convoy_language, c.charter_text, c.charter_version"
        " FROM invitations i JOIN convoys c ON c.id = i.convoy_id LEFT JOIN companies co ON co.id = i.company_id"
        " WHERE i.token_hash = $1" + (" FOR UPDATE OF i" if lock else ""),
        token_hash,
    )


async def pending_invitations(conn: Conn, convoy_id: uuid.UUID) -> list[api.PendingInvitation]:
    """Invitations of the convoy neither accepted nor withdrawn (expired ones too: they may be resent)."""
    rows = await conn.fetch(
        "SELECT i.*, coalesce(co.name, '') AS company_name FROM invitations i"
        " LEFT JOIN companies co ON co.id = i.company_id"
        " WHERE i.convoy_id = $1 AND i.accepted_at IS NULL AND i.revoked_at IS NULL AND co.removed_at IS NULL"
        " ORDER BY i.created_at DESC LIMIT 500",
        convoy_id,
    )
    return structs(rows, api.PendingInvitation)


async def invitation_row(conn: Conn, invitation_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT i.*, co.removed_at AS company_removed_at FROM invitations i"
        " LEFT JOIN companies co ON co.id = i.company_id WHERE i.id = $1 FOR UPDATE OF i",
        invitation_id,
    )


async def withdraw_invitation(conn: Conn, invitation_id: uuid.UUID) -> None:
    await conn.execute("UPDATE invitations SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", invitation_id)


async def accept_invitation(conn: Conn, invitation_id: uuid.UUID, person_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE invitations SET accepted_at = now(), accepted_by = $2 WHERE id = $1", invitation_id, person_id
    )


# --- join requests -------------------------------------------------------------------------------
async def join_requests_from(conn: Conn, email: str, since: datetime) -> int:
    count = await conn.fetchval(
        "SELECT count(*) FROM join_requests WHERE lower(contact_email) = lower($1) AND created_at > $2",
        email,
        since,
    )
    return int(count)


async def insert_join_request(conn: Conn, convoy_id: uuid.UUID, r: api.NewJoinRequest) -> api.JoinRequest:
    row = await conn.fetchrow(
        "INSERT INTO join_requests (id, convoy_id, company_name, sector, size_class, region, contact_name,"
        " contact_email, contact_language, message) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
        uuid.uuid4(),
        convoy_id,
        r.company.name,
        r.company.sector,
        r.company.size_class,
        r.company.region,
        r.contact_name,
        r.contact_email,
        r.contact_language,
        r.message,
    )
    return join_request(row)


async def join_request_row(conn: Conn, request_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM join_requests WHERE id = $1" + (" FOR UPDATE" if lock else ""), request_id
    )


async def list_join_requests(conn: Conn, convoy_id: uuid.UUID, status: str) -> list[api.JoinRequest]:
    rows = await conn.fetch(
        "SELECT * FROM join_requests WHERE convoy_id = $1 AND ($2 = 'all' OR status = $2)"
        " ORDER BY created_at DESC LIMIT 500",
        convoy_id,
        status,
    )
    return [join_request(r) for r in rows]


async def decide_join_request(
    conn: Conn,
    request_id: uuid.UUID,
    *,
    status: str,
    reason: str,
    decided_by: uuid.UUID | None,
    company_id: uuid.UUID | None,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "UPDATE join_requests SET status = $2, reason = $3, decided_by = $4, decided_at = now(), company_id = $5"
        " WHERE id = $1 RETURNING *",
        request_id,
        status,
        reason,
        decided_by,
        company_id,
    )
    assert row is not None
    return row


def join_request(row: asyncpg.Record | None) -> api.JoinRequest:
    assert row is not None
    return struct(row, api.JoinRequest)


# --- audit log -----------------------------------------------------------------------------------
async def audit(
    conn: Conn,
    *,
    convoy_id: uuid.UUID | None,
    actor: api.Actor,
    action: str,
    object_type: str,
    object_id: object,
    reason: str = "",
    details: dict[str, str] | None = None,
) -> None:
    """An audit entry for what ``actor`` does now (in the caller's transaction: stamped with its start)."""
    await audit_at(
        conn,
        at=None,
        convoy_id=convoy_id,
        actor_id=actor.person_id,
        action=action,
        object_type=object_type,
        object_id=object_id,
        reason=reason,
        details=details or {},
    )


async def audit_entries(conn: Conn, convoy_id: uuid.UUID, limit: int) -> list[api.AuditEntry]:
    rows = await conn.fetch("SELECT * FROM audit_log WHERE convoy_id = $1 ORDER BY id DESC LIMIT $2", convoy_id, limit)
    return [
        struct(
            r,
            api.AuditEntry,
            details=msgspec.json.decode(r["details"]) if isinstance(r["details"], str) else r["details"],
        )
        for r in rows
    ]


# --- moderation (content.moderated from services/milestones) -------------------------------------
async def audit_at(
    conn: Conn,
    *,
    at: datetime | None,
    convoy_id: uuid.UUID | None,
    actor_id: uuid.UUID | None,
    action: str,
    object_type: str,
    object_id: object,
    reason: str,
    details: dict[str, str],
) -> None:
    """An audit entry for something another service did at ``at`` (recorded once per event by its consumer);
    ``at=None``: now (the column's default, the transaction's start)."""
    await conn.execute(
        "INSERT INTO audit_log (at, convoy_id, actor_id, action, object_type, object_id, reason, details)"
        " VALUES (coalesce($1, now()), $2, $3, $4, $5, $6, $7, $8::jsonb)",
        at,
        convoy_id,
        actor_id,
        action,
        object_type,
        str(object_id),
        reason,
        msgspec.json.encode(details).decode(),
    )


async def company_name_any(conn: Conn, company_id: uuid.UUID) -> str | None:
    """The company's name, also after it left its convoy."""
    value = await conn.fetchval("SELECT name FROM companies WHERE id = $1", company_id)
    return value  # type: ignore[no-any-return]


# --- data protection: export and erasure of one person -------------------------------------------
def _records(rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        record = dict(r)
        for key, value in record.items():
            if key == "details" and isinstance(value, str):
                record[key] = msgspec.json.decode(value)
        out.append(record)
    return out


async def personal_records(conn: Conn, person_id: uuid.UUID) -> dict[str, list[dict[str, Any]]] | None:
    """Everything services/convoys stores about a person (secrets never: no token or hash)."""
    person = await conn.fetchrow(
        "SELECT id, name, email, language, timezone, is_admin, is_facilitator, created_at, updated_at"
        " FROM people WHERE id = $1 AND erased_at IS NULL",
        person_id,
    )
    if person is None:
        return None
    memberships = await conn.fetch(
        "SELECT m.convoy_id, c.name AS convoy_name, m.company_id, co.name AS company_name,"
        " 'representative' AS role, '' AS note, m.created_at, m.removed_at, m.removed_reason"
        " FROM memberships m JOIN convoys c ON c.id = m.convoy_id JOIN companies co ON co.id = m.company_id"
        " WHERE m.person_id = $1"
        " UNION ALL SELECT f.convoy_id, c.name, NULL, NULL, 'facilitator', '', f.added_at, NULL, NULL"
        " FROM convoy_facilitators f JOIN convoys c ON c.id = f.convoy_id WHERE f.person_id = $1"
        " UNION ALL SELECT o.convoy_id, c.name, o.company_id, co.name, 'observer', o.note, o.created_at, o.removed_at,"
        " o.removed_reason FROM observers o JOIN convoys c ON c.id = o.convoy_id"
        " LEFT JOIN companies co ON co.id = o.company_id WHERE o.person_id = $1"
        " ORDER BY created_at",
        person_id,
    )
    invitations = await conn.fetch(
        "SELECT i.id, i.convoy_id, c.name AS convoy_name, i.company_id, co.name AS company_name, i.role, i.note,"
        " i.email, i.name, i.language, i.created_at, i.expires_at, i.accepted_at, i.revoked_at"
        " FROM invitations i JOIN convoys c ON c.id = i.convoy_id LEFT JOIN companies co ON co.id = i.company_id"
        " WHERE lower(i.email) = lower($2) OR i.accepted_by = $1 ORDER BY i.created_at",
        person_id,
        person["email"],
    )
    join_requests = await conn.fetch(
        "SELECT j.id, j.convoy_id, c.name AS convoy_name, j.company_name, j.contact_name, j.contact_email,"
        " j.contact_language, j.message, j.status, j.reason, j.created_at, j.decided_at"
        " FROM join_requests j JOIN convoys c ON c.id = j.convoy_id"
        " WHERE lower(j.contact_email) = lower($1) ORDER BY j.created_at",
        person["email"],
    )
    pool_requests = await conn.fetch(
        "SELECT id, theme, company_name, sector, size_class, region, contact_name, contact_email,"
        " contact_language, message, consent_at, status, convoy_id, created_at"
        " FROM pool_requests WHERE lower(contact_email) = lower($1) ORDER BY created_at",
        person["email"],
    )
    tokens = await conn.fetch(
        "SELECT id, name, scope, created_at, expires_at, last_used_at, revoked_at FROM api_tokens WHERE person_id = $1"
        " ORDER BY created_at",
        person_id,
    )
    feeds = await conn.fetch(
        "SELECT id, created_at, last_used_at, revoked_at FROM calendar_feeds WHERE person_id = $1 ORDER BY created_at",
        person_id,
    )
    sessions = await conn.fetch(
        "SELECT kind, count(*) AS live FROM sessions"
        " WHERE person_id = $1 AND revoked_at IS NULL AND expires_at > now() GROUP BY kind ORDER BY kind",
        person_id,
    )
    audit = await conn.fetch(
        "SELECT id, at, convoy_id, actor_id, action, object_type, object_id, reason, details FROM audit_log"
        " WHERE actor_id = $1 OR (object_type = 'person' AND object_id = $2) ORDER BY id",
        person_id,
        str(person_id),
    )
    return {
        "person": _records([person]),
        "memberships": _records(memberships),
        "invitations": _records(invitations),
        "join_requests": _records(join_requests),
        "pool_requests": _records(pool_requests),
        "api_tokens": _records(tokens),
        "calendar_feeds": _records(feeds),
        "sessions": _records(sessions),
        "audit_entries": _records(audit),
    }


async def person_for_erasure(conn: Conn, person_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM people WHERE id = $1 AND erased_at IS NULL FOR UPDATE", person_id)


async def all_memberships(conn: Conn, person_id: uuid.UUID) -> list[asyncpg.Record]:
    """Every membership, oldest first (``active``: not removed)."""
    return await conn.fetch(
        "SELECT id, convoy_id, company_id, removed_at IS NULL AS active FROM memberships WHERE person_id = $1"
        " ORDER BY created_at, id",
        person_id,
    )


async def end_observer_seats(conn: Conn, person_id: uuid.UUID, reason: str) -> list[uuid.UUID]:
    """End every active observer seat of the person (their note goes too); return the convoys."""
    rows = await conn.fetch(
        "UPDATE observers SET removed_at = now(), removed_reason = $2"
        " WHERE person_id = $1 AND removed_at IS NULL RETURNING convoy_id",
        person_id,
        reason,
    )
    await conn.execute("UPDATE observers SET note = '' WHERE person_id = $1", person_id)
    return [r["convoy_id"] for r in rows]


async def leave_all_convoys_as_facilitator(conn: Conn, person_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await conn.fetch("DELETE FROM convoy_facilitators WHERE person_id = $1 RETURNING convoy_id", person_id)
    return [r["convoy_id"] for r in rows]


async def erase_person(conn: Conn, person: asyncpg.Record, email_hash: bytes, reason: str) -> None:
    """Erase a person's personal data in every table of services/convoys; the row stays as an anonymous id."""
    person_id, email = person["id"], person["email"]
    await conn.execute("DELETE FROM sessions WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM sign_in_links WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM api_tokens WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM calendar_feeds WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM sign_in_requests WHERE email_hash = $1", email_hash)
    await conn.execute(
        "UPDATE invitations SET email = '', name = '', note = '', revoked_at = coalesce(revoked_at, now())"
        " WHERE lower(email) = lower($2) OR accepted_by = $1",
        person_id,
        email,
    )
    await conn.execute(
        "UPDATE join_requests SET contact_name = '', contact_email = '', message = '',"
        " status = CASE WHEN status = 'pending' THEN 'declined' ELSE status END,"
        " reason = CASE WHEN status = 'pending' THEN $2 ELSE reason END,"
        " decided_at = coalesce(decided_at, now())"
        " WHERE lower(contact_email) = lower($1)",
        email,
        reason,
    )
    await conn.execute(  # the formation pool (digitalisation check): contact gone, waiting ones withdrawn
        "UPDATE pool_requests SET contact_name = '', contact_email = '', message = '',"
        " status = CASE WHEN status = 'waiting' THEN 'withdrawn' ELSE status END"
        " WHERE lower(contact_email) = lower($1)",
        email,
    )
    await conn.execute(
        "UPDATE people SET name = '', email = 'erased-' || id::text, is_admin = false, is_facilitator = false,"
        " erased_at = now(), updated_at = now() WHERE id = $1",
        person_id,
    )


# --- flags and charter ---------------------------------------------------------------------------
async def set_charter(conn: Conn, convoy_id: uuid.UUID, text: str) -> asyncpg.Record:
    """A facilitator's text: a new version. Returns the convoy row after."""
    row = await conn.fetchrow(
        "UPDATE convoys SET charter_text = $2, charter_version = charter_version + 1, charter_updated_at = now(),"
        " updated_at = now() WHERE id = $1 RETURNING *",
        convoy_id,
        text,
    )
    assert row is not None
    return row


async def accept_charter(conn: Conn, membership_id: int, version: int) -> None:
    await conn.execute(
        "UPDATE memberships SET charter_version = greatest(charter_version, $2), charter_accepted_at = now()"
        " WHERE id = $1",
        membership_id,
        version,
    )


async def membership(conn: Conn, person_id: uuid.UUID, convoy_id: uuid.UUID) -> asyncpg.Record:
    """The person's part in the convoy in one round trip (services/milestones' charter check asks it when
    its projection of charters does not say "accepted"):
    ``company_id`` and ``company_name`` of their active membership (null: none; at most one, see the
    unique index ``memberships_active``), ``charter_accepted`` (null without a membership) and
    ``facilitator`` (as :func:`facilitates`). Whether their membership's accepted charter version is
    the convoy's current one (``charter_version``, null without a membership) is read in the same
    statement, so a charter change binds at once."""
    row = await conn.fetchrow(
        "SELECT m.company_id, co.name AS company_name, m.charter_version >= c.charter_version AS charter_accepted,"
        " c.charter_version,"
        " EXISTS (SELECT 1 FROM convoy_facilitators f WHERE f.person_id = $1 AND f.convoy_id = $2) AS facilitator,"
        " EXISTS (SELECT 1 FROM observers o WHERE o.person_id = $1 AND o.convoy_id = $2 AND o.removed_at IS NULL)"
        " AS observer"
        " FROM (SELECT 1) AS one LEFT JOIN (memberships m JOIN convoys c ON c.id = m.convoy_id"
        " LEFT JOIN companies co ON co.id = m.company_id)"
        " ON m.person_id = $1 AND m.convoy_id = $2 AND m.removed_at IS NULL",
        person_id,
        convoy_id,
    )
    assert row is not None
    return row


async def flag_recipients(conn: Conn, convoy_id: uuid.UUID) -> tuple[str, list[asyncpg.Record]] | None:
    """The convoy's name and its facilitators' contacts (for an immediate notice of a flag)."""
    name = await conn.fetchval("SELECT name FROM convoys WHERE id = $1", convoy_id)
    if name is None:
        return None
    return name, await facilitator_contacts(conn, convoy_id)
