"""Feedback by email, without an email storm (issue #17).

Comments, replies and kudos on a report are collected per report for ``CONVOY_FEEDBACK_WINDOW_S``
from the first one (``comment.added``, ``kudos.given`` and ``kudos.taken_back`` feed the
``feedback_batches``/``feedback_items`` tables, each event in one statement with its
``processed_events`` row). When the window has passed, a flusher (a background loop in every
notifier replica; ``FOR UPDATE SKIP LOCKED`` gives each batch to one of them) sends one email per
person:

- ``feedback:{batch}:{person}`` to every representative of the report's company, listing what came
  in (who, their company, the comment as a plain excerpt, kudos by whom), except their own;
- ``reply:{batch}:{person}`` to a commenter (not of that company) whose comment was answered.

What is true at the flush counts: a hidden report sends nothing; a hidden comment (or an answer to
one), a comment its author deleted and kudos taken back are left out; nothing left, no email. An
edited comment is mailed as it reads at the flush (so edits and deletes need no events). The data
comes from services/milestones (``feedback_reports``: hidden, company and kudos of every report of
the pass in one request; ``comment_list`` per batch with comments) and services/convoys
(``convoy_recipients``, and ``facilitators`` when a facilitator took part), asked at the flush.

Exactly once: the delivery keys name the batch, so a flusher that dies mid-way (its lease runs out,
another takes the batch over) or a failed send retried later sends only what was not sent; the
batch is deleted once every email is sent. Answering the email files a reply to the latest comment
it listed (a top-level comment when it listed only kudos), through services/milestones'
``comment_add`` as the person, who must still be allowed to comment.
"""

from __future__ import annotations

import asyncio
import functools
import re
import uuid
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import structlog

from notifier import i18n, recipients, render, replies
from notifier.delivery import Mailer, convoy_list_id
from notifier.email import TransientDeliveryError
from notifier.i18n import N_
from notifier.repository import FeedbackBatch, FeedbackItem, FeedbackQueue
from schemas import api
from schemas import envelope as env
from schemas import events as ev
from schemas.convoys import Convoys
from schemas.milestones import Milestones
from services.runtime.errors import NotFound, Unavailable
from services.runtime.lifecycle import wait_or_stop
from services.runtime.service import Runtime

log = structlog.get_logger(__name__)

BATCHES_PER_PASS = 20
"""Batches one flusher closes at once (the next pass follows at once while there are more)."""
WAKE_MAX_S = 2.0
"""The flusher looks for due batches at least this often (more often with a short window)."""
LEASE_S = 120.0
"""A batch being sent is another flusher's to take over after this long (its flusher died)."""
RETRY_MAX_S = 600.0
"""Longest wait before a batch that failed (SMTP or a service away) is tried again."""
STALE_AFTER_S = 24 * 3600.0
"""Events older than this are not announced (a new consumer replaying the stream, a long outage)."""
EXCERPT_CHARS = 500
"""Longest comment excerpt in an email (the whole comment is one click away)."""

Kind = Literal["feedback", "reply"]

_REPLY_HINTS = {
    "hint_comment": N_(
        "Just reply to this email: your answer is posted as a reply to the latest comment above,"
        " for every member of the convoy to see."
    ),
    "hint_report": N_(
        "Just reply to this email: your answer is posted as a comment on the report, for every"
        " member of the convoy to see."
    ),
}
"""What a reply to the email becomes (``render_batch``'s ``reply_hint``)."""


# --- rendering -----------------------------------------------------------------------------------
def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A comment as plain text for an email: paragraphs kept, blank runs and spaces collapsed, cut
    at a word before ``limit`` characters (with "…")."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n"))]
    out = "\n".join(p for p in paragraphs if p)
    if len(out) <= limit:
        return out
    cut = out[:limit].rsplit(" ", 1)[0] if " " in out[:limit] else out[:limit]
    return cut.rstrip() + " …"


@dataclass(frozen=True)
class Line:
    """One comment in the email: who said it (already in the recipient's words) and what."""

    who: str
    text: str


def render_batch(
    kind: Kind,
    *,
    language: str,
    name: str,
    convoy: str,
    company: str,
    lines: list[Line],
    kudos: list[str],
    link: str,
    reply_hint: str | None,
) -> render.Rendered:
    """The feedback or reply email. User text (names, comments) is formatted into plain strings;
    the HTML template escapes everything it prints."""
    lang = render.message_language(language)
    _ = i18n.Words(lang)
    if kind == "feedback":
        subject = _('Feedback on the report of %(company)s in "%(convoy)s"', company=company, convoy=convoy)
        heading = _("New feedback on your report")
        intro = _(
            'Here is what came in on the report of %(company)s in the convoy "%(convoy)s":',
            company=company,
            convoy=convoy,
        )
    else:
        subject = _('Reply to your comment in "%(convoy)s"', convoy=convoy)
        heading = _("Someone answered you")
        intro = _(
            'Your comment on the report of %(company)s in the convoy "%(convoy)s" got an answer:',
            company=company,
            convoy=convoy,
        )
    context: dict[str, Any] = {
        "lang": lang,
        "subject": subject,
        "preheader": " ".join(lines[-1].text.split())[:120] if lines else "",
        "heading": heading,
        "greeting": render.greeting(_, name),
        "intro": intro,
        "entries": lines,
        "kudos": kudos,
        "reply_hint": _(_REPLY_HINTS[reply_hint]) if reply_hint else "",
        "link": link,
    }
    return render.from_templates("feedback", context, subject=subject, lang=lang)


# --- who is who ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Person:
    person_id: uuid.UUID
    name: str
    email: str
    language: str
    company: str | None
    """Company name; None for a facilitator of the convoy."""
    representative: bool


def _people(members: api.Recipients, company_id: uuid.UUID) -> dict[uuid.UUID, Person]:
    people: dict[uuid.UUID, Person] = {}
    for m in members.members:  # the report's company first, for a person representing two
        if m.person_id not in people or m.company_id == company_id:
            people[m.person_id] = Person(m.person_id, m.name, m.email, m.language, m.company_name, True)
    return people


@dataclass(frozen=True)
class _Said:
    """A visible comment item with what the email needs of it."""

    item: FeedbackItem
    comment: api.Comment
    parent: api.Comment | None


@dataclass(frozen=True)
class _Email:
    """One email of a batch, rendered, before it is sent."""

    key: str
    to: Person
    rendered: render.Rendered
    target: replies.Target | None
    list_id: str


class Feedback:
    """The consumer (``on_event``) and the flusher (``run``); sends through the notifier's ``send_email``."""

    def __init__(self, rt: Runtime, mail: Mailer) -> None:
        self.rt = rt
        self.mail = mail
        self.queue = FeedbackQueue(rt.db)
        self.window_s = rt.settings.feedback_window_s

    # --- collecting ----------------------------------------------------------------------------
    async def on_event(self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection, consumer: str) -> bool:
        """Add the comment or kudos to its report's open batch, recording the event as processed by
        ``consumer`` in the same statement (a one-statement consumer: services/runtime/consumer.py);
        False: the event was processed before."""
        if (datetime.now(UTC) - envelope.occurred_at).total_seconds() > STALE_AFTER_S:
            log.info("feedback too old to announce", event_id=str(envelope.id), type=event.TYPE)
            return True
        if isinstance(event, ev.KudosTakenBack):
            return await FeedbackQueue.take_back_kudos(
                conn, consumer=consumer, event_id=envelope.id, report_id=event.report_id, person_id=event.person_id
            )
        if isinstance(event, ev.CommentAdded):
            kind, actor, comment_id, parent_id = "comment", event.author_id, event.comment_id, event.parent_id
        else:
            assert isinstance(event, ev.KudosGiven)
            kind, actor, comment_id, parent_id = "kudos", event.person_id, None, None
        return await FeedbackQueue.add(
            conn,
            consumer=consumer,
            event_id=envelope.id,
            report_id=event.report_id,
            convoy_id=event.convoy_id,
            kind=kind,
            actor_id=actor,
            comment_id=comment_id,
            parent_id=parent_id,
            occurred_at=envelope.occurred_at,
            window_s=self.window_s,
        )

    # --- flushing ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Send due batches until ``stop`` is set (every replica runs this; each batch goes to one)."""
        interval = min(WAKE_MAX_S, max(0.1, self.window_s / 4))
        while not stop.is_set():
            try:
                while await self.flush() == BATCHES_PER_PASS and not stop.is_set():
                    pass
            except Unavailable as exc:
                log.warning("feedback flush: database away, trying again", error=str(exc))
            except Exception:
                log.exception("feedback flush failed")
            await wait_or_stop(stop, interval)

    async def flush(self) -> int:
        """One pass: close the due batches and send them; how many were taken.

        The pass shares its statements: the batches' emails are prepared (services asked, rendered)
        side by side, their recipients' preferences read in one query, the emails sent (their claims
        and records share commits, notifier/batching.py), and the batches sent forgotten in one
        statement. A batch that fails is retried later on its own; the others go on."""
        batches = await self.queue.claim_due(BATCHES_PER_PASS, LEASE_S)
        if not batches:
            return 0
        try:
            reports = await self.reports(b.report_id for b in batches if b.items)
        except Exception as exc:  # nothing sent: every batch of the pass is tried again
            await asyncio.gather(*(self._failed(b, exc) for b in batches))
            return len(batches)
        prepared = await asyncio.gather(
            *(self.prepare(b, reports.get(b.report_id)) for b in batches), return_exceptions=True
        )
        ready = [(b, p) for b, p in zip(batches, prepared, strict=True) if not isinstance(p, BaseException)]
        failed = [(b, p) for b, p in zip(batches, prepared, strict=True) if isinstance(p, BaseException)]
        prefs: dict[uuid.UUID, api.NotificationPrefs] = {}
        try:
            prefs = await self.mail.preferences.get_many(s.to.person_id for _, p in ready for s in p)
        except Exception as exc:  # nothing sent: every batch of the pass is tried again
            failed += [(b, exc) for b, _ in ready]
            ready = []
        sent = await asyncio.gather(*(self.send(b, p, prefs) for b, p in ready), return_exceptions=True)
        failed += [(b, r) for (b, _), r in zip(ready, sent, strict=True) if isinstance(r, BaseException)]
        done = [b.id for (b, _), r in zip(ready, sent, strict=True) if not isinstance(r, BaseException)]
        await asyncio.gather(*(self._failed(b, exc) for b, exc in failed))
        try:
            await self.queue.done(*done)
        except Exception:  # their leases run out: taken over, and the delivery log sends nothing twice
            log.warning("feedback batches sent, but could not be forgotten yet", batches=len(done))
        return len(batches)

    async def _failed(self, batch: FeedbackBatch, exc: BaseException) -> None:
        if not isinstance(exc, Exception):
            return  # (a send cancelled on its own) the lease runs out and another pass takes the batch over
        delay = min(RETRY_MAX_S, 5.0 * 2 ** min(batch.attempts - 1, 10))
        if isinstance(exc, (Unavailable, TransientDeliveryError)):
            log.warning("feedback batch not sent yet; retrying", batch_id=str(batch.id), error=str(exc))
        else:
            log.error(
                "feedback batch failed; retrying",
                batch_id=str(batch.id),
                attempts=batch.attempts,
                exc_info=exc,
            )
        try:
            await self.queue.retry_later(batch.id, delay, repr(exc))
        except Exception:  # the lease runs out by itself: retried then
            log.warning("feedback batch: could not record the failure", batch_id=str(batch.id))

    async def deliver(self, batch: FeedbackBatch) -> None:
        """The batch's emails, as things stand now (hidden content and kudos taken back left out)."""
        reports = await self.reports([batch.report_id])
        sends = await self.prepare(batch, reports.get(batch.report_id))
        if sends:
            await self.send(batch, sends, await self.mail.preferences.get_many(s.to.person_id for s in sends))

    async def reports(self, report_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, api.FeedbackReport]:
        """What the batches' emails need of their reports as things stand now (hidden, company, who
        gives kudos), for a whole pass in one request to services/milestones; a report that is gone
        is not in the answer."""
        wanted = list(dict.fromkeys(report_ids))
        if not wanted:
            return {}
        answer = await self.rt.rpc.call(Milestones.FEEDBACK_REPORTS, api.FeedbackAsk(report_ids=wanted))
        return {r.id: r for r in answer.reports}

    async def prepare(self, batch: FeedbackBatch, report: api.FeedbackReport | None) -> list[_Email]:
        """The batch's emails, rendered as things stand now (nothing sent yet; none: nothing to say).
        ``report``: the batch's report as :meth:`reports` found it just before (None: it is gone)."""
        if not batch.items:
            return []
        if report is None:
            log.info("feedback dropped: the report is gone", batch_id=str(batch.id))
            return []
        rpc = self.rt.rpc
        asks: list[Awaitable[Any]] = [recipients.of(self.rt).get(batch.convoy_id)]
        if any(i.kind == "comment" for i in batch.items):
            asks.append(
                rpc.call(Milestones.COMMENT_LIST, api.ReportAction(actor=api.SYSTEM, report_id=batch.report_id))
            )
        try:
            members, *rest = await asyncio.gather(*asks)
        except NotFound:
            log.info("feedback dropped: the report or convoy is gone", batch_id=str(batch.id))
            return []
        assert isinstance(members, api.Recipients)
        if report.hidden:
            log.info("feedback dropped: the report is hidden", batch_id=str(batch.id))
            return []
        said = _visible_comments(batch.items, rest[0] if rest else api.Comments(comments=[]))
        kudos = _kudos_still_given(batch.items, report)
        if not said and not kudos:
            return []
        people = _people(members, report.company_id)
        wanted = {s.item.actor_id for s in said} | set(kudos) | {s.parent.author_id for s in said if s.parent}
        if wanted - people.keys():  # a facilitator took part (or someone left): ask who facilitates
            people |= await self._facilitators(batch.convoy_id, wanted - people.keys())

        company = report.company_name or next(
            (m.company_name for m in members.members if m.company_id == report.company_id), ""
        )
        sends: list[_Email] = []
        of_company = {m.person_id for m in members.members if m.company_id == report.company_id}
        representatives = [people[p] for p in of_company]
        for p in representatives:
            mine = [s for s in said if s.item.actor_id != p.person_id]
            their_kudos = [k for k in kudos if k != p.person_id]
            if mine or their_kudos:
                sends.append(self._one_email("feedback", batch, p, people, company, members, mine, their_kudos))
        told = {p.person_id for p in representatives}
        answered: dict[uuid.UUID, list[_Said]] = {}
        for s in said:
            if (
                s.parent is not None
                and not s.parent.deleted  # its author took it back: no "your comment got an answer"
                and s.parent.author_id != s.item.actor_id
                and s.parent.author_id not in told
            ):
                answered.setdefault(s.parent.author_id, []).append(s)
        for person_id, answers in answered.items():
            if person_id in people and people[person_id].email:  # still in the convoy
                sends.append(self._one_email("reply", batch, people[person_id], people, company, members, answers, []))
        return sends

    async def send(
        self, batch: FeedbackBatch, sends: list[_Email], prefs: dict[uuid.UUID, api.NotificationPrefs]
    ) -> None:
        """Send the prepared emails (``prefs``: their recipients' preferences, read just before)."""
        if not sends:
            return
        await self.mail.fan_out(
            functools.partial(
                self.mail.send_email,
                e.key,
                batch.id,
                to_name=e.to.name,
                to_email=e.to.email,
                rendered=e.rendered,
                list_id=e.list_id,
                reply=e.target,
                prefs=prefs[e.to.person_id],
                thread=f"report.{batch.report_id}",
            )
            for e in sends
        )

    async def _facilitators(self, convoy_id: uuid.UUID, wanted: set[uuid.UUID]) -> dict[uuid.UUID, Person]:
        """Those of ``wanted`` who facilitate the convoy: named from the convoy, with the contact
        ``facilitators`` gives (it lists active and paused convoys only; without it, no email to them)."""
        rpc = self.rt.rpc
        convoy, everyone = await asyncio.gather(
            rpc.call(Convoys.CONVOY_GET, api.GetConvoy(actor=api.SYSTEM, convoy_id=convoy_id)),
            rpc.call(Convoys.FACILITATORS, api.Empty()),
        )
        contacts = {f.person_id: f for f in everyone.facilitators if convoy_id in f.convoy_ids}
        found: dict[uuid.UUID, Person] = {}
        for ref in convoy.facilitators:
            if ref.person_id in wanted:
                c = contacts.get(ref.person_id)
                found[ref.person_id] = Person(
                    ref.person_id, ref.name, c.email if c else "", c.language if c else convoy.language, None, False
                )
        return found

    def _one_email(
        self,
        kind: Kind,
        batch: FeedbackBatch,
        to: Person,
        people: dict[uuid.UUID, Person],
        company: str,
        members: api.Recipients,
        said: list[_Said],
        kudos: list[uuid.UUID],
    ) -> _Email:
        _ = i18n.Words(render.message_language(to.language))
        facilitator = _("facilitator")

        def who(person_id: uuid.UUID, comment: api.Comment | None = None) -> str:
            p = people.get(person_id)
            if p is None:  # left the convoy, or erased their account
                return comment.former_author if comment is not None and comment.former_author else _("a former member")
            return f"{p.name} ({p.company if p.company is not None else facilitator})"

        lines = []
        for s in said:
            author = who(s.item.actor_id, s.comment)
            if s.parent is None:
                heading = _("%(who)s writes:", who=author)
            elif s.parent.author_id == to.person_id:
                heading = _("%(who)s answers you:", who=author)
            else:
                parent = people.get(s.parent.author_id)
                heading = _(
                    "%(who)s answers %(parent)s:", who=author, parent=parent.name if parent else _("a former member")
                )
            lines.append(Line(who=heading, text=excerpt(s.comment.body)))
        target = None
        hint = None
        if self.mail.replies_on and to.representative:
            latest = said[-1].comment if said else None
            parent_id = (latest.parent_id or latest.id) if latest is not None else None
            target = replies.Target(
                kind="comment",
                person_id=to.person_id,
                convoy_id=batch.convoy_id,
                report_id=batch.report_id,
                parent_id=parent_id,
            )
            hint = "hint_comment" if latest is not None else "hint_report"
        rendered = render_batch(
            kind,
            language=to.language,
            name=to.name,
            convoy=members.convoy_name,
            company=company,
            lines=lines,
            kudos=[who(k) for k in kudos],
            link=self.mail.public(f"/reports/{batch.report_id}"),
            reply_hint=hint,
        )
        return _Email(
            f"{kind}:{batch.id}:{to.person_id}",
            to,
            rendered,
            target,
            convoy_list_id(members.convoy_name, batch.convoy_id),
        )


def _visible_comments(items: list[FeedbackItem], comments: api.Comments) -> list[_Said]:
    """The batch's comments members still see (not hidden, not deleted, not an answer to a hidden one), once each."""
    found: dict[uuid.UUID, tuple[api.Comment, api.Comment | None]] = {}
    for top in comments.comments:
        found[top.id] = (top, None)
        for answer in top.replies:
            found[answer.id] = (answer, top)
    out: list[_Said] = []
    seen: set[uuid.UUID] = set()
    for item in items:
        if item.kind != "comment" or item.comment_id is None or item.comment_id in seen:
            continue
        seen.add(item.comment_id)
        comment, parent = found.get(item.comment_id, (None, None))
        if comment is None or comment.hidden or comment.deleted or (parent is not None and parent.hidden):
            continue
        out.append(_Said(item=item, comment=comment, parent=parent))
    return out


def _kudos_still_given(items: list[FeedbackItem], report: api.FeedbackReport) -> list[uuid.UUID]:
    """Who gave kudos in the batch and has not taken them back, in order, once each."""
    given = set(report.kudos_by)
    return list(dict.fromkeys(i.actor_id for i in items if i.kind == "kudos" and i.actor_id in given))
