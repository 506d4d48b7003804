"""notifier: delivers notifications by email (and later Slack), each exactly once per key."""

from __future__ import annotations

import asyncio
import uuid
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
SENT = Counter("convoy_notifier_messages", "Messages handed to a channel", ["channel", "outcome"])


async def setup(rt: Runtime) -> None:
    smtp = SmtpPool(
        SmtpConfig.from_url(rt.settings.smtp_url), rt.settings.smtp_pool_size, rt.settings.smtp_timeout
    )
    deliveries = Deliveries(rt.db)

    async def close_smtp(stop: asyncio.Event) -> None:
        await stop.wait()
        await smtp.close()

    rt.background(close_smtp)

    async def send_email(
        key: str, event_id: uuid.UUID, recipient: api.Recipient, rendered: render.Rendered, list_id: str
    ) -> None:
        if not await deliveries.claim(key, event_id, "email", recipient.email):
            SENT.labels("email", "duplicate").inc()
            return
        message = build_message(
            key=key,
            sender=rt.settings.mail_from,
            to_name=recipient.name,
            to_email=recipient.email,
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
                    m,
                    render.report_submitted(
                        recipient=m, company=company, convoy=members.convoy_name, report=report, link=link
                    ),
                    list_id,
                )
                for m in peers
            ),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:  # the ones sent are in the log; a retry sends only the rest
            raise failures[0]

    rt.consumer("reports", (ev.ReportSubmitted,), on_report_submitted)
