"""Sending email, each exactly once per delivery key: ``Mailer.send_email`` is the one place every email goes through.

``Mailer`` holds what every send shares: the settings, the SMTP pool, the delivery log (claims and
"sent" records batched by ``DeliveryBatcher``), the people's preferences and whether answers by
email are on. ``send_email`` applies the preference of the key's kind, signs the one-click
unsubscribe link, adds the footer, threads, claims the key, sends and records it; ``fan_out``
sends many at once (bounded by the SMTP pool) and flushes their records before the event is
acknowledged. The notifier's consumers (notifier/consumers.py), its chat channels
(notifier/chat/delivery.py), the facilitator's emails (notifier/facilitation.py) and the feedback
emails (notifier/feedback.py) all send through one ``Mailer``.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import Awaitable, Callable, Iterable

import structlog
from prometheus_client import Counter

from notifier import access, render, replies
from notifier.batching import DeliveryBatcher
from notifier.email import PermanentDeliveryError, SmtpConfig, SmtpPool, TransientDeliveryError, wire_message
from notifier.repository import Deliveries, Preferences
from schemas import api
from services.runtime import correlation, tracing
from services.runtime.db import Database
from services.runtime.settings import Settings

log = structlog.get_logger(__name__)

MESSAGES_LIST_ID = "Convoy <account.convoy>"
"""List-Id of the messages about a person's own account (invitations, sign-in links, decisions)."""
SETTINGS_PATH = "/profile/#notifications"
"""The notification settings on the profile page (every notification's footer links there)."""
SENT = Counter("convoy_notifier_messages", "Messages handed to a channel", ["channel", "outcome"])
batched: contextvars.ContextVar[bool] = contextvars.ContextVar("notifier_batched", default=False)
"""True in fan_out's sends: their "sent" records are flushed together when the fan-out ends."""

Send = Callable[[], Awaitable[None]]


def convoy_list_id(name: str, convoy_id: uuid.UUID) -> str:
    """The List-Id of a convoy's emails (its name, shortened, and its id)."""
    return f"{' '.join(name.split())[:60]} <{convoy_id}.convoys.convoy>"


class Mailer:
    """The notifier's email: SMTP pool, delivery log and preferences, and the one ``send_email``."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.smtp = SmtpPool(SmtpConfig.from_url(settings.smtp_url), settings.smtp_pool_size, settings.smtp_timeout)
        self.deliveries = Deliveries(db)
        self.log = DeliveryBatcher(self.deliveries)  # claims and "sent" records of concurrent sends share commits
        self.preferences = Preferences(db)
        self.replies_on = settings.inbound_smtp_port > 0
        """Whether answering an email files it (the inbound SMTP server runs: notifier.replies)."""
        # At most as many sends in flight as the SMTP pool has connections: a large convoy queues
        # here instead of timing out while waiting for a free connection.
        self.in_flight = asyncio.Semaphore(settings.smtp_pool_size)

    async def close(self) -> None:
        await self.smtp.close()

    def public(self, path: str) -> str:
        """A path → its public URL."""
        return f"{self.settings.public_url.rstrip('/')}{path}"

    def reply_to(self, target: replies.Target) -> str | None:
        """The Reply-To that files an answer by email, when the inbound server runs."""
        return replies.address(self.settings, target) if self.replies_on else None

    async def send_email(
        self,
        key: str,
        event_id: uuid.UUID,
        *,
        to_name: str,
        to_email: str,
        rendered: render.Rendered,
        list_id: str,
        reply: replies.Target | None = None,
        prefs: api.NotificationPrefs | None = None,
        thread: str | None = None,
    ) -> None:
        """Send one email at most once per delivery ``key`` (the delivery log remembers).

        Keys are ``kind:…:person_id`` for notifications (the person's preferences apply, and the
        email gets a one-click unsubscribe link for that kind) and ``message:…`` for sign-in links
        and invitations (always sent). With ``reply``, answering the email files it (notifier.replies).
        ``prefs``: the person's preferences, when the caller loaded them (for a whole fan-out at once).
        ``thread``: emails about one thing (``report.{id}``: its notice and feedback) fold into one
        thread (``In-Reply-To``/``References`` name the same parent, notifier.email.thread_root).
        In ``fan_out`` the "sent" record may be written just after this returns (fan_out waits for it).
        """
        kind, _, rest = key.partition(":")
        unsubscribe = None
        if kind != "message":
            person_id = uuid.UUID(rest.rsplit(":", 1)[-1])
            if not (prefs if prefs is not None else await self.preferences.get(person_id)).allows(kind):
                SENT.labels("email", "unwanted").inc()
                return
            unsubscribe = self.public(f"/unsubscribe/{access.unsubscribe_token(self.settings, person_id, kind)}")
        # the visible footer: why this email, the settings and (notifications) this kind's unsubscribe
        # a message names its template first (``message:pool_joined:…``): its own "why" line, if it has one
        footer_kind = f"message:{rest.partition(':')[0]}" if kind == "message" else kind
        # (a digest: its shared lines are written and encoded once for all its recipients)
        text, html = render.footed_bodies(
            rendered, kind=footer_kind, settings_url=self.public(SETTINGS_PATH), unsubscribe_url=unsubscribe
        )
        correlation_id = correlation.current()
        # Built before the claim: the time between claiming and sending (a crash there leaves the
        # key uncertain) is only the SMTP exchange. The bytes are build_message(...).as_bytes().
        message = wire_message(
            key=key,
            sender=self.settings.mail_from,
            to_name=to_name,
            to_email=to_email,
            subject=rendered.subject,
            text=text,
            html=html,
            list_id=list_id,
            unsubscribe=unsubscribe,
            reply_to=self.reply_to(reply) if reply is not None else None,
            thread=thread,
            # follow a request to its email
            extra_headers=[(correlation.HTTP_HEADER, str(correlation_id))] if correlation_id is not None else (),
        )
        # The claim commits while the SMTP envelope (MAIL FROM, RCPT TO) goes out; DATA waits for it
        # (SmtpPool.send). The crash window is as before: nothing is delivered before the key is
        # claimed, and a crash between the claim and the server's 250 leaves it "sending" (uncertain).
        claim = self.log.claim_soon(key, event_id, "email", to_email)
        try:
            # the key names kind and ids, never an address (like the "email sent" log line)
            with tracing.span("email send", kind=tracing.SpanKind.CLIENT, attributes={"convoy.delivery_key": key}):
                sent = await self.smtp.send(message, claim)
        except Exception as exc:
            if claim.done() and not claim.cancelled() and claim.exception() is exc:
                raise  # the claim itself failed (the database): nothing was sent, the envelope dropped
            # the SMTP exchange failed, maybe before the claim was decided (the envelope goes out
            # while it commits): recorded only if this send holds the key
            if not await claim:
                SENT.labels("email", "duplicate").inc()
                return
            if isinstance(exc, PermanentDeliveryError):
                await self.deliveries.finish(key, "failed", str(exc))
                SENT.labels("email", "refused").inc()
                log.warning("email refused for good", key=key, error=str(exc))
                return
            await self.deliveries.note_error(key, repr(exc))
            SENT.labels("email", "retry").inc()
            # Not the SMTP client's own OSError/TimeoutError: raised inside the consumer's database
            # transaction, those would read as "database unavailable" and never be dead-lettered.
            raise TransientDeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if not sent:
            SENT.labels("email", "duplicate").inc()
            return
        self.log.sent(key, event_id, "email", to_email)
        if not batched.get():
            await self.log.flush()
        SENT.labels("email", "sent").inc()
        log.info("email sent", key=key)  # the key names kind and person id, never the address

    async def fan_out(self, sends: Iterable[Send], *, alongside: Iterable[Send] = ()) -> None:
        """Run every send (bounded); if any failed, raise the first failure after all ended.

        The ones sent are in the delivery log, so the consumer's retry sends only the rest.
        ``alongside``: other deliveries (the chat posts of the same event) run at the same time,
        outside the SMTP bound; their claims share the emails' statement and their "sent"
        records the one flush below (notifier/batching.py), instead of a commit or two each.
        """

        async def one(send: Send, bounded: bool) -> None:
            batched.set(True)  # this task's sends leave their "sent" record to the flush below
            if bounded:
                async with self.in_flight:
                    await send()
            else:
                await send()

        results: list[BaseException | None] = await asyncio.gather(
            *(one(s, True) for s in sends), *(one(s, False) for s in alongside), return_exceptions=True
        )
        try:
            await self.log.flush()  # every "sent" record written before the event is acknowledged
        except Exception as exc:
            results.append(exc)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
