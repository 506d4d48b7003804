"""The notifier's event handlers: one per event kind, each a method of ``Consumers``.

- report.submitted: ``on_report_submitted`` (``report:{event}:{person}`` to peers; chat posts)
- email.requested (sign-in links, invitations, notices): ``on_email_requested`` (``message:{key}``)
- help.offered: ``on_help_offered`` (``help_offered:{offer}:{person}`` to the report's author)
- help.requested: ``on_help_requested`` (each facilitator at once: notifier/facilitation.py)
- cycle.opened, nudge.due: ``on_cycle_prompt`` (``prompt:…`` / ``nudge:…`` to representatives)
- cycle.closed: ``on_cycle_closed`` (round summaries to facilitators, ``digest:…`` to readers; chat posts)
- facilitator_digest.due: ``on_facilitator_digest_due`` (the weekly digest per facilitator)
- comment.added, kudos.given, kudos.taken_back: ``on_feedback`` (collected per report: notifier/feedback.py)
- person.erased: ``on_person_erased`` (nothing sent: notifier/privacy.py)

Every handler has the consumer's signature ``(envelope, event, conn)`` and sends through the one
``Mailer`` (notifier/delivery.py: delivery log, preferences, footer, threads), so each can be called
on its own with a ``Consumers`` built from a runtime (database, NATS for the RPCs it makes) and a
``Mailer``. ``notifier.setup`` registers them with the runtime.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from datetime import UTC, datetime
from email.utils import parseaddr

import asyncpg
import msgspec
import structlog

from notifier import cycles, facilitation, facilitator, feedback, recipients, render, replies, repository
from notifier.chat.delivery import ChatDelivery
from notifier.delivery import MESSAGES_LIST_ID, SENT, Mailer, convoy_list_id
from notifier.privacy import PrivacyRules
from schemas import api
from schemas import envelope as env
from schemas import events as ev
from schemas.convoys import Convoys
from schemas.milestones import Milestones
from services.runtime import sealing
from services.runtime.service import Runtime

log = structlog.get_logger(__name__)

FACILITATOR_LIST_ID = "Convoy facilitator digest <facilitator-digest.convoy>"
"""List-Id of the weekly facilitator digest."""
DIGEST_ASK_MAX_CONVOYS = 500
"""api.FacilitatorDigestAsk takes at most this many convoy ids; more are asked in chunks."""
REPORT_FRESH_S = 10.0
"""A report.submitted event younger than this is mailed with the report it carries (not read back)."""


class Consumers:
    """The notifier's event handlers and what they share: the runtime (RPC), the mailer, chat channels."""

    def __init__(self, rt: Runtime, mail: Mailer, privacy: PrivacyRules) -> None:
        self.rt = rt
        self.mail = mail
        self.privacy = privacy
        # the convoys' recipients, reused while services/convoys announces no change (notifier/recipients.py)
        self.recipients = recipients.of(rt)
        # the convoy's chat channels (Slack, Teams): notifier/chat
        self.chat = ChatDelivery(rt, mail)
        # help requests at once and round summaries at close, for the convoy's facilitators
        self.facilitators = facilitation.FacilitatorMail(rt, mail)
        # comments, replies and kudos: collected per report over CONVOY_FEEDBACK_WINDOW_S, one email each
        self.feedback = feedback.Feedback(rt, mail)

    async def close(self) -> None:
        await self.chat.close()

    # --- reports and help ------------------------------------------------------------------------
    async def report_is_quiet(self, envelope: env.Envelope, event: ev.Event) -> bool:
        """No peer to email (the convoy has no other company's representative) and no chat channel that posts
        reports: the event needs only its record (services/runtime/consumer.py ``ConsumerSpec.quiet``), not a
        transaction. The recipients asked here are the handler's too (kept: notifier/recipients.py)."""
        assert isinstance(event, ev.ReportSubmitted)
        members = await self.recipients.get(event.convoy_id)
        if any(m.company_id != event.company_id for m in members.members):
            return False
        return not any(t.post_reports for t in await self.chat.targets(event.convoy_id, members.chats))

    async def on_report_submitted(self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        """The peers' emails and (if the convoy wants it) the chat posts about a new report.

        The representatives, the convoy's language and chat channels: one request to services/convoys, or
        none while its answer for the convoy is unchanged (notifier/recipients.py).
        The report comes with the event as written; only for an event older than ``REPORT_FRESH_S`` (the
        notifier was down or behind, a retry) is it read back from services/milestones. A report found
        hidden is neither mailed nor posted. The carried report is as it was written: a hide within its
        first ``REPORT_FRESH_S`` seconds, before this event is handled, can be missed; any later one is
        seen by the read-back.
        """
        assert isinstance(event, ev.ReportSubmitted)
        rt, mail = self.rt, self.mail
        members = await self.recipients.get(event.convoy_id)
        report = event.report
        if (datetime.now(UTC) - envelope.occurred_at).total_seconds() > REPORT_FRESH_S:
            now = await rt.rpc.call(Milestones.REPORT_GET, api.GetReport(actor=api.SYSTEM, report_id=event.report_id))
            if now.hidden:
                log.info("report hidden before it was announced: no emails, no chat post", report_id=str(now.id))
                return
            report = msgspec.convert(now, ev.ReportSnapshot, from_attributes=True)
        company = next((m.company_name for m in members.members if m.company_id == event.company_id), "")
        link = mail.public(f"/convoys/{event.convoy_id}")
        report_link = mail.public(f"/reports/{report.id}")
        list_id = convoy_list_id(members.convoy_name, event.convoy_id)
        peers = [m for m in members.members if m.company_id != event.company_id]
        prefs = await mail.preferences.get_many((m.person_id for m in peers), conn)  # the consumer's connection
        await mail.fan_out(
            (
                functools.partial(
                    mail.send_email,
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
                        replies_enabled=mail.replies_on,
                    ),
                    list_id=list_id,
                    reply=replies.Target(
                        kind="comment", person_id=m.person_id, convoy_id=event.convoy_id, report_id=event.report_id
                    ),
                    prefs=prefs[m.person_id],
                    thread=f"report.{event.report_id}",
                )
                for m in peers
            ),
            # the chat posts at the same time: their claims and records share the emails' commits
            alongside=[
                functools.partial(
                    self.chat.announce_report, envelope, event.convoy_id, report, members, report_link, link
                )
            ],
        )

    async def on_email_requested(self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        if isinstance(event, ev.PoolContactDeleted):  # after its confirmation (same lane: the same key)
            await repository.forget_recipient(conn, f"message:{event.key}")
            return
        """A message another service asked for (sign-in link, invitation, a decision): sent as asked."""
        assert isinstance(event, ev.EmailRequested)
        # Recipient, name and links travel sealed for the notifier (services/runtime/sealing.py).
        event = sealing.unseal(event, self.rt.settings.notifier_box_key)
        # Rendered before the delivery is claimed: a message that cannot be rendered (a missing
        # param) fails here, is retried and dead-lettered, and leaves no row in the log.
        rendered = render.message(event.template, event.language, event.params, name=event.to_name)
        if "@" not in parseaddr(event.to_email)[1]:
            raise ValueError(f"EmailRequested {event.template!r}: to_email is not an email address")
        if await self.privacy.erased_since(event.to_email, None, envelope.occurred_at):
            SENT.labels("email", "erased").inc()  # the recipient deleted their account meanwhile
            # asked for before the erasure, stored after the erasure's sweep: erased from the streams now
            await self.privacy.erase_messages(sealing.recipient_tag(event.to_email))
            return
        await self.mail.send_email(
            f"message:{event.key}",
            envelope.id,
            to_name=event.to_name,
            to_email=event.to_email,
            rendered=rendered,
            list_id=MESSAGES_LIST_ID,
        )

    async def on_help_offered(self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        """Tell the report's author who offered help."""
        assert isinstance(event, ev.HelpOffered)
        rt = self.rt
        members = await self.recipients.get(event.convoy_id)
        report = await rt.rpc.call(Milestones.REPORT_GET, api.GetReport(actor=api.SYSTEM, report_id=event.report_id))
        people = {m.person_id: m for m in members.members}
        author, helper = people.get(report.author_id), people.get(event.person_id)
        if author is None or helper is None:  # one of them left the convoy meanwhile: nobody to tell
            return
        rendered = render.message(
            "help_offered",
            author.language,
            {
                "convoy": members.convoy_name,
                "helper": helper.name,
                "company": helper.company_name,
                "topic": report.help_topic or "-",
                "message": event.message,
                "link": self.mail.public(f"/reports/{report.id}"),
            },
            name=author.name,
        )
        await self.mail.send_email(
            f"help_offered:{event.offer_id}:{author.person_id}",
            envelope.id,
            to_name=author.name,
            to_email=author.email,
            rendered=rendered,
            list_id=convoy_list_id(members.convoy_name, event.convoy_id),
        )

    async def on_help_requested(self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        """Each facilitator of the convoy hears of the help request at once (notifier/facilitation.py)."""
        await self.facilitators.on_help_requested(envelope, event, conn)

    # --- check-in cycles -------------------------------------------------------------------------
    async def convoy_context(self, convoy_id: uuid.UUID) -> tuple[api.Recipients, api.Convoy]:
        """Who to write to (with names and languages), and the convoy (time zone, company names)."""
        rt = self.rt
        members, convoy = await asyncio.gather(
            self.recipients.get(convoy_id),
            rt.rpc.call(Convoys.CONVOY_GET, api.GetConvoy(actor=api.SYSTEM, convoy_id=convoy_id)),
        )
        return members, convoy

    async def on_cycle_prompt(self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        """CycleOpened: prompt every representative; NudgeDue: remind those whose company is silent.

        Absent companies get neither. Keys name the convoy, the cycle (and the nudge) and the person,
        so a second event for the same cycle (a double fire, a redelivery) sends nothing again.
        """
        assert isinstance(event, (ev.CycleOpened, ev.NudgeDue))
        rt, mail = self.rt, self.mail
        ask = api.CycleAsk(convoy_id=event.convoy_id, cycle_index=event.cycle_index)
        (members, convoy), contexts = await asyncio.gather(
            self.convoy_context(event.convoy_id),
            rt.rpc.call(Milestones.PROMPT_CONTEXT, ask)
            if isinstance(event, ev.CycleOpened)
            else rt.rpc.call(Milestones.CYCLE_STATUS, ask),
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
        link = mail.public(f"/convoys/{event.convoy_id}/report")
        list_id = convoy_list_id(members.convoy_name, event.convoy_id)
        now = datetime.now(UTC)
        to = [m for m in members.members if m.company_id not in skip]
        prefs = await mail.preferences.get_many(m.person_id for m in to)
        await mail.fan_out(
            functools.partial(
                mail.send_email,
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
                    replies_enabled=mail.replies_on,
                    calendar_link=mail.public("/profile/#calendar"),
                ),
                list_id=list_id,
                reply=replies.Target(
                    kind="report",
                    person_id=m.person_id,
                    convoy_id=event.convoy_id,
                    company_id=m.company_id,
                    cycle_index=event.cycle_index,
                ),
                prefs=prefs[m.person_id],
            )
            for m in to
        )

    async def on_cycle_closed(self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        """The digest to every member (absent companies too: they still read) and every observer, once per
        person; before it, each facilitator's round summary (sent when nobody reported too: then it says so).
        Observers get the digest and nothing else a member gets (no prompt, nudge, report notice, feedback)."""
        assert isinstance(event, ev.CycleClosed)
        rt, mail = self.rt, self.mail
        (members, convoy), digest = await asyncio.gather(
            self.convoy_context(event.convoy_id),
            rt.rpc.call(Milestones.DIGEST, api.CycleAsk(convoy_id=event.convoy_id, cycle_index=event.cycle_index)),
        )
        people = {m.person_id: m.name for m in members.members}
        companies = {c.id: c.name for c in convoy.companies} | {m.company_id: m.company_name for m in members.members}
        link = mail.public(f"/convoys/{event.convoy_id}")
        report_link = mail.public("/reports/{report_id}")
        list_id = convoy_list_id(members.convoy_name, event.convoy_id)
        # rendered once per language (the greeting aside), not once per member
        digests = cycles.DigestRenderer(
            d=digest, people=people, companies=companies, absences=event.absences, link=link, report_link=report_link
        )
        await self.facilitators.send_round_summaries(envelope, event, digests, list_id)
        if cycles.digest_is_empty(digest):
            log.info("digest skipped: nothing happened", convoy_id=str(event.convoy_id), cycle=event.cycle_index)
            return
        readers: list[api.Recipient | api.ObserverRecipient] = [*members.members, *members.observers]
        prefs = await mail.preferences.get_many(m.person_id for m in readers)
        await mail.fan_out(
            functools.partial(
                mail.send_email,
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
        await self.chat.announce_digest(envelope, event, digest, convoy, companies, link)

    # --- weekly facilitator digest ---------------------------------------------------------------
    async def facilitator_health(self, convoy_ids: list[uuid.UUID], at: datetime) -> api.FacilitatorDigest:
        rt = self.rt
        chunks = [convoy_ids[i : i + DIGEST_ASK_MAX_CONVOYS] for i in range(0, len(convoy_ids), DIGEST_ASK_MAX_CONVOYS)]
        answers = [
            await rt.rpc.call(Milestones.FACILITATOR_DIGEST, api.FacilitatorDigestAsk(convoy_ids=chunk, at=at))
            for chunk in chunks
        ]
        return api.FacilitatorDigest(convoys=[c for r in answers for c in r.convoys])

    async def on_facilitator_digest_due(
        self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection
    ) -> None:
        """One digest per facilitator with convoys, once per period and person (the key says so).

        Facilitators whose digest is already sent (a retry, a second event for the same week) are
        not asked about again; one whose convoys are all quiet gets nothing and leaves no row.
        """
        assert isinstance(event, ev.FacilitatorDigestDue)
        rt, mail = self.rt, self.mail
        reply = await rt.rpc.call(Convoys.FACILITATORS, api.Empty())
        people = {f.person_id: f for f in reply.facilitators if f.convoy_ids}  # one each, even if listed twice
        keys = {p: facilitator.delivery_key(event.period, p) for p in people}
        settled = await mail.deliveries.settled(list(keys.values())) if keys else set()

        async def send_one(f: api.FacilitatorConvoys) -> None:
            if "@" not in parseaddr(f.email)[1]:
                log.warning("facilitator digest skipped: no email address", person_id=str(f.person_id))
                return
            health = await self.facilitator_health(list(dict.fromkeys(f.convoy_ids)), event.at)
            rendered = facilitator.facilitator_digest(
                facilitator=f, digest=health, period=event.period, at=event.at, public_url=rt.settings.public_url
            )
            if rendered is None:
                log.info("facilitator digest skipped: all quiet", person_id=str(f.person_id), period=event.period)
                return
            await mail.send_email(
                keys[f.person_id],
                envelope.id,
                to_name=f.name,
                to_email=f.email,
                rendered=rendered,
                list_id=FACILITATOR_LIST_ID,
            )

        await mail.fan_out(functools.partial(send_one, f) for f in people.values() if keys[f.person_id] not in settled)

    # --- feedback and data protection ------------------------------------------------------------
    async def on_feedback(
        self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection, consumer: str
    ) -> bool:
        """A comment, reply or kudos joins its report's feedback batch (sent by ``feedback.run``), in one
        statement that also records the event (a one-statement consumer); False: processed before."""
        return await self.feedback.on_event(envelope, event, conn, consumer)

    async def on_person_erased(self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        """Forget the person's preferences and addresses (notifier/privacy.py)."""
        await self.privacy.on_person_erased(envelope, event, conn)
