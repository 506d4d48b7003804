"""Calendar subscriptions (issue #22): manage my feed, and the feed itself (no sign-in: the token is the key).

``GET /calendar/{token}.ics`` is what Outlook, Google Calendar and Apple Calendar fetch: no
Authorization header (they cannot send one), ``text/calendar``, a strong ETag over the body with
``304`` on ``If-None-Match``, ``Cache-Control: private``, no cookies. An unknown, malformed or revoked
token gets the same 404. No per-address rate limit: the fetchers of Google and Microsoft share a few
addresses for all their users, and a 256-bit token cannot be guessed.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import quote

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from convoy_api.calendar import ics
from convoy_api.deps import Backend, provide_actor
from schemas import api
from schemas.convoys import Convoys
from schemas.reminders import Reminders
from services.runtime.errors import NotFound

Actor = NamedDependency[api.Actor]
Services = NamedDependency[Backend]

CACHE_CONTROL = "private, max-age=900"
"""Calendar apps poll at their own pace (Google: hours); a shared cache must never keep a personal feed."""
NOT_FOUND = "unknown or revoked calendar feed"
_token = msgspec.json.Decoder(api.ResolveCalendar)


def feed_urls(public_url: str, secret: str) -> tuple[str, str]:
    """The feed's https (or http) URL and the same as ``webcal://`` (opens a calendar app to subscribe)."""
    url = f"{public_url.rstrip('/')}/calendar/{secret}.ics"
    return url, "webcal://" + url.split("://", 1)[1]


def subscribe_links(url: str, webcal: str, name: str) -> dict[str, str]:
    """One-click subscribe links: Apple Calendar and Outlook desktop take ``webcal://``; the web apps a URL."""
    return {
        "apple": webcal,
        "outlook_desktop": webcal,
        "outlook_work": f"https://outlook.office.com/calendar/0/addfromweb?url={quote(url, safe='')}"
        f"&name={quote(name, safe='')}",
        "outlook_personal": f"https://outlook.live.com/calendar/0/addfromweb?url={quote(url, safe='')}"
        f"&name={quote(name, safe='')}",
        "google": f"https://calendar.google.com/calendar/r?cid={quote(webcal, safe='')}",
    }


async def create_feed(backend: Backend, actor: api.Actor) -> api.CalendarSubscription:
    created = await backend.call(Convoys.CALENDAR_CREATE, api.Ask(actor=actor))
    url, webcal = feed_urls(backend.settings.public_url, created.secret)
    return api.CalendarSubscription(feed=created.feed, url=url, webcal_url=webcal)


async def feed_body(backend: Backend, token: str) -> bytes:
    """The ICS of the feed ``token`` (NotFound when unknown or revoked): two requests, whatever the size."""
    try:
        ask = _token.decode(msgspec.json.encode({"token": token}))
    except msgspec.ValidationError as exc:
        raise NotFound(NOT_FOUND) from exc
    owner = await backend.call(Convoys.CALENDAR_RESOLVE, ask)
    rounds = api.CalendarRounds(convoys=[])
    if owner.convoys:
        rounds = await backend.call(
            Reminders.CALENDAR_ROUNDS,
            api.AskCalendarRounds(actor=api.SYSTEM, convoy_ids=[c.convoy_id for c in owner.convoys][:200]),
        )
    return ics.build(owner, rounds, backend.settings.public_url)


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:40] + '"'


def _matches(if_none_match: str, etag: str) -> bool:
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or etag in tags or f"W/{etag}" in tags


class CalendarController(Controller):
    path = "/api/v1/me/calendar"
    tags = ["profile"]
    dependencies = {"actor": Provide(provide_actor)}

    @get("/", summary="My calendar feed: whether one is active (its address is shown only when created)")
    async def show(self, actor: Actor, backend: Services) -> api.CalendarFeed:
        return await backend.call(Convoys.CALENDAR_GET, api.Ask(actor=actor))

    @post(
        "/",
        summary="Create my calendar feed, or get a new address for it (the previous one stops working)",
        description=(
            "Answers the feed's address once (only its SHA-256 is stored): subscribe to `url` in Google"
            " Calendar or Outlook on the web, or open `webcal_url` in Apple Calendar or Outlook. The feed"
            " holds the check-in rounds of every convoy I report in or facilitate."
        ),
    )
    async def create(self, actor: Actor, backend: Services) -> api.CalendarSubscription:
        return await create_feed(backend, actor)

    @delete("/", summary="Turn my calendar feed off (its address answers 404 from now on)", status_code=204)
    async def revoke(self, actor: Actor, backend: Services) -> None:
        await backend.call(Convoys.CALENDAR_REVOKE, api.Ask(actor=actor))


class FeedController(Controller):
    path = "/calendar"
    tags = ["profile"]

    @get(
        "/{name:str}",
        summary="A calendar feed (iCalendar, no sign-in: the address is the key)",
    )
    async def feed(self, name: FromPath[str], request: Request[Any, Any, Any], backend: Services) -> Response[bytes]:
        if not name.endswith(".ics"):
            raise NotFound(NOT_FOUND)
        body = await feed_body(backend, name.removesuffix(".ics"))
        etag = etag_of(body)
        headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept-Encoding"}
        if _matches(request.headers.get("if-none-match", ""), etag):
            return Response(b"", status_code=304, headers=headers)
        return Response(
            body,
            media_type="text/calendar",  # Litestar adds "; charset=utf-8" to text types
            headers={**headers, "Content-Disposition": "inline; filename=convoy.ics"},
        )
