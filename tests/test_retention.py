"""When a company leaves (issue #8): its representatives' notifications stop at once, and its
content follows the convoy's retention rule (kept, or removed N days after it left)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import msgspec

from schemas import api
from schemas.milestones import Milestones
from tests.conftest import SmtpSink, Stack, eventually, settled
from tests.world import World, build_world


async def purge(stack: Stack, now: datetime) -> api.Purged:
    msg = await stack.nc.request(
        stack.subjects.operation(Milestones.RETENTION_PURGE),
        msgspec.json.encode(api.RetentionPurge(now=now)),
        timeout=10,
    )
    return msgspec.json.decode(msg.data, type=api.Purged)


async def remove_company(client: httpx.AsyncClient, world: World, key: str) -> None:
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/companies/{world.reps[key].company_id}/removal",
        json={"reason": "Betrieb aufgegeben"},
        headers=world.facilitator,
    )
    assert r.status_code == 200, r.text


async def left_in_milestones(stack: Stack, company_id: str) -> datetime:
    """When services/milestones saw the company leave (its projection is updated by an event)."""
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        left_at: datetime = await eventually(
            lambda: conn.fetchval("SELECT left_at FROM milestones.companies WHERE company_id = $1::uuid", company_id)
        )
        return left_at
    finally:
        await conn.close()


async def test_a_company_that_left_gets_no_more_notifications(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    a, b, c = world.reps["a"], world.reps["b"], world.reps["c"]
    await remove_company(client, world, "b")
    await smtp_sink.wait_for_mail_to(b.email, 2)  # the invitation, then the notice of the removal
    before = len(smtp_sink.to(b.email))

    r = await client.post(f"/api/v1/convoys/{world.convoy_id}/reports", json={"done": "Neu", "mood": 4}, headers=a.auth)
    assert r.status_code == 201, r.text
    await smtp_sink.wait_for_subject(c.email, "Sanitär Müller")  # the remaining peer hears of it ...
    await settled(stack)
    assert len(smtp_sink.to(b.email)) == before  # ... the company that left does not
    # Its representative can no longer read the convoy either.
    assert (await client.get(f"/api/v1/convoys/{world.convoy_id}/timeline", headers=b.auth)).status_code == 404


async def test_the_retention_rule_removes_a_departed_companys_content_after_n_days(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    assert world.convoy["retention_days"] is None  # the default keeps content
    r = await client.patch(f"/api/v1/convoys/{world.convoy_id}", json={"retention_days": 30}, headers=world.facilitator)
    assert r.status_code == 200 and r.json()["retention_days"] == 30, r.text
    a, b = world.reps["a"], world.reps["b"]
    base = f"/api/v1/convoys/{world.convoy_id}"
    r = await client.put(
        f"{base}/companies/{b.company_id}/project",
        json={"title": "Webshop", "project_type": "online_booking"},
        headers=b.auth,
    )
    assert r.status_code == 200, r.text
    report_a = (await client.post(f"{base}/reports", json={"done": "A berichtet"}, headers=a.auth)).json()
    report_b = (await client.post(f"{base}/reports", json={"done": "B berichtet"}, headers=b.auth)).json()
    on_b = await client.post(f"/api/v1/reports/{report_b['id']}/comments", json={"body": "Toll, B!"}, headers=a.auth)
    by_b = await client.post(f"/api/v1/reports/{report_a['id']}/comments", json={"body": "Von B"}, headers=b.auth)
    assert on_b.status_code == 201 and by_b.status_code == 201
    answer = await client.post(
        f"/api/v1/reports/{report_a['id']}/comments",
        json={"body": "Antwort an B", "parent_id": by_b.json()["id"]},
        headers=a.auth,
    )
    assert answer.status_code == 201, answer.text
    kept = await client.post(f"/api/v1/reports/{report_a['id']}/comments", json={"body": "Bleibt"}, headers=a.auth)
    assert kept.status_code == 201
    assert (await client.put(f"/api/v1/reports/{report_a['id']}/kudos", headers=b.auth)).status_code == 200

    await remove_company(client, world, "b")
    left_at = await left_in_milestones(stack, b.company_id)
    # Until the time is up nothing goes; after it, the company's content does, once.
    assert await purge(stack, left_at + timedelta(days=29)) == api.Purged(companies=0, reports=0, comments=0)
    assert (await client.get(f"/api/v1/reports/{report_b['id']}", headers=world.facilitator)).status_code == 200
    assert await purge(stack, left_at + timedelta(days=30, seconds=1)) == api.Purged(companies=1, reports=1, comments=3)
    assert await purge(stack, left_at + timedelta(days=400)) == api.Purged(companies=0, reports=0, comments=0)

    assert (await client.get(f"/api/v1/reports/{report_b['id']}", headers=world.facilitator)).status_code == 404
    timeline = (await client.get(f"{base}/timeline", headers=a.auth)).json()
    assert [r["id"] for r in timeline["reports"]] == [report_a["id"]]
    report = (await client.get(f"/api/v1/reports/{report_a['id']}", headers=a.auth)).json()
    assert report["kudos"] == 0 and report["comments"] == 1
    comments = (await client.get(f"/api/v1/reports/{report_a['id']}/comments", headers=a.auth)).json()["comments"]
    assert [c["body"] for c in comments] == ["Bleibt"]
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        for table in ("reports", "projects", "milestones", "commitments", "help_offers"):
            count = await conn.fetchval(
                f"SELECT count(*) FROM milestones.{table} WHERE company_id = $1::uuid", b.company_id
            )
            assert count == 0, table
    finally:
        await conn.close()


async def test_without_a_retention_rule_a_departed_companys_content_stays(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    r = await client.post(
        "/api/v1/convoys", json={"name": "Mit Frist", "retention_days": 90}, headers=world.facilitator
    )
    assert r.status_code == 201 and r.json()["retention_days"] == 90, r.text
    b = world.reps["b"]
    report_b = (
        await client.post(f"/api/v1/convoys/{world.convoy_id}/reports", json={"done": "B berichtet"}, headers=b.auth)
    ).json()
    await remove_company(client, world, "b")
    left_at = await left_in_milestones(stack, b.company_id)
    assert await purge(stack, left_at + timedelta(days=3650)) == api.Purged(companies=0, reports=0, comments=0)
    r = await client.get(f"/api/v1/reports/{report_b['id']}", headers=world.reps["a"].auth)
    assert r.status_code == 200 and r.json()["done"] == "B berichtet"
    assert datetime.now(UTC) > left_at
