"""What every page handler is handed: who is asking, in which language, the CSRF token and the form.

Pages call the same services with the same actor as the JSON API, so they inherit its authorization.
Authentication is the session cookie set at sign-in (HttpOnly, SameSite=Lax, Secure under HTTPS);
every state-changing request must carry the session's CSRF token, as the form field ``_csrf`` or
(htmx) the ``X-CSRF-Token`` header.
"""

from __future__ import annotations

import hmac
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import msgspec
from litestar import Request, Response
from litestar.datastructures import Cookie, FormMultiDict, State
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from convoy_api.deps import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, Backend
from convoy_api.web import i18n, refusals
from schemas import api
from schemas.contract import Op
from schemas.convoys import Convoys
from services.runtime.errors import ConvoyError, Forbidden, NotFound, Unauthenticated

T = TypeVar("T")
Req = TypeVar("Req", bound=msgspec.Struct)
Rep = TypeVar("Rep", bound=msgspec.Struct)
LANG_COOKIE = "convoy_lang"
SEEN_COOKIE = "convoy_seen"
"""When this browser last looked at the dashboard: what is new is what came after."""


class SignInNeeded(Exception):
    """The page needs a signed-in person: the handler sends the browser to /sign-in."""


@dataclass
class Page:
    backend: Backend
    request: Request[Any, Any, State]
    lang: i18n.Lang
    principal: api.Principal | None = None
    me: api.Me | None = None
    form: FormMultiDict = field(default_factory=FormMultiDict)
    cookies: list[Cookie] = field(default_factory=list)

    # --- who ---------------------------------------------------------------------------------
    @property
    def actor(self) -> api.Actor:
        if self.principal is None:
            raise SignInNeeded
        return api.Actor(
            person_id=self.principal.person_id,
            is_admin=self.principal.is_admin,
            is_facilitator=self.principal.is_facilitator,
        )

    @property
    def person(self) -> api.Person:
        if self.me is None:
            raise SignInNeeded
        return self.me.person

    @property
    def csrf(self) -> str:
        return self.principal.csrf_token or "" if self.principal else ""

    def membership(self, convoy_id: Any) -> api.MyConvoy | None:
        return next((c for c in (self.me.convoys if self.me else []) if c.convoy_id == convoy_id), None)

    def representing(self, convoy_id: Any) -> tuple[api.MyConvoy, uuid.UUID]:
        """My membership as a company's representative in this convoy, and the company (sign-in first; else 404)."""
        if self.me is None:
            raise SignInNeeded
        mine = self.membership(convoy_id)
        if mine is not None and mine.role == "observer":
            raise Forbidden("observers read along; they do not report")
        if mine is None or mine.company_id is None:
            raise NotFound("you do not report for a company in this convoy")
        return mine, mine.company_id

    def observes(self, convoy_id: Any) -> bool:
        """An observer seat here: the page shows no form to write (the services would refuse it: 403)."""
        mine = self.membership(convoy_id)
        return bool(mine and mine.role == "observer")

    def facilitates(self, convoy_id: Any) -> bool:
        mine = self.membership(convoy_id)
        return bool(self.principal and (self.principal.is_admin or (mine and mine.role == "facilitator")))

    # --- words and times ---------------------------------------------------------------------
    def _(self, message: str, **variables: Any) -> str:
        text: str = i18n.gettext_for(self.lang)(message)
        return text % variables if variables else text

    @property
    def zone(self) -> str:
        """The person's time zone (IANA name); Europe/Berlin for someone not signed in."""
        return self.me.person.timezone if self.me else "Europe/Berlin"

    def local(self, at: datetime | None) -> str:
        """A moment in the person's time zone and locale (Babel): 03.12.2026 09:00, 3 Dec 2026 09:00."""
        return i18n.moment(self.lang, at, ZoneInfo(self.zone))

    def day(self, value: date | None) -> str:
        """A calendar day in the person's locale: 03.12.2026, 3 Dec 2026."""
        return i18n.day(self.lang, value)

    def number(self, value: float | None, digits: int = 1) -> str:
        """A number with decimals in the person's locale: 4,0 in German, 4.0 in English."""
        return i18n.number(self.lang, value, digits)

    # --- services ----------------------------------------------------------------------------
    async def call(self, op: Op[Req, Rep], request: Req) -> Rep:
        return await self.backend.call(op, request)

    # --- answers -----------------------------------------------------------------------------
    def render(self, template: str, status_code: int = 200, **context: Any) -> Template:
        return Template(
            template_name=template,
            context={"page": self, "lang": self.lang, "me": self.me, "csrf": self.csrf, **context},
            status_code=status_code,
            cookies=self.cookies,
            headers={"Cache-Control": "no-store", "Vary": "Cookie"},
        )

    def redirect(self, path: str) -> Redirect:
        if self.request.headers.get("hx-request"):  # htmx follows HX-Redirect, not a 303
            return Redirect(path, status_code=303, headers={"HX-Redirect": path}, cookies=self.cookies)
        return Redirect(path, status_code=303, cookies=self.cookies)


# --- forms ---------------------------------------------------------------------------------------
_FIELD = re.compile(r"at `\$\.([a-z_]+)")


def field_error(page: Page, exc: msgspec.ValidationError, values: dict[str, Any] | None = None) -> tuple[str, str]:
    """(field, message in the person's language) for a msgspec validation error of a form."""
    text = str(exc)
    found = _FIELD.search(text)
    name = found.group(1) if found else ""
    missing = re.search(r"missing required field `([a-z_]+)`", text)
    if missing:
        name = missing.group(1)
    empty = values is not None and name in values and values[name] in ("", None)
    if missing or empty or "length >= 1" in text:
        message = page._("Please fill in this field.")
    elif "length <=" in text:
        message = page._("This is too long.")
    elif ("regex" in text or "pattern" in text) and "email" in name:
        message = page._("Please enter an email address such as anna@example.de.")
    elif "regex" in text or "pattern" in text:
        message = page._("This is not in the expected format.")
    else:
        message = page._("Please check this value.")
    return name, message


def parse(page: Page, kind: type[T], values: dict[str, Any]) -> T:
    return msgspec.convert(values, kind, strict=False)


def service_error(page: Page, exc: ConvoyError) -> str:
    """A service's refusal in the person's language: what the status means, then the reason when the
    catalogue knows it (refusals.py). The service's English words reach only an English reader, and
    only where they say what to change (400, 409); a German page never shows them."""
    lead = {
        400: page._("That did not work:"),
        403: page._("You may not do this."),
        404: page._("Not found."),
        409: page._("That is not possible right now:"),
        410: page._("This link has expired or was already used."),
        429: page._("Too many attempts; please wait a minute."),
        503: page._("Convoy is busy; please try again in a moment."),
    }.get(exc.status, page._("Something went wrong."))
    said = refusals.explain(i18n.gettext_for(page.lang), exc.message)
    if said:
        return said if exc.status == 429 else f"{lead} {said}"  # too many: the reason says how long to wait
    if exc.status in (400, 409) and page.lang == "en":
        return f"{lead} {exc.message}"
    if exc.status in (400, 409):
        return lead.rstrip(":") + "."
    return lead


# --- the dependency ------------------------------------------------------------------------------
async def provide_page(request: Request[Any, Any, State], backend: NamedDependency[Backend]) -> Page:
    lang = request.cookies.get(LANG_COOKIE, "")
    page = Page(
        backend=backend,
        request=request,
        lang=lang if lang in i18n.LANGUAGES else i18n.negotiate(request.headers.get("accept-language", "")),
    )
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        try:
            principal = await backend.principal(cookie)
        except (Unauthenticated, NotFound):
            principal = None
        if principal is not None and principal.kind == "browser":
            page.principal = principal
            page.me = await backend.call(Convoys.ME_GET, api.Ask(actor=page.actor))
            if not request.cookies.get(LANG_COOKIE) and page.me.person.language in i18n.LANGUAGES:
                page.lang = page.me.person.language
    if request.method not in SAFE_METHODS:
        page.form = await request.form()
        if page.principal is not None:
            sent = str(page.form.get("_csrf") or request.headers.get(CSRF_HEADER, ""))
            if not (page.csrf and hmac.compare_digest(sent.encode(), page.csrf.encode())):
                raise Forbidden("the form is out of date (CSRF token); reload the page and try again")
        elif not _from_own_page(request, backend.settings.public_url):
            raise Forbidden("forms are only accepted from Convoy's own pages")
    return page


def _from_own_page(request: Request[Any, Any, State], public_url: str) -> bool:
    """Whether a form without a session comes from one of our pages (login CSRF, spam through a victim).

    ``Sec-Fetch-Site`` when the browser sends it; otherwise (browsers before 2023) the ``Origin`` that
    every browser sends with a cross-site POST, which must be ours (``null`` is not). A client that
    sends neither is no browser, so no one's session or address can be abused through it.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    public = urlsplit(public_url)
    return origin.rstrip("/") in (f"{request.url.scheme}://{request.url.netloc}", f"{public.scheme}://{public.netloc}")


def needs_sign_in(request: Request[Any, Any, State], _: Exception) -> Response[Any]:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method not in SAFE_METHODS:  # a form posted after the session ended: back to its page
        target = _same_site_path(request, request.headers.get("referer", "")) or target
    if request.headers.get("hx-request"):
        # An htmx action (a fragment): back to the page it was made on, not to the fragment's URL.
        # static/convoy.js keeps the typed text (sessionStorage) and follows X-Sign-In.
        target = _same_site_path(request, request.headers.get("hx-current-url", "")) or "/"
        location = f"/sign-in?next={quote(target, safe='')}"
        lang = request.cookies.get(LANG_COOKIE, "")
        lang = lang if lang in i18n.LANGUAGES else i18n.negotiate(request.headers.get("accept-language", ""))
        gettext = i18n.gettext_for(lang)
        return Template(
            template_name="_htmx_error.html",
            context={"message": gettext("Your session has ended. Please sign in again; your text is kept.")},
            status_code=401,
            headers={"X-Sign-In": location, "X-Convoy-Error": "inline", "Cache-Control": "no-store"},
        )
    return Redirect(f"/sign-in?next={quote(target, safe='')}", status_code=303)


def _same_site_path(request: Request[Any, Any, State], url: str) -> str:
    """The path and query of ``url`` if it is on this site (htmx's HX-Current-URL), else ""."""
    parsed = urlsplit(url)
    if not parsed.path.startswith("/") or parsed.netloc != request.url.netloc:
        return ""
    path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    return "" if path.startswith("//") or "\\" in path else path


def now() -> datetime:
    return datetime.now(UTC)
