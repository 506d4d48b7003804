"""The local mail sink: an aiosmtpd SMTP server that keeps every message in a Maildir.

Read them with ``convoy mail`` or any Maildir-aware mail client (mutt -f .convoy-data/mail).
"""

from __future__ import annotations

import asyncio
import mailbox
import re
import signal
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

log = structlog.get_logger(__name__)


class MaildirHandler:
    def __init__(self, folder: Path) -> None:
        self.box = mailbox.Maildir(folder, create=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        key = self.box.add(content)
        parsed = message_from_bytes(content, policy=policy.default)
        log.info(
            "mail kept",
            key=key,
            mail_from=envelope.mail_from,
            rcpt_to=envelope.rcpt_tos,
            subject=str(parsed.get("Subject", "")),
        )
        return "250 Message accepted for delivery"


async def serve(host: str, port: int, folder: Path, stop: asyncio.Event) -> None:
    handler = MaildirHandler(folder)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="convoy-mailsink"), host, port)
    log.info("mail sink listening", host=host, port=port, maildir=str(folder))
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()


def run(host: str, port: int, folder: Path) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(host, port, folder, stop)

    asyncio.run(main())


def list_messages(folder: Path, last: int, to: str | None = None) -> list[dict[str, Any]]:
    """The newest ``last`` messages kept (oldest first), optionally only those to ``to``."""
    if not folder.exists():
        return []
    box = mailbox.Maildir(folder, create=False)
    items = []
    for key in box.iterkeys():
        # The stored bytes as received: re-flattening through mailbox's compat32 refolds headers.
        parsed = message_from_bytes(box.get_bytes(key), policy=policy.default)
        if to is not None and to.lower() not in str(parsed["To"]).lower():
            continue
        body = parsed.get_body(("plain",))
        items.append(
            {
                "key": key,
                "date": str(parsed["Date"]),
                "to": str(parsed["To"]),
                "subject": str(parsed["Subject"]),
                "text": body.get_content() if body is not None else "",
            }
        )
    items.sort(key=lambda m: m["key"])  # Maildir keys start with the delivery time
    return items[-last:]


def newest_token(folder: Path, to: str, prefix: str) -> str | None:
    """The one-time token (e.g. ``cvi_…``, ``cvl_…``) in the newest message to ``to`` that has one."""
    for item in reversed(list_messages(folder, 10_000, to)):
        found = re.findall(rf"{re.escape(prefix)}[A-Za-z0-9_-]{{20,}}", item["text"])
        if found:
            return str(found[-1])
    return None
