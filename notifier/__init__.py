"""notifier: delivers notifications by email (and later Slack), each exactly once per key."""

from __future__ import annotations

import asyncio
import uuid
from email.utils import parseaddr
from importlib import resources
from pathlib import Path

import asyncpg
import structlog
from prometheus_client import Counter

from notifier import render
from notifier.email import PermanentDeliveryError, SmtpConfig, SmtpPool, build_message
from notifier.repository import Deliveries
from schemas import api
from schemas import envelope as env
from schemas import events as ev
from schemas.subjects import Rpc
from services.runtime.service import Runtime

NAME = "notifier"
MIGRATIONS = Path(str(resources.files(__name__) / "migrations"))

log = structlog.get_logger(__name__)
MESSAGES_LIST_ID = "Convoy <account.convoy>"
"""List-Id of the messages about a person's own account (invitations, sign-in links, decisions)."""
SENT = Counter("convoy_notifier_messages", "Messages handed to a channel", ["channel", "outcome"])


async def setup(rt: Runtime) -> None:
    smtp = SmtpPool(SmtpConfig.from_url(rt.settings.smtp_url), rt.settings.smtp_pool_size, rt.settings.smtp_timeout)
    deliveries = Deliveries(rt.db)

    async def close_smtp(stop: asyncio.Event) -> None:
        await stop.wait()
        await smtp.close()

    rt.background(close_smtp)

    async def send_email(
        key: str,
        event_id: uuid.UUID,
        *,
        to_name: str,
        to_email: str,
        rendered: render.Rendered,
        list_id: str,
    ) -> None:
        """Send one email at most once per delivery ``key`` (the delivery log remembers)."""
        if not await deliveries.claim(key, event_id, "email", to_email):
            SENT.labels("email", "duplicate").inc()
            return
        message = build_message(
            key=key,
            sender=rt.settings.mail_from,
            to_name=to_name,
            to_email=to_email,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            list_id=list_id,
        )
        try:
            await smtp.send(message)
        except PermanentDeliveryError as exc:
            await deliveries.finish(key, "failed", str(exc))
            SENT.labels("email", "refused").inc()
            log.warning("email refused for good", key=key, error=str(exc))
            return
        except Exception as exc:
            await deliveries.note_error(key, repr(exc))
            SENT.labels("email", "retry").inc()
            raise
        await deliveries.finish(key, "sent")
        SENT.labels("email", "sent").inc()

    async def on_report_submitted(envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        assert isinstance(event, ev.ReportSubmitted)
        members = await rt.rpc.call(
            rt.subjects.rpc("convoys", Rpc.CONVOY_RECIPIENTS),
            api.GetRecipients(convoy_id=event.convoy_id),
            api.Recipients,
        )
        report = await rt.rpc.call(
            rt.subjects.rpc("milestones", Rpc.REPORT_GET),
            api.GetReport(actor=api.SYSTEM, report_id=event.report_id),
            api.Report,
        )
        company = next((m.company_name for m in members.members if m.company_id == event.company_id), "")
        link = f"{rt.settings.public_url.rstrip('/')}/convoys/{event.convoy_id}"
        list_id = f"{' '.join(members.convoy_name.split())[:60]} <{event.convoy_id}.convoys.convoy>"
        peers = [m for m in members.members if m.company_id != event.company_id]
        results = await asyncio.gather(
            *(
                send_email(
                    f"{envelope.id}:email:{m.person_id}",
                    envelope.id,
                    to_name=m.name,
                    to_email=m.email,
                    rendered=render.report_submitted(
                        recipient=m, company=company, convoy=members.convoy_name, report=report, link=link
                    ),
                    list_id=list_id,
                )
                for m in peers
            ),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:  # the ones sent are in the log; a retry sends only the rest
            raise failures[0]

    async def on_email_requested(envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        assert isinstance(event, ev.EmailRequested)
        # Rendered before the delivery is claimed: a message that cannot be rendered (a missing
        # param) fails here, is retried and dead-lettered, and leaves no row in the log.
        rendered = render.message(event.template, event.language, event.params, name=event.to_name)
        if "@" not in parseaddr(event.to_email)[1]:
            raise ValueError(f"EmailRequested {event.template!r}: to_email is not an email address")
        await send_email(
            f"message:{event.key}",
            envelope.id,
            to_name=event.to_name,
            to_email=event.to_email,
            rendered=rendered,
            list_id=MESSAGES_LIST_ID,
        )

    async def on_help_offered(envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        """Tell the report's author who offered help."""
        assert isinstance(event, ev.HelpOffered)
        members = await rt.rpc.call(
            rt.subjects.rpc("convoys", Rpc.CONVOY_RECIPIENTS),
            api.GetRecipients(convoy_id=event.convoy_id),
            api.Recipients,
        )
        report = await rt.rpc.call(
            rt.subjects.rpc("milestones", Rpc.REPORT_GET),
            api.GetReport(actor=api.SYSTEM, report_id=event.report_id),
            api.Report,
        )
        people = {m.person_id: m for m in members.members}
        author, helper = people.get(report.author_id), people.get(event.person_id)
        if author is None or helper is None:  # one of them left the convoy meanwhile: nobody to tell
            return
        offer_message = event.message
        rendered = render.message(
            "help_offered",
            author.language,
            {
                "convoy": members.convoy_name,
                "helper": helper.name,
                "company": helper.company_name,
                "topic": report.help_topic or "-",
                "message": offer_message,
                "link": f"{rt.settings.public_url.rstrip('/')}/reports/{report.id}",
            },
            name=author.name,
        )
        await send_email(
            f"help_offered:{event.offer_id}",
            envelope.id,
            to_name=author.name,
            to_email=author.email,
            rendered=rendered,
            list_id=f"{' '.join(members.convoy_name.split())[:60]} <{event.convoy_id}.convoys.convoy>",
        )

    rt.consumer("reports", (ev.ReportSubmitted,), on_report_submitted)
    rt.consumer("help", (ev.HelpOffered,), on_help_offered)
    rt.consumer("messages", (ev.EmailRequested,), on_email_requested)
