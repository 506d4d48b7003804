"""The notifier's event handlers, each called on its own (no consumer, no stream): a ``Consumers``
built from a runtime of our own and a ``Mailer``, against the real database, SMTP sink and (for the
handlers that ask other services) the real services over NATS."""

from __future__ import annotations

import contextlib
import html
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from notifier.consumers import Consumers
from notifier.delivery import Mailer
from notifier.privacy import PrivacyRules
from schemas import envelope as env
from schemas import events as ev
from services.runtime import bus, db
from services.runtime.rpc import RpcClient
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import SmtpSink, Stack, html_of, text_of
from tests.test_reports import post_report
from tests.test_scheduler import active_convoy


@pytest.fixture
async def consumers(settings: Settings) -> AsyncIterator[Consumers]:
    """The notifier's handlers with a runtime of their own: database and NATS (for RPCs), no consumers running."""
    rt = Runtime(settings, "notifier")
    async with contextlib.AsyncExitStack() as cleanup:
        rt.db = await db.connect(settings, "notifier")
        cleanup.push_async_callback(rt.db.close, 5)
        rt.nc = await bus.connect(settings, "convoy-notifier-test")
        cleanup.push_async_callback(rt.nc.close)
        rt.rpc = RpcClient(rt.nc, settings.nats_request_timeout, rt.subjects)
        mail = Mailer(settings, rt.db)
        cleanup.push_async_callback(mail.close)
        handlers = Consumers(rt, mail, PrivacyRules(rt))
        cleanup.push_async_callback(handlers.close)
        yield handlers


async def delivery(database_url: str, key: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(database_url)
    try:
        row: asyncpg.Record | None = await conn.fetchrow(
            "SELECT status, channel FROM notifier.deliveries WHERE key = $1", key
        )
        return row
    finally:
        await conn.close()


async def test_the_sign_in_link_handler_alone_sends_the_link_once(
    consumers: Consumers, smtp_sink: SmtpSink, settings: Settings
) -> None:
    """on_email_requested with a real email.requested event: one email in the recipient's language,
    the delivery recorded under its key; the same event again (a redelivery) sends nothing more."""
    address = f"nina-{uuid.uuid4().hex[:8]}@example.org"
    link = "http://convoy.test/sign-in/cvl_" + "x" * 32
    event = ev.EmailRequested(
        key=f"sign_in:{uuid.uuid4()}",
        to_email=address,
        to_name="Nina <Neu>",
        language="en",
        template="sign_in",
        params={"link": link, "minutes": "15"},
    )
    envelope = env.new_envelope(event, producer="convoys")
    async with consumers.rt.db.transaction() as conn:
        await consumers.on_email_requested(envelope, event, conn)
    [message] = await smtp_sink.wait_for_mail_to(address)
    assert message["Subject"] == "Your sign-in link for Convoy"
    assert message["X-Convoy-Delivery"] == f"message:{event.key}"
    assert link in text_of(message) and link in html_of(message)
    assert "Nina <Neu>" not in html_of(message) and html.escape("Nina <Neu>") in html_of(message)
    assert message["List-Unsubscribe"] is None  # an account message: always sent, no unsubscribe
    row = await delivery(settings.database_url, f"message:{event.key}")
    assert row is not None and (row["status"], row["channel"]) == ("sent", "email")

    async with consumers.rt.db.transaction() as conn:
        await consumers.on_email_requested(envelope, event, conn)
    # The second call returned after the delivery log refused the claim: nothing went to SMTP.
    assert len(smtp_sink.to(address)) == 1


async def test_the_help_offered_handler_alone_asks_the_services_and_mails_the_author(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack, consumers: Consumers
) -> None:
    """on_help_offered with an event nobody published: it reads the convoy and the report from the
    running services over NATS and writes to the report's author, in her language, once."""
    world = await active_convoy(client, smtp_sink)
    r = await post_report(client, world, "a", help_wanted=True, help_topic="Kalender-Synchronisation")
    assert r.status_code == 201, r.text
    report_id = uuid.UUID(r.json()["id"])
    author, helper = world.reps["a"], world.reps["b"]
    event = ev.HelpOffered(
        convoy_id=uuid.UUID(world.convoy_id),
        report_id=report_id,
        offer_id=uuid.uuid4(),
        person_id=uuid.UUID(helper.person_id),
        message="Wir haben <das> schon gelöst.",
    )
    envelope = env.new_envelope(event, producer="milestones")
    async with consumers.rt.db.transaction() as conn:
        await consumers.on_help_offered(envelope, event, conn)
    key = f"help_offered:{event.offer_id}:{author.person_id}"
    [message] = [m for m in smtp_sink.to(author.email) if m["X-Convoy-Delivery"] == key]
    assert message["Subject"] == "Ben Schmidt (Laden Schmidt) bietet Hilfe an"  # Anna reads German
    assert f"http://convoy.test/reports/{report_id}" in text_of(message)
    assert "Wir haben <das> schon gelöst." in text_of(message)
    assert html.escape("<das>") in html_of(message) and "<das>" not in html_of(message)
    assert message["List-Unsubscribe"] is not None  # a notification: its kind can be turned off
    offers = [m for m in smtp_sink.messages if str(m["X-Convoy-Delivery"]).startswith("help_offered:")]
    assert [m["To"] for m in offers] == [message["To"]]  # the author only, once
