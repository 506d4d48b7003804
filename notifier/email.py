"""Email: building multipart messages from templates, and a pool of reused SMTP connections."""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses, parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SmtpConfig:
    hostname: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    start_tls: bool | None = False

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        """``smtp://[user:pass@]host:port[?starttls=true]`` or ``smtps://…`` (implicit TLS)."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"CONVOY_SMTP_URL must look like smtp://host:port, not {url!r}")
        query = parse_qs(parts.query)
        starttls = query.get("starttls", ["false"])[0].lower() in ("1", "true", "yes")
        return cls(
            hostname=parts.hostname,
            port=parts.port or (465 if parts.scheme == "smtps" else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=parts.scheme == "smtps",
            start_tls=starttls,
        )


class PermanentDeliveryError(Exception):
    """The server refused for good (5xx): retrying will not help."""


class TransientDeliveryError(Exception):
    """The send failed but may work later (4xx, timeout, dropped connection): the event is retried."""


class SmtpPool:
    """Up to ``size`` SMTP connections, each reused for many messages and replaced when it breaks."""

    def __init__(self, config: SmtpConfig, size: int, timeout: float) -> None:
        self.config = config
        self.timeout = timeout
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP | None] = asyncio.LifoQueue()
        for _ in range(size):
            self._idle.put_nowait(None)  # a free slot; the connection is opened on first use

    async def _open(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.config.hostname,
            port=self.config.port,
            use_tls=self.config.use_tls,
            start_tls=self.config.start_tls,
            username=self.config.username,
            password=self.config.password,
            timeout=self.timeout,
        )
        await client.connect()
        return client

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[aiosmtplib.SMTP]:
        client = await asyncio.wait_for(self._idle.get(), self.timeout)
        try:
            if client is None or not client.is_connected:
                client = await self._open()
            yield client
        except BaseException:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
            client = None
            raise
        finally:
            self._idle.put_nowait(client)

    async def send(self, message: EmailMessage) -> None:
        sender = parseaddr(str(message["From"]))[1]
        recipients = [address for _, address in getaddresses([str(message["To"])])]
        # Flattened here, not by aiosmtplib: its fixed 78-column policy folds a long non-ASCII
        # subject into encoded words and drops the space between them (CPython's folder).
        data = message.as_bytes(policy=WIRE_POLICY)
        try:
            async with self._client() as client:
                await client.sendmail(sender, recipients, data, timeout=self.timeout)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(e.code >= 500 for e in exc.recipients):
                raise PermanentDeliveryError(str(exc)) from exc
            raise
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise PermanentDeliveryError(f"{exc.code} {exc.message}") from exc
            raise

    async def close(self) -> None:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            if client is not None and client.is_connected:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.quit(), 2)


WIRE_POLICY = email.policy.SMTP.clone(max_line_length=998)
"""CRLF, headers unfolded up to RFC 5322's 998-character limit (subjects are at most 200)."""


def _header(value: str) -> str:
    """User text in a header: no line breaks (header injection), bounded length."""
    return " ".join(value.split())[:200]


def build_message(
    *,
    key: str,
    sender: str,
    to_name: str,
    to_email: str,
    subject: str,
    text: str,
    html: str,
    list_id: str,
    unsubscribe: str | None = None,
    reply_to: str | None = None,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = formataddr((_header(to_name), parseaddr(to_email)[1]))
    message["Subject"] = _header(subject)
    message["Date"] = format_datetime(datetime.now(UTC))
    # Stable per delivery key: if a message ever went out twice, mail clients fold it into one.
    message["Message-ID"] = f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@convoy>"
    message["List-Id"] = list_id
    message["Auto-Submitted"] = "auto-generated"
    message["X-Convoy-Delivery"] = key
    if reply_to:
        message["Reply-To"] = reply_to
    if unsubscribe:
        # RFC 8058 one-click: mail providers POST "List-Unsubscribe=One-Click" to this URL.
        message["List-Unsubscribe"] = f"<{unsubscribe}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message
