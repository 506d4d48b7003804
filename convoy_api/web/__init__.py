"""Server-rendered pages (Jinja2 through Litestar's templates, htmx for partial updates, no build step).

German and English (Babel catalogues, see i18n.py); the pages call the same services with the same
actor as the JSON API under /api/v1, so authorization is the API's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from babel.numbers import format_decimal
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from litestar import Request, Response, Router, get
from litestar.datastructures import State
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import File, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from litestar.types import ControllerRouterHandler
from markupsafe import Markup, escape

from convoy_api.web import i18n, refusals
from convoy_api.web.core import LANG_COOKIE, Page, SignInNeeded, needs_sign_in
from convoy_api.web.pages.auth import InvitationPages, SignInPages
from convoy_api.web.pages.check import CheckPages
from convoy_api.web.pages.convoy import ConvoyPages
from convoy_api.web.pages.devmail import DevMailPages
from convoy_api.web.pages.facilitate import FacilitatorPages
from convoy_api.web.pages.formation import FormationPages
from convoy_api.web.pages.moderation import ModerationPages
from convoy_api.web.pages.profile import ProfilePages
from convoy_api.web.pages.project import ProjectPages
from services.runtime.errors import ConvoyError, Unauthenticated
from services.runtime.settings import Settings

HERE = Path(__file__).parent


def N_(message: str) -> str:
    """Marks a string for the catalogue; it is translated where it is shown."""
    return message


STATUS_TITLES = {
    400: N_("That did not work"),
    403: N_("You may not see this"),
    404: N_("Not found"),
    405: N_("This page does not take that request"),
    409: N_("Not possible right now"),
    410: N_("This link has expired"),
    429: N_("Too many attempts"),
    503: N_("Convoy is busy"),
}
CONVOY_STATES = (N_("forming"), N_("active"), N_("paused"), N_("completed"))


def highlight(snippet: str) -> Markup:
    """A search snippet with its matches (between « and ») marked, everything else escaped."""
    return Markup(str(escape(snippet)).replace("«", "<mark>").replace("»", "</mark>"))  # noqa: S704


@pass_context
def chart_number(ctx: Context, value: float, digits: int = 1) -> str:
    """A chart's value in the page's language (3,5 in German, 3.5 in English)."""
    return format_decimal(
        round(value, digits), format="0." + "0" * digits if digits else "0", locale=ctx.get("lang", "de")
    )


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    i18n.install(env)
    env.filters["highlight"] = highlight
    env.filters["chart_number"] = chart_number
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(env))


def _lang(request: Request[Any, Any, State]) -> i18n.Lang:
    chosen = request.cookies.get(LANG_COOKIE, "")
    return chosen if chosen in i18n.LANGUAGES else i18n.negotiate(request.headers.get("accept-language", ""))


def page_error(request: Request[Any, Any, State], exc: Exception) -> Response[Any]:
    """A service's refusal on a page: an error page in the person's language (sign-in when needed)."""
    if isinstance(exc, SignInNeeded | Unauthenticated):
        return needs_sign_in(request, exc)
    assert isinstance(exc, ConvoyError)
    return error_page(request, exc.status, exc.message)


def error_page(request: Request[Any, Any, State], status: int, message: str = "") -> Response[Any]:
    """An HTML error page in the person's language: what the status means and, when the catalogue knows
    the service's reason, that reason (never the service's English words on a German page)."""
    lang = _lang(request)
    _ = i18n.gettext_for(lang)
    status = status if status in STATUS_TITLES else 500
    inline = bool(request.headers.get("hx-request"))  # an htmx action: a small fragment static/convoy.js shows
    detail = ""
    if message and status < 500:
        detail = refusals.explain(_, message) or (message if lang == "en" and status in (400, 409) else "")
    if status == 404 and not detail and not inline:
        detail = _(N_("The address may be mistyped, or the page has moved or was removed."))
    return Template(
        template_name="_htmx_error.html" if inline else "error.html",
        context={
            "lang": lang,
            "me": None,
            "csrf": "",
            "title": _(STATUS_TITLES.get(status, N_("Something went wrong"))),
            "detail": detail,
            "status": status,
        },
        status_code=status,
        headers={**({"Retry-After": "2"} if status == 503 else {}), **({"X-Convoy-Error": "inline"} if inline else {})}
        or None,
    )


def wants_html(request: Request[Any, Any, State]) -> bool:
    """A browser asking for a page (an API client asks under /api/ or accepts JSON)."""
    accept = request.headers.get("accept", "")
    return not request.url.path.startswith("/api/") and "text/html" in accept and "application/json" not in accept


def favicon() -> File:
    return File(HERE / "static" / "favicon.ico", media_type="image/x-icon", content_disposition_type="inline")


def routes(settings: Settings) -> list[ControllerRouterHandler]:
    pages: list[ControllerRouterHandler] = [
        SignInPages,
        InvitationPages,
        ConvoyPages,
        ProjectPages,
        FacilitatorPages,
        ModerationPages,
        ProfilePages,
        # --- digitalisation check (public), formation pool and programme report (facilitators)
        CheckPages,
        FormationPages,
    ]
    if settings.dev_mail_viewer:
        pages.append(DevMailPages)
    return [
        Router(
            path="/",
            route_handlers=pages,
            exception_handlers={SignInNeeded: page_error, ConvoyError: page_error},
            include_in_schema=False,
        ),
        create_static_files_router(path="/static", directories=[HERE / "static"], include_in_schema=False),
        get("/favicon.ico", include_in_schema=False, sync_to_thread=False)(favicon),
    ]


__all__ = ["Page", "error_page", "routes", "template_config", "wants_html"]
