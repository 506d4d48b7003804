"""Check-in cycle emails: the prompt when a cycle opens, nudges, and the digest when it closes.

Rendered from Jinja2 templates (``cycle_prompt.*``, ``cycle_digest.*``) in the recipient's
language (de or en). Everything people typed is either Markdown rendered and sanitized by
``services.runtime.markdown.render`` (HTML) / flattened by ``render.plain_blocks`` (text), or plain
text that the HTML templates escape (autoescape). Dates arrive as UTC and are shown in the
convoy's time zone, named in the email.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from markupsafe import Markup, escape

from notifier import i18n
from notifier.i18n import day, when_long, when_short
from notifier.render import Rendered, filled, from_templates, greeting, message_language, plain_blocks, status
from schemas import api
from schemas import events as ev
from services.runtime import markdown

DEFAULT_TIMEZONE = "Europe/Berlin"
"""Shown when the convoy's own time zone is unknown (the events carry UTC only)."""


def zone(name: str) -> ZoneInfo:
    """The named IANA zone, or Europe/Berlin when it is empty or unknown."""
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def reply_hint(_: i18n.Words, company: str) -> str:
    """That a reply to the prompt files the company's report (when replies by email are on)."""
    return _(
        "No time for the form? Just reply to this email: your answer is filed as %(company)s's report.", company=company
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def absence(_: i18n.Words, a: ev.Absence) -> str:
    """Why a company did not report: ``away`` (``abwesend``), or ``skipped: reason`` (``ausgesetzt: …``)."""
    if a.kind == "away":
        return _("away")
    reason = _one_line(a.reason)
    return _("skipped") + (f": {reason}" if reason else "")


def _percent(share: float) -> int:
    return max(0, min(100, round(share * 100)))


# --- prompt and nudge ----------------------------------------------------------------------------
def prompt(
    *,
    recipient: api.Recipient,
    convoy: str,
    cycle_index: int,
    due_at: datetime,
    timezone: str,
    link: str,
    context: api.PromptContext | None = None,
    nudge: int = 0,
    now: datetime | None = None,
    replies_enabled: bool = False,
    calendar_link: str = "",
) -> Rendered:
    """The prompt (``nudge == 0``) or nudge number ``nudge`` to one representative.

    ``calendar_link``: the profile's calendar section (``/profile/#calendar``), shown in prompts. Never the
    feed itself: its address is a secret, and emails are forwarded, archived and scanned.
    """
    lang = message_language(recipient.language)
    _ = i18n.Words(lang)
    tz = zone(timezone)
    values = {
        "convoy": _one_line(convoy),
        "company": _one_line(recipient.company_name),
        "round": cycle_index + 1,
    }
    late = nudge > 0 and now is not None and now >= due_at
    due, due_short = when_long(due_at, lang, tz), when_short(due_at, lang, tz)
    if not nudge:
        subject = _('Check-in: your report for "%(convoy)s" by %(due)s', **values, due=due_short)
        heading = _("Time for your progress report")
        intro = _(
            'round %(round)s of the convoy "%(convoy)s" has begun. Please report for %(company)s by %(due)s:'
            " what you got done and what comes next.",
            **values,
            due=due,
        )
    else:
        subject = _('Reminder: your report for "%(convoy)s" by %(due)s', **values, due=due_short)
        heading = _("Your progress report is still missing")
        if late:
            intro = _(
                'the report of %(company)s for round %(round)s of the convoy "%(convoy)s" is still missing.'
                " It was due by %(due)s \N{EN DASH} a late report is still welcome.",
                **values,
                due=due,
            )
        else:
            intro = _(
                'the report of %(company)s for round %(round)s of the convoy "%(convoy)s" is still missing.'
                " It is due by %(due)s.",
                **values,
                due=due,
            )
    next_steps = context.last_next_steps.strip() if context is not None else ""
    ctx = {
        "lang": lang,
        "subject": subject,
        "heading": heading,
        "greeting": greeting(_, recipient.name),
        "intro": intro,
        "tz_note": _("All times in the %(tz)s time zone.", tz=tz.key),
        "link": link,
        "milestones": [
            (m.title, day(m.target_date, lang) if m.target_date else "")
            for m in (context.milestones_due if context else [])
        ],
        "next_html": Markup(markdown.render(next_steps)) if next_steps else "",  # noqa: S704 - sanitized
        "next_text": plain_blocks(next_steps) if next_steps else "",
        "commitments": [_one_line(c) for c in (context.open_commitments if context else []) if c.strip()],
        "reply_hint": reply_hint(_, _one_line(recipient.company_name)) if replies_enabled else "",
        "calendar_link": calendar_link if not nudge else "",
    }
    return from_templates("cycle_prompt", ctx, subject=subject, lang=lang)


# --- digest ---------------------------------------------------------------------------------------
def digest_is_empty(d: api.Digest) -> bool:
    """Nothing to say: no report, no late addendum, no milestone reached."""
    return not (d.reports or d.late_addenda or d.completed_milestones)


@dataclass(frozen=True)
class _Absent:
    name: str
    label: str


@dataclass
class _ReportView:
    company: str
    late: bool
    round: str
    link: str
    sections_html: list[tuple[str, Markup]] = field(default_factory=list)
    sections_text: list[tuple[str, str]] = field(default_factory=list)
    help_topic: str = ""
    mood: int | None = None
    milestones: list[tuple[str, str]] = field(default_factory=list)
    percent: int = 0
    kudos: str = ""
    addendum: bool = False


def _report_view(
    r: api.DigestReport,
    _: i18n.Words,
    people: Mapping[uuid.UUID, str],
    report_link: str,
) -> _ReportView:
    view = _ReportView(
        company=_one_line(r.company_name),
        late=r.late,
        round=str(r.cycle_index + 1),
        link=report_link,
        help_topic=_one_line(r.help_topic) or (_("yes") if r.help_wanted else ""),
        mood=r.mood,
        milestones=[(_one_line(m.title), status(_, m.status)) for m in r.milestone_changes],
        percent=_percent(r.progress),
    )
    for label, text in ((_("Done"), r.done), (_("Next"), r.next), (_("Blockers"), r.blockers)):
        if text.strip():
            view.sections_html.append((label, Markup(markdown.render(text))))  # noqa: S704 - sanitized
            view.sections_text.append((label, plain_blocks(text)))
    names = [people[p] for p in r.kudos_by if p in people]
    unknown = len(r.kudos_by) - len(names)
    if unknown:
        names.append(_("%(n)s more", n=unknown))
    view.kudos = ", ".join(_one_line(n) for n in names)
    return view


def digest(
    *,
    recipient: api.Recipient,
    d: api.Digest,
    people: Mapping[uuid.UUID, str],
    companies: Mapping[uuid.UUID, str],
    absences: Sequence[ev.Absence],
    link: str,
    report_link: str,
) -> Rendered:
    """The digest of one cycle for one member. ``people`` names person ids (kudos), ``companies``
    names company ids (silent and absent ones); ``report_link`` has a ``{report_id}`` slot."""
    return DigestRenderer(
        d=d, people=people, companies=companies, absences=absences, link=link, report_link=report_link
    ).render(recipient)


class DigestRenderer:
    """The digest of one cycle for each member, rendered once per language.

    A member's digest differs from another's in the same language only by the greeting, so the
    templates (and the Markdown of every report) are rendered once per language with a placeholder
    greeting, and each member's greeting is put in its place (escaped in the HTML exactly as the
    template's autoescape would): the output is the same as rendering the templates for each member.
    """

    def __init__(
        self,
        *,
        d: api.Digest,
        people: Mapping[uuid.UUID, str],
        companies: Mapping[uuid.UUID, str],
        absences: Sequence[ev.Absence],
        link: str,
        report_link: str,
    ) -> None:
        self.d, self.people, self.companies, self.absences = d, people, companies, absences
        self.link, self.report_link = link, report_link
        self._by_language: dict[str, tuple[Rendered, str]] = {}

    def render(self, recipient: api.Recipient | api.ObserverRecipient) -> Rendered:
        lang = message_language(recipient.language)
        greeting_ = greeting(i18n.Words(lang), recipient.name)
        if lang not in self._by_language:
            placeholder = f"convoy-greeting-{uuid.uuid4().hex}"
            self._by_language[lang] = (self._render(lang, placeholder), placeholder)
        shared, placeholder = self._by_language[lang]
        if shared.text.count(placeholder) != 1 or shared.html.count(placeholder) != 1:
            return self._render(lang, greeting_)  # a template that prints the greeting twice (or never)
        # in the HTML what autoescape prints; ``shared`` goes along: send_email encodes its lines once
        return filled(shared, ((placeholder, greeting_, str(escape(greeting_))),))

    def _render(self, lang: str, greeting: str) -> Rendered:
        ctx = self.context(lang, greeting)
        return from_templates("cycle_digest", ctx, subject=ctx["subject"], lang=lang)

    def context(self, lang: str, greeting: str = "") -> dict[str, Any]:
        """What the digest templates show in ``lang``: its sections as views (reports with their
        Markdown rendered and flattened, silent and absent companies, addenda) and its sentences.
        The facilitator's round summary (notifier.facilitation) shows the same views."""
        d, people, companies = self.d, self.people, self.companies
        _ = i18n.Words(lang)
        values = {"convoy": _one_line(d.convoy_name), "round": d.cycle_index + 1}
        subject = _('Convoy digest "%(convoy)s" \N{EN DASH} round %(round)s', **values)

        def view(r: api.DigestReport) -> _ReportView:
            return _report_view(r, _, people, self.report_link.format(report_id=r.report_id))

        reported = {r.company_id for r in d.reports}
        absent: dict[uuid.UUID, _Absent] = {}
        for a in self.absences:
            if a.company_id in reported or a.company_id in absent:
                continue
            absent[a.company_id] = _Absent(name=_one_line(companies.get(a.company_id, "")) or "?", label=absence(_, a))
        silent = [
            _one_line(companies.get(c, "")) or "?"
            for c in d.silent_company_ids
            if c not in absent and c not in reported
        ]
        ctx: dict[str, Any] = {
            "lang": lang,
            "subject": subject,
            "heading": _('Round %(round)s in the convoy "%(convoy)s"', **values),
            "greeting": greeting,
            "intro": _('here is what happened in round %(round)s of the convoy "%(convoy)s".', **values),
            "completed": [(_one_line(m.company_name), _one_line(m.title)) for m in d.completed_milestones],
            "help_requests": [view(r) for r in d.help_requests],
            "reports": [view(r) for r in d.reports],
            "silent": silent,
            "absent": list(absent.values()),
            "progress": _percent(d.progress),
            "participation": _(
                "Participation: %(percent)s %% of the companies reported this round.", percent=_percent(d.participation)
            ),
            "addenda": [dataclasses.replace(view(r), addendum=True) for r in d.late_addenda],
            "link": self.link,
        }
        return ctx
