"""notifier: delivers notifications by email and to chat channels (Slack, Teams), each exactly once per key."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from email.utils import parseaddr
from importlib import resources
from pathlib import Path

import asyncpg
import msgspec
import structlog
from prometheus_client import Counter

from notifier import cycles, facilitation, facilitator, feedback, render, replies
from notifier.batching import DeliveryBatcher
from notifier.chat.delivery import ChatDelivery
from notifier.email import PermanentDeliveryError, SmtpConfig, SmtpPool, TransientDeliveryError, wire_message
from notifier.privacy import PrivacyRules
from notifier.repository import Deliveries, Preferences
from schemas import api
from schemas import envelope as env
from schemas import events as ev
from schemas.subjects import Rpc
from services.runtime import correlation, signing, tracing
from services.runtime.errors import Forbidden
from services.runtime.service import Runtime

NAME = "notifier"
MIGRATIONS = Path(str(resources.files(__name__) / "migrations"))

log = structlog.get_logger(__name__)
MESSAGES_LIST_ID = "Convoy <account.convoy>"
"""List-Id of the messages about a person's own account (invitations, sign-in links, decisions)."""
SETTINGS_PATH = "/profile/#notifications"
"""The notification settings on the profile page (every notification's footer links there)."""
FACILITATOR_LIST_ID = "Convoy facilitator digest <facilitator-digest.convoy>"
"""List-Id of the weekly facilitator digest."""
DIGEST_ASK_MAX_CONVOYS = 500
"""api.FacilitatorDigestAsk takes at most this many convoy ids; more are asked in chunks."""
CONSUMER_CONCURRENCY = 8
"""Events one notifier consumer handles at once (bounded again by half the database pool per process)."""
SENT = Counter("convoy_notifier_messages", "Messages handed to a channel", ["channel", "outcome"])
batched: contextvars.ContextVar[bool] = contextvars.ContextVar("notifier_batched", default=False)
"""True in fan_out's sends: their "sent" records are flushed together when the fan-out ends."""


async def setup(rt: Runtime) -> None:
    smtp = SmtpPool(SmtpConfig.from_url(rt.settings.smtp_url), rt.settings.smtp_pool_size, rt.settings.smtp_timeout)
    if not rt.settings.secret_key:
        raise RuntimeError("CONVOY_SECRET_KEY is not set: unsubscribe links cannot be signed")
    deliveries = Deliveries(rt.db)
    email_log = DeliveryBatcher(deliveries)  # claims and "sent" records of concurrent sends share commits
    preferences = Preferences(rt.db)
    privacy = PrivacyRules(rt)

    async def close_smtp(stop: asyncio.Event) -> None:
        await stop.wait()
        await smtp.close()
        await chat.close()

    rt.background(close_smtp)

    replies_on = rt.settings.inbound_smtp_port > 0
    if replies_on:
        rt.background(functools.partial(replies.serve, rt))

    def reply_to(target: replies.Target) -> str | None:
        """The Reply-To that files an answer by email, when the inbound server runs."""
        return replies.address(rt.settings, target) if replies_on else None

    async def send_email(
        key: str,
        event_id: uuid.UUID,
        *,
        to_name: str,
        to_email: str,
        rendered: render.Rendered,
        list_id: str,
        reply: replies.Target | None = None,
        prefs: api.NotificationPrefs | None = None,
        thread: str | None = None,
    ) -> None:
        """Send one email at most once per delivery ``key`` (the delivery log remembers).

        Keys are ``kind:…:person_id`` for notifications (the person's preferences apply, and the
        email gets a one-click unsubscribe link for that kind) and ``message:…`` for sign-in links
        and invitations (always sent). With ``reply``, answering the email files it (notifier.replies).
        ``prefs``: the person's preferences, when the caller loaded them (for a whole fan-out at once).
        ``thread``: emails about one thing (``report.{id}``: its notice and feedback) fold into one
        thread (``In-Reply-To``/``References`` name the same parent, notifier.email.thread_root).
        In ``fan_out`` the "sent" record may be written just after this returns (fan_out waits for it).
        """
        kind, _, rest = key.partition(":")
        unsubscribe = None
        if kind != "message":
            person_id = uuid.UUID(rest.rsplit(":", 1)[-1])
            if not (prefs if prefs is not None else await preferences.get(person_id)).allows(kind):
                SENT.labels("email", "unwanted").inc()
                return
            token = signing.sign(rt.settings, "unsubscribe", {"p": str(person_id), "k": kind})
            unsubscribe = public(f"/unsubscribe/{token}")
        # the visible footer: why this email, the settings and (notifications) this kind's unsubscribe
        rendered = render.with_footer(
            rendered, kind=kind, settings_url=public(SETTINGS_PATH), unsubscribe_url=unsubscribe
        )
        correlation_id = correlation.current()
        # Built before the claim: the time between claiming and sending (a crash there leaves the
        # key uncertain) is only the SMTP exchange. The bytes are build_message(...).as_bytes().
        message = wire_message(
            key=key,
            sender=rt.settings.mail_from,
            to_name=to_name,
            to_email=to_email,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            list_id=list_id,
            unsubscribe=unsubscribe,
            reply_to=reply_to(reply) if reply is not None else None,
            thread=thread,
            # follow a request to its email
            extra_headers=[(correlation.HTTP_HEADER, str(correlation_id))] if correlation_id is not None else (),
        )
        if not await email_log.claim(key, event_id, "email", to_email):
            SENT.labels("email", "duplicate").inc()
            return
        try:
            # the key names kind and ids, never an address (like the "email sent" log line)
            with tracing.span("email send", kind=tracing.SpanKind.CLIENT, attributes={"convoy.delivery_key": key}):
                await smtp.send(message)
        except PermanentDeliveryError as exc:
            await deliveries.finish(key, "failed", str(exc))
            SENT.labels("email", "refused").inc()
            log.warning("email refused for good", key=key, error=str(exc))
            return
        except Exception as exc:
            await deliveries.note_error(key, repr(exc))
            SENT.labels("email", "retry").inc()
            # Not the SMTP client's own OSError/TimeoutError: raised inside the consumer's database
            # transaction, those would read as "database unavailable" and never be dead-lettered.
            raise TransientDeliveryError(f"{type(exc).__name__}: {exc}") from exc
        email_log.sent(key)
        if not batched.get():
            await email_log.flush()
        SENT.labels("email", "sent").inc()
        log.info("email sent", key=key)  # the key names kind and person id, never the address

    # the convoy's chat channels (Slack, Teams): notifier/chat
    chat = ChatDelivery(
        rt,
        deliveries=deliveries,
        delivery_log=email_log,
        send_email=send_email,
        sent=SENT,
        list_id=MESSAGES_LIST_ID,
    )

    # At most as many sends in flight as the SMTP pool has connections: a large convoy queues
    # here instead of timing out while waiting for a free connection.
    in_flight = asyncio.Semaphore(rt.settings.smtp_pool_size)

    async def fan_out(sends: Iterable[Callable[[], Awaitable[None]]]) -> None:
        """Run every send (bounded); if any failed, raise the first failure after all ended.

        The ones sent are in the delivery log, so the consumer's retry sends only the rest.
        """

        async def one(send: Callable[[], Awaitable[None]]) -> None:
            batched.set(True)  # this task's sends leave their "sent" record to the flush below
            async with in_flight:
                await send()

        results: list[BaseException | None] = await asyncio.gather(*(one(s) for s in sends), return_exceptions=True)
        try:
            await email_log.flush()  # every "sent" record written before the event is acknowledged
        except Exception as exc:
            results.append(exc)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]

    def convoy_list_id(name: str, convoy_id: uuid.UUID) -> str:
        return f"{' '.join(name.split())[:60]} <{convoy_id}.convoys.convoy>"

    def public(path: str) -> str:
        return f"{rt.settings.public_url.rstrip('/')}{path}"

    async def on_report_submitted(envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        """The peers' emails and (if the convoy wants it) the chat posts about a new report.

        One request to services/convoys (representatives, the convoy's language and chat channels).
        The report comes with the event as written; only for an event older than ``fresh_s`` (the
        notifier was down or behind, a retry) is it read back from services/milestones. A report found
        hidden is neither mailed nor posted. The carried report is as it was written: a hide within its
        first ``fresh_s`` seconds, before this event is handled, can be missed; any later one is seen
        by the read-back.
        """
        assert isinstance(event, ev.ReportSubmitted)
        fresh_s = 10.0
        members = await rt.rpc.call(
            rt.subjects.rpc("convoys", Rpc.CONVOY_RECIPIENTS),
            api.GetRecipients(convoy_id=event.convoy_id),
            api.Recipients,
        )
        report = event.report
        if (datetime.now(UTC) - envelope.occurred_at).total_seconds() > fresh_s:
            now = await rt.rpc.call(
                rt.subjects.rpc("milestones", Rpc.REPORT_GET),
                api.GetReport(actor=api.SYSTEM, report_id=event.report_id),
                api.Report,
            )
            if now.hidden:
                log.info("report hidden before it was announced: no emails, no chat post", report_id=str(now.id))
                return
            report = msgspec.convert(now, ev.ReportSnapshot, from_attributes=True)
        company = next((m.company_name for m in members.members if m.company_id == event.company_id), "")
        link = public(f"/convoys/{event.convoy_id}")
        report_link = public(f"/reports/{report.id}")
        list_id = convoy_list_id(members.convoy_name, event.convoy_id)
        peers = [m for m in members.members if m.company_id != event.company_id]
        prefs = await preferences.get_many(m.person_id for m in peers)
        await fan_out(
            functools.partial(
                send_email,
                f"report:{envelope.id}:{m.person_id}",
                envelope.id,
                to_name=m.name,
                to_email=m.email,
                rendered=render.report_submitted(
                    recipient=m,
                    company=company,
                    convoy=members.convoy_name,
                    report=report,
                    link=link,
                    report_link=report_link,
                    replies_enabled=replies_on,
                ),
                list_id=list_id,
                reply=replies.Target(
                    kind="comment", person_id=m.person_id, convoy_id=event.convoy_id, report_id=event.report_id
                ),
                prefs=prefs[m.person_id],
                thread=f"report.{event.report_id}",
            )
            for m in peers
        )
        await chat.announce_report(envelope, event.convoy_id, report, members, report_link, link)

    async def on_email_requested(envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        assert isinstance(event, ev.EmailRequested)
        # Rendered before the delivery is claimed: a message that cannot be rendered (a missing
        # param) fails here, is retried and dead-lettered, and leaves no row in the log.
        rendered = render.message(event.template, event.language, event.params, name=event.to_name)
        if "@" not in parseaddr(event.to_email)[1]:
            raise ValueError(f"EmailRequested {event.template!r}: to_email is not an email address")
        if await privacy.erased_since(event.to_email, None, envelope.occurred_at):
            SENT.labels("email", "erased").inc()  # the recipient deleted their account meanwhile
            return
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
                "link": public(f"/reports/{report.id}"),
            },
            name=author.name,
        )
        await send_email(
            f"help_offered:{event.offer_id}:{author.person_id}",
            envelope.id,
            to_name=author.name,
            to_email=author.email,
            rendered=rendered,
            list_id=convoy_list_id(members.convoy_name, event.convoy_id),
        )

    # help requests at once and round summaries at close, for the convoy's facilitators
    facilitator_mail = facilitation.FacilitatorMail(
        rt=rt, send_email=send_email, fan_out=fan_out, preferences=preferences, public=public, list_id=convoy_list_id
    )

    # --- check-in cycles ------------------------------------------------------------------------
    async def convoy_context(convoy_id: uuid.UUID) -> tuple[api.Recipients, api.Convoy]:
        """Who to write to (with names and languages), and the convoy (time zone, company names)."""
        members, convoy = await asyncio.gather(
            rt.rpc.call(
                rt.subjects.rpc("convoys", Rpc.CONVOY_RECIPIENTS),
                api.GetRecipients(convoy_id=convoy_id),
                api.Recipients,
            ),
            rt.rpc.call(
                rt.subjects.rpc("convoys", Rpc.CONVOY_GET),
                api.GetConvoy(actor=api.SYSTEM, convoy_id=convoy_id),
                api.Convoy,
            ),
        )
        return members, convoy

    async def on_cycle_prompt(envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        """CycleOpened: prompt every representative; NudgeDue: remind those whose company is silent.

        Absent companies get neither. Keys name the convoy, the cycle (and the nudge) and the person,
        so a second event for the same cycle (a double fire, a redelivery) sends nothing again.
        """
        assert isinstance(event, (ev.CycleOpened, ev.NudgeDue))
        ask = api.CycleAsk(convoy_id=event.convoy_id, cycle_index=event.cycle_index)
        (members, convoy), contexts = await asyncio.gather(
            convoy_context(event.convoy_id),
            rt.rpc.call(rt.subjects.rpc("milestones", Rpc.PROMPT_CONTEXT), ask, api.PromptContexts)
            if isinstance(event, ev.CycleOpened)
            else rt.rpc.call(rt.subjects.rpc("milestones", Rpc.CYCLE_STATUS), ask, api.CycleStatus),
        )
        skip = {a.company_id for a in event.absences}
        context: dict[uuid.UUID, api.PromptContext] = {}
        if isinstance(contexts, api.PromptContexts):
            context = {c.company_id: c for c in contexts.companies}
            key, nudge = "prompt:{convoy}:{cycle}:{person}", 0
        else:
            assert isinstance(event, ev.NudgeDue) and isinstance(contexts, api.CycleStatus)
            skip |= set(contexts.reported_company_ids)  # reported meanwhile: never nudged
            key, nudge = f"nudge:{{convoy}}:{{cycle}}:{event.nudge}:{{person}}", event.nudge
        link = public(f"/convoys/{event.convoy_id}/report")
        list_id = convoy_list_id(members.convoy_name, event.convoy_id)
        now = datetime.now(UTC)
        to = [m for m in members.members if m.company_id not in skip]
        prefs = await preferences.get_many(m.person_id for m in to)
        await fan_out(
            functools.partial(
                send_email,
                key.format(convoy=event.convoy_id, cycle=event.cycle_index, person=m.person_id),
                envelope.id,
                to_name=m.name,
                to_email=m.email,
                rendered=cycles.prompt(
                    recipient=m,
                    convoy=members.convoy_name,
                    cycle_index=event.cycle_index,
                    due_at=event.due_at,
                    timezone=convoy.timezone,
                    link=link,
                    context=context.get(m.company_id),
                    nudge=nudge,
                    now=now,
                    replies_enabled=rt.settings.inbound_smtp_port > 0,
                    calendar_link=public("/profile/#calendar"),
                ),
                list_id=list_id,
                reply=replies.Target(
                    kind="report", person_id=m.person_id, convoy_id=event.convoy_id, company_id=m.company_id
                ),
                prefs=prefs[m.person_id],
            )
            for m in to
        )

    async def on_cycle_closed(envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        """The digest to every member (absent companies too: they still read) and every observer, once per
        person; before it, each facilitator's round summary (sent when nobody reported too: then it says so).
        Observers get the digest and nothing else a member gets (no prompt, nudge, report notice, feedback)."""
        assert isinstance(event, ev.CycleClosed)
        (members, convoy), digest = await asyncio.gather(
            convoy_context(event.convoy_id),
            rt.rpc.call(
                rt.subjects.rpc("milestones", Rpc.DIGEST),
                api.CycleAsk(convoy_id=event.convoy_id, cycle_index=event.cycle_index),
                api.Digest,
            ),
        )
        people = {m.person_id: m.name for m in members.members}
        companies = {c.id: c.name for c in convoy.companies} | {m.company_id: m.company_name for m in members.members}
        link = public(f"/convoys/{event.convoy_id}")
        report_link = public("/reports/{report_id}")
        list_id = convoy_list_id(members.convoy_name, event.convoy_id)
        # rendered once per language (the greeting aside), not once per member
        digests = cycles.DigestRenderer(
            d=digest, people=people, companies=companies, absences=event.absences, link=link, report_link=report_link
        )
        await facilitator_mail.send_round_summaries(envelope, event, digests, list_id)
        if cycles.digest_is_empty(digest):
            log.info("digest skipped: nothing happened", convoy_id=str(event.convoy_id), cycle=event.cycle_index)
            return
        readers: list[api.Recipient | api.ObserverRecipient] = [*members.members, *members.observers]
        prefs = await preferences.get_many(m.person_id for m in readers)
        await fan_out(
            functools.partial(
                send_email,
                f"digest:{event.convoy_id}:{event.cycle_index}:{m.person_id}",
                envelope.id,
                to_name=m.name,
                to_email=m.email,
                rendered=digests.render(m),
                list_id=list_id,
                prefs=prefs[m.person_id],
            )
            for m in readers
        )
        await chat.announce_digest(envelope, event, digest, convoy, companies, link)

    # --- weekly facilitator digest -------------------------------------------------------------
    async def facilitator_health(convoy_ids: list[uuid.UUID], at: datetime) -> api.FacilitatorDigest:
        chunks = [convoy_ids[i : i + DIGEST_ASK_MAX_CONVOYS] for i in range(0, len(convoy_ids), DIGEST_ASK_MAX_CONVOYS)]
        replies = [
            await rt.rpc.call(
                rt.subjects.rpc("milestones", Rpc.FACILITATOR_DIGEST),
                api.FacilitatorDigestAsk(convoy_ids=chunk, at=at),
                api.FacilitatorDigest,
            )
            for chunk in chunks
        ]
        return api.FacilitatorDigest(convoys=[c for r in replies for c in r.convoys])

    async def on_facilitator_digest_due(envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        """One digest per facilitator with convoys, once per period and person (the key says so).

        Facilitators whose digest is already sent (a retry, a second event for the same week) are
        not asked about again; one whose convoys are all quiet gets nothing and leaves no row.
        """
        assert isinstance(event, ev.FacilitatorDigestDue)
        reply = await rt.rpc.call(rt.subjects.rpc("convoys", Rpc.FACILITATORS), api.Empty(), api.Facilitators)
        people = {f.person_id: f for f in reply.facilitators if f.convoy_ids}  # one each, even if listed twice
        keys = {p: facilitator.delivery_key(event.period, p) for p in people}
        settled = await deliveries.settled(list(keys.values())) if keys else set()

        async def send_one(f: api.FacilitatorConvoys) -> None:
            if "@" not in parseaddr(f.email)[1]:
                log.warning("facilitator digest skipped: no email address", person_id=str(f.person_id))
                return
            health = await facilitator_health(list(dict.fromkeys(f.convoy_ids)), event.at)
            rendered = facilitator.facilitator_digest(
                facilitator=f, digest=health, period=event.period, at=event.at, public_url=rt.settings.public_url
            )
            if rendered is None:
                log.info("facilitator digest skipped: all quiet", person_id=str(f.person_id), period=event.period)
                return
            await send_email(
                keys[f.person_id],
                envelope.id,
                to_name=f.name,
                to_email=f.email,
                rendered=rendered,
                list_id=FACILITATOR_LIST_ID,
            )

        await fan_out(functools.partial(send_one, f) for f in people.values() if keys[f.person_id] not in settled)

    async def prefs_get(req: api.PrefsAsk) -> api.NotificationPrefs:
        if req.actor.person_id is None:
            raise Forbidden("the admin token has no preferences; sign in as a person")
        return await preferences.get(req.actor.person_id)

    async def prefs_put(req: api.PutPrefs) -> api.NotificationPrefs:
        if req.actor.person_id is None:
            raise Forbidden("the admin token has no preferences; sign in as a person")
        await preferences.put(req.actor.person_id, req.prefs)
        return req.prefs

    async def unsubscribe(req: api.UnsubscribeAsk) -> api.Unsubscribed:
        """One click, no sign-in: honoured at once (links stay valid for a year)."""
        payload = signing.verify(rt.settings, "unsubscribe", req.token, max_age_s=366 * 24 * 3600)
        person_id, kind = uuid.UUID(payload["p"]), str(payload["k"])
        if await privacy.is_erased(person_id):  # an old link of a deleted account: nothing to keep
            return api.Unsubscribed(kind=kind)
        prefs = await preferences.get(person_id)
        if kind == "digest":
            prefs = msgspec.structs.replace(prefs, digest=False)
        else:
            prefs = msgspec.structs.replace(prefs, immediate={**prefs.immediate, kind: False})
        await preferences.put(person_id, prefs)
        return api.Unsubscribed(kind=kind)

    rt.endpoint(Rpc.PREFS_GET, api.PrefsAsk, prefs_get)
    rt.endpoint(Rpc.PREFS_PUT, api.PutPrefs, prefs_put)
    rt.endpoint(Rpc.UNSUBSCRIBE, api.UnsubscribeAsk, unsubscribe)
    rt.endpoint(Rpc.PERSONAL_DATA, api.Ask, privacy.personal_data)
    rt.consumer("erasure", (ev.PersonErased,), privacy.on_person_erased)

    # Several events at once (each waits mostly on RPCs, SMTP and chat webhooks), in order per convoy:
    # a convoy's digest still goes before its next prompt. Sign-in and invitation emails in order per key.
    rt.consumer("reports", (ev.ReportSubmitted,), on_report_submitted, concurrency=CONSUMER_CONCURRENCY)
    rt.consumer("help", (ev.HelpOffered,), on_help_offered, concurrency=CONSUMER_CONCURRENCY)
    rt.consumer(
        "help_requests", (ev.HelpRequested,), facilitator_mail.on_help_requested, concurrency=CONSUMER_CONCURRENCY
    )
    rt.consumer(
        "messages",
        (ev.EmailRequested,),
        on_email_requested,
        concurrency=CONSUMER_CONCURRENCY,
        ordered_by=lambda e: getattr(e, "key", None),
    )
    rt.consumer("prompts", (ev.CycleOpened, ev.NudgeDue), on_cycle_prompt, concurrency=CONSUMER_CONCURRENCY)
    rt.consumer("digests", (ev.CycleClosed,), on_cycle_closed, concurrency=CONSUMER_CONCURRENCY)
    rt.consumer("facilitator_digests", (ev.FacilitatorDigestDue,), on_facilitator_digest_due)

    # Comments, replies and kudos: collected per report over CONVOY_FEEDBACK_WINDOW_S, one email each.
    feedback_mail = feedback.Feedback(
        rt,
        send_email=send_email,
        fan_out=fan_out,
        preferences=preferences,
        public=public,
        list_id=convoy_list_id,
        replies_on=replies_on,
    )
    rt.consumer(
        "feedback",
        (ev.CommentAdded, ev.KudosGiven, ev.KudosTakenBack),
        feedback_mail.on_event,
        concurrency=CONSUMER_CONCURRENCY,
    )
    rt.background(feedback_mail.run)
