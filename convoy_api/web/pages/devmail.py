"""``/dev/mail``: what the local mail sink kept, so a newcomer can click sign-in and invitation links.

Served only when ``CONVOY_DEV_MAIL_VIEWER`` is on, which ``convoy up`` does when it runs its own mail
sink (the embedded default); with a real SMTP server the route does not exist.
"""

from __future__ import annotations

import asyncio
import mailbox
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Annotated, Any

from litestar import Controller, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from convoy_api.web.core import Page, provide_page
from services.runtime.errors import NotFound

PageDep = NamedDependency[Page]
LINK = re.compile(r"https?://[^\s<>\"')\]]+")
NEWEST = 200


def _parsed(box: mailbox.Maildir, key: str) -> EmailMessage:
    message = message_from_bytes(box.get_bytes(key), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _part(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    return str(part.get_content()) if part is not None else ""


def _inbox(folder: Path, to: str | None) -> tuple[list[dict[str, Any]], int]:
    box = mailbox.Maildir(folder, create=True)
    keys = sorted(box.keys(), reverse=True)  # Maildir keys start with the delivery time
    items: list[dict[str, Any]] = []
    for key in keys:
        message = _parsed(box, key)
        if to and to.lower() not in str(message["To"]).lower():
            continue
        items.append(
            {"key": key, "to": str(message["To"]), "subject": str(message["Subject"]), "date": str(message["Date"])}
        )
        if len(items) >= NEWEST:
            break
    return items, len(keys)


def _message(folder: Path, key: str) -> EmailMessage | None:
    box = mailbox.Maildir(folder, create=True)
    return _parsed(box, key) if key in box else None


class DevMailPages(Controller):
    path = "/dev/mail"
    dependencies = {"page": Provide(provide_page)}
    include_in_schema = False

    @get("/")
    async def inbox(self, page: PageDep, to: Annotated[str | None, QueryParameter(max_length=254)] = None) -> Template:
        folder = page.backend.settings.data_path / "mail"
        items, total = await asyncio.to_thread(_inbox, folder, to)  # files: off the event loop
        return page.render("devmail.html", items=items, to=to or "", total=total)

    @get("/{key:str}")
    async def message(self, page: PageDep, key: FromPath[str]) -> Template:
        message = await asyncio.to_thread(_message, page.backend.settings.data_path / "mail", key)
        if message is None:
            raise NotFound("no such message in the mail sink")
        text = _part(message, "plain")
        links = list(dict.fromkeys(LINK.findall(text)))
        headers = ("From", "To", "Reply-To", "Subject", "Date", "List-Id", "List-Unsubscribe")
        return page.render(
            "devmail_message.html",
            key=key,
            message=message,
            text=text,
            html=_part(message, "html"),
            links=links,
            headers=[(h, str(message[h])) for h in headers if message[h]],
        )
