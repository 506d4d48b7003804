"""Gettext catalogues and Babel formats shared by the pages (convoy_api/web) and the emails (notifier).

Each of them keeps its own catalogue (``<package>/locale/<lang>/LC_MESSAGES/messages.po``, English
msgids, German msgstrs): the ``.po`` is compiled in memory at first use, so no binary ``.mo`` lives in
the repository and a fresh clone works as it is. ``make messages`` extracts the strings of both and
merges them into each ``.po`` (``update``).

Every msgid is a %-format string (``"Hello %(name)s,"``, a literal percent sign as ``%%``), in
templates (Jinja's i18n extension, newstyle: ``_("...", name=x)`` escapes ``x``) and in Python alike.
"""

from __future__ import annotations

import functools
import gettext
import io
import subprocess
import sys
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from babel.dates import format_date, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from jinja2 import pass_context
from jinja2.runtime import Context

LOCALES: dict[str, str] = {"de": "de_DE", "en": "en_GB"}
"""Dates and numbers as people in Germany read them: 03.12.2026 and 4,5 in German, 3 Dec 2026 in English."""
DEFAULT_LOCALE = "de_DE"


def babel_locale(lang: str) -> str:
    return LOCALES.get(lang, DEFAULT_LOCALE)


@functools.cache
def catalogue(locale_dir: Path, lang: str) -> gettext.NullTranslations:
    """The catalogue ``locale_dir/<lang>/LC_MESSAGES/messages.po``, compiled in memory (English, the
    source language, has none: its msgids are the text)."""
    po = locale_dir / lang / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return gettext.NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def day(lang: str, value: date | None, form: str = "medium") -> str:
    """A calendar day in the reader's locale; ``form`` is Babel's: ``medium`` (03.12.2026, 3 Dec 2026),
    ``long`` (3. Dezember 2026, 3 December 2026) or ``full`` (with the weekday); '' for none."""
    return "" if value is None else format_date(value, form, locale=babel_locale(lang))


def clock(lang: str, at: datetime) -> str:
    """The time of day, 24-hour (09:00) in both languages."""
    return format_time(at, "HH:mm", locale=babel_locale(lang))


def number(lang: str, value: float | None, digits: int = 1) -> str:
    """A number with ``digits`` decimals in the reader's locale (4,0 in German, 4.0 in English); a dash for none."""
    if value is None:
        return "\u2013"
    pattern = "#,##0." + "0" * digits if digits else "#,##0"
    return format_decimal(value, format=pattern, locale=babel_locale(lang))


def install_gettext(env: Any, translations: Callable[[str], gettext.NullTranslations], default: str) -> None:
    """Give a Jinja environment ``_()``/``gettext``/``ngettext``/``pgettext`` (newstyle: they escape and fill
    in ``%(name)s`` placeholders themselves) that speak the rendering context's ``lang``."""

    def of(ctx: Context) -> gettext.NullTranslations:
        return translations(ctx.get("lang", default))

    @pass_context
    def _gettext(ctx: Context, message: str) -> str:
        return of(ctx).gettext(message)

    @pass_context
    def _ngettext(ctx: Context, singular: str, plural: str, n: int) -> str:
        return of(ctx).ngettext(singular, plural, n)

    @pass_context
    def _pgettext(ctx: Context, context: str, message: str) -> str:
        return of(ctx).pgettext(context, message)

    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(_gettext, _ngettext, newstyle=True, pgettext=_pgettext)


def update(config: Path, locale_dir: Path, root: Path, *, keywords: tuple[str, ...] = ("N_",)) -> None:
    """``make messages``: extract the strings ``config`` (a babel.cfg) names under ``root`` into
    ``locale_dir/messages.pot`` and merge them into every language's ``.po`` there. New strings arrive
    untranslated (and fail the catalogue's completeness test until someone translates them)."""
    pot = locale_dir / "messages.pot"
    babel = [sys.executable, "-m", "babel.messages.frontend"]
    extract = ["extract", "-F", str(config), *(a for k in keywords for a in ("-k", k))]
    extract += ["--no-location", "--omit-header", "-o", str(pot), str(root)]
    subprocess.run([*babel, *extract], check=True, cwd=root)  # noqa: S603
    for po in locale_dir.glob("*/LC_MESSAGES/messages.po"):
        merge = ["update", "-i", str(pot), "-d", str(locale_dir), "-l", po.parent.parent.name, "--no-fuzzy-matching"]
        subprocess.run([*babel, *merge], check=True)  # noqa: S603
