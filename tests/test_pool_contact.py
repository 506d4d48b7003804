"""Issue #19: a contact who joins the formation pool from the check gets a confirmation email (once) with a
signed withdraw link that works without signing in (GET shows, POST deletes the contact); pool entries expire
after CONVOY_POOL_RETENTION_DAYS."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import msgspec

from notifier import render
from schemas.convoys import Convoys, PoolPurge, PoolPurged
from tests.conftest import SmtpSink, Stack, html_of, settled, text_of
from tests.test_check import every_table_mentioning, take_check
from tests.world import appoint_facilitator

SAME_SITE = {"Sec-Fetch-Site": "same-origin"}


async def join(client: httpx.AsyncClient, check_id: str, company: str, language: str = "de") -> str:
    email = f"kontakt-{uuid.uuid4().hex[:8]}@pool.example"
    r = await client.post(
        f"/api/v1/check/{check_id}/join",
        json={
            "theme": "online_booking",
            "company": {"name": company, "sector": "Sanitär", "region": "HH", "size_class": "1-9"},
            "contact_name": "Kim Kontakt",
            "contact_email": email,
            "contact_language": language,
            "message": "Bitte <b>anrufen</b>: 040 123",
            "consent": True,
        },
    )
    assert r.status_code == 202, r.text
    return email


def withdraw_path(text: str) -> str:
    found = re.search(r"https?://[^/\s]+(/check/withdraw/[A-Za-z0-9_.\-]+)", text)
    assert found, text
    return found.group(1)


async def pool_companies(client: httpx.AsyncClient, facilitator: dict[str, str]) -> list[str]:
    r = await client.get("/api/v1/pool", headers=facilitator)
    assert r.status_code == 200
    return sorted(e["company_name"] for e in r.json()["entries"])


async def test_the_contact_is_confirmed_once_and_withdraws_by_the_link(
    client: httpx.AsyncClient, stack: Stack, smtp_sink: SmtpSink
) -> None:
    facilitator = await appoint_facilitator(client, smtp_sink, f"pia-{uuid.uuid4().hex[:6]}@zentrum.example")
    check_id = (await take_check(client))["id"]
    email = await join(client, check_id, "Zögerlich Sanitär")
    [mail] = await smtp_sink.wait_for_mail_to(email)
    text, markup = text_of(mail), html_of(mail)
    assert "Online-Terminbuchung" in str(mail["Subject"])  # the theme's title, in the contact's language
    assert "180 Tagen" in text and render.why("message:pool_joined", "de") in " ".join(text.split())
    # Nothing the sender typed: the address is anyone's to enter.
    for typed in ("Zögerlich", "anrufen", "040 123"):
        assert typed not in text and typed not in markup
    assert mail["List-Unsubscribe"] is None
    path = withdraw_path(text)
    assert path in markup

    # Exactly once: one delivery under the request's key, one email, whatever is redelivered.
    await settled(stack)
    assert len(smtp_sink.to(email)) == 1
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        rows = await conn.fetch("SELECT key, status FROM notifier.deliveries WHERE recipient = $1", email)
        [(key, status)] = [(r["key"], r["status"]) for r in rows]
        assert key.startswith("message:pool_joined:") and status == "sent"
    finally:
        await conn.close()

    # GET shows what it is about and a button, and changes nothing (mail scanners open links).
    page = await client.get(path)
    assert page.status_code == 200
    assert "Online-Terminbuchung" in page.text and f'action="{path}"' in page.text and 'method="post"' in page.text
    assert await pool_companies(client, facilitator) == ["Zögerlich Sanitär"]

    # POST withdraws: the contact is deleted everywhere, the delivery log keeps its key but not the address.
    done = await client.post(path, headers=SAME_SITE)
    assert done.status_code == 200 and 'id="withdrawn"' in done.text
    assert await pool_companies(client, facilitator) == []
    await settled(stack)
    assert await every_table_mentioning(stack, "Zögerlich", email) == []
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        row = await conn.fetchrow("SELECT recipient, status FROM notifier.deliveries WHERE key = $1", key)
        assert row is not None and row["recipient"] == "erased" and row["status"] == "sent"
        audit = await conn.fetchval(
            "SELECT count(*) FROM convoys.audit_log WHERE action = 'pool.withdrawn' AND details->>'via' = 'email link'"
        )
        assert audit >= 1
    finally:
        await conn.close()
    # Again: nothing left, said so; a forged or altered link is not valid.
    again = await client.post(path, headers=SAME_SITE)
    assert again.status_code == 200 and 'id="withdrawn"' in again.text
    forged = path[:-3] + ("aaa" if not path.endswith("aaa") else "bbb")
    assert (await client.get(forged)).status_code == 404
    assert (await client.post(forged, headers=SAME_SITE)).status_code == 404
    assert len(smtp_sink.to(email)) == 1


async def test_an_english_contact_and_the_api_withdrawal_forget_the_address(
    client: httpx.AsyncClient, stack: Stack, smtp_sink: SmtpSink
) -> None:
    check_id = (await take_check(client))["id"]
    email = await join(client, check_id, "Hesitant Plumbing", language="en")
    [mail] = await smtp_sink.wait_for_mail_to(email)
    assert "Withdraw my request" in text_of(mail) and "180 days" in text_of(mail)
    r = await client.delete(f"/api/v1/check/{check_id}/join")  # withdrawn from the result page instead
    assert r.status_code == 200
    await settled(stack)
    assert await every_table_mentioning(stack, "Hesitant", email) == []
    path = withdraw_path(text_of(mail))
    page = await client.get(path)
    assert page.status_code == 200 and f'action="{path}"' not in page.text  # nothing left to withdraw


async def test_pool_entries_expire(client: httpx.AsyncClient, stack: Stack, smtp_sink: SmtpSink) -> None:
    facilitator = await appoint_facilitator(client, smtp_sink, f"pia-{uuid.uuid4().hex[:6]}@zentrum.example")
    check_id = (await take_check(client))["id"]
    old = await join(client, check_id, "Alt Sanitär")
    await join(client, (await take_check(client))["id"], "Neu Sanitär")
    [mail] = await smtp_sink.wait_for_mail_to(old)
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        await conn.execute(
            "UPDATE convoys.pool_requests SET created_at = now() - interval '181 days' WHERE contact_email = $1", old
        )
    finally:
        await conn.close()

    async def purge(now: datetime) -> int:
        msg = await stack.nc.request(
            stack.subjects.operation(Convoys.POOL_PURGE), msgspec.json.encode(PoolPurge(now=now)), timeout=10
        )
        return msgspec.json.decode(msg.data, type=PoolPurged).expired

    assert await purge(datetime.now(UTC) - timedelta(days=2)) == 0  # 179 days old then: kept
    assert await purge(datetime.now(UTC)) == 1
    assert await pool_companies(client, facilitator) == ["Neu Sanitär"]
    await settled(stack)
    assert await every_table_mentioning(stack, "Alt Sanitär", old) == []
    path = withdraw_path(text_of(mail))
    page = await client.get(path)
    assert page.status_code == 200 and f'action="{path}"' not in page.text  # nothing left to withdraw
    assert await purge(datetime.now(UTC)) == 0
