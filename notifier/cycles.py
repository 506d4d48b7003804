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
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from markupsafe import Markup, escape

from notifier.render import Rendered, _env, message_language, plain_blocks
from schemas import api
from schemas import events as ev
from services.runtime import markdown

DEFAULT_TIMEZONE = "Europe/Berlin"
"""Shown when the convoy's own time zone is unknown (the events carry UTC only)."""

_WEEKDAYS = {
    "de": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_MONTHS = {
    "de": (
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ),
    "en": (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
}


def zone(name: str) -> ZoneInfo:
    """The named IANA zone, or Europe/Berlin when it is empty or unknown."""
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def when_long(at: datetime, lang: str, tz: ZoneInfo) -> str:
    """``Montag, 12. Mai 2025, 09:00 Uhr`` / ``Monday, 12 May 2025, 09:00`` in ``tz``."""
    local = at.astimezone(tz)
    weekday, month = _WEEKDAYS[lang][local.weekday()], _MONTHS[lang][local.month - 1]
    if lang == "de":
        return f"{weekday}, {local.day}. {month} {local.year}, {local:%H:%M} Uhr"
    return f"{weekday}, {local.day} {month} {local.year}, {local:%H:%M}"


def when_short(at: datetime, lang: str, tz: ZoneInfo) -> str:
    """``12.05.2025, 09:00 Uhr`` / ``12 May 2025, 09:00`` in ``tz`` (for subjects)."""
    local = at.astimezone(tz)
    if lang == "de":
        return f"{local:%d.%m.%Y}, {local:%H:%M} Uhr"
    return f"{local.day} {_MONTHS[lang][local.month - 1][:3]} {local.year}, {local:%H:%M}"


def day(d: date, lang: str) -> str:
    if lang == "de":
        return f"{d.day}. {_MONTHS[lang][d.month - 1]} {d.year}"
    return f"{d.day} {_MONTHS[lang][d.month - 1]} {d.year}"


_COMMON = {
    "de": {
        "greeting": "Hallo {name},",
        "greeting_anonymous": "Guten Tag,",
        "fallback": "Falls die Schaltfläche nicht funktioniert, kopieren Sie diesen Link in Ihren Browser:",
        "tz_note": "Alle Zeiten in der Zeitzone {tz}.",
    },
    "en": {
        "greeting": "Hello {name},",
        "greeting_anonymous": "Hello,",
        "fallback": "If the button does not work, copy this link into your browser:",
        "tz_note": "All times in the {tz} time zone.",
    },
}

REPLY_HINT = {
    "de": "Keine Zeit für das Formular? Antworten Sie einfach auf diese E-Mail: Ihre Antwort wird als Bericht"
    " von {company} gespeichert.",
    "en": "No time for the form? Just reply to this email: your answer is filed as {company}'s report.",
}

_PROMPT = {
    "de": {
        "prompt_subject": "Check-in: Ihr Bericht für „{convoy}“ bis {due}",
        "nudge_subject": "Erinnerung: Ihr Bericht für „{convoy}“ bis {due}",
        "prompt_heading": "Zeit für Ihren Fortschrittsbericht",
        "nudge_heading": "Ihr Fortschrittsbericht fehlt noch",
        "prompt_intro": "im Konvoi „{convoy}“ hat Runde {round} begonnen. Berichten Sie für {company} bis"
        " {due}, was Sie geschafft haben und was als Nächstes ansteht.",
        "nudge_intro": "für {company} fehlt im Konvoi „{convoy}“ noch der Bericht zu Runde {round}."
        " Er ist bis {due} fällig.",
        "nudge_intro_late": "für {company} fehlt im Konvoi „{convoy}“ noch der Bericht zu Runde {round}."
        " Er war bis {due} fällig \N{EN DASH} ein später Bericht ist trotzdem willkommen.",
        "button": "Bericht schreiben",
        "milestones_due": "Meilensteine, die in dieser Runde fällig sind",
        "target": "Ziel",
        "last_next": "Ihre nächsten Schritte aus der letzten Runde",
        "commitments": "Ihre offenen Zusagen",
        "outro": "Die anderen Unternehmen im Konvoi freuen sich auf Ihren Stand.",
        "calendar": "Alle Check-ins in Ihren Kalender übernehmen (Outlook, Google, Apple)",
    },
    "en": {
        "prompt_subject": 'Check-in: your report for "{convoy}" by {due}',
        "nudge_subject": 'Reminder: your report for "{convoy}" by {due}',
        "prompt_heading": "Time for your progress report",
        "nudge_heading": "Your progress report is still missing",
        "prompt_intro": 'round {round} of the convoy "{convoy}" has begun. Please report for {company} by'
        " {due}: what you got done and what comes next.",
        "nudge_intro": 'the report of {company} for round {round} of the convoy "{convoy}" is still missing.'
        " It is due by {due}.",
        "nudge_intro_late": 'the report of {company} for round {round} of the convoy "{convoy}" is still'
        " missing. It was due by {due} \N{EN DASH} a late report is still welcome.",
        "button": "Write your report",
        "milestones_due": "Milestones due this round",
        "target": "target",
        "last_next": "Your next steps from last round",
        "commitments": "Your open commitments",
        "outro": "The other companies in the convoy look forward to hearing where you stand.",
        "calendar": "Add every check-in to your calendar (Outlook, Google, Apple)",
    },
}

_DIGEST = {
    "de": {
        "subject": "Konvoi-Digest „{convoy}“ \N{EN DASH} Runde {round}",
        "heading": "Runde {round} im Konvoi „{convoy}“",
        "intro": "das ist in Runde {round} im Konvoi „{convoy}“ passiert.",
        "completed": "Erreichte Meilensteine",
        "help": "Wer Unterstützung sucht",
        "reports": "Die Berichte",
        "done": "Erledigt",
        "next": "Als Nächstes",
        "blockers": "Hindernisse",
        "help_wanted": "Sucht Unterstützung bei",
        "help_yes": "ja",
        "milestones": "Meilensteine",
        "progress": "Fortschritt",
        "kudos": "Kudos von",
        "kudos_more": "{n} weiteren",
        "late": "verspätet",
        "mood": "Stimmung",
        "silent": "Ohne Bericht",
        "away": "abwesend",
        "skipped": "ausgesetzt",
        "overall": "Der Konvoi insgesamt",
        "overall_progress": "Fortschritt aller Projekte",
        "participation": "Beteiligung: {percent} % der Unternehmen haben in dieser Runde berichtet.",
        "addenda": "Nachträge",
        "addendum_round": "Runde {round}",
        "button": "Zum Konvoi",
        "open_report": "Zum Bericht",
        "not_started": "nicht begonnen",
        "in_progress": "in Arbeit",
        "done_status": "erledigt",
        "blocked": "blockiert",
    },
    "en": {
        "subject": 'Convoy digest "{convoy}" \N{EN DASH} round {round}',
        "heading": 'Round {round} in the convoy "{convoy}"',
        "intro": 'here is what happened in round {round} of the convoy "{convoy}".',
        "completed": "Milestones reached",
        "help": "Who would welcome help",
        "reports": "The reports",
        "done": "Done",
        "next": "Next",
        "blockers": "Blockers",
        "help_wanted": "Would welcome help with",
        "help_yes": "yes",
        "milestones": "Milestones",
        "progress": "Progress",
        "kudos": "Kudos from",
        "kudos_more": "{n} more",
        "late": "late",
        "mood": "Mood",
        "silent": "No report",
        "away": "away",
        "skipped": "skipped",
        "overall": "The convoy as a whole",
        "overall_progress": "Progress of all projects",
        "participation": "Participation: {percent} % of the companies reported this round.",
        "addenda": "Late reports",
        "addendum_round": "round {round}",
        "button": "Open the convoy",
        "open_report": "Open the report",
        "not_started": "not started",
        "in_progress": "in progress",
        "done_status": "done",
        "blocked": "blocked",
    },
}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _greeting(lang: str, name: str) -> str:
    name = _one_line(name)
    common = _COMMON[lang]
    return common["greeting"].format(name=name) if name else common["greeting_anonymous"]


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
    tz = zone(timezone)
    words = _PROMPT[lang]
    common = _COMMON[lang]
    kind = "nudge" if nudge else "prompt"
    values = {
        "convoy": _one_line(convoy),
        "company": _one_line(recipient.company_name),
        "round": str(cycle_index + 1),
    }
    subject = words[f"{kind}_subject"].format(**values, due=when_short(due_at, lang, tz))
    late = nudge > 0 and now is not None and now >= due_at
    intro_key = "nudge_intro_late" if late else f"{kind}_intro"
    intro = words[intro_key].format(**values, due=when_long(due_at, lang, tz))
    next_steps = context.last_next_steps.strip() if context is not None else ""
    ctx = {
        "lang": lang,
        "subject": subject,
        "heading": words[f"{kind}_heading"],
        "greeting": _greeting(lang, recipient.name),
        "intro": intro,
        "tz_note": common["tz_note"].format(tz=tz.key),
        "t": words,
        "link": link,
        "fallback": common["fallback"],
        "milestones": [
            (m.title, day(m.target_date, lang) if m.target_date else "")
            for m in (context.milestones_due if context else [])
        ],
        "next_html": Markup(markdown.render(next_steps)) if next_steps else "",  # noqa: S704 - sanitized
        "next_text": plain_blocks(next_steps) if next_steps else "",
        "commitments": [_one_line(c) for c in (context.open_commitments if context else []) if c.strip()],
        "reply_hint": REPLY_HINT[lang].format(**values) if replies_enabled else "",
        "calendar_link": calendar_link if not nudge else "",
    }
    return Rendered(
        subject=subject,
        text=_env.get_template("cycle_prompt.txt").render(ctx),
        html=_env.get_template("cycle_prompt.html").render(ctx),
        lang=lang,
    )


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


def _status(words: Mapping[str, str], status: str) -> str:
    return words.get("done_status" if status == "done" else status, status)


def _report_view(
    r: api.DigestReport,
    words: Mapping[str, str],
    people: Mapping[uuid.UUID, str],
    report_link: str,
) -> _ReportView:
    view = _ReportView(
        company=_one_line(r.company_name),
        late=r.late,
        round=str(r.cycle_index + 1),
        link=report_link,
        help_topic=_one_line(r.help_topic) or (words["help_yes"] if r.help_wanted else ""),
        mood=r.mood,
        milestones=[(_one_line(m.title), _status(words, m.status)) for m in r.milestone_changes],
        percent=_percent(r.progress),
    )
    for label, text in ((words["done"], r.done), (words["next"], r.next), (words["blockers"], r.blockers)):
        if text.strip():
            view.sections_html.append((label, Markup(markdown.render(text))))  # noqa: S704 - sanitized
            view.sections_text.append((label, plain_blocks(text)))
    names = [people[p] for p in r.kudos_by if p in people]
    unknown = len(r.kudos_by) - len(names)
    if unknown:
        names.append(words["kudos_more"].format(n=unknown))
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
        greeting = _greeting(lang, recipient.name)
        if lang not in self._by_language:
            placeholder = f"convoy-greeting-{uuid.uuid4().hex}"
            self._by_language[lang] = (self._render(lang, placeholder), placeholder)
        shared, placeholder = self._by_language[lang]
        if shared.text.count(placeholder) != 1 or shared.html.count(placeholder) != 1:
            return self._render(lang, greeting)  # a template that prints the greeting twice (or never)
        return Rendered(
            subject=shared.subject,
            text=shared.text.replace(placeholder, greeting),
            html=shared.html.replace(placeholder, str(escape(greeting))),  # what autoescape prints
            lang=lang,
        )

    def _render(self, lang: str, greeting: str) -> Rendered:
        ctx = self.context(lang, greeting)
        return Rendered(
            subject=ctx["subject"],
            text=_env.get_template("cycle_digest.txt").render(ctx),
            html=_env.get_template("cycle_digest.html").render(ctx),
            lang=lang,
        )

    def context(self, lang: str, greeting: str = "") -> dict[str, Any]:
        """What the digest templates show in ``lang``: its sections as views (reports with their
        Markdown rendered and flattened, silent and absent companies, addenda) and its words (``t``).
        The facilitator's round summary (notifier.facilitation) shows the same views."""
        d, people, companies = self.d, self.people, self.companies
        words = _DIGEST[lang]
        common = _COMMON[lang]
        values = {"convoy": _one_line(d.convoy_name), "round": str(d.cycle_index + 1)}
        subject = words["subject"].format(**values)

        def view(r: api.DigestReport) -> _ReportView:
            return _report_view(r, words, people, self.report_link.format(report_id=r.report_id))

        reported = {r.company_id for r in d.reports}
        absent: dict[uuid.UUID, _Absent] = {}
        for a in self.absences:
            if a.company_id in reported or a.company_id in absent:
                continue
            reason = _one_line(a.reason)
            label = words["away"] if a.kind == "away" else words["skipped"] + (f": {reason}" if reason else "")
            absent[a.company_id] = _Absent(name=_one_line(companies.get(a.company_id, "")) or "?", label=label)
        silent = [
            _one_line(companies.get(c, "")) or "?"
            for c in d.silent_company_ids
            if c not in absent and c not in reported
        ]
        ctx: dict[str, Any] = {
            "lang": lang,
            "subject": subject,
            "heading": words["heading"].format(**values),
            "greeting": greeting,
            "intro": words["intro"].format(**values),
            "t": words,
            "completed": [(_one_line(m.company_name), _one_line(m.title)) for m in d.completed_milestones],
            "help_requests": [view(r) for r in d.help_requests],
            "reports": [view(r) for r in d.reports],
            "silent": silent,
            "absent": list(absent.values()),
            "progress": _percent(d.progress),
            "participation": words["participation"].format(percent=_percent(d.participation)),
            "addenda": [dataclasses.replace(view(r), addendum=True) for r in d.late_addenda],
            "link": self.link,
            "fallback": common["fallback"],
        }
        return ctx
