"""Replies by email: a prompt, report notification or feedback email carries
``Reply-To: reply+<token>@<reply_domain>``; an inbound SMTP server (aiosmtpd, in the notifier
process) files the reply as the company's report, as a comment, or (from a feedback email) as an
answer to the latest comment it listed.

The token is signed with ``CONVOY_SECRET_KEY`` (services.runtime.signing, purpose ``reply``) and
expires after :data:`MAX_AGE_S`. It names the person it was made for, so a reply is filed only
when it comes from that person's address; everything else is refused during the SMTP dialogue
with a 550 that says why (German and English), so the sender's own mail server tells them and
nothing is filed.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import re
import ssl
import uuid
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses
from html.parser import HTMLParser
from typing import Any, Literal

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session
from prometheus_client import Counter

from notifier import mailauth, recipients
from notifier.repository import Deliveries
from schemas import api
from schemas.milestones import Milestones
from services.runtime import claims, signing
from services.runtime.errors import Conflict, ConvoyError, Gone, NotFound, Unavailable
from services.runtime.lifecycle import wait_or_stop
from services.runtime.rpc import RpcClient
from services.runtime.service import Runtime
from services.runtime.settings import Settings

log = structlog.get_logger(__name__)

PURPOSE = "reply"
MAX_AGE_S = 14 * 24 * 3600
"""A reply address works for 14 days after the email was sent."""
MAX_MESSAGE_BYTES = 1_000_000
"""Bigger replies are refused by the SMTP server itself (552, announced as SIZE in EHLO)."""
MESSAGE_TIMEOUT_S = 30.0
"""Longest time to work on one reply before it is answered 451 (the sender's server retries)."""
IDLE_TIMEOUT_S = 60.0
"""An SMTP connection idle this long is closed."""
CONCURRENT_REPLIES = 8
"""Replies worked on at the same time; more wait (within :data:`MESSAGE_TIMEOUT_S`)."""
LOCAL_PREFIX = "reply+"
REPORT_MAX_CHARS = 20000
COMMENT_MAX_CHARS = 5000

DNS_TXT: mailauth.DnsFunc | None = None
"""The TXT lookup DKIM verification uses; None: the system's resolver (dnspython). Tests set a resolver of their own."""

REPLIES = Counter("convoy_notifier_email_replies", "Email replies received", ["outcome"])

Kind = Literal["report", "comment"]


# --- the token -------------------------------------------------------------------------------------
def _b64(value: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(value.bytes).decode().rstrip("=")


def _uuid(value: object) -> uuid.UUID:
    if not isinstance(value, str) or len(value) != 22:
        raise ValueError("not a compact uuid")
    return uuid.UUID(bytes=base64.urlsafe_b64decode(value + "=="))


@dataclass(frozen=True)
class Target:
    """What a reply files, and as whom."""

    kind: Kind
    person_id: uuid.UUID
    convoy_id: uuid.UUID
    company_id: uuid.UUID | None = None
    """For reports: the company the prompt was for (a person may represent several)."""
    report_id: uuid.UUID | None = None
    """For comments: the report commented on."""
    parent_id: uuid.UUID | None = None
    """For comments: the comment answered (a feedback email's latest comment); None: a top-level comment."""
    cycle_index: int | None = None
    """For reports: the cycle the prompt was for; the reply files only while that cycle is current."""

    def payload(self) -> dict[str, str]:
        """Compact: uuids as 22 base64url characters, the kind as one letter."""
        out = {"k": self.kind[0], "p": _b64(self.person_id), "c": _b64(self.convoy_id)}
        if self.company_id is not None:
            out["o"] = _b64(self.company_id)
        if self.report_id is not None:
            out["r"] = _b64(self.report_id)
        if self.parent_id is not None:
            out["a"] = _b64(self.parent_id)
        if self.cycle_index is not None:
            out["i"] = str(self.cycle_index)
        return out

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Target:
        kinds: dict[str, Kind] = {"r": "report", "c": "comment"}
        kind = kinds[payload["k"]]  # KeyError: not ours
        target = cls(
            kind=kind,
            person_id=_uuid(payload["p"]),
            convoy_id=_uuid(payload["c"]),
            company_id=_uuid(payload["o"]) if "o" in payload else None,
            report_id=_uuid(payload["r"]) if "r" in payload else None,
            parent_id=_uuid(payload["a"]) if "a" in payload else None,
            cycle_index=int(payload["i"]) if "i" in payload else None,
        )
        if kind == "comment" and target.report_id is None:
            raise ValueError("a comment token names its report")
        if kind == "report" and target.parent_id is not None:
            raise ValueError("a report token answers no comment")
        if kind == "comment" and target.cycle_index is not None:
            raise ValueError("a comment token names no cycle")
        return target


def address(settings: Settings, target: Target) -> str:
    """``reply+<token>@<reply_domain>``.

    The token (about 150 characters) is longer than the 64 characters RFC 5321 allows a local
    part; the whole path stays under its 256. Mail servers accept such addresses in practice,
    and the inbound server is ours, so the signed payload rides in the address itself and no
    table of issued addresses is needed.
    """
    return f"{LOCAL_PREFIX}{signing.sign(settings, PURPOSE, target.payload())}@{settings.reply_domain}"


def token_of(recipient: str, settings: Settings) -> str | None:
    """The token in ``reply+<token>@<reply_domain>``, or None when the address is not one of ours."""
    local, at, domain = recipient.strip().strip("<>").rpartition("@")
    if not at or domain.lower() != settings.reply_domain.lower():
        return None
    if not local.lower().startswith(LOCAL_PREFIX) or len(local) <= len(LOCAL_PREFIX):
        return None
    return local[len(LOCAL_PREFIX) :]


# --- the text of a reply ---------------------------------------------------------------------------
class _HtmlText(HTMLParser):
    """HTML to plain text: block elements end lines; quoted parts (blockquote, Gmail's and
    Thunderbird's quote containers) and invisible parts are left out."""

    SKIP = frozenset({"blockquote", "script", "style", "head", "title"})
    BLOCK = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table", "ul", "ol"})
    QUOTE_CLASSES = ("gmail_quote", "moz-forward-container", "yahoo_quoted")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_tag: str | None = None
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth += 1
            return
        classes = " ".join(v or "" for k, v in attrs if k == "class")
        if tag in self.SKIP or (tag == "div" and any(c in classes for c in self.QUOTE_CLASSES)):
            self._skip_tag, self._skip_depth = tag, 1
            return
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth -= 1
                if self._skip_depth == 0:
                    self._skip_tag = None
            return
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip_tag is None:
            self.parts.append(re.sub(r"[ \t\r\n]+", " ", data))

    def text(self) -> str:
        lines = (line.strip() for line in "".join(self.parts).replace("\xa0", " ").split("\n"))
        return "\n".join(lines)


def html_to_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    return parser.text()


def body_text(message: EmailMessage) -> str:
    """The plain-text part of the reply, or its HTML part as text; empty when there is neither."""
    part = message.get_body(("plain", "html"))
    if part is None:
        return ""
    try:
        content = str(part.get_content())
    except (LookupError, ValueError):  # an unknown charset, a broken transfer encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return html_to_text(content) if part.get_content_type() == "text/html" else content


_ATTRIBUTION = (
    re.compile(r"^\s*On\s.+\swrote:\s*$", re.IGNORECASE | re.DOTALL),  # Gmail, Apple Mail, Thunderbird
    re.compile(r"^\s*Am\s.+\sschrieb\b.*:\s*$", re.IGNORECASE | re.DOTALL),  # the same in German
    re.compile(r"^.+\sschrieb am\s.+:\s*$", re.IGNORECASE | re.DOTALL),  # "Anna schrieb am 31.03.2025:"
)
_SEPARATOR = re.compile(
    r"^\s*(-{2,}\s*(Original Message|Urspr(ü|ue)ngliche Nachricht|Originalnachricht|Forwarded message"
    r"|Weitergeleitete Nachricht)\s*-{2,}|_{20,})\s*$",
    re.IGNORECASE,
)
_HEADER_FROM = re.compile(r"^\s*\**(From|Von)\s*:\**\s", re.IGNORECASE)
_HEADER_NEXT = re.compile(r"^\s*\**(Sent|Gesendet|Date|Datum|To|An|Subject|Betreff|Cc)\s*:", re.IGNORECASE)
_SIGNATURE = re.compile(
    r"^(--\s?|Sent from my \S.*|Von meinem \S.* gesendet|Gesendet von meinem \S.*|Get Outlook for \S.*)$",
    re.IGNORECASE,
)


def _attribution(lines: list[str], i: int) -> int:
    """How many lines (1 to 3) the "On … wrote:" / "Am … schrieb …:" line at ``i`` spans; 0 if none
    (mail clients wrap long attribution lines)."""
    for n in (1, 2, 3):
        if i + n > len(lines):
            break
        joined = " ".join(line.strip() for line in lines[i : i + n])
        if any(p.match(joined) for p in _ATTRIBUTION):
            return n
        if not lines[i + n - 1].strip():
            break
    return 0


def _header_block(lines: list[str], i: int) -> bool:
    """Outlook's quoted header: "From:"/"Von:" followed closely by "Sent:"/"Gesendet:", "To:", …"""
    if not _HEADER_FROM.match(lines[i]):
        return False
    return any(_HEADER_NEXT.match(line) for line in lines[i + 1 : i + 5])


def strip_reply(text: str) -> str:
    """The reply without the quoted email, its attribution line and the signature.

    Top-posted replies (Outlook and most business mail) end where the quote begins. In replies
    written between ``>`` quotes, the quoted lines and their attribution go and the rest stays.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _SIGNATURE.match(line.rstrip("\n")) or _SEPARATOR.match(line) or _header_block(lines, i):
            break
        span = _attribution(lines, i)
        if span:
            after = next((x for x in lines[i + span :] if x.strip()), None)
            if after is None or after.lstrip().startswith(">"):
                i += span  # the quote follows in ">" lines: drop the attribution, keep reading
                continue
            break  # a quote without ">" (Outlook, HTML mail): everything below is quoted
        if not line.lstrip().startswith(">"):
            kept.append(line.rstrip())
        i += 1
    result = "\n".join(kept).strip()
    return re.sub(r"\n{3,}", "\n\n", result)


# --- answers ---------------------------------------------------------------------------------------
_ASCII = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss", "…": "..."})


def _line(text: str) -> str:
    """One ASCII line (an SMTP answer is ASCII without SMTPUTF8)."""
    return " ".join(text.translate(_ASCII).encode("ascii", "replace").decode().split())[:400]


def refuse(de: str, en: str, code: str = "550 5.7.1") -> str:
    """A two-line SMTP answer, German first, then English; the sender's server puts it in the bounce."""
    first, second = code.split(" ", 1)
    return (
        f"{first}-{second} {_line('Ihre Antwort wurde nicht abgelegt: ' + de)}\r\n"
        f"{first} {second} {_line('Your reply was not filed: ' + en)}"
    )


FILED = "250 Thank you, filed"
AUTOMATIC = "250 2.6.0 Automatic reply, nothing filed"
NO_MAILBOX = "550 5.1.1 Diese Adresse gibt es hier nicht / No such reply address here"
ONE_RECIPIENT = "452 4.5.3 Nur eine Antwortadresse je Nachricht / One reply address per message, please"


def _try_later(en: str) -> str:
    return refuse(
        "Convoy ist gerade nicht erreichbar; Ihr Mailserver versucht es spaeter noch einmal.", en, "451 4.3.0"
    )


def _automatic(message: EmailMessage, mail_from: str | None) -> bool:
    """Out-of-office notes, bounces and list traffic are not replies (RFC 3834)."""
    if not mail_from or mail_from == "<>":
        return True
    if str(message.get("Auto-Submitted", "no")).strip().lower() != "no":
        return True
    if message.get("X-Autoreply") or message.get("X-Autorespond"):
        return True
    return str(message.get("Precedence", "")).strip().lower() in ("auto_reply", "bulk", "junk", "list")


# --- the server ------------------------------------------------------------------------------------
class ReplyHandler:
    """aiosmtpd handler: one reply address per message, everything decided before the final answer."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.slots = asyncio.Semaphore(CONCURRENT_REPLIES)
        self.deliveries = Deliveries(rt.db)
        # The inbound mail server establishes the person (the signed reply address and the sender), so a
        # reply is filed with a claim the notifier signs with its reply key (CONVOY_REPLY_SIGNING_KEY):
        # services accept it for a plain person filing a report or a comment, nothing else
        # (services/runtime/claims.py). Without the key the services refuse (401) and the sender is told.
        key = claims.reply_private_key(rt.settings)
        if key is None:
            log.error("no CONVOY_REPLY_SIGNING_KEY: email replies cannot be filed")
        signer = claims.Signer(key, rt.settings.actor_claim_seconds, prefix=claims.REPLY) if key else None
        self.on_behalf = RpcClient(rt.nc, rt.settings.nats_request_timeout, rt.subjects, signer=signer)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if token_of(address, self.settings) is None:
            REPLIES.labels("no_mailbox").inc()
            return NO_MAILBOX
        if envelope.rcpt_tos:
            return ONE_RECIPIENT
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        try:
            async with asyncio.timeout(MESSAGE_TIMEOUT_S):
                async with self.slots:
                    answer, outcome = await self.file(envelope)
        except TimeoutError:
            answer, outcome = (
                _try_later("Convoy did not answer in time; your mail server will try again later."),
                "timeout",
            )
        except Exception:
            log.exception("email reply failed")
            answer, outcome = _try_later("something went wrong here; your mail server will try again later."), "error"
        REPLIES.labels(outcome).inc()
        log.info("email reply", outcome=outcome, mail_from=envelope.mail_from, answer=answer.split("\r\n")[-1])
        return answer

    async def file(self, envelope: Envelope) -> tuple[str, str]:
        """(SMTP answer, outcome for the metric and the log)."""
        token = token_of(envelope.rcpt_tos[0], self.settings) if envelope.rcpt_tos else None
        if token is None:
            return NO_MAILBOX, "no_mailbox"
        raw = envelope.original_content or b""
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        if _automatic(message, envelope.mail_from):
            return AUTOMATIC, "automatic"
        try:
            target = Target.from_payload(signing.verify(self.settings, PURPOSE, token, MAX_AGE_S))
        except Gone:
            return refuse(
                "diese Antwortadresse ist abgelaufen (sie gilt 14 Tage). Bitte schreiben Sie direkt in Convoy.",
                "this reply address has expired (it works for 14 days). Please write in Convoy directly.",
            ), "expired"
        except (NotFound, KeyError, ValueError, TypeError):
            return refuse(
                "diese Antwortadresse ist ungueltig. Bitte antworten Sie auf eine E-Mail von Convoy"
                " oder schreiben Sie direkt in Convoy.",
                "this reply address is not valid. Please reply to an email from Convoy or write in Convoy directly.",
            ), "invalid"

        # The From header is believed only when the sender's domain vouches for it (DKIM, or the
        # receiving relay's Authentication-Results): otherwise anyone could write as the person.
        verdict = await mailauth.authenticate(
            self.settings.inbound_sender_auth, raw, message, self.settings.inbound_trusted_authserv_id, DNS_TXT
        )
        if not verdict.ok:
            log.info("email reply sender not authenticated", why=verdict.how, mail_from=envelope.mail_from)
            if verdict.how.endswith(mailauth.TEMPORARY):
                return _try_later(
                    "the sender's DKIM key could not be looked up; your mail server will try again later."
                ), "dns_temporary"
            return refuse(
                "der Absender ist nicht bestaetigt (keine gueltige DKIM-Signatur der Absenderdomain). Bitte"
                " antworten Sie ueber den Mailserver Ihres Unternehmens oder schreiben Sie direkt in Convoy.",
                "the sender could not be verified (no valid DKIM signature of the sender's domain). Please reply"
                " through your organisation's mail server or write in Convoy directly.",
            ), "unauthenticated"

        try:
            members = await recipients.of(self.rt).get(target.convoy_id)
        except Unavailable:
            return _try_later(
                "Convoy is not reachable right now; your mail server will try again later."
            ), "unavailable"
        except NotFound:
            members = api.Recipients(convoy_id=target.convoy_id, convoy_name="", language="", members=[])
        emails = {m.email.strip().casefold() for m in members.members if m.person_id == target.person_id}
        if not emails:
            return refuse(
                "Sie sind nicht (mehr) Mitglied dieses Konvois.",
                "you are not (or no longer) a member of this convoy.",
            ), "not_member"
        senders = [a for _, a in getaddresses([str(h) for h in message.get_all("From", [])]) if a]
        if len(senders) != 1 or senders[0].strip().casefold() not in emails:
            return refuse(
                "sie kommt nicht von der Adresse, an die Convoy geschrieben hat. Bitte antworten Sie von dieser"
                " Adresse aus.",
                "it does not come from the address Convoy wrote to. Please reply from that address.",
            ), "wrong_sender"

        text = strip_reply(body_text(message))
        if not text:
            return refuse(
                "sie ist leer (ohne das zitierte Original und die Signatur). Bitte schreiben Sie Ihren Text"
                " ueber das Zitat.",
                "it is empty (without the quoted original and the signature). Please write above the quote.",
            ), "empty"
        limit = REPORT_MAX_CHARS if target.kind == "report" else COMMENT_MAX_CHARS
        if len(text) > limit:
            return refuse(
                f"sie ist zu lang (hoechstens {limit} Zeichen). Bitte schreiben Sie direkt in Convoy.",
                f"it is too long (at most {limit} characters). Please write in Convoy directly.",
            ), "too_long"

        # A mail server that retries an accepted message must not file it twice: the delivery log
        # remembers each inbound Message-ID (or the message's hash) like any outgoing delivery.
        message_id = str(message.get("Message-ID", "")).strip() or hashlib.sha256(raw).hexdigest()
        key = f"inbound:{hashlib.sha256(message_id.encode()).hexdigest()[:40]}"
        if not await self.deliveries.claim(key, uuid.uuid5(uuid.NAMESPACE_URL, key), "email", senders[0]):
            return FILED, "duplicate"
        answer, outcome = await self._submit(target, text)
        if outcome == "filed":
            await self.deliveries.finish(key, "sent")
        elif outcome == "unavailable":
            await self.deliveries.note_error(key, "convoy unavailable")  # the sender's retry may file it
        else:
            await self.deliveries.finish(key, "failed", outcome)
        return answer, outcome

    async def _submit(self, target: Target, text: str) -> tuple[str, str]:
        actor = api.Actor(person_id=target.person_id)
        try:
            if target.kind == "report":
                await self.on_behalf.call(
                    Milestones.REPORT_SUBMIT,
                    api.SubmitReport(
                        actor=actor,
                        convoy_id=target.convoy_id,
                        cycle_index=target.cycle_index,
                        report=api.NewReport(company_id=target.company_id, done=text),
                    ),
                )
            else:
                assert target.report_id is not None
                await self.on_behalf.call(
                    Milestones.COMMENT_ADD,
                    api.AddComment(
                        actor=actor,
                        report_id=target.report_id,
                        comment=api.NewComment(body=text, parent_id=target.parent_id),
                    ),
                )
        except Unavailable:
            return _try_later(
                "Convoy is not reachable right now; your mail server will try again later."
            ), "unavailable"
        except Conflict as exc:
            if "already reported" in exc.message:
                return refuse(
                    "Ihr Unternehmen hat in dieser Runde schon berichtet. Ergaenzungen bitte direkt im Bericht"
                    " in Convoy.",
                    "your company already reported in this cycle. Please add to that report in Convoy directly.",
                ), "conflict"
            return refuse(f"Convoy meldet: {exc.message}", f"Convoy says: {exc.message}"), "conflict"
        except ConvoyError as exc:
            return refuse(f"Convoy meldet: {exc.message}", f"Convoy says: {exc.message}"), f"refused_{exc.status}"
        return FILED, "filed"


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The context STARTTLS offers with, when a certificate is configured (CONVOY_INBOUND_TLS_CERT_FILE)."""
    if not settings.inbound_tls_cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.inbound_tls_cert_file, settings.inbound_tls_key_file or None)
    return context


async def serve(rt: Runtime, stop: asyncio.Event) -> None:
    """Accept replies on ``inbound_smtp_host:inbound_smtp_port`` until ``stop`` is set.

    A taken port or an unreadable certificate does not stop the notifier (delivering email matters
    more): it logs the error and tries again every few seconds. With a certificate the server offers
    STARTTLS (and with CONVOY_INBOUND_REQUIRE_STARTTLS refuses mail before it).
    """
    handler = ReplyHandler(rt)
    loop = asyncio.get_running_loop()
    settings = rt.settings
    host, port = settings.inbound_smtp_host, settings.inbound_smtp_port
    while not stop.is_set():
        try:
            tls = tls_context(settings)
            factory = functools.partial(
                SMTP,
                handler,
                hostname=settings.reply_domain,
                data_size_limit=MAX_MESSAGE_BYTES,
                timeout=IDLE_TIMEOUT_S,
                tls_context=tls,
                require_starttls=settings.inbound_require_starttls and tls is not None,
            )
            server = await loop.create_server(factory, host, port)
            break
        except (OSError, ssl.SSLError) as exc:
            log.error("inbound SMTP server cannot listen; retrying", host=host, port=port, error=str(exc))
            await wait_or_stop(stop, 5)
    else:
        return
    log.info(
        "inbound SMTP server for email replies listening",
        host=host,
        port=port,
        domain=settings.reply_domain,
        starttls=tls is not None,
        sender_auth=settings.inbound_sender_auth,
    )
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
