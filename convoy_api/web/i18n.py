"""German and English for the pages: gettext catalogues kept as Babel ``.po`` files.

English is the source language (the msgids); ``locale/de/LC_MESSAGES/messages.po`` carries German.
The catalogues are compiled in memory at start, so no binary ``.mo`` file lives in the repository
(services.runtime.i18n, shared with the emails' catalogue in notifier/locale). Update them with
``make messages`` (extract from the templates and Python, merge into the ``.po``).
"""

from __future__ import annotations

import gettext
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any, Literal

from jinja2 import pass_context
from jinja2.runtime import Context

from services.runtime import i18n as shared

Lang = Literal["de", "en"]
LANGUAGES: tuple[Lang, ...] = ("de", "en")
DEFAULT: Lang = "de"
LOCALE_DIR = Path(__file__).parent / "locale"


def translations(lang: str) -> gettext.NullTranslations:
    return shared.catalogue(LOCALE_DIR, lang)


def gettext_for(lang: str) -> Any:
    return translations(lang if lang in LANGUAGES else DEFAULT).gettext


def N_(message: str) -> str:
    """Marks a string for the catalogue; it is translated where it is shown."""
    return message


LAENDER: dict[str, str] = {
    "BW": N_("Baden-Württemberg"),
    "BY": N_("Bavaria"),
    "BE": N_("Berlin"),
    "BB": N_("Brandenburg"),
    "HB": N_("Bremen"),
    "HH": N_("Hamburg"),
    "HE": N_("Hesse"),
    "MV": N_("Mecklenburg-Western Pomerania"),
    "NI": N_("Lower Saxony"),
    "NW": N_("North Rhine-Westphalia"),
    "RP": N_("Rhineland-Palatinate"),
    "SL": N_("Saarland"),
    "SN": N_("Saxony"),
    "ST": N_("Saxony-Anhalt"),
    "SH": N_("Schleswig-Holstein"),
    "TH": N_("Thuringia"),
}
"""The German states by their ISO 3166-2:DE code (schemas.values.Bundesland), named in English."""


def land(lang: str, code: str | None) -> str:
    """A state's name in the reader's language (Sachsen-Anhalt, Saxony-Anhalt) for its code; '' for none."""
    if not code:
        return ""
    name = LAENDER.get(code)
    return str(gettext_for(lang)(name)) if name else code


def day(lang: str, value: date | None) -> str:
    """A calendar day in the reader's locale (03.12.2026, 3 Dec 2026); '' for none."""
    return shared.day(lang, value)


def moment(lang: str, at: datetime | None, tz: tzinfo) -> str:
    """A moment in the reader's time zone and locale (03.12.2026 09:00, 3 Dec 2026 09:00)."""
    if at is None:
        return ""
    local = at.astimezone(tz)
    return f"{day(lang, local.date())} {shared.clock(lang, local)}"


def number(lang: str, value: float | None, digits: int = 1) -> str:
    """A number with ``digits`` decimals in the reader's locale (4,0 in German, 4.0 in English); a dash for none."""
    return shared.number(lang, value, digits)


def negotiate(accept_language: str) -> Lang:
    """The first of our languages an Accept-Language header asks for (German when none)."""
    for part in accept_language.split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT


@pass_context
def _day(ctx: Context, value: date | None) -> str:
    return day(ctx.get("lang", DEFAULT), value)


@pass_context
def _number(ctx: Context, value: float | None, digits: int = 1) -> str:
    return number(ctx.get("lang", DEFAULT), value, digits)


@pass_context
def _land(ctx: Context, code: str | None) -> str:
    return land(ctx.get("lang", DEFAULT), code)


def install(env: Any) -> None:
    """Give a Jinja environment ``_()``/``gettext``/``ngettext``/``pgettext`` that speak the page's ``lang``,
    and the filters ``day`` (a date), ``num`` (a number with decimals) and ``land`` (a state's name)."""
    shared.install_gettext(env, lambda lang: translations(lang if lang in LANGUAGES else DEFAULT), DEFAULT)
    env.filters["day"] = _day
    env.filters["num"] = _number
    env.filters["land"] = _land
