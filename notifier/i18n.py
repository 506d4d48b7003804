"""The emails' words in the recipient's language: a gettext catalogue, and dates and numbers through Babel.

English is the source language: the msgids are written in the templates (``{{ _("Open the report") }}``,
Jinja's i18n extension) and in the Python that composes sentences (``_("Hello %(name)s,", name=...)``
with ``_ = i18n.Words(lang)``); ``locale/de/LC_MESSAGES/messages.po`` carries German. It is compiled in
memory at first use (services.runtime.i18n, as the pages' catalogue), so no ``.mo`` file is committed.
``make messages`` extracts the strings (``babel.cfg`` here) and merges them into the ``.po``; new ones
fail tests/test_email_catalogue.py until they are translated.

Every msgid is a %-format string: placeholders ``%(name)s``, a literal percent sign ``%%``.
"""

from __future__ import annotations

import gettext
from datetime import date, datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import jinja2

from services.runtime import i18n as shared

Lang = Literal["de", "en"]
LANGUAGES: tuple[Lang, ...] = ("de", "en")
FALLBACK: Lang = "en"
"""An email to someone whose language is neither is in English."""
LOCALE_DIR = Path(__file__).parent / "locale"


def language(tag: str) -> Lang:
    """``de`` or ``en`` from a language tag (``de``, ``DE``, ``de-AT``); anything else is ``en``."""
    primary = tag.strip().lower().replace("_", "-").split("-")[0]
    return "de" if primary == "de" else FALLBACK


def translations(lang: str) -> gettext.NullTranslations:
    return shared.catalogue(LOCALE_DIR, lang if lang in LANGUAGES else FALLBACK)


def N_(message: str) -> str:
    """Marks a string for the catalogue; it is translated where it is shown (``Words``)."""
    return message


class Words:
    """The catalogue in one language, called as ``_``: ``_("Round %(round)s", round=2)`` is the
    translation with its placeholders filled in; ``_.ngettext("%(num)s convoy", "%(num)s convoys", n)``
    picks the plural form (``num`` is ``n``)."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self._t = translations(lang)

    def __call__(self, message: str, /, **values: object) -> str:
        return self._t.gettext(message) % values

    def ngettext(self, singular: str, plural: str, n: int, /, **values: object) -> str:
        return self._t.ngettext(singular, plural, n) % {"num": n, **values}


def day(d: date, lang: str) -> str:
    """``12. Mai 2025`` / ``12 May 2025``."""
    return shared.day(lang, d, "long")


def when_long(at: datetime, lang: str, tz: ZoneInfo) -> str:
    """``Montag, 12. Mai 2025, 09:00 Uhr`` / ``Monday, 12 May 2025, 09:00`` in ``tz``."""
    local = at.astimezone(tz)
    _ = Words(lang)
    return _("%(date)s, %(time)s", date=shared.day(lang, local.date(), "full"), time=shared.clock(lang, local))


def when_short(at: datetime, lang: str, tz: ZoneInfo) -> str:
    """``12.05.2025, 09:00 Uhr`` / ``12 May 2025, 09:00`` in ``tz`` (for subjects)."""
    local = at.astimezone(tz)
    _ = Words(lang)
    return _("%(date)s, %(time)s", date=shared.day(lang, local.date(), "medium"), time=shared.clock(lang, local))


def number(value: float, lang: str) -> str:
    """One decimal in the reader's locale: ``3,5`` / ``3.5``."""
    return shared.number(lang, value, 1)


def environment() -> jinja2.Environment:
    """The Jinja environment of the email templates (``templates/``): HTML escaped, ``_()`` in the
    context's ``lang``."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("notifier", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        # the templates ship with the code: no stat of the file behind every get_template (two per email)
        auto_reload=False,
    )
    shared.install_gettext(env, translations, FALLBACK)
    return env
