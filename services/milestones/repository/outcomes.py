"""Outcomes of project types, aggregated for the digitalisation check (services/milestones/outcomes.py)."""

from __future__ import annotations

import uuid
from datetime import date

import asyncpg

Conn = asyncpg.Connection


async def project_type_outcomes(
    conn: Conn,
    convoy_ids: list[uuid.UUID],
    types: list[str],
    go_live_keys: list[str],
    start: date | None,
    end: date | None,
) -> list[asyncpg.Record]:
    """Per project type over the convoys' projects: companies, go-lives (in the period, if any) and the
    median weeks from the convoy's start to go-live. The caller suppresses small groups."""
    return await conn.fetch(
        "WITH k AS (SELECT * FROM unnest($2::text[], $3::text[]) AS k(project_type, go_live_key)),"
        " live AS (SELECT p.project_type, p.company_id,"
        "   greatest(0, extract(epoch FROM min(m.completed_at) - c.start_date::timestamptz) / 604800.0) AS weeks"
        "   FROM projects p JOIN k ON k.project_type = p.project_type JOIN convoys c ON c.convoy_id = p.convoy_id"
        "   JOIN milestones m ON m.project_id = p.id AND m.catalogue_key = k.go_live_key AND m.status = 'done'"
        "     AND m.removed_at IS NULL AND m.completed_at IS NOT NULL"
        "     AND ($4::date IS NULL OR m.completed_at >= $4::date)"
        "     AND ($5::date IS NULL OR m.completed_at < $5::date + 1)"
        "   WHERE p.convoy_id = ANY($1::uuid[]) GROUP BY p.project_type, p.company_id, c.start_date)"
        " SELECT k.project_type,"
        "  (SELECT count(*) FROM projects p WHERE p.convoy_id = ANY($1::uuid[]) AND p.project_type = k.project_type)"
        "    AS companies,"
        "  (SELECT count(*) FROM live WHERE live.project_type = k.project_type) AS went_live,"
        "  (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY weeks) FROM live"
        "    WHERE live.project_type = k.project_type) AS median_weeks"
        " FROM k",
        convoy_ids,
        types,
        go_live_keys,
        start,
        end,
    )


async def convoy_outcomes(
    conn: Conn, convoy_ids: list[uuid.UUID], go_live_keys: list[str], start: date, end: date
) -> list[asyncpg.Record]:
    """Per convoy in the period: active companies, companies that reported, reports, milestones done, go-lives."""
    return await conn.fetch(
        "SELECT c.convoy_id,"
        " (SELECT count(*) FROM companies co WHERE co.convoy_id = c.convoy_id AND co.active) AS companies,"
        " (SELECT count(DISTINCT r.company_id) FROM reports r WHERE r.convoy_id = c.convoy_id AND r.hidden_at IS NULL"
        "   AND r.submitted_at >= $3::date AND r.submitted_at < $4::date + 1) AS companies_reporting,"
        " (SELECT count(*) FROM reports r WHERE r.convoy_id = c.convoy_id AND r.hidden_at IS NULL"
        "   AND r.submitted_at >= $3::date AND r.submitted_at < $4::date + 1) AS reports,"
        " (SELECT count(*) FROM milestones m WHERE m.convoy_id = c.convoy_id AND m.status = 'done'"
        "   AND m.removed_at IS NULL AND m.completed_at >= $3::date AND m.completed_at < $4::date + 1)"
        "   AS milestones_done,"
        " (SELECT count(*) FROM milestones m WHERE m.convoy_id = c.convoy_id AND m.status = 'done'"
        "   AND m.removed_at IS NULL AND m.catalogue_key = ANY($2::text[])"
        "   AND m.completed_at >= $3::date AND m.completed_at < $4::date + 1) AS go_lives"
        " FROM unnest($1::uuid[]) AS c(convoy_id)",
        convoy_ids,
        go_live_keys,
        start,
        end,
    )
