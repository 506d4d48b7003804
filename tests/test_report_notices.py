"""report.submitted carries the report as peers see it (a snapshot of its own, not the HTTP reply),
so the notifier mails and posts it without reading it back; events older than a few seconds (the
notifier was behind) are read back, and a report hidden by then is neither mailed nor posted. Events
in the stream from when it carried the HTTP reply still decode. Over the real stack: the events in
JetStream, the SMTP sink and the Slack stand-in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import asyncpg
import httpx
import msgspec
import nats.js.errors

from schemas import api
from schemas import envelope as env
from schemas import events as ev
from tests.conftest import SlackStub, SmtpSink, Stack, eventually, settled
from tests.test_reports import post_report
from tests.test_scheduler import active_convoy
from tests.world import World


async def submitted_event(stack: Stack, report_id: str) -> ev.ReportSubmitted:
    """The report.submitted of this report, once the outbox relay has published it."""
    js = stack.nc.jetstream()
    subject = stack.subjects.of(ev.ReportSubmitted)

    async def found() -> ev.ReportSubmitted | None:
        try:
            msg = await js.get_last_msg(stack.subjects.events_stream, subject)
        except nats.js.errors.NotFoundError:  # not relayed yet
            return None
        _, event = env.decode(msg.data)
        assert isinstance(event, ev.ReportSubmitted)
        return event if str(event.report_id) == report_id else None

    return await eventually(found)


async def publish(stack: Stack, envelope: env.Envelope) -> None:
    ack = await stack.nc.jetstream().publish(
        stack.subjects.of(ev.ReportSubmitted), env.encode(envelope), headers={"Nats-Msg-Id": str(envelope.id)}
    )
    assert not ack.duplicate


async def handled(stack: Stack, envelope: env.Envelope) -> None:
    """The notifier has handled the event: its sends happened before this row was committed."""

    async def done() -> bool:
        conn = await asyncpg.connect(stack.settings.database_url)
        try:
            return bool(
                await conn.fetchval(
                    "SELECT true FROM notifier.processed_events WHERE event_id = $1 AND consumer LIKE '%reports'",
                    envelope.id,
                )
            )
        finally:
            await conn.close()

    await eventually(done)


def notices(sink: SmtpSink, world: World, key: str, envelope_id: uuid.UUID | None = None) -> list[EmailMessage]:
    """Report emails to this representative (of one event, if given)."""
    prefix = f"report:{envelope_id or ''}"
    return [m for m in sink.to(world.reps[key].email) if str(m["X-Convoy-Delivery"] or "").startswith(prefix)]


async def first_notice(sink: SmtpSink, world: World, key: str) -> EmailMessage:
    async def one() -> EmailMessage | None:
        found = notices(sink, world, key)
        assert len(found) <= 1
        return found[0] if found else None

    return await eventually(one)


async def test_the_event_carries_the_report_as_peers_read_it(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await active_convoy(client, smtp_sink)
    r = await post_report(client, world, "a", done="Kalender **angebunden**", facilitator_note="nur intern")
    assert r.status_code == 201, r.text
    event = await submitted_event(stack, r.json()["id"])
    peer = await client.get(f"/api/v1/reports/{r.json()['id']}", headers=world.reps["b"].auth)
    assert event.report == msgspec.json.decode(peer.content, type=ev.ReportSnapshot)
    assert event.report.done == "Kalender **angebunden**" and event.report.id == uuid.UUID(r.json()["id"])
    assert "nur intern" not in msgspec.json.encode(event).decode()
    # The peer's email came from the carried report.
    mail = await first_notice(smtp_sink, world, "b")
    assert "Kalender" in str(mail.get_body(("plain",)))
    assert notices(smtp_sink, world, "a") == []  # the author's own company is not told


async def test_an_event_carrying_the_http_reply_as_before_is_still_announced(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    """Events already in the stream carry the whole ``api.Report`` under ``report``: the snapshot's
    fields have its names, so they decode and are mailed from what they carry."""
    world = await active_convoy(client, smtp_sink)
    r = await post_report(client, world, "a", done="Zahlungen eingerichtet", facilitator_note="intern")
    assert r.status_code == 201, r.text
    carried = await submitted_event(stack, r.json()["id"])
    await first_notice(smtp_sink, world, "b")
    peer = msgspec.json.decode(
        (await client.get(f"/api/v1/reports/{r.json()['id']}", headers=world.reps["b"].auth)).content,
        type=api.Report,
    )
    old = env.new_envelope(carried, producer="milestones")
    payload = msgspec.to_builtins(carried) | {"report": msgspec.to_builtins(peer)}  # as the producer wrote it
    wire = msgspec.json.decode(env.encode(old)) | {"payload": payload}
    assert env.decode(msgspec.json.encode(wire))[1] == carried
    ack = await stack.nc.jetstream().publish(
        stack.subjects.of(ev.ReportSubmitted), msgspec.json.encode(wire), headers={"Nats-Msg-Id": str(old.id)}
    )
    assert not ack.duplicate
    await handled(stack, old)
    [mail] = notices(smtp_sink, world, "b", old.id)
    assert "Zahlungen eingerichtet" in str(mail.get_body(("plain",)))


async def test_a_report_hidden_before_the_event_is_handled_is_neither_mailed_nor_posted(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, slack_stub: SlackStub, stack: Stack
) -> None:
    world = await active_convoy(client, smtp_sink)
    r = await client.put(
        f"/api/v1/convoys/{world.convoy_id}/slack",
        json={"webhook_url": slack_stub.url(), "post_reports": True},
        headers=world.facilitator,
    )
    assert r.status_code == 200, r.text
    r = await post_report(client, world, "a", done="Geheimes Angebot: 30 % auf alles")
    assert r.status_code == 201, r.text
    report_id = r.json()["id"]
    carried = await submitted_event(stack, report_id)
    [post] = await slack_stub.wait_for(1)
    assert "Geheimes Angebot" in str(post["blocks"])
    await first_notice(smtp_sink, world, "b")

    r = await client.post(f"/api/v1/reports/{report_id}/hide", json={"reason": "Werbung"}, headers=world.facilitator)
    assert r.status_code == 200, r.text
    # The same fact once more, as if the notifier had been behind: the carried report is not trusted
    # (it is older than a few seconds) but read back, and found hidden.
    late = msgspec.structs.replace(
        env.new_envelope(carried, producer="milestones"), occurred_at=datetime.now(UTC) - timedelta(minutes=5)
    )
    await publish(stack, late)
    await handled(stack, late)
    assert notices(smtp_sink, world, "b", late.id) == []
    assert len(notices(smtp_sink, world, "b")) == 1
    assert len(slack_stub.posts) == 1


async def test_a_failed_slack_post_is_retried_alone_and_the_peers_email_goes_once(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, slack_stub: SlackStub, stack: Stack
) -> None:
    """The peers' emails and the chat post of a report go out at the same time (their claims and
    records share commits): a post that fails is retried with the event, the email sent meanwhile is
    recorded and not sent again."""
    world = await active_convoy(client, smtp_sink)
    r = await client.put(
        f"/api/v1/convoys/{world.convoy_id}/slack",
        json={"webhook_url": slack_stub.url(), "post_reports": True},
        headers=world.facilitator,
    )
    assert r.status_code == 200, r.text
    slack_stub.script.append((500, {}, "internal error"))  # the first post fails: the event is retried
    r = await post_report(client, world, "a", done="Schnittstelle zur Buchhaltung fertig")
    assert r.status_code == 201, r.text
    report_id = r.json()["id"]
    [post] = await slack_stub.wait_for(1, timeout=30)
    assert "Schnittstelle zur Buchhaltung" in str(post["blocks"])
    assert slack_stub.requests == 2
    await settled(stack)
    [mail] = notices(smtp_sink, world, "b")
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT key, status, attempts FROM notifier.deliveries WHERE key = $1 OR key = $2",
            str(mail["X-Convoy-Delivery"]),
            f"slack:report:{report_id}",
        )
    finally:
        await conn.close()
    assert sorted((r["key"].split(":")[0], r["status"], r["attempts"]) for r in rows) == [
        ("report", "sent", 1),
        ("slack", "sent", 2),
    ]
    assert len(slack_stub.posts) == 1 and len(notices(smtp_sink, world, "b")) == 1
