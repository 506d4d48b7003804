"""The weekly facilitator digest: one email per facilitator about the health of their convoys.

Rendered from Jinja2 templates (``facilitator_digest.*``) in the facilitator's language (de or
en) and time zone. Everything people typed (company and convoy names, milestone titles, blocker
and help texts) arrives as plain text: the text template flattens it to one line, the HTML
template escapes it (autoescape). A convoy with nothing noteworthy gets one compact "all quiet"
line; when every convoy is quiet there is no email at all (``facilitator_digest`` returns None).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from notifier import i18n
from notifier.cycles import _one_line, zone
from notifier.i18n import day, when_long
from notifier.render import Rendered, _env, greeting, message_language
from schemas import api

MOOD_DROP = 0.5
"""A convoy whose average mood fell by at least this much since the cycle before is noteworthy."""
LOW_MOOD = 2.0
"""A convoy whose latest average mood is at most this is noteworthy."""
MAX_ITEM_TEXT = 280
"""Blocker and help texts are cut to this many characters (the link leads to the whole report)."""


def _clip(text: str) -> str:
    line = _one_line(text)
    return line if len(line) <= MAX_ITEM_TEXT else line[: MAX_ITEM_TEXT - 1].rstrip() + "\N{HORIZONTAL ELLIPSIS}"


def _known(trend: Sequence[float | None]) -> list[float]:
    return [round(v, 1) for v in trend if v is not None]


def mood_falling(trend: Sequence[float | None]) -> bool:
    """The latest average mood fell by ``MOOD_DROP`` or more, or is ``LOW_MOOD`` or less."""
    known = _known(trend)
    if not known:
        return False
    return known[-1] <= LOW_MOOD or (len(known) >= 2 and known[-2] - known[-1] >= MOOD_DROP)


def is_quiet(h: api.ConvoyHealth) -> bool:
    """Nothing a facilitator needs to look at in this convoy this week."""
    return not (
        h.silent_companies
        or h.stalled_milestones
        or h.open_blockers
        or h.unanswered_help
        or h.flags_waiting > 0
        or mood_falling(h.mood_trend)
    )


def mood_line(trend: Sequence[float | None], lang: str) -> str:
    """``3,5 → 3,0 → 2,5 ↓`` (de) / ``3.5 → 3.0 → 2.5 ↓`` (en); a cycle without ratings is an en dash.

    The arrow compares the last two cycles with ratings (↑ rose, ↓ fell, → the same); empty
    when no cycle had ratings.
    """
    if not any(v is not None for v in trend):
        return ""
    line = " \N{RIGHTWARDS ARROW} ".join("\N{EN DASH}" if v is None else i18n.number(v, lang) for v in trend)
    known = _known(trend)
    if len(known) >= 2:
        arrow = "\N{UPWARDS ARROW}" if known[-1] > known[-2] else "\N{DOWNWARDS ARROW}"
        if known[-1] == known[-2]:
            arrow = "\N{RIGHTWARDS ARROW}"
        line += f" {arrow}"
    return line


@dataclass(frozen=True)
class _Bar:
    height: int
    color: str
    label: str


def _bars(trend: Sequence[float | None], lang: str) -> list[_Bar]:
    """One small bar per cycle (mood 1 to 5 → 8 to 40 px), coloured by level; grey stub without ratings."""
    bars = []
    for v in trend:
        if v is None:
            bars.append(_Bar(height=2, color="#cbd2d9", label="\N{EN DASH}"))
            continue
        mood = max(1.0, min(5.0, v))
        color = "#16a34a" if mood >= 3.5 else "#f59e0b" if mood >= 2.5 else "#dc2626"
        bars.append(_Bar(height=round(mood * 8), color=color, label=i18n.number(v, lang)))
    return bars


@dataclass(frozen=True)
class _Item:
    company: str
    text: str
    link: str = ""


@dataclass
class _ConvoyView:
    name: str
    round: str
    link: str
    silent: list[tuple[str, str]] = field(default_factory=list)
    stalled: list[tuple[str, str, str]] = field(default_factory=list)
    blockers: list[_Item] = field(default_factory=list)
    help: list[_Item] = field(default_factory=list)
    mood: str = ""
    bars: list[_Bar] = field(default_factory=list)
    flags: str = ""


def _convoy_view(h: api.ConvoyHealth, _: i18n.Words, public_url: str) -> _ConvoyView:
    lang = _.lang

    def report(item: api.OpenItem) -> _Item:
        return _Item(_one_line(item.company_name), _clip(item.text), f"{public_url}/reports/{item.report_id}")

    return _ConvoyView(
        name=_one_line(h.convoy_name),
        round=_("round %(round)s", round=h.cycle_index + 1) if h.cycle_index is not None else "",
        link=f"{public_url}/convoys/{h.convoy_id}",
        silent=[
            (_one_line(s.name), _.ngettext("%(num)s round", "%(num)s rounds", s.cycles_silent))
            for s in sorted(h.silent_companies, key=lambda s: (-s.cycles_silent, s.name))
        ],
        stalled=[
            (_one_line(m.company_name), _one_line(m.title), day(m.target_date, lang))
            for m in sorted(h.stalled_milestones, key=lambda m: (m.target_date, m.company_name))
        ],
        blockers=[report(b) for b in h.open_blockers if b.text.strip()],
        help=[dataclasses.replace(i, text=i.text or _("(no topic given)")) for i in map(report, h.unanswered_help)],
        mood=mood_line(h.mood_trend, lang),
        bars=_bars(h.mood_trend, lang),
        flags=str(h.flags_waiting) if h.flags_waiting > 0 else _("none"),
    )


def subject(lang: str, count: int, period: str) -> str:
    _ = i18n.Words(lang)
    n = _.ngettext("%(num)s convoy", "%(num)s convoys", count)
    return _("Facilitator digest: %(n)s \N{EN DASH} week %(period)s", n=n, period=_one_line(period))


def facilitator_digest(
    *,
    facilitator: api.FacilitatorConvoys,
    digest: api.FacilitatorDigest,
    period: str,
    at: datetime,
    public_url: str,
) -> Rendered | None:
    """The weekly digest for one facilitator, or None when every convoy is quiet (or there is none).

    Convoys needing attention come first, in the order of ``digest``; the quiet ones share one line.
    """
    if all(is_quiet(h) for h in digest.convoys):
        return None
    lang = message_language(facilitator.language)
    tz = zone(facilitator.timezone)
    _ = i18n.Words(lang)
    base = public_url.rstrip("/")
    title = subject(lang, len(digest.convoys), period)
    quiet = [h for h in digest.convoys if is_quiet(h)]
    ctx = {
        "lang": lang,
        "subject": title,
        "heading": _("Your convoys in week %(period)s", period=_one_line(period)),
        "greeting": greeting(_, facilitator.name),
        "intro": _(
            "here is your weekly overview of the convoys you facilitate (as of %(at)s).", at=when_long(at, lang, tz)
        ),
        "tz_note": _("All times in the %(tz)s time zone.", tz=tz.key),
        "convoys": [_convoy_view(h, _, base) for h in digest.convoys if not is_quiet(h)],
        "quiet": [(_one_line(h.convoy_name), f"{base}/convoys/{h.convoy_id}") for h in quiet],
        "quiet_line": _("All quiet in: %(names)s", names=", ".join(_one_line(h.convoy_name) for h in quiet)),
    }
    return Rendered(
        subject=title,
        text=_env.get_template("facilitator_digest.txt").render(ctx),
        html=_env.get_template("facilitator_digest.html").render(ctx),
        lang=lang,
    )


def delivery_key(period: str, person_id: uuid.UUID) -> str:
    return f"facilitator_digest:{_one_line(period)}:{person_id}"
