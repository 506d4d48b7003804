"""Slack: the convoy's channel gets a compact digest through its incoming webhook.

slack_sdk's async webhook client, paced to one message per second per webhook, honouring
429 Retry-After; a permanent refusal (revoked webhook, removed channel) is reported so the
caller stops using the webhook.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import structlog
from slack_sdk.webhook.async_client import AsyncWebhookClient

from schemas import api

log = structlog.get_logger(__name__)

PACE_S = 1.0
MAX_RETRY_AFTER_S = 60.0
PERMANENT_BODIES = frozenset(
    {
        "invalid_token",
        "channel_not_found",
        "channel_is_archived",
        "no_service",
        "no_service_id",
        "no_team",
        "team_disabled",
        "action_prohibited",
        "posting_to_general_channel_denied",
    }
)


class PermanentSlackError(Exception):
    """The webhook will not work again (revoked, channel gone): stop using it."""


class TransientSlackError(Exception):
    """Try again later."""


def escape(text: str) -> str:
    """Slack mrkdwn control characters (user text must not become mentions or links)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackPoster:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._locks: dict[str, asyncio.Lock] = {}
        self._last: dict[str, float] = {}
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        """One HTTP session for every post: connections to the webhook host are kept and reused
        (slack_sdk otherwise opens a session, and a TLS connection, per message)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, url: str, text: str, blocks: list[dict[str, Any]]) -> None:
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:  # one message per second per webhook, in order
            for _attempt in range(3):
                wait = self._last.get(url, 0.0) + PACE_S - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                client = AsyncWebhookClient(url, timeout=int(self.timeout), session=self._http())
                try:
                    response = await client.send(text=text, blocks=blocks)
                except Exception as exc:  # connection refused, timeout, DNS
                    raise TransientSlackError(repr(exc)) from exc
                finally:
                    self._last[url] = time.monotonic()
                if response.status_code == 200:
                    return
                body = (response.body or "").strip()
                if response.status_code == 429:
                    retry_after = float(response.headers.get("retry-after", response.headers.get("Retry-After", 1)))
                    if retry_after > MAX_RETRY_AFTER_S:
                        raise TransientSlackError(f"rate limited for {retry_after}s")
                    await asyncio.sleep(retry_after)
                    continue
                if response.status_code in (403, 404, 410) or body in PERMANENT_BODIES:
                    raise PermanentSlackError(f"{response.status_code} {body}")
                raise TransientSlackError(f"{response.status_code} {body}")
            raise TransientSlackError("still rate limited")


def _bar(progress: float, width: int = 10) -> str:
    filled = round(max(0.0, min(1.0, progress)) * width)
    return "▓" * filled + "░" * (width - filled) + f" {round(progress * 100)}%"


def _cut(text: str, limit: int = 180) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def digest_message(
    digest: api.Digest, language: str, company_names: dict[Any, str], absences: dict[Any, str], link: str
) -> tuple[str, list[dict[str, Any]]]:
    """The compact digest for the convoy's channel: (fallback text, Block Kit blocks)."""
    de = language == "de"
    title = (
        f"Konvoi-Digest „{digest.convoy_name}“ \N{EN DASH} Runde {digest.cycle_index + 1}"
        if de
        else f'Convoy digest "{digest.convoy_name}" \N{EN DASH} round {digest.cycle_index + 1}'
    )
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title[:150]}}]
    lines: list[str] = []
    if digest.completed_milestones:
        lines.append(
            ("*Erreicht:* " if de else "*Reached:* ")
            + "; ".join(f"{escape(m.company_name)}: {escape(m.title)}" for m in digest.completed_milestones)
        )
    if digest.help_requests:
        lines.append(
            ("*Sucht Hilfe:* " if de else "*Asks for help:* ")
            + "; ".join(f"{escape(r.company_name)} ({escape(_cut(r.help_topic, 80))})" for r in digest.help_requests)
        )
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}})
    for r in digest.reports[:20]:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": (f"*{escape(r.company_name)}* {_bar(r.progress)}\n{escape(_cut(r.done))}")[:2900],
                },
            }
        )
    silent = [
        company_names.get(c, "?") + (f" ({absences[c]})" if c in absences else "") for c in digest.silent_company_ids
    ]
    footer = (
        f"Teilnahme {round(digest.participation * 100)}% · Fortschritt {round(digest.progress * 100)}%"
        if de
        else f"Participation {round(digest.participation * 100)}% · progress {round(digest.progress * 100)}%"
    )
    if silent:
        footer += (" · ohne Bericht: " if de else " · no report: ") + ", ".join(escape(s) for s in silent)
    footer += f" · <{link}|{'Im Konvoi öffnen' if de else 'Open the convoy'}>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer[:2900]}]})
    return title, blocks


def report_message(report: api.Report, convoy_name: str, language: str, link: str) -> tuple[str, list[dict[str, Any]]]:
    """One new report for the convoy's channel (peer view: never the facilitator note)."""
    de = language == "de"
    title = f"{report.company_name}: " + ("neuer Bericht" if de else "new report")
    lines = [f"*{escape(report.company_name)}* · {escape(convoy_name)}", escape(_cut(report.done, 400))]
    if report.next:
        lines.append(("*Als Nächstes:* " if de else "*Next:* ") + escape(_cut(report.next)))
    if report.help_wanted:
        lines.append(("*Sucht Hilfe:* " if de else "*Asks for help:* ") + escape(_cut(report.help_topic or "-", 120)))
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{link}|{'Zum Bericht' if de else 'Open'}>"}]},
    ]
    return title, blocks
