"""The convoy's Slack channel: webhook set by its facilitators, the compact digest posted once,
429 Retry-After honoured, a revoked webhook dropped. Slack is a real local HTTP server."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx

from tests.conftest import SlackStub, SmtpSink, Stack, eventually, settled
from tests.test_reports import post_report, sql
from tests.test_scheduler import active_convoy, tick


async def set_webhook(client: httpx.AsyncClient, world: Any, url: str | None) -> httpx.Response:
    return await client.put(
        f"/api/v1/convoys/{world.convoy_id}/slack", json={"webhook_url": url}, headers=world.facilitator
    )


async def test_the_webhook_is_set_by_facilitators_and_stays_secret(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, slack_stub: SlackStub
) -> None:
    world = await active_convoy(client, smtp_sink)
    r = await set_webhook(client, world, "https://evil.example/services/x")
    assert r.status_code == 400 and "webhook_url" in r.json()["detail"]
    r = await client.put(
        f"/api/v1/convoys/{world.convoy_id}/slack", json={"webhook_url": slack_stub.url()}, headers=world.reps["a"].auth
    )
    assert r.status_code == 403
    r = await set_webhook(client, world, slack_stub.url())
    assert r.status_code == 200 and r.json()["slack_configured"] is True
    member_view = await client.get(f"/api/v1/convoys/{world.convoy_id}", headers=world.reps["a"].auth)
    assert member_view.json()["slack_configured"] is True
    assert slack_stub.url() not in member_view.text


async def test_the_digest_reaches_the_channel_once_even_after_a_429(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, slack_stub: SlackStub, stack: Stack, settings: Any
) -> None:
    world = await active_convoy(client, smtp_sink)
    assert (await set_webhook(client, world, slack_stub.url())).status_code == 200
    await tick(stack, "2026-10-19T09:00:30+02:00")
    r = await post_report(client, world, "a", done="Termine <!channel> online")
    assert r.status_code == 201
    import uuid
    from datetime import datetime

    from tests.test_reports import sql

    await sql(
        settings,
        "UPDATE milestones.reports SET cycle_index = 0, submitted_at = $2 WHERE id = $1",
        uuid.UUID(r.json()["id"]),
        datetime.fromisoformat("2026-10-20T10:00+02:00"),
    )
    slack_stub.script.append((429, {"Retry-After": "1"}, "rate_limited"))
    await tick(stack, "2026-10-26T09:00:30+01:00")
    [post] = await slack_stub.wait_for(1, timeout=30)
    assert slack_stub.requests == 2  # the 429, then the post after waiting
    assert post["blocks"][0]["text"]["text"] == "Konvoi-Digest „Terminvergabe Nord“ \N{EN DASH} Runde 1"
    body = str(post["blocks"])
    assert "&lt;!channel&gt;" in body and "<!channel>" not in body
    await tick(stack, "2026-10-26T09:05+01:00")
    await settled(stack)
    assert len(slack_stub.posts) == 1


async def test_a_revoked_webhook_is_dropped(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, slack_stub: SlackStub, stack: Stack, settings: Any
) -> None:
    world = await active_convoy(client, smtp_sink)
    assert (await set_webhook(client, world, slack_stub.url())).status_code == 200
    await tick(stack, "2026-10-19T09:00:30+02:00")
    await post_report(client, world, "a", done="Fortschritt")
    await sql(
        settings,
        "UPDATE milestones.reports SET cycle_index = 0, submitted_at = $1",
        datetime.fromisoformat("2026-10-20T10:00+02:00"),
    )
    slack_stub.script.append((404, {}, "no_service"))
    await tick(stack, "2026-10-26T09:00:30+01:00")

    async def dropped() -> bool:
        r = await client.get(f"/api/v1/convoys/{world.convoy_id}", headers=world.facilitator)
        return r.json()["slack_configured"] is False

    await eventually(dropped, timeout=20)
    facilitator = (await client.get("/api/v1/me", headers=world.facilitator)).json()["person"]["email"]
    notice = await smtp_sink.wait_for_subject(facilitator, "Slack-Kanal von „Terminvergabe Nord“ abgeschaltet")
    assert "no_service" in str(notice.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    assert slack_stub.requests == 1 and slack_stub.posts == []
    audit = (await client.get(f"/api/v1/convoys/{world.convoy_id}/audit", headers=world.facilitator)).json()
    assert [e["details"]["configured"] for e in audit["entries"] if e["action"] == "convoy.slack_changed"] == [
        "no",
        "yes",
    ]
    _ = uuid


async def test_new_reports_are_posted_when_the_facilitator_asks(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, slack_stub: SlackStub, stack: Stack
) -> None:
    world = await active_convoy(client, smtp_sink)
    r = await client.put(
        f"/api/v1/convoys/{world.convoy_id}/slack",
        json={"webhook_url": slack_stub.url(), "post_reports": True},
        headers=world.facilitator,
    )
    assert r.status_code == 200
    r = await post_report(client, world, "a", done="Kalender *angebunden* <!here>", facilitator_note="geheim")
    assert r.status_code == 201
    [post] = await slack_stub.wait_for(1)
    body = str(post["blocks"])
    assert "Sanitär Müller" in body and "&lt;!here&gt;" in body and "geheim" not in body
    await settled(stack)
    assert len(slack_stub.posts) == 1
