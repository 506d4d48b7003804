"""Sign-in by emailed link, landing from an invitation, sign-out and the language switch."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlparse

import msgspec
from litestar import Controller, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from convoy_api.deps import SESSION_COOKIE, client_key, client_rate_limit
from convoy_api.web import i18n
from convoy_api.web.core import LANG_COOKIE, Page, field_error, provide_page, service_error
from schemas import api
from schemas.convoys import Convoys
from services.runtime.errors import ConvoyError

PageDep = NamedDependency[Page]


def safe_next(target: str | None) -> str:
    """Only paths on this site: a sign-in link must not become an open redirect.

    Browsers read ``/\\host`` as ``//host`` and drop tabs and newlines from a URL (``/<tab>/host``), so
    a backslash, any white space and any control character anywhere refuse the target.
    """
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(c.isspace() or unicodedata.category(c) == "Cc" for c in target)
        or len(target) > 500
        or urlparse(target).netloc
    ):
        return "/"
    return target


def session_cookie(page: Page, signed_in: api.SignedIn) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=signed_in.session_token,
        max_age=int((signed_in.session_expires_at - datetime.now(UTC)).total_seconds()),
        path="/",
        httponly=True,
        secure=page.backend.settings.public_url.startswith("https://"),
        samesite="lax",
    )


class SignInPages(Controller):
    dependencies = {"page": Provide(provide_page)}
    include_in_schema = False

    @get("/sign-in")
    async def form(self, page: PageDep, next: Annotated[str | None, QueryParameter()] = None) -> Template:
        return page.render("sign_in.html", next=safe_next(next), sent=False, errors={}, email="")

    @post("/sign-in", guards=[client_rate_limit], status_code=200)
    async def send_link(self, page: PageDep) -> Template:
        email = str(page.form.get("email", "")).strip()
        nxt = safe_next(str(page.form.get("next", "/")))
        try:
            request = msgspec.convert({"email": email, "next": nxt if nxt != "/" else None}, api.SignInRequest)
        except msgspec.ValidationError as exc:
            name, message = field_error(page, exc, {"email": email})
            return page.render("sign_in.html", 422, next=nxt, sent=False, errors={name: message}, email=email)
        client = client_key(page.backend.settings, page.request, "sign-in")
        await page.call(Convoys.SIGN_IN_REQUEST, api.SignInAsk(sign_in=request, client=client))
        return page.render("sign_in.html", next=nxt, sent=True, errors={}, email=email)

    @get("/sign-in/{token:str}")
    async def landing(
        self, page: PageDep, token: FromPath[str], next: Annotated[str | None, QueryParameter()] = None
    ) -> Template:
        # A GET never spends the token: mail scanners open links; the button below signs in.
        return page.render("sign_in_link.html", token=token, next=safe_next(next), error="")

    @post("/sign-in/{token:str}", guards=[client_rate_limit], status_code=200)
    async def complete(self, page: PageDep, token: FromPath[str]) -> Template | Redirect:
        try:
            body = msgspec.convert({"token": token}, api.SignInComplete)
            signed_in = await page.call(Convoys.SIGN_IN_COMPLETE, body)
        except msgspec.ValidationError:
            return page.render("sign_in_link.html", 400, token=token, next="/", error=page._("This link is broken."))
        except ConvoyError as exc:
            return page.render("sign_in_link.html", exc.status, token=token, next="/", error=service_error(page, exc))
        page.cookies.append(session_cookie(page, signed_in))
        page.cookies.append(Cookie(key=LANG_COOKIE, value="", max_age=0, path="/"))
        return page.redirect(safe_next(str(page.form.get("next", "/"))))

    @post("/sign-out", status_code=303)
    async def sign_out(self, page: PageDep) -> Redirect:
        token = page.request.cookies.get(SESSION_COOKIE)
        if token and page.principal is not None:
            await page.call(Convoys.SIGN_OUT, api.SignOut(token=token))
            page.backend.forget(token)
        page.cookies.append(Cookie(key=SESSION_COOKIE, value="", max_age=0, path="/", httponly=True))
        return page.redirect("/sign-in")

    @post("/language", status_code=303)
    async def language(self, page: PageDep) -> Redirect:
        lang = str(page.form.get("lang", ""))
        if lang in i18n.LANGUAGES:
            page.cookies.append(Cookie(key=LANG_COOKIE, value=lang, max_age=365 * 86400, path="/", samesite="lax"))
            if page.principal is not None:
                patch = api.ProfilePatch(language=lang)
                await page.call(Convoys.ME_UPDATE, api.UpdateMe(actor=page.actor, patch=patch))
        return page.redirect(safe_next(str(page.form.get("next", "/"))))


def _chosen(page: Page) -> i18n.Lang | None:
    """The language this browser chose (the switch's cookie); None: the invitation's own."""
    lang = page.request.cookies.get(LANG_COOKIE, "")
    return lang if lang in i18n.LANGUAGES else None


class InvitationPages(Controller):
    path = "/invitations"
    dependencies = {"page": Provide(provide_page)}
    include_in_schema = False

    @get("/{token:str}")
    async def landing(
        self, page: PageDep, token: FromPath[str], next: Annotated[str | None, QueryParameter()] = None
    ) -> Template:
        try:
            body = msgspec.convert({"token": token, "language": _chosen(page)}, api.PreviewInvitation)
            preview = await page.call(Convoys.INVITATION_PREVIEW, body)
        except msgspec.ValidationError:
            return page.render("invitation.html", 400, preview=None, error=page._("This link is broken."), errors={})
        except ConvoyError as exc:
            return page.render("invitation.html", exc.status, preview=None, error=service_error(page, exc), errors={})
        if preview.language in i18n.LANGUAGES and not page.request.cookies.get(LANG_COOKIE):
            page.lang = preview.language
        return page.render(
            "invitation.html", preview=preview, token=token, error="", errors={}, values={}, next=safe_next(next)
        )

    @post("/{token:str}", guards=[client_rate_limit], status_code=200)
    async def accept(self, page: PageDep, token: FromPath[str]) -> Template | Redirect:
        values: dict[str, Any] = {k: str(page.form.get(k, "")).strip() for k in ("name", "language", "timezone")}
        nxt = safe_next(str(page.form.get("next", "/")))
        shown = str(page.form.get("charter_version", ""))
        charter = {"charter_version": int(shown)} if shown.isdigit() and int(shown) > 0 else {}
        try:
            accept = msgspec.convert({"token": token, **values, **charter}, api.AcceptInvitation)
            signed_in = await page.call(Convoys.INVITATION_ACCEPT, api.AcceptInvitationRequest(accept=accept))
        except msgspec.ValidationError as exc:
            name, message = field_error(page, exc, values)
            preview = await page.call(
                Convoys.INVITATION_PREVIEW, api.PreviewInvitation(token=token, language=_chosen(page))
            )
            return page.render(
                "invitation.html",
                422,
                preview=preview,
                token=token,
                error="",
                errors={name: message},
                values=values,
                next=nxt,
            )
        except ConvoyError as exc:
            return page.render("invitation.html", exc.status, preview=None, error=service_error(page, exc), errors={})
        page.cookies.append(session_cookie(page, signed_in))
        page.cookies.append(Cookie(key=LANG_COOKIE, value="", max_age=0, path="/"))
        return page.redirect(nxt)
