"""Issue #19: personal API tokens expire (default 90 days, the creator's choice up to a maximum), have a
scope (``read`` tokens only read) and a last-used date written at most every few minutes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from tests.conftest import TOKEN_CACHE_S, SmtpSink, eventually
from tests.test_pages import signed_in
from tests.world import bearer, build_world


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_defaults_choice_and_maximum_of_the_expiry(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    anna = world.reps["a"]
    now = datetime.now(UTC)
    r = await client.post("/api/v1/me/tokens", json={"name": "Skript"}, headers=anna.auth)
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert token["scope"] == "read-write"
    assert abs(_when(token["expires_at"]) - (now + timedelta(days=90))) < timedelta(minutes=1)
    r = await client.post("/api/v1/me/tokens", json={"name": "Kurz", "expires_in_days": 7}, headers=anna.auth)
    assert r.status_code == 201
    assert abs(_when(r.json()["token"]["expires_at"]) - (now + timedelta(days=7))) < timedelta(minutes=1)
    for days in (366, 0, -1):
        r = await client.post("/api/v1/me/tokens", json={"name": "Ewig", "expires_in_days": days}, headers=anna.auth)
        assert r.status_code == 400 and "expires_in_days" in r.json()["detail"], r.text
    r = await client.post("/api/v1/me/tokens", json={"name": "X", "scope": "admin"}, headers=anna.auth)
    assert r.status_code == 400 and "scope" in r.json()["detail"]
    listed = (await client.get("/api/v1/me/tokens", headers=anna.auth)).json()["tokens"]
    assert sorted((t["name"], t["scope"]) for t in listed) == [("Kurz", "read-write"), ("Skript", "read-write")]


async def test_a_read_token_reads_and_changes_nothing(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    anna = world.reps["a"]
    cid = world.convoy_id
    r = await client.post("/api/v1/me/tokens", json={"name": "Dashboard", "scope": "read"}, headers=anna.auth)
    assert r.status_code == 201 and r.json()["token"]["scope"] == "read"
    reader = bearer(r.json()["secret"])
    assert (await client.get(f"/api/v1/convoys/{cid}", headers=reader)).status_code == 200
    assert (await client.get("/api/v1/me", headers=reader)).status_code == 200
    refused = [
        await client.post(f"/api/v1/convoys/{cid}/reports", json={"done": "Skript"}, headers=reader),
        await client.patch("/api/v1/me", json={"name": "Anna M."}, headers=reader),
        await client.post("/api/v1/me/tokens", json={"name": "mehr"}, headers=reader),
        await client.delete(f"/api/v1/me/tokens/{r.json()['token']['id']}", headers=reader),
    ]
    for x in refused:
        assert x.status_code == 403 and "read-only" in x.json()["detail"], x.text
    # Nothing was written: no report, the name unchanged, the token still there.
    reports = await client.get(f"/api/v1/convoys/{cid}/reports", headers=anna.auth)
    assert reports.status_code == 200 and reports.json()["reports"] == []
    me = (await client.get("/api/v1/me", headers=anna.auth)).json()
    assert me["person"]["name"] == "Anna Müller"
    assert [t["name"] for t in (await client.get("/api/v1/me/tokens", headers=anna.auth)).json()["tokens"]] == [
        "Dashboard"
    ]
    # A read-write token writes.
    r = await client.post("/api/v1/me/tokens", json={"name": "Skript"}, headers=anna.auth)
    writer = bearer(r.json()["secret"])
    r = await client.patch("/api/v1/me", json={"name": "Anna M."}, headers=writer)
    assert r.status_code == 200, r.text


async def test_expired_tokens_are_refused_and_last_use_is_kept_coarse(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, settings: Any
) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    anna = world.reps["a"]
    expired = (await client.post("/api/v1/me/tokens", json={"name": "Alt"}, headers=anna.auth)).json()
    used = (await client.post("/api/v1/me/tokens", json={"name": "Skript"}, headers=anna.auth)).json()
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "UPDATE convoys.api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1",
            expired["token"]["id"],
        )
        r = await client.get("/api/v1/me", headers=bearer(expired["secret"]))
        assert r.status_code == 401
        names = [t["name"] for t in (await client.get("/api/v1/me/tokens", headers=anna.auth)).json()["tokens"]]
        assert names == ["Skript"]  # an expired token is no longer listed

        async def last_used() -> datetime | None:
            value: datetime | None = await conn.fetchval(
                "SELECT last_used_at FROM convoys.api_tokens WHERE id = $1", used["token"]["id"]
            )
            return value

        assert await last_used() is None
        assert (await client.get("/api/v1/me", headers=bearer(used["secret"]))).status_code == 200
        first = await last_used()
        assert first is not None
        # Used again after the API's token cache let it go: within minutes, not written again.
        await asyncio.sleep(TOKEN_CACHE_S + 0.1)
        assert (await client.get("/api/v1/me", headers=bearer(used["secret"]))).status_code == 200
        assert await last_used() == first
        # Once the recorded use is older than a few minutes, the next resolve records the new one.
        await conn.execute(
            "UPDATE convoys.api_tokens SET last_used_at = now() - interval '10 minutes' WHERE id = $1",
            used["token"]["id"],
        )

        async def recorded() -> bool:
            assert (await client.get("/api/v1/me", headers=bearer(used["secret"]))).status_code == 200
            value = await last_used()
            return value is not None and value > datetime.now(UTC) - timedelta(minutes=1)

        await eventually(recorded, timeout=TOKEN_CACHE_S + 2)
    finally:
        await conn.close()


async def test_the_profile_shows_scope_expiry_and_last_use(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, browsers: list[httpx.AsyncClient]
) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    anna, csrf = await signed_in(client, smtp_sink, browsers, world.reps["a"].email)
    r = await anna.post(
        "/profile/tokens", data={"name": "Tabelle", "scope": "read", "expires_in_days": "30", "_csrf": csrf}
    )
    assert r.status_code == 200 and "<code>cvy_" in r.text, r.text[:500]
    # Anna's language is German: the table names the scope, the expiry (in 30 days) and no use yet.
    expiry = (datetime.now(UTC) + timedelta(days=30)).astimezone(ZoneInfo("Europe/Berlin")).strftime("%d.%m.%Y")
    row = r.text[r.text.index(">Tabelle</td>") :].split("</tr>")[0]
    assert "Nur lesen" in row and expiry in row and "Nie" in row, row
    assert "Zuletzt benutzt" in r.text and "Läuft ab" in r.text
    r = await anna.post("/profile/tokens", data={"name": "Zu lang", "expires_in_days": "9999", "_csrf": csrf})
    assert r.status_code == 400 and "365" in r.text
    tokens = (await client.get("/api/v1/me/tokens", headers=world.reps["a"].auth)).json()["tokens"]
    assert [(t["name"], t["scope"]) for t in tokens] == [("Tabelle", "read")]
