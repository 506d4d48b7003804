"""The facilitator's part of the weekly loop: a help request at once, the round summary at close.

- ``help_requested``: when a report asks for help (``help.requested``), each facilitator of the
  convoy gets an email at once: who asks, the topic, the milestone if one is named, the report's
  blockers, a link to the report. Key ``help_requested:{report_id}:{person_id}``.
- ``facilitator_cycle``: when a cycle closes (``cycle.closed``), each facilitator of the convoy gets
  the round summary: participation (on time / late), the silent companies by name, those away or
  skipping with their reason, the help requests, the mood average, and then the reports as the
  members' digest shows them (``cycles.DigestRenderer`` builds the views, ``_digest_report.*``
  renders the cards for both). Sent when nobody reported too (then it says so).
  Key ``facilitator_cycle:{convoy_id}:{cycle_index}:{person_id}``.

Rendering is pure (functions and ``RoundSummary``); ``FacilitatorMail`` fetches what the emails need
and sends them through the notifier's ``send_email`` (delivery log, preferences, unsubscribe), wired
up by ``notifier.setup``. Everything people typed is escaped in HTML (autoescape) or, for Markdown
(blockers), rendered and sanitized like the digest does, and flattened in the text part.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

import asyncpg
import structlog
from markupsafe import Markup

from notifier import i18n
from notifier.cycles import DigestRenderer, _one_line
from notifier.delivery import Mailer, convoy_list_id
from notifier.render import Rendered, _env, greeting, message_language
from schemas import api
from schemas import envelope as env
from schemas import events as ev
from schemas.convoys import Convoys
from schemas.milestones import Milestones
from services.runtime import markdown
from services.runtime.errors import NotFound
from services.runtime.service import Runtime

log = structlog.get_logger(__name__)

HELP_FRESH_S = 2 * 24 * 3600.0
"""A help request older than this when it is handled is not mailed any more: "at once" has passed
(a notifier away for days, or this consumer reading the stream from its start when it is first
deployed); the weekly facilitator digest lists unanswered help anyway."""


def help_key(report_id: uuid.UUID, person_id: uuid.UUID) -> str:
    return f"help_requested:{report_id}:{person_id}"


def summary_key(convoy_id: uuid.UUID, cycle_index: int, person_id: uuid.UUID) -> str:
    return f"facilitator_cycle:{convoy_id}:{cycle_index}:{person_id}"


# --- the help request ----------------------------------------------------------------------------
def help_requested(
    *, facilitator: api.FacilitatorContact, convoy: str, report: api.Report, milestone: str, link: str
) -> Rendered:
    """The email telling one facilitator that ``report`` asks for help (``milestone``: its title, or "")."""
    lang = message_language(facilitator.language)
    _ = i18n.Words(lang)
    values = {
        "company": _one_line(report.company_name),
        "convoy": _one_line(convoy),
        "round": report.cycle_index + 1,
    }
    subject = _('Help request from %(company)s in "%(convoy)s"', **values)
    blockers = report.blockers.strip()
    topic = _one_line(report.help_topic) or _("(no topic given)")
    ctx = {
        "lang": lang,
        "subject": subject,
        "preheader": topic,
        "heading": _("%(company)s would welcome help", **values),
        "greeting": greeting(_, facilitator.name),
        "intro": _(
            '%(company)s asks for help in their report for round %(round)s of the convoy "%(convoy)s".', **values
        ),
        "topic": topic,
        "milestone": _one_line(milestone),
        "blockers_html": Markup(markdown.render(blockers)) if blockers else "",  # noqa: S704 - sanitized
        "blockers_text": markdown.plain(blockers) if blockers else "",
        "link": link,
    }
    return Rendered(
        subject=subject,
        text=_env.get_template("help_requested.txt").render(ctx),
        html=_env.get_template("help_requested.html").render(ctx),
        lang=lang,
    )


# --- the round summary ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Participation:
    reported: int
    total: int
    on_time: int
    late: int


def participation(d: api.Digest) -> Participation:
    """Companies with a (visible) report for the cycle, of all the convoy's companies; on time or late."""
    reported = {r.company_id for r in d.reports}
    late = {r.company_id for r in d.reports if r.late}
    total = len(reported | set(d.silent_company_ids))
    return Participation(reported=len(reported), total=total, on_time=len(reported - late), late=len(late))


def mood_average(d: api.Digest) -> tuple[float | None, int]:
    """The average mood of the cycle's reports that give one, and how many do."""
    moods = [r.mood for r in d.reports if r.mood is not None]
    return (round(sum(moods) / len(moods), 1) if moods else None), len(moods)


class RoundSummary:
    """Each facilitator's summary of one closed cycle, from the members' digest views.

    ``digests`` is the members' ``DigestRenderer`` of the cycle: its views (reports with their
    Markdown rendered once per language, silent and absent companies, addenda) are shown as they are.
    """

    def __init__(self, *, digests: DigestRenderer, link: str, schedule_link: str):
        self.digests = digests
        self.link, self.schedule_link = link, schedule_link
        self._views: dict[str, dict[str, Any]] = {}

    def render(self, facilitator: api.FacilitatorContact) -> Rendered:
        lang = message_language(facilitator.language)
        if lang not in self._views:
            self._views[lang] = self.digests.context(lang)
        view = self._views[lang]
        d = self.digests.d
        _ = i18n.Words(lang)
        p = participation(d)
        average, ratings = mood_average(d)
        values = {
            "convoy": _one_line(d.convoy_name),
            "round": d.cycle_index + 1,
            "reported": p.reported,
            "total": p.total,
            "on_time": p.on_time,
            "late": p.late,
        }
        if p.reported:
            subject = _('Round %(round)s in "%(convoy)s": %(reported)s of %(total)s reported', **values)
            line = _("%(reported)s of %(total)s companies reported (%(on_time)s on time, %(late)s late).", **values)
        else:
            subject = _('Round %(round)s in "%(convoy)s": nobody reported', **values)
            line = _("Nobody reported this round.")
        if average is None:
            mood = _("no ratings")
        else:
            mood = _.ngettext(
                "%(average)s of 5 (one rating)",
                "%(average)s of 5 (average of %(num)s ratings)",
                ratings,
                average=i18n.number(average, lang),
            )
        ctx = {
            **view,  # the digest's views
            "lang": lang,
            "subject": subject,
            "preheader": line,
            "heading": _("Your summary of round %(round)s", **values),
            "greeting": greeting(_, facilitator.name),
            "intro": _('round %(round)s of the convoy "%(convoy)s" has closed. Here is how it went.', **values),
            "participation_line": line,
            "mood": mood,
            "link": self.link,
            "schedule_link": self.schedule_link,
        }
        return Rendered(
            subject=subject,
            text=_env.get_template("round_summary.txt").render(ctx),
            html=_env.get_template("round_summary.html").render(ctx),
            lang=lang,
        )


# --- sending: what the notifier's consumers call ------------------------------------------------
@dataclass(frozen=True)
class FacilitatorMail:
    """The facilitator's emails of the loop, sent through the notifier's ``Mailer`` (notifier/delivery.py)."""

    rt: Runtime
    mail: Mailer

    async def facilitators(self, convoy_id: uuid.UUID) -> api.ConvoyFacilitators:
        return await self.rt.rpc.call(Convoys.CONVOY_FACILITATORS, api.GetRecipients(convoy_id=convoy_id))

    async def on_help_requested(self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        """Each facilitator of the convoy hears of the help request at once, once per report.

        Nothing when the report was hidden (or its help request taken back) before this is handled,
        or when the event is older than ``HELP_FRESH_S``.
        """
        assert isinstance(event, ev.HelpRequested)
        age = (datetime.now(UTC) - envelope.occurred_at).total_seconds()
        if age > HELP_FRESH_S:
            log.info("help request too old to announce", report_id=str(event.report_id), age_s=round(age))
            return
        try:
            who, report = await asyncio.gather(
                self.facilitators(event.convoy_id),
                self.rt.rpc.call(Milestones.REPORT_GET, api.GetReport(actor=api.SYSTEM, report_id=event.report_id)),
            )
        except NotFound:  # the report (or the convoy) is gone meanwhile: nobody to ask for it
            log.info("help request of a report that is gone", report_id=str(event.report_id))
            return
        if report.hidden or not report.help_wanted:
            log.info("help request hidden or withdrawn before it was announced", report_id=str(report.id))
            return
        to = [
            f
            for f in who.facilitators
            if f.person_id != report.author_id and "@" in parseaddr(f.email)[1]  # an erased one has none
        ]
        if not to:
            return
        milestone = await self._milestone_title(report, event.milestone_id or report.help_milestone_id)
        prefs = await self.mail.preferences.get_many(f.person_id for f in to)
        link = self.mail.public(f"/reports/{report.id}")
        list_id = convoy_list_id(who.convoy_name, event.convoy_id)
        await self.mail.fan_out(
            functools.partial(
                self.mail.send_email,
                help_key(report.id, f.person_id),
                envelope.id,
                to_name=f.name,
                to_email=f.email,
                rendered=help_requested(
                    facilitator=f, convoy=who.convoy_name, report=report, milestone=milestone, link=link
                ),
                list_id=list_id,
                prefs=prefs[f.person_id],
                thread=f"report.{report.id}",  # with the report's notices and feedback
            )
            for f in to
        )

    async def _milestone_title(self, report: api.Report, milestone_id: uuid.UUID | None) -> str:
        """The title of the milestone the help request names ("" when none, or it is gone)."""
        if milestone_id is None:
            return ""
        for m in report.milestones:
            if m.milestone_id == milestone_id:
                return m.title
        try:
            project = await self.rt.rpc.call(
                Milestones.PROJECT_GET,
                api.CompanyAction(actor=api.SYSTEM, convoy_id=report.convoy_id, company_id=report.company_id),
            )
        except NotFound:
            return ""
        return next((m.title for m in project.milestones if m.id == milestone_id), "")

    async def send_round_summaries(
        self, envelope: env.Envelope, event: ev.CycleClosed, digests: DigestRenderer, list_id: str
    ) -> None:
        """Each facilitator of the convoy gets the summary of the closed cycle, once per cycle and person."""
        who = await self.facilitators(event.convoy_id)
        to = [f for f in who.facilitators if "@" in parseaddr(f.email)[1]]
        if not to:
            return
        summary = RoundSummary(
            digests=digests,
            link=self.mail.public(f"/convoys/{event.convoy_id}"),
            schedule_link=self.mail.public(f"/convoys/{event.convoy_id}/schedule"),
        )
        prefs = await self.mail.preferences.get_many(f.person_id for f in to)
        await self.mail.fan_out(
            functools.partial(
                self.mail.send_email,
                summary_key(event.convoy_id, event.cycle_index, f.person_id),
                envelope.id,
                to_name=f.name,
                to_email=f.email,
                rendered=summary.render(f),
                list_id=list_id,
                prefs=prefs[f.person_id],
            )
            for f in to
        )
