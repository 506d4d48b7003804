"""All SQL of services/convoys."""

from __future__ import annotations

import uuid

import asyncpg

from schemas import api

Conn = asyncpg.Connection


async def insert_convoy(conn: Conn, convoy_id: uuid.UUID, c: api.NewConvoy) -> api.Convoy:
    row = await conn.fetchrow(
        "INSERT INTO convoys (id, name, theme, description, timezone, language)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        convoy_id,
        c.name,
        c.theme,
        c.description,
        c.timezone,
        c.language,
    )
    return _convoy(row, [])


async def get_convoy(conn: Conn, convoy_id: uuid.UUID) -> api.Convoy | None:
    row = await conn.fetchrow("SELECT * FROM convoys WHERE id = $1", convoy_id)
    if row is None:
        return None
    companies = await conn.fetch(
        "SELECT * FROM companies WHERE convoy_id = $1 ORDER BY created_at, name", convoy_id
    )
    return _convoy(row, [_company(r) for r in companies])


async def insert_company(
    conn: Conn, company_id: uuid.UUID, convoy_id: uuid.UUID, c: api.NewCompany
) -> api.Company:
    row = await conn.fetchrow(
        "INSERT INTO companies (id, convoy_id, name, sector, region) VALUES ($1, $2, $3, $4, $5) RETURNING *",
        company_id,
        convoy_id,
        c.name,
        c.sector,
        c.region,
    )
    return _company(row)


async def get_company(conn: Conn, company_id: uuid.UUID) -> api.Company | None:
    row = await conn.fetchrow("SELECT * FROM companies WHERE id = $1", company_id)
    return None if row is None else _company(row)


async def upsert_person(conn: Conn, r: api.NewRepresentative) -> tuple[uuid.UUID, str, str, str]:
    """The person with this email (created if new); returns (id, name, email, language)."""
    row = await conn.fetchrow(
        "INSERT INTO people (id, name, email, language) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT ((lower(email))) DO UPDATE SET email = people.email"
        " RETURNING id, name, email, language",
        uuid.uuid4(),
        r.name,
        r.email,
        r.language,
    )
    assert row is not None
    return row["id"], row["name"], row["email"], row["language"]


async def is_member_of_convoy(conn: Conn, person_id: uuid.UUID, convoy_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM memberships WHERE person_id = $1 AND convoy_id = $2", person_id, convoy_id
        )
    )


async def insert_membership(
    conn: Conn, person_id: uuid.UUID, company_id: uuid.UUID, convoy_id: uuid.UUID
) -> None:
    await conn.execute(
        "INSERT INTO memberships (person_id, company_id, convoy_id) VALUES ($1, $2, $3)",
        person_id,
        company_id,
        convoy_id,
    )


async def insert_token(conn: Conn, token_hash: bytes, person_id: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO api_tokens (token_hash, person_id) VALUES ($1, $2)", token_hash, person_id
    )


async def token_owner(conn: Conn, token_hash: bytes) -> uuid.UUID | None:
    value = await conn.fetchval(
        "SELECT person_id FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL", token_hash
    )
    return value  # type: ignore[no-any-return]


async def companies_of(conn: Conn, person_id: uuid.UUID, convoy_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await conn.fetch(
        "SELECT company_id FROM memberships WHERE person_id = $1 AND convoy_id = $2", person_id, convoy_id
    )
    return [r["company_id"] for r in rows]


async def recipients(conn: Conn, convoy_id: uuid.UUID) -> tuple[str, list[api.Recipient]] | None:
    name = await conn.fetchval("SELECT name FROM convoys WHERE id = $1", convoy_id)
    if name is None:
        return None
    rows = await conn.fetch(
        "SELECT p.id AS person_id, m.company_id, c.name AS company_name, p.name, p.email, p.language"
        " FROM memberships m JOIN people p ON p.id = m.person_id JOIN companies c ON c.id = m.company_id"
        " WHERE m.convoy_id = $1 ORDER BY c.name, p.name",
        convoy_id,
    )
    return name, [api.Recipient(**dict(r)) for r in rows]


def _company(row: asyncpg.Record | None) -> api.Company:
    assert row is not None
    return api.Company(
        id=row["id"], convoy_id=row["convoy_id"], name=row["name"], sector=row["sector"], region=row["region"]
    )


def _convoy(row: asyncpg.Record | None, companies: list[api.Company]) -> api.Convoy:
    assert row is not None
    return api.Convoy(
        id=row["id"],
        name=row["name"],
        theme=row["theme"],
        description=row["description"],
        timezone=row["timezone"],
        language=row["language"],
        status=row["status"],
        created_at=row["created_at"],
        companies=companies,
    )
