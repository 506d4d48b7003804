"""notifier: delivers notifications by email and to chat channels (Slack, Teams), each exactly once per key.

The same shape as the other services: ``service.py`` (operations: preferences, unsubscribe),
``consumers.py`` (one handler per event kind), ``access.py`` (who may do what), ``repository.py``
(SQL), ``delivery.py`` (``Mailer.send_email``: every email goes through it), ``templates/`` and
``migrations/``; ``setup`` below only wires them to the runtime.
"""

from __future__ import annotations

import asyncio
import functools
from importlib import resources
from pathlib import Path

from notifier import recipients, render, replies
from notifier.consumers import Consumers
from notifier.delivery import Mailer
from notifier.privacy import MESSAGES_CONSUMER, PrivacyRules
from notifier.service import NotifierService
from schemas import events as ev
from schemas.notifier import Notifier
from services.runtime import sealing
from services.runtime.service import Runtime

NAME = "notifier"
MIGRATIONS = Path(str(resources.files(__name__) / "migrations"))

CONSUMER_CONCURRENCY = 8
"""Events one notifier consumer handles at once (bounded again by half the database pool per process)."""


async def setup(rt: Runtime) -> None:
    if not rt.settings.secret_key:
        raise RuntimeError("CONVOY_SECRET_KEY is not set: unsubscribe links cannot be signed")
    if not rt.settings.notifier_box_key:
        raise RuntimeError("CONVOY_NOTIFIER_BOX_KEY is not set: sealed email requests cannot be read")
    sealing.public_of(rt.settings.notifier_box_key)  # a key that is not one stops the start, not every message
    render.compile_templates()  # before the first event: its email waits for no compilation
    mail = Mailer(rt.settings, rt.db)
    privacy = PrivacyRules(rt)
    svc = NotifierService(rt, mail.preferences, privacy)
    consumers = Consumers(rt, mail, privacy)
    # convoys' recipients reused while services/convoys announces no change (notifier/recipients.py)
    await recipients.of(rt).start()

    async def close(stop: asyncio.Event) -> None:
        await stop.wait()
        await mail.close()
        await consumers.close()

    rt.background(close)
    if mail.replies_on:  # answers by email: the inbound SMTP server (notifier/replies.py)
        rt.background(functools.partial(replies.serve, rt))

    rt.serve(Notifier, svc, privacy)
    rt.consumer("erasure", (ev.PersonErased,), consumers.on_person_erased)

    # Several events at once (each waits mostly on RPCs, SMTP and chat webhooks), in order per convoy:
    # a convoy's digest still goes before its next prompt. Sign-in and invitation emails in order per key.
    rt.consumer(
        "reports",
        (ev.ReportSubmitted,),
        consumers.on_report_submitted,
        concurrency=CONSUMER_CONCURRENCY,
        quiet=consumers.report_is_quiet,  # nobody to tell: the event's record alone, in one statement
    )
    rt.consumer("help", (ev.HelpOffered,), consumers.on_help_offered, concurrency=CONSUMER_CONCURRENCY)
    rt.consumer("help_requests", (ev.HelpRequested,), consumers.on_help_requested, concurrency=CONSUMER_CONCURRENCY)
    rt.consumer(
        MESSAGES_CONSUMER,
        (ev.EmailRequested, ev.PoolContactDeleted),
        consumers.on_email_requested,
        concurrency=CONSUMER_CONCURRENCY,
        ordered_by=lambda e: getattr(e, "key", None),
    )
    rt.consumer("prompts", (ev.CycleOpened, ev.NudgeDue), consumers.on_cycle_prompt, concurrency=CONSUMER_CONCURRENCY)
    rt.consumer("digests", (ev.CycleClosed,), consumers.on_cycle_closed, concurrency=CONSUMER_CONCURRENCY)
    rt.consumer("facilitator_digests", (ev.FacilitatorDigestDue,), consumers.on_facilitator_digest_due)
    # Comments, replies and kudos: collected per report over CONVOY_FEEDBACK_WINDOW_S, one email each.
    rt.consumer(
        "feedback",
        (ev.CommentAdded, ev.KudosGiven, ev.KudosTakenBack),
        consumers.on_feedback,
        concurrency=CONSUMER_CONCURRENCY,
        one_statement=True,  # each event one statement, with its processed_events row (no BEGIN/COMMIT)
    )
    rt.background(consumers.feedback.run)
