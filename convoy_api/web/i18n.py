"""German and English for the pages: gettext catalogues kept as Babel ``.po`` files.

English is the source language (the msgids); ``locale/de/LC_MESSAGES/messages.po`` carries German.
The catalogues are compiled in memory at start, so no binary ``.mo`` file lives in the repository.
Update them with ``make messages`` (extract from the templates and Python, merge into the ``.po``).
"""

from __future__ import annotations

import functools
import gettext
import io
from pathlib import Path
from typing import Any, Literal

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from jinja2 import pass_context
from jinja2.runtime import Context

Lang = Literal["de", "en"]
LANGUAGES: tuple[Lang, ...] = ("de", "en")
DEFAULT: Lang = "de"
LOCALE_DIR = Path(__file__).parent / "locale"


@functools.cache
def translations(lang: str) -> gettext.NullTranslations:
    po = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return gettext.NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def gettext_for(lang: str) -> Any:
    return translations(lang if lang in LANGUAGES else DEFAULT).gettext


def negotiate(accept_language: str) -> Lang:
    """The first of our languages an Accept-Language header asks for (German when none)."""
    for part in accept_language.split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT


# Jinja's newstyle gettext wraps these: it escapes and fills in %(name)s placeholders itself.
@pass_context
def _gettext(ctx: Context, message: str) -> str:
    return str(gettext_for(ctx.get("lang", DEFAULT))(message))


@pass_context
def _ngettext(ctx: Context, singular: str, plural: str, n: int) -> str:
    return translations(ctx.get("lang", DEFAULT)).ngettext(singular, plural, n)


def install(env: Any) -> None:
    """Give a Jinja environment ``_()``/``gettext``/``ngettext`` that speak the page's ``lang``."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(_gettext, _ngettext, newstyle=True)
