"""Chat channels: a convoy's digest (and, if its facilitators want, each new report) in its team chat.

A channel (``ChatChannel``) says how to write a digest and a report for its webhook and what an
answer of its webhook means; ``WebhookPoster`` posts (paced per webhook, ``429 Retry-After``
honoured) and ``ChatDelivery`` (notifier/chat/delivery.py) does everything else the same for every
channel: the delivery log (keys ``{channel}:digest:{convoy}:{cycle}``, ``{channel}:report:{report}``),
dropping a webhook refused for good and telling the facilitators. The notifier's event handlers call
``ChatDelivery`` once per event and it iterates over the convoy's configured channels: a new channel
(Matrix, Mattermost) is one more module here, one entry in ``CHANNELS`` and its name in
``schemas.api.ChatChannelName`` with a ``CONVOY_<NAME>_WEBHOOK_HOSTS`` setting; the handlers stay.
"""

from __future__ import annotations

import asyncio
import enum
import time
import uuid
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aiohttp

from schemas import api
from schemas import events as ev

PACE_S = 1.0
"""At most one post per second per webhook (Slack's documented limit; Teams Workflows throttle too)."""
MAX_RETRY_AFTER_S = 60.0
"""A longer Retry-After is not waited for in the consumer: the event is retried later instead."""


class Verdict(enum.Enum):
    """What a webhook's answer means."""

    SENT = "sent"
    RATE_LIMITED = "rate_limited"
    """Wait ``Retry-After`` and try again."""
    REVOKED = "revoked"
    """The webhook will not work again (deleted, revoked, channel gone): drop it, tell the facilitators."""
    REFUSED = "refused"
    """This message is refused for good (malformed, too large); the webhook stays."""
    TRANSIENT = "transient"
    """Try again later (5xx, a timeout)."""


@dataclass(frozen=True)
class DigestPost:
    """What a channel needs for the digest of one round."""

    digest: api.Digest
    language: str
    company_names: dict[uuid.UUID, str]
    absences: dict[uuid.UUID, str]
    """Company id → why it did not report (away, skipped: reason), in the convoy's language."""
    link: str
    """The convoy's page."""


@dataclass(frozen=True)
class ReportPost:
    """What a channel needs to announce one new report (the peer view: never the facilitator note)."""

    report: ev.ReportSnapshot
    convoy_name: str
    language: str
    link: str
    """The report's page."""


class ChatChannel(Protocol):
    name: str
    """``slack``, ``teams``: the delivery-key prefix, the channel in the delivery log and in services/convoys."""
    label: str
    """How people call it ("Slack", "Microsoft Teams")."""
    notice: str
    """The email template that tells the facilitators the webhook was dropped (params convoy, link,
    reason, channel)."""

    def digest(self, post: DigestPost) -> dict[str, Any]:
        """The JSON body posted for a round's digest."""
        ...

    def report(self, post: ReportPost) -> dict[str, Any]:
        """The JSON body posted for a new report."""
        ...

    def verdict(self, status: int, body: str) -> Verdict:
        """What the webhook's answer (status, body text) means."""
        ...


class ChatError(Exception):
    pass


class RevokedWebhook(ChatError):
    """The webhook will not work again: stop using it."""


class RefusedMessage(ChatError):
    """This message will never be accepted (the webhook may still work)."""


class TransientChatError(ChatError):
    """Try again later."""


def retry_after(value: str | None) -> float:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date); 1 if absent or unreadable."""
    if not value:
        return 1.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return 1.0


class WebhookPoster:
    """Posts JSON to webhooks over one kept HTTP session: one post per second per webhook, in order;
    a 429 waits its Retry-After (up to a minute, three tries)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._locks: dict[str, asyncio.Lock] = {}
        self._last: dict[str, float] = {}
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, channel: ChatChannel, url: str, payload: dict[str, Any]) -> None:
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            for _attempt in range(3):
                wait = self._last.get(url, 0.0) + PACE_S - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    async with self._http().post(url, json=payload, allow_redirects=False) as response:
                        status, body = response.status, (await response.text()).strip()[:500]
                        headers = response.headers
                except Exception as exc:  # connection refused, timeout, DNS
                    raise TransientChatError(f"{channel.name}: {exc!r}") from exc
                finally:
                    self._last[url] = time.monotonic()
                verdict = channel.verdict(status, body)
                if verdict is Verdict.SENT:
                    return
                if verdict is Verdict.RATE_LIMITED:
                    wait = retry_after(headers.get("Retry-After"))
                    if wait > MAX_RETRY_AFTER_S:
                        raise TransientChatError(f"{channel.name}: rate limited for {wait}s")
                    await asyncio.sleep(wait)
                    continue
                if verdict is Verdict.REVOKED:
                    raise RevokedWebhook(f"{status} {body}")
                if verdict is Verdict.REFUSED:
                    raise RefusedMessage(f"{status} {body}")
                raise TransientChatError(f"{channel.name}: {status} {body}")
            raise TransientChatError(f"{channel.name}: still rate limited")


def _channels() -> dict[str, ChatChannel]:
    from notifier.chat import slack, teams

    return {c.name: c for c in (slack.SlackChannel(), teams.TeamsChannel())}


CHANNELS: dict[str, ChatChannel] = _channels()
"""Every chat channel the notifier can post to, by name."""
