"""Replies by email: answering a prompt files the company's report, answering a report
notification files a comment; bad, expired or foreign replies are refused with a 550 and filed
nowhere. The replies travel over real SMTP (aiosmtplib) to the notifier's inbound aiosmtpd server.
"""

from __future__ import annotations

import ssl
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parseaddr

import aiosmtplib
import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from notifier import replies
from schemas import events as ev
from services.runtime.settings import Settings
from tests import mailkit
from tests.conftest import SmtpSink, Stack, eventually
from tests.test_cycle_mail import DUE, publish
from tests.test_reports import schedule
from tests.world import World, build_world

GERMAN_QUOTE = """

Am 31.03.2025 um 09:00 schrieb Convoy <convoy@localhost>:
> Hallo Anna Müller,
> im Konvoi „Terminvergabe Nord“ hat Runde 1 begonnen.
"""
SIGNATURE = "\n-- \nAnna Müller\nSanitär Müller GmbH, Tel. 040 123456\n"


# --- pure parts -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Buchungsseite ist live.\n\nViele Grüße\nAnna" + SIGNATURE + GERMAN_QUOTE,
            "Buchungsseite ist live.\n\nViele Grüße\nAnna",
        ),
        (
            "Calendar connected.\n\nOn Mon, 31 Mar 2025 at 09:00, Convoy <convoy@localhost>\nwrote:\n> Hello Ben,\n",
            "Calendar connected.",
        ),
        (
            "> Was haben Sie geschafft?\nDie Seite ist live.\n> Und als Nächstes?\nKalender.",
            "Die Seite ist live.\nKalender.",
        ),
        (
            "Erledigt: Shop online.\n\n________________________________\nVon: Convoy <convoy@localhost>\n"
            "Gesendet: Montag, 31. März 2025 09:00\nAn: Anna\nBetreff: Check-in\n\nHallo Anna",
            "Erledigt: Shop online.",
        ),
        (
            "Done.\r\n\r\n-----Original Message-----\r\nFrom: Convoy\r\nSent: Monday\r\nHello",
            "Done.",
        ),
        ("Erledigt.\n\nVon: Convoy <convoy@localhost>\nGesendet: Montag\nAn: Anna\n\nHallo", "Erledigt."),
        ("Fertig!\n\nVon meinem iPhone gesendet", "Fertig!"),
        (SIGNATURE + GERMAN_QUOTE, ""),
        ("Von der Straße aus sieht man das Schild jetzt.", "Von der Straße aus sieht man das Schild jetzt."),
    ],
)
def test_quotes_and_signatures_are_stripped(text: str, expected: str) -> None:
    assert replies.strip_reply(text) == expected


def test_html_replies_lose_their_quote() -> None:
    html = (
        '<div dir="ltr">Live!<br>Next: <b>calendar</b> &amp; shop</div><br>'
        '<div class="gmail_quote"><div>On Mon, Convoy wrote:</div><blockquote><div>old <div>text</div></div>'
        "</blockquote></div><style>p {}</style>"
    )
    assert replies.strip_reply(replies.html_to_text(html)) == "Live!\nNext: calendar & shop"


def test_reply_addresses_are_signed_and_ours() -> None:
    settings = Settings(secret_key="key_unit")
    target = replies.Target(kind="comment", person_id=uuid.uuid4(), convoy_id=uuid.uuid4(), report_id=uuid.uuid4())
    address = replies.address(settings, target)
    assert address.startswith("reply+") and address.endswith("@reply.convoy.localhost") and len(address) < 254
    token = replies.token_of(
        address.upper().replace("REPLY+", "Reply+").split("@")[0] + "@REPLY.convoy.localhost", settings
    )
    assert token is not None  # the domain and the prefix are case-insensitive (the token is not)
    token = replies.token_of(f"<{address}>", settings)
    assert token is not None
    from services.runtime import signing

    assert replies.Target.from_payload(signing.verify(settings, "reply", token, 60)) == target
    assert replies.token_of("reply+abc@elsewhere.example", settings) is None
    assert replies.token_of("anna@reply.convoy.localhost", settings) is None


# --- end to end -------------------------------------------------------------------------------------
def reply(to: str, sender: str, text: str | None = None, html: str | None = None, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = "Re: Check-in"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    return message


async def send(
    settings: Settings,
    message: EmailMessage,
    envelope_from: str | None = None,
    *,
    sign: str | None = "from",
    tls: ssl.SSLContext | None = None,
) -> tuple[int, str]:
    """Send to the inbound server; the SMTP answer to the whole message (RCPT or DATA).

    ``sign``: "from" DKIM-signs with the key of the From domain (as the sender's mail server does),
    another domain signs with that domain's key, None sends it unsigned. ``tls``: STARTTLS first.
    """
    data = mailkit.wire(message)
    if sign is not None:
        data = mailkit.sign(data, mailkit.from_domain(message) if sign == "from" else sign)
    sender = envelope_from or parseaddr(str(message["From"]))[1]
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=settings.inbound_smtp_port,
        timeout=20,
        start_tls=tls is not None,
        tls_context=tls,
    )
    await client.connect()
    try:
        _, answer = await client.sendmail(sender, [parseaddr(str(message["To"]))[1]], data)
        return 250, answer
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return exc.recipients[0].code, exc.recipients[0].message
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, exc.message
    finally:
        client.close()


async def reports(client: httpx.AsyncClient, world: World, key: str = "a") -> list[dict[str, object]]:
    r = await client.get(f"/api/v1/convoys/{world.convoy_id}/reports", headers=world.reps[key].auth)
    assert r.status_code == 200, r.text
    found: list[dict[str, object]] = r.json()["reports"]
    return found


async def prompted(client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack, world: World) -> dict[str, str]:
    """Open the current cycle (as the scheduler does); each representative's Reply-To address."""
    await schedule(client, world)
    await publish(
        stack,
        ev.CycleOpened(
            convoy_id=uuid.UUID(world.convoy_id),
            cycle_index=10,  # the current round (tests.test_reports.schedule): a prompt's address files into it only
            opens_at=datetime(2025, 3, 28, 8, 0, tzinfo=UTC),
            due_at=DUE,
            closes_at=datetime(2025, 4, 4, 7, 0, tzinfo=UTC),
            absences=[],
        ),
    )
    addresses = {}
    for key, rep in world.reps.items():
        prompt = await smtp_sink.wait_for_subject(rep.email, "Check-in")
        addresses[key] = str(prompt["Reply-To"])
        body = str(prompt.get_body(("plain",)).get_content())  # type: ignore[union-attr]
        assert "Just reply to this email" in body or "Antworten Sie einfach auf diese E-Mail" in body
        assert addresses[key].startswith("reply+") and addresses[key].endswith("@reply.convoy.localhost")
    return addresses


async def test_a_reply_to_a_prompt_becomes_the_company_report(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    reply_to = await prompted(client, smtp_sink, stack, world)
    anna = world.reps["a"]
    text = "Die **Buchungsseite** ist live.\n\nAls Nächstes: Kalender anbinden." + SIGNATURE + GERMAN_QUOTE

    code, answer = await send(stack.settings, reply(reply_to["a"], f"Anna Müller <{anna.email.upper()}>", text))
    assert (code, answer) == (250, "Thank you, filed")
    [report] = await reports(client, world)
    assert report["done"] == "Die **Buchungsseite** ist live.\n\nAls Nächstes: Kalender anbinden."
    assert report["author_id"] == anna.person_id and report["company_id"] == anna.company_id
    assert report["done_html"] and "Tel. 040" not in str(report["done"])

    # A second reply in the same cycle: the company already reported; nothing more is filed.
    code, answer = await send(stack.settings, reply(reply_to["a"], anna.email, "Noch etwas"))
    assert code == 550 and "schon berichtet" in answer and "already reported" in answer
    assert len(await reports(client, world)) == 1

    # Ben's own prompt, answered by Ben in HTML only: his company's report.
    ben = world.reps["b"]
    quote = '<div class="gmail_quote">On Mon, Convoy wrote:<blockquote>x</blockquote></div>'
    html = f"<div>Shop is <b>online</b>.</div>{quote}"
    code, answer = await send(stack.settings, reply(reply_to["b"], ben.email, html=html))
    assert (code, answer) == (250, "Thank you, filed")
    assert {str(r["done"]) for r in await reports(client, world)} >= {"Shop is online."}

    # The notification of Anna's report to Ben can be answered: a comment by Ben on it.
    notification = await smtp_sink.wait_for_subject(ben.email, "Sanitär Müller")
    comment_to = str(notification["Reply-To"])
    assert comment_to != reply_to["b"]
    text = "Glückwunsch! Welches Tool nutzt ihr?\n\nOn Mon, 31 Mar 2025, Convoy wrote:\n> Die Buchungsseite ist live"
    code, answer = await send(stack.settings, reply(comment_to, ben.email, text, Message_ID="<r1@mail.example>"))
    assert (code, answer) == (250, "Thank you, filed")
    # A mail server retrying the same message (same Message-ID) does not file it twice.
    code, answer = await send(stack.settings, reply(comment_to, ben.email, text, Message_ID="<r1@mail.example>"))
    assert code == 250
    r = await client.get(f"/api/v1/reports/{report['id']}/comments", headers=anna.auth)
    [comment] = r.json()["comments"]
    assert comment["body"] == "Glückwunsch! Welches Tool nutzt ihr?" and comment["author_id"] == ben.person_id


async def test_bad_expired_foreign_and_empty_replies_are_refused_and_nothing_is_filed(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    reply_to = await prompted(client, smtp_sink, stack, world)
    anna, ben = world.reps["a"], world.reps["b"]
    settings = stack.settings
    local, _, domain = reply_to["a"].partition("@")

    # A forged token: the signature does not match.
    forged = f"{local[:-4]}{'AAAA' if not local.endswith('AAAA') else 'BBBB'}@{domain}"
    code, answer = await send(settings, reply(forged, anna.email, "Gefälscht"))
    assert code == 550 and "ungueltig" in answer and "not valid" in answer

    # An expired token: signed like the real ones, but 15 days ago.
    class FifteenDaysAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 15 * 24 * 3600

    token = replies.token_of(reply_to["a"], settings)
    assert token is not None
    payload = URLSafeTimedSerializer(settings.secret_key, salt="convoy-reply").loads(token)
    old = URLSafeTimedSerializer(settings.secret_key, salt="convoy-reply", signer=FifteenDaysAgo).dumps(payload)
    code, answer = await send(settings, reply(f"reply+{old}@{domain}", anna.email, "Zu spät"))
    assert code == 550 and "abgelaufen" in answer and "expired" in answer

    # Anna's address answered by Ben: not the person it was made for.
    code, answer = await send(settings, reply(reply_to["a"], ben.email, "Ich bin Anna"))
    assert code == 550 and "nicht von der Adresse" in answer and "does not come from the address" in answer

    # Only the quote and a signature: nothing to file.
    code, answer = await send(settings, reply(reply_to["a"], anna.email, SIGNATURE + GERMAN_QUOTE))
    assert code == 550 and "leer" in answer and "empty" in answer

    # An out-of-office note is accepted quietly and filed nowhere; an address not ours is unknown.
    auto = reply(reply_to["a"], anna.email, "Ich bin bis Montag nicht im Büro.", Auto_Submitted="auto-replied")
    assert await send(settings, auto) == (250, replies.AUTOMATIC.removeprefix("250 "))
    code, _ = await send(settings, reply(f"anna@{domain}", anna.email, "Hallo"))
    assert code == 550

    assert await reports(client, world) == []

    # The genuine reply still works afterwards.
    assert await send(settings, reply(reply_to["a"], anna.email, "Echt")) == (250, "Thank you, filed")
    await eventually(lambda: _one(client, world))


async def _one(client: httpx.AsyncClient, world: World) -> bool:
    return len(await reports(client, world)) == 1
