"""services.runtime.db.struct: a row of the real database becomes a reply struct by msgspec."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import asyncpg
import msgspec
import pytest

from schemas import api
from services.runtime.db import struct, structs


async def test_a_row_becomes_a_struct_by_field_name(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        milestone_id = uuid.uuid4()
        rows = await conn.fetch(
            "SELECT $1::uuid AS id, 'Go live' AS title, $2::date AS target_date, 3 AS weight, 0 AS position,"
            " 'done' AS status, NULL::text AS catalogue_key, $3::timestamptz AS completed_at,"
            " 'not a field' AS project_id",  # a column without a field is left out
            milestone_id,
            date(2026, 3, 2),
            datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
        )
        [m] = structs(rows, api.Milestone)
        assert m == api.Milestone(
            id=milestone_id,
            title="Go live",
            target_date=date(2026, 3, 2),
            weight=3,
            position=0,
            status="done",
            catalogue_key=None,
            completed_at=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
        )
        # Fields computed outside SQL come as keywords and win over a column of the same name.
        row = await conn.fetchrow(
            "SELECT $1::uuid AS id, 'x' AS text, NULL::text AS outcome, 'old' AS note", milestone_id
        )
        assert row is not None
        assert struct(row, api.Commitment, note="new") == api.Commitment(
            id=milestone_id, text="x", outcome=None, note="new"
        )
        # A column of the wrong type (or a missing one) is an error, not a struct with a wrong value.
        wrong = await conn.fetchrow(
            "SELECT $1::uuid AS id, 42 AS text, NULL::text AS outcome, '' AS note", milestone_id
        )
        assert wrong is not None
        with pytest.raises(msgspec.ValidationError, match="text"):
            struct(wrong, api.Commitment)
        missing = await conn.fetchrow("SELECT $1::uuid AS id, 'x' AS text", milestone_id)
        assert missing is not None
        with pytest.raises(msgspec.ValidationError, match="outcome"):
            struct(missing, api.Commitment)
    finally:
        await conn.close()
