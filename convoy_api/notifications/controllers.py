"""Notification preferences, and unsubscribing from a link without signing in (RFC 8058 one-click)."""

from __future__ import annotations

from html import escape

from litestar import Controller, MediaType, Response, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from convoy_api import examples as ex
from convoy_api.deps import Backend, client_rate_limit, provide_actor
from schemas import api
from schemas.notifier import Notifier

Actor = NamedDependency[api.Actor]
Services = NamedDependency[Backend]

KIND_NAMES = {
    "report": ("Berichte anderer Unternehmen", "other companies' reports"),
    "help_offered": ("Hilfsangebote", "offers of help"),
    "prompt": ("Check-in-Aufforderungen", "check-in prompts"),
    "nudge": ("Erinnerungen", "reminders"),
    "digest": ("den Konvoi-Digest", "the convoy digest"),
    "facilitator_digest": ("den Moderations-Digest", "the facilitator digest"),
    "feedback": ("Rückmeldungen zu Ihren Berichten", "feedback on your reports"),
    "reply": ("Antworten auf Ihre Kommentare", "replies to your comments"),
    "help_requested": ("Hilfegesuche in Ihren Konvois", "help requests in your convoys"),
    "facilitator_cycle": ("die Rundenübersicht für die Moderation", "the facilitator's round summary"),
}


def _page(title: str, body: str) -> Response[str]:
    return Response(
        f'<!DOCTYPE html><html lang="de"><head><meta charset="utf-8"><meta name="viewport"'
        f' content="width=device-width"><title>{escape(title)}</title></head>'
        f'<body style="font-family:Arial,sans-serif;max-width:36em;margin:2em auto;padding:0 1em">{body}</body></html>',
        media_type=MediaType.HTML,
    )


class PreferencesController(Controller):
    path = "/api/v1/me/notifications"
    tags = ["profile"]
    dependencies = {"actor": Provide(provide_actor)}

    @get("/", summary="My notification preferences")
    async def read(self, actor: Actor, backend: Services) -> api.NotificationPrefs:
        return await backend.call(Notifier.PREFS_GET, api.PrefsAsk(actor=actor))

    @put("/", summary="Change my notification preferences (sign-in links and invitations always arrive)")
    async def update(self, data: ex.NotificationPrefs, actor: Actor, backend: Services) -> api.NotificationPrefs:
        return await backend.call(Notifier.PREFS_PUT, api.PutPrefs(actor=actor, prefs=data))


class UnsubscribeController(Controller):
    path = "/unsubscribe/{token:str}"
    tags = ["profile"]

    @get(
        "/",
        summary="The page behind an email's unsubscribe link (asks before it changes anything)",
        include_in_schema=True,
        media_type=MediaType.HTML,
    )
    async def confirm(self, token: FromPath[str]) -> Response[str]:
        action = escape(f"/unsubscribe/{token}")
        return _page(
            "Abmelden / Unsubscribe",
            f"<h1>Abmelden · Unsubscribe</h1><p>Möchten Sie diese E-Mails nicht mehr erhalten?<br>"
            f'Don\'t want these emails any more?</p><form method="post" action="{action}">'
            f'<button type="submit" style="font-size:1.1em;padding:.5em 1em">Abmelden · Unsubscribe</button></form>',
        )

    @post(
        "/",
        summary="Unsubscribe at once (one-click, RFC 8058)",
        status_code=200,
        guards=[client_rate_limit],
        media_type=MediaType.HTML,
    )
    async def unsubscribe(self, token: FromPath[str], backend: Services) -> Response[str]:
        done = await backend.call(Notifier.UNSUBSCRIBE, api.UnsubscribeAsk(token=token))
        de, en = KIND_NAMES.get(done.kind, ("diese E-Mails", "these emails"))
        return _page(
            "Abgemeldet / Unsubscribed",
            f"<h1>Abgemeldet · Unsubscribed</h1><p>Sie erhalten keine E-Mails mehr über {escape(de)}.<br>"
            f"You will no longer get emails about {escape(en)}.</p>"
            f"<p>Alle Einstellungen: Profil → Benachrichtigungen · All settings: profile → notifications.</p>",
        )
