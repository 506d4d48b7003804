"""Data protection (issue #8): a person's export, and deleting an account across every service.

The deletion test searches every text-like column of every table in every service schema for the
deleted person's email address and name, and finds nothing.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

import asyncpg
import httpx
from nats.js.errors import NotFoundError

from schemas import envelope as env
from schemas import events as ev
from schemas.subjects import SERVICES
from services.runtime import sealing
from tests.conftest import SmtpSink, Stack, eventually, settled
from tests.world import World, build_world

TEXTUAL = ("text", "character varying", "character", "json", "jsonb", "tsvector", "ARRAY", "USER-DEFINED")


async def occurrences(database_url: str, needles: list[str]) -> list[str]:
    """Every (schema.table.column) of every service schema holding one of ``needles`` (ILIKE).

    Text-like columns are cast to text; bytea is read as escaped text (so an address stored as
    bytes, e.g. an event in the outbox, is found); and every row as a whole is cast to text too.
    """
    conn = await asyncpg.connect(database_url)
    try:
        columns = await conn.fetch(
            "SELECT c.table_schema, c.table_name, c.column_name, c.data_type FROM information_schema.columns c"
            " JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
            " WHERE c.table_schema = ANY($1::text[]) AND t.table_type = 'BASE TABLE'"
            " ORDER BY c.table_schema, c.table_name, c.ordinal_position",
            list(SERVICES),
        )
        assert {c["table_schema"] for c in columns} == set(SERVICES)
        found = []
        tables = sorted({(c["table_schema"], c["table_name"]) for c in columns})
        for c in columns:
            column = f'"{c["table_schema"]}"."{c["table_name"]}"."{c["column_name"]}"'
            if c["data_type"] == "bytea":
                expr = f"encode(\"{c['column_name']}\", 'escape')"
            elif c["data_type"] in TEXTUAL:
                expr = f'"{c["column_name"]}"::text'
            else:
                continue
            for needle in needles:
                hit = await conn.fetchval(
                    f'SELECT count(*) FROM "{c["table_schema"]}"."{c["table_name"]}" WHERE {expr} ILIKE $1',
                    f"%{needle}%",
                )
                if hit:
                    found.append(f"{column} ~ {needle}")
        for schema, table in tables:
            for needle in needles:
                hit = await conn.fetchval(
                    f'SELECT count(*) FROM "{schema}"."{table}" r WHERE r::text ILIKE $1', f"%{needle}%"
                )
                if hit:
                    found.append(f"{schema}.{table} (row) ~ {needle}")
        return found
    finally:
        await conn.close()


async def stream_texts(stack: Stack) -> list[bytes]:
    """Subject, headers and body of every message the events, messages and dead-letter streams hold."""
    js = stack.nc.jetstream()
    texts = []
    for stream in (stack.subjects.events_stream, stack.subjects.messages_stream, stack.subjects.dead_letter_stream):
        state = (await js.stream_info(stream)).state
        for seq in range(state.first_seq, state.last_seq + 1) if state.messages else ():
            with contextlib.suppress(NotFoundError):  # deleted or purged
                m = await js.get_msg(stream, seq)
                headers = "".join(f"{k}: {v}\n" for k, v in (m.headers or {}).items())
                texts.append(f"{m.subject}\n{headers}".encode() + (m.data or b""))
    return texts


async def busy_convoy(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> tuple[World, dict[str, Any]]:
    """Three companies; Ben (b) reports, comments, gives kudos, offers help, has preferences, a token,
    a join request of his address, and got emails."""
    world = await build_world(client, smtp_sink, companies=3, open_=True)
    a, b, c = world.reps["a"], world.reps["b"], world.reps["c"]
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/reports",
        json={"done": "Buchungsseite ist online", "mood": 4, "help_wanted": True, "help_topic": "Kalender"},
        headers=a.auth,
    )
    assert r.status_code == 201, r.text
    report_a = r.json()
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/reports", json={"done": "Webshop-Entwurf steht", "mood": 3}, headers=b.auth
    )
    assert r.status_code == 201, r.text
    report_b = r.json()
    r = await client.post(
        f"/api/v1/reports/{report_a['id']}/comments", json={"body": "Stark, welches Tool?"}, headers=b.auth
    )
    assert r.status_code == 201, r.text
    comment_b = r.json()
    r = await client.post(
        f"/api/v1/reports/{report_a['id']}/comments",
        json={"body": "Calendly", "parent_id": comment_b["id"]},
        headers=a.auth,
    )
    assert r.status_code == 201, r.text
    assert (await client.put(f"/api/v1/reports/{report_a['id']}/kudos", headers=b.auth)).status_code == 200
    r = await client.post(
        f"/api/v1/reports/{report_a['id']}/help-offers", json={"message": "Ruf gern an"}, headers=b.auth
    )
    assert r.status_code == 201, r.text
    r = await client.put(
        "/api/v1/me/notifications", json={"email": True, "digest": False, "immediate": {}}, headers=b.auth
    )
    assert r.status_code == 200, r.text
    r = await client.post("/api/v1/me/tokens", json={"name": "Bens Skript"}, headers=b.auth)
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/api/v1/open-convoys/{world.convoy_id}/join-requests",
        json={
            "company": {"name": "Bens zweiter Laden"},
            "contact_name": "Ben Schmidt",
            "contact_email": b.email.upper(),
            "message": "Auch unser zweiter Laden möchte mitmachen.",
        },
    )
    assert r.status_code == 202, r.text
    # The emails went out: report notices both ways, the help offer to Anna.
    await smtp_sink.wait_for_mail_to(b.email)  # Anna's report
    await smtp_sink.wait_for_mail_to(c.email, 2)  # both reports
    await smtp_sink.wait_for_subject(a.email, "Laden Schmidt")
    return world, {"report_a": report_a, "report_b": report_b, "comment_b": comment_b}


async def test_the_export_holds_everything_about_me_and_no_secret(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world, made = await busy_convoy(client, smtp_sink)
    b = world.reps["b"]

    async def delivered() -> bool:
        r = await client.get("/api/v1/me/export", headers=b.auth)
        return bool(r.json()["services"]["notifier"]["deliveries"])

    await eventually(delivered)
    r = await client.get("/api/v1/me/export", headers=b.auth)
    assert r.status_code == 200, r.text
    disposition = r.headers["content-disposition"]
    assert disposition.startswith("attachment;") and 'filename="convoy-export-' in disposition
    assert disposition.endswith('.json"')
    doc = r.json()
    assert doc["person_id"] == b.person_id
    assert set(doc["services"]) == {"convoys", "milestones", "reminders", "notifier"}
    convoys, milestones, notifier = (doc["services"][s] for s in ("convoys", "milestones", "notifier"))
    [person] = convoys["person"]
    assert person["email"] == b.email and person["name"] == "Ben Schmidt"
    [membership] = convoys["memberships"]
    assert membership["company_name"] == "Laden Schmidt" and membership["role"] == "representative"
    assert [i["email"] for i in convoys["invitations"]] == [b.email]
    assert [j["contact_name"] for j in convoys["join_requests"]] == ["Ben Schmidt"]
    assert [t["name"] for t in convoys["api_tokens"]] == ["Bens Skript"]
    assert sum(s["live"] for s in convoys["sessions"]) >= 1
    assert any(e["action"] == "person.joined" for e in convoys["audit_entries"])
    assert [r["id"] for r in milestones["reports"]] == [made["report_b"]["id"]]
    assert [c["id"] for c in milestones["comments"]] == [made["comment_b"]["id"]]
    assert [k["report_id"] for k in milestones["kudos_given"]] == [made["report_a"]["id"]]
    assert [h["message"] for h in milestones["help_offers"]] == ["Ruf gern an"]
    assert notifier["preferences"][0]["digest"] is False
    assert all(d["recipient"] == b.email for d in notifier["deliveries"])
    assert doc["services"]["reminders"] == {"absences_marked": []}
    text = json.dumps(doc)
    assert "cvy_" not in text and "token_hash" not in text and "csrf" not in text
    # Anna's export does not hold Ben's things.
    anna = (await client.get("/api/v1/me/export", headers=world.reps["a"].auth)).json()
    assert b.email not in json.dumps(anna)
    # The admin token has no person.
    from tests.world import ADMIN

    assert (await client.get("/api/v1/me/export", headers=ADMIN)).status_code == 403


async def test_deleting_an_account_leaves_no_trace_of_the_address_or_the_name(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world, made = await busy_convoy(client, smtp_sink)
    a, b = world.reps["a"], world.reps["b"]
    database_url = stack.settings.database_url
    assert await occurrences(database_url, [b.email, "Ben Schmidt"])  # the search does find things
    to_him = b"".join(await stream_texts(stack))

    # A confirmation is required.
    r = await client.request("DELETE", "/api/v1/me", json={}, headers=b.auth)
    assert r.status_code == 400, r.text
    r = await client.request("DELETE", "/api/v1/me", json={"confirm": "yes"}, headers=b.auth)
    assert r.status_code == 400, r.text
    r = await client.request("DELETE", "/api/v1/me", json={"confirm": "DELETE"}, headers=b.auth)
    assert r.status_code == 200, r.text
    assert r.json()["person_id"] == b.person_id

    async def nothing_left() -> bool:
        found = await occurrences(database_url, [b.email, "Ben Schmidt"])
        assert found == []
        return True

    await eventually(nothing_left, timeout=20)

    # Nor do the streams: no message in them holds his address or name, and none is addressed to him.
    tag = sealing.recipient_tag(b.email)
    assert tag.encode() in to_him  # there were some (his invitation)

    async def streams_clean() -> bool:
        held = await stream_texts(stack)
        assert not [t for t in held if b.email.encode() in t or b"Ben Schmidt" in t]
        ns = stack.settings.namespace
        addressed = [t for t in held if t.startswith((f"{ns}.messages.".encode(), f"{ns}.dlq.".encode()))]
        return not [t for t in addressed if tag.encode() in t]  # person.erased (events) carries the hash

    await eventually(streams_clean, timeout=20)

    # Signed out everywhere; the address is unknown (a sign-in request sends nothing).
    assert (await client.get("/api/v1/me", headers=b.auth)).status_code == 401
    # Gone from the convoy's people; the company stays.
    convoy = (await client.get(f"/api/v1/convoys/{world.convoy_id}", headers=a.auth)).json()
    people = [p["person_id"] for c in convoy["companies"] for p in c["representatives"]]
    assert b.person_id not in people
    assert "Laden Schmidt" in [c["name"] for c in convoy["companies"]]

    # His report and comment stay, attributed to a former representative of his company.
    async def attributed() -> dict[str, Any]:
        r = await client.get(f"/api/v1/reports/{made['report_b']['id']}", headers=a.auth)
        assert r.status_code == 200 and r.json()["author_erased"], r.text
        return dict(r.json())

    report = await eventually(attributed)
    assert report["former_author"] == "eine ehemalige Vertretung von Laden Schmidt"  # the convoy speaks German
    assert report["done"] == "Webshop-Entwurf steht"
    comments = (await client.get(f"/api/v1/reports/{made['report_a']['id']}/comments", headers=a.auth)).json()
    [comment] = comments["comments"]
    assert comment["id"] == made["comment_b"]["id"] and comment["author_erased"]
    assert comment["former_author"] == "eine ehemalige Vertretung von Laden Schmidt"
    [answer] = comment["replies"]
    assert not answer["author_erased"] and answer["former_author"] is None
    timeline = (await client.get(f"/api/v1/convoys/{world.convoy_id}/timeline", headers=a.auth)).json()
    assert [r["author_erased"] for r in timeline["reports"]] == [True, False]
    assert (await client.get(f"/api/v1/reports/{made['report_a']['id']}", headers=a.auth)).json()["kudos"] == 1

    # The delivery log keeps its keys (nothing is ever sent twice) without the address.
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT key, recipient FROM notifier.deliveries WHERE key LIKE '%' || $1", b.person_id)
        assert rows and {r["recipient"] for r in rows} == {"erased"}
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM notifier.preferences WHERE person_id = $1", uuid.UUID(b.person_id)
            )
            == 0
        )
        actions = [r["action"] for r in await conn.fetch("SELECT action FROM convoys.audit_log ORDER BY id")]
        assert "person.erased" in actions
        declined = await conn.fetchval(
            "SELECT status FROM convoys.join_requests WHERE company_name = 'Bens zweiter Laden'"
        )
        assert declined == "declined"
    finally:
        await conn.close()

    # A second delete cannot find the account.
    r = await client.request("DELETE", "/api/v1/me", json={"confirm": "DELETE"}, headers=b.auth)
    assert r.status_code == 401


async def test_every_service_handles_person_erased_idempotently(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world, made = await busy_convoy(client, smtp_sink)
    b = world.reps["b"]
    r = await client.request("DELETE", "/api/v1/me", json={"confirm": "DELETE"}, headers=b.auth)
    assert r.status_code == 200, r.text
    database_url = stack.settings.database_url
    conn = await asyncpg.connect(database_url)
    try:

        async def consumed(event_id: uuid.UUID) -> bool:
            count = await conn.fetchval(
                "SELECT (SELECT count(*) FROM milestones.processed_events WHERE event_id = $1)"
                " + (SELECT count(*) FROM reminders.processed_events WHERE event_id = $1)"
                " + (SELECT count(*) FROM notifier.processed_events WHERE event_id = $1)",
                event_id,
            )
            return bool(count == 3)

        first = await eventually(
            lambda: conn.fetchval(
                "SELECT event_id FROM milestones.processed_events WHERE consumer LIKE '%_milestones_erasure'"
            )
        )
        await eventually(lambda: consumed(first))
        before = await occurrences(database_url, [b.email, "Ben Schmidt"])
        assert before == []
        former = await conn.fetch("SELECT * FROM milestones.former_authors ORDER BY convoy_id")

        # The same event again (a redelivery is deduplicated by id; this one is a new id, as a replay
        # of the stream by an operator would be): every service handles it without error or change.
        event = ev.PersonErased(
            person_id=uuid.UUID(b.person_id),
            email_sha256="00" * 32,
            memberships=[ev.FormerMembership(convoy_id=uuid.UUID(world.convoy_id), company_id=uuid.UUID(b.company_id))],
        )
        envelope = env.new_envelope(event, producer="convoys")
        js = stack.nc.jetstream()
        await js.publish(stack.subjects.of(ev.PersonErased), env.encode(envelope))
        await eventually(lambda: consumed(envelope.id))
        assert await conn.fetch("SELECT * FROM milestones.former_authors ORDER BY convoy_id") == former
        info = await js.stream_info(stack.subjects.dead_letter_stream)
        assert info.state.messages == 0
        await settled(stack)
        r = await client.get(f"/api/v1/reports/{made['report_b']['id']}", headers=world.reps["a"].auth)
        assert r.json()["author_erased"] is True
    finally:
        await conn.close()


def test_logs_mask_email_addresses(capsys: Any) -> None:
    """Our own log lines and libraries' (standard logging) alike: no address reaches the log."""
    import logging

    import structlog

    from services.runtime import logging as convoy_logging
    from services.runtime.settings import Settings

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        convoy_logging.configure(Settings(log_format="json"), "test")
        structlog.get_logger("gdpr").warning(
            "mail to anna.mueller@example.de failed",
            to="Anna <anna.mueller@example.de>",
            recipients=["ben@schmidt.example", {"cc": "Clara.Stahl@stahl.example"}],
            error=ValueError("550 no such user: anna.mueller@example.de"),
            count=3,
        )
        logging.getLogger("aiosmtplib").warning("RCPT TO:<ben@schmidt.example> refused")
        err = capsys.readouterr().err
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
        root.handlers[:] = handlers
        root.setLevel(level)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert len(lines) == 2, err
    ours, theirs = lines
    assert ours["event"] == "mail to a***@example.de failed"
    assert ours["to"] == "Anna <a***@example.de>"
    assert ours["recipients"] == ["b***@schmidt.example", {"cc": "C***@stahl.example"}]
    assert ours["error"] == "550 no such user: a***@example.de" and ours["count"] == 3
    assert theirs["event"] == "RCPT TO:<b***@schmidt.example> refused"
    assert "mueller@" not in err and "ben@" not in err and "Stahl@" not in err
