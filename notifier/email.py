"""Email: building multipart messages from templates, and a pool of reused SMTP connections."""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import email.policy
import functools
import hashlib
import random
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import headerregistry, quoprimime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses, parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
import structlog
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import normalize_message_line_endings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SmtpConfig:
    hostname: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    start_tls: bool | None = None
    """True: STARTTLS required; None (the default): upgraded whenever the server offers STARTTLS;
    False: never upgraded (``?starttls=false``, a local relay only: credentials are then refused)."""
    cafile: str | None = None
    """A CA bundle that verifies the server's certificate (``?cafile=/path``, a relay with a private CA)."""

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        """``smtp://[user:pass@]host:port[?starttls=true|false][&cafile=/path]`` or ``smtps://…`` (implicit TLS).

        Without ``starttls`` the connection is upgraded whenever the server offers STARTTLS;
        ``starttls=true`` refuses a server that does not. Credentials are only ever sent over TLS.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"CONVOY_SMTP_URL must look like smtp://host:port, not {url!r}")
        query = parse_qs(parts.query)
        starttls_value = query.get("starttls", [""])[0].lower()
        starttls: bool | None = None
        if starttls_value in ("1", "true", "yes", "required"):
            starttls = True
        elif starttls_value in ("0", "false", "no"):
            starttls = False
        use_tls = parts.scheme == "smtps"
        return cls(
            hostname=parts.hostname,
            port=parts.port or (465 if use_tls else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=use_tls,
            start_tls=None if use_tls else starttls,  # implicit TLS: nothing to upgrade
            cafile=query.get("cafile", [None])[0],
        )


class CleartextCredentialsError(Exception):
    """The SMTP server offers no TLS, and the URL has credentials: they are not sent in clear.

    Not a permanent failure: the email stays in the delivery log as ``retrying`` and its event is
    retried (then dead-lettered, to be replayed once the relay or the URL is fixed): nothing is lost.
    """


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
        config = self.config
        client = aiosmtplib.SMTP(
            hostname=config.hostname,
            port=config.port,
            use_tls=config.use_tls,
            start_tls=config.start_tls,  # None: STARTTLS whenever the server offers it
            cert_bundle=config.cafile,
            timeout=self.timeout,
        )
        await client.connect()  # no credentials here: they wait until TLS is known to be on
        if config.username is not None:
            if client.get_transport_info("sslcontext") is None:
                client.close()
                log.error(
                    "SMTP credentials not sent: the server offers no TLS (STARTTLS); the email stays queued",
                    host=config.hostname,
                    port=config.port,
                )
                raise CleartextCredentialsError(
                    f"{config.hostname}:{config.port} offers no TLS (STARTTLS); the SMTP password is not sent"
                    " in clear. Use a relay that offers STARTTLS, or smtps:// (implicit TLS)."
                )
            try:
                await client.login(config.username, config.password or "")
            except BaseException:
                client.close()
                raise
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

    async def send(self, message: Wire, claim: Awaitable[bool] | None = None) -> bool:
        """Send bytes flattened by :func:`wire_message` (not by aiosmtplib: its fixed 78-column policy
        folds a long non-ASCII subject into encoded words and drops the space between them).

        ``claim``: the delivery log's claim of the message, still committing. The envelope (MAIL FROM,
        RCPT TO) goes out meanwhile, so its round trips hide the commit's; DATA only once the claim
        has committed and said True. Said False (sent or claimed elsewhere): the envelope is reset
        (RSET; nothing was delivered), the connection kept, False returned. Failed: its error raised,
        the connection closed (which drops the envelope too). True: the server accepted the message
        (250 after DATA).
        """
        try:
            async with self._client() as client:
                await self._envelope(client, message)
                # the claim's error (or a cancel) closes the connection (_client): the server drops the envelope
                if claim is not None and not await claim:
                    await _reset(client)
                    return False
                await self._data(client, message.payload())
                return True
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(e.code >= 500 for e in exc.recipients):
                raise PermanentDeliveryError(str(exc)) from exc
            raise
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise PermanentDeliveryError(f"{exc.code} {exc.message}") from exc
            raise

    async def _data(self, client: aiosmtplib.SMTP, payload: bytes) -> None:
        """DATA, then the payload (:meth:`Wire.payload`) and its 250: ``client.data()`` with the message
        prepared already. The connection is this send's alone (the pool), so nothing can come between."""
        start = await client.execute_command(b"DATA", timeout=self.timeout)
        if start.code != aiosmtplib.SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        protocol = client.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        protocol.write(payload)
        response = await protocol.read_response(timeout=self.timeout)  # expects the answer (no await between)
        if response.code != aiosmtplib.SMTPStatus.completed:
            raise aiosmtplib.SMTPDataError(response.code, response.message)

    async def _envelope(self, client: aiosmtplib.SMTP, message: Wire) -> None:
        """MAIL FROM and RCPT TO as ``client.sendmail`` sends them (SIZE when offered; refused
        recipients skipped unless all are: SMTPRecipientsRefused)."""
        await client._ehlo_or_helo_if_needed()  # sendmail's own first step (connect usually did it)
        # RFC 1870: the octets as DATA sends them; wire_message writes CRLF line endings already
        options = [f"size={len(message.data)}".encode("ascii")] if client.supports_extension("size") else []
        # client.mail(sender, options=…) and client.rcpt(recipient), each address quoted as they
        # quote it (_smtp_address: without parsing a plain address again for every message)
        mail = await client.execute_command(
            b"MAIL", b"FROM:" + _smtp_address(message.sender), *options, timeout=self.timeout
        )
        if mail.code != aiosmtplib.SMTPStatus.completed:
            raise aiosmtplib.SMTPSenderRefused(mail.code, mail.message, message.sender)
        refused = []
        for recipient in message.recipients:
            rcpt = await client.execute_command(b"RCPT", b"TO:" + _smtp_address(recipient), timeout=self.timeout)
            if rcpt.code not in (aiosmtplib.SMTPStatus.completed, aiosmtplib.SMTPStatus.will_forward):
                refused.append(aiosmtplib.SMTPRecipientRefused(rcpt.code, rcpt.message, recipient))
        if len(refused) == len(message.recipients):
            raise aiosmtplib.SMTPRecipientsRefused(refused)

    async def close(self) -> None:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            if client is not None and client.is_connected:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.quit(), 2)


def _smtp_address(address: str) -> bytes:
    """The address as aiosmtplib's mail() and rcpt() put it on the command line:
    ``quote_address(address).encode("ascii")`` (raising what they raise); a plain dot-atom address
    (every recipient has its own: no cache would hit) is what parseaddr returns for it, and passes
    their check for characters that would end it."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>".encode("ascii")
    return _quoted_address(address)


@functools.lru_cache(maxsize=256)
def _quoted_address(address: str) -> bytes:
    return quote_address(address).encode("ascii")


async def _reset(client: aiosmtplib.SMTP) -> None:
    """RSET: the server forgets the envelope (nothing was delivered); or close the connection, which does too."""
    try:
        await client.rset()
    except Exception:
        client.close()


WIRE_POLICY = email.policy.SMTP.clone(max_line_length=998)
"""CRLF, headers unfolded up to RFC 5322's 998-character limit (subjects are at most 200)."""


def _header(value: str) -> str:
    """User text in a header: no line breaks (header injection), bounded length."""
    return " ".join(value.split())[:200]


_THREAD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")


@functools.lru_cache(maxsize=256)
def thread_root(thread: str, sender: str) -> str:
    """``<{thread}@{domain of the sender}>``: the Message-ID every email of one thread names in
    ``In-Reply-To`` and ``References`` (e.g. ``thread="report.<id>"``: the report notice and its
    feedback emails). No message carries it as its own Message-ID (each recipient's copy has one of
    its own, derived from the delivery key); mail clients fold messages naming the same parent."""
    if not _THREAD.fullmatch(thread):
        raise ValueError(f"thread {thread!r}: letters, digits, '.', '_' and '-' only")
    _, at, domain = parseaddr(sender)[1].rpartition("@")
    domain = domain.strip().lower()
    if not at or not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)*", domain):
        domain = "convoy"
    return f"<{thread}@{domain}>"


def _headers(
    key: str,
    sender: str,
    subject: str,
    list_id: str,
    unsubscribe: str | None,
    reply_to: str | None,
    thread: str | None,
    date: datetime | None,
    /,
) -> list[tuple[str, str]]:
    """The headers after From and To, in the order both :func:`build_message` and :func:`wire_message` write them."""
    headers = [
        ("Subject", _header(subject)),
        ("Date", format_datetime(date or datetime.now(UTC))),
        # Stable per delivery key: if a message ever went out twice, mail clients fold it into one.
        ("Message-ID", f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@convoy>"),
        ("List-Id", list_id),
        ("Auto-Submitted", "auto-generated"),
        ("X-Convoy-Delivery", key),
    ]
    if thread:
        root = thread_root(thread, sender)
        headers += [("In-Reply-To", root), ("References", root)]
    if reply_to:
        headers.append(("Reply-To", reply_to))
    if unsubscribe:
        # RFC 8058 one-click: mail providers POST "List-Unsubscribe=One-Click" to this URL.
        headers += [("List-Unsubscribe", f"<{unsubscribe}>"), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
    return headers


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
    thread: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """The message as an EmailMessage (the reference for :func:`wire_message`, which sends the same bytes)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = formataddr((_header(to_name), parseaddr(to_email)[1]))
    for name, value in _headers(key, sender, subject, list_id, unsubscribe, reply_to, thread, date):
        message[name] = value
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


# --- the same bytes, without building an EmailMessage ------------------------------------------------
# build_message(...).as_bytes(policy=WIRE_POLICY) costs ~3 ms of CPU for a 16 KB digest, mostly in
# the email package parsing every header twice (on set, and again to fold it) and writing the body
# line by line. wire_message writes the same bytes directly: each header is parsed and folded by the
# email package itself, once per distinct value (cached: the subject, sender, list and MIME headers
# repeat across a fan-out); the bodies are encoded with the email package's own heuristics
# (email.contentmanager._encode_text, copied below) and the multipart layout is the one
# email.generator writes for set_content(text) + add_alternative(html). tests/test_email_wire.py
# compares the two byte for byte.
_PARSE_POLICY = email.policy.default
"""The policy EmailMessage() stores headers and encodes bodies with."""
_CRLF = b"\r\n"
_NLCRE = re.compile(r"\r\n|\r|\n")
_BOUNDARY_WIDTH = len(repr(sys.maxsize - 1))
"""email.generator's boundaries: 15 "=", the random number zero-padded to this width, "=="."""


@dataclass(frozen=True)
class Wire:
    """A message ready for SMTP: the envelope and the bytes of the message."""

    sender: str
    recipients: list[str]
    data: bytes
    stuffed: bytes | None = field(default=None, repr=False, compare=False)
    """``data`` with lines starting with "." doubled, when wire_message knows it (from pieces that are
    CRLF-clean and start at a line start, most of them cached: see :class:`Slotted`); else None."""

    def payload(self) -> bytes:
        """What follows DATA: ``data`` with CRLF line endings, lines starting with "." doubled and the
        final ".": the bytes aiosmtplib's ``data()`` writes (normalize_message_line_endings, then
        PERIOD_REGEX, then ".\r\n"), without its two regular expressions over the whole message
        (~0.5 ms of CPU for a digest). wire_message writes CRLF only, so that step is a check."""
        if self.stuffed is not None:
            return self.stuffed + b".\r\n"
        data = self.data
        if not data.endswith(_CRLF) or data.count(b"\n") != data.count(_CRLF) or data.count(b"\r") != data.count(_CRLF):
            data = normalize_message_line_endings(data)  # not written by wire_message: as aiosmtplib does it
        if b"\n." in data or data.startswith(b"."):
            data = (b"." if data.startswith(b".") else b"") + data.replace(b"\n.", b"\n..")
        return data + b".\r\n"


@functools.lru_cache(maxsize=4096)
def _folded(name: str, value: str) -> tuple[bytes, str]:
    """``name: value`` as EmailMessage stores it and BytesGenerator writes it, and the header's str value."""
    name, header = _PARSE_POLICY.header_store_parse(name, value)  # raises on line breaks, as message[name] = …
    return WIRE_POLICY.fold_binary(name, header), str(header)


_WIRE_LINE = WIRE_POLICY.max_line_length or 998
_SHORT_LINE = 900
"""An unstructured header of plain words this short is written as it is: the wire's lines fold at 998
(tests/test_email_wire.py compares lengths up to and past it with the email package)."""
_PLAIN_VALUE = re.compile(r"[\x21-\x7e]+")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9'_+-]+(?: [A-Za-z0-9'_+-]+)*")
"""Words of atext (RFC 5322) that formataddr leaves unquoted."""
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def _line(name: str, value: str) -> bytes:
    """``name: value`` as :func:`_folded` writes it; values that cannot fold or change take no parsing."""
    if (
        _is_unstructured(name)
        and len(name) + 2 + len(value) <= _WIRE_LINE
        and _PLAIN_VALUE.fullmatch(value)  # one token of printable ASCII: written as it is
        and "=?" not in value  # (not an encoded word)
    ):
        return f"{name}: {value}\r\n".encode("ascii")
    if (
        _is_text(name)
        and len(name) + 2 + len(value) <= _SHORT_LINE
        and value.isascii()
        and value.isprintable()  # printable ASCII and spaces
        and "=?" not in value
        and " ".join(value.split()) == value  # words between single spaces (as _header writes a subject)
    ):
        # a line of words (a subject: unique per report, so the cache rarely hits; a List-Id with the
        # convoy's name): the email package leaves it as it is (tests/test_email_wire.py compares many)
        return f"{name}: {value}\r\n".encode("ascii")
    if _is_text(name):
        line = _encoded_word_line(name, value)
        if line is not None:  # words with umlauts or typographic quotes (a German subject): unique, never cached
            return line
    if name == "Reply-To" and len(value) + 10 <= _WIRE_LINE and _PLAIN_ADDRESS.fullmatch(value):
        # a bare dot-atom address (a signed reply+token@domain, unique per recipient, so the
        # cache never hits): the email package writes it as it is
        return f"{name}: {value}\r\n".encode("ascii")
    return _folded(name, value)[0]


_Q_SAFE = frozenset(b"-!*+/" + b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_Q_BYTE = [chr(b) if b in _Q_SAFE else ("_" if b == 0x20 else f"={b:02X}") for b in range(256)]
"""RFC 2047's "Q" encoding of each byte, as email._encoded_words writes it."""
_EW_LINE = 900
"""Longest line :func:`_encoded_word_line` writes (below the wire's 998, where the email package would split)."""


def _encoded_word_line(name: str, value: str) -> bytes | None:
    """``name: value`` for an unstructured text header of words (single spaces, printable, some of them
    not ASCII), as the email package folds it on a line of up to 998 characters: the ASCII words
    before the first and after the last non-ASCII word as they are, the run from the first to the last
    one as one encoded word (UTF-8, "Q" unless base64 is more than 4 characters shorter). None for any
    other value (the email package folds those; tests/test_email_wire.py compares many)."""
    if value.isascii() or not value.isprintable() or "=?" in value or "\t" in value:
        return None
    words = value.split(" ")
    if "" in words:  # leading, trailing or repeated spaces
        return None
    odd = [i for i, w in enumerate(words) if not w.isascii()]
    first, last = odd[0], odd[-1]
    try:
        raw = " ".join(words[first : last + 1]).encode("utf-8")
    except UnicodeEncodeError:  # (a lone surrogate is not printable; to be sure)
        return None
    q = "".join([_Q_BYTE[b] for b in raw])
    groups, rest = divmod(len(raw), 3)
    b_len = groups * 4 + (4 if rest else 0)
    if len(q) - b_len < 5:
        word = f"=?utf-8?q?{q}?="
    else:
        word = f"=?utf-8?b?{binascii.b2a_base64(raw, newline=False).decode('ascii')}?="
    head = " ".join(words[:first])
    tail = " ".join(words[last + 1 :])
    line = f"{name}: {head}{' ' if head else ''}{word}{' ' if tail else ''}{tail}"
    if len(line) > _EW_LINE:
        return None
    return (line + "\r\n").encode("ascii")


@functools.cache
def _is_unstructured(name: str) -> bool:
    factory = _PARSE_POLICY.header_factory
    assert isinstance(factory, headerregistry.HeaderRegistry)
    return name.lower() not in factory.registry and factory.default_class is headerregistry.UnstructuredHeader


@functools.cache
def _is_text(name: str) -> bool:
    """Whether the email package parses ``name`` as unstructured text (Subject among them)."""
    factory = _PARSE_POLICY.header_factory
    assert isinstance(factory, headerregistry.HeaderRegistry)
    return issubclass(factory.registry.get(name.lower(), factory.default_class), headerregistry.UnstructuredHeader)


def _line_like(name: str, value: str, variable: str) -> bytes:
    """``name: value`` where only ``variable`` (digits or hex, of a fixed length) changes from message to
    message: folded once with zeros in its place, then the zeros replaced (the same characters
    to every parser, so the same folding)."""
    filler = "0" * len(variable)
    template = value.replace(variable, filler)
    if value.count(variable) == 1 and template.count(filler) == 1:
        line = _folded(name, template)[0]
        if line.count(filler.encode("ascii")) == 1:
            return line.replace(filler.encode("ascii"), variable.encode("ascii"))
    return _folded(name, value)[0]


@functools.lru_cache(maxsize=64)
def _from(sender: str) -> tuple[bytes, str]:
    """The From header and the envelope sender (as SmtpPool.send reads it)."""
    line, value = _folded("From", sender)
    return line, parseaddr(value)[1]


def _to(name: str, address: str) -> tuple[bytes, list[str]]:
    """The To header (as :func:`_folded` writes it) and the envelope recipients (as SmtpPool.send reads them)."""
    value = formataddr((name, address))
    if _PLAIN_NAME.fullmatch(name) and _PLAIN_ADDRESS.fullmatch(address) and len(value) + 4 <= _WIRE_LINE:
        return f"To: {value}\r\n".encode("ascii"), [address]  # atoms and a dot-atom address: written as they are
    line, parsed = _folded("To", value)
    return line, [a for _, a in getaddresses([parsed])]


def _encode_text(string: str) -> tuple[str, str]:
    """(Content-Transfer-Encoding, payload): email.contentmanager._encode_text for utf-8, the default policy."""
    lines = string.encode("utf-8").splitlines()
    max_line_length = _PARSE_POLICY.max_line_length or 78

    def embedded_body(lines: list[bytes]) -> bytes:
        return b"\n".join(lines) + b"\n"  # the default policy's linesep is \n

    if max((len(x) for x in lines), default=0) <= max_line_length:
        try:
            return "7bit", embedded_body(lines).decode("ascii")
        except UnicodeDecodeError:
            pass
        if _PARSE_POLICY.cte_type == "8bit":
            return "8bit", embedded_body(lines).decode("ascii", "surrogateescape")
    sniff = embedded_body(lines[:10])
    sniff_qp = _quoted_printable(lines[:10], max_line_length)
    if len(sniff_qp) > len(binascii.b2a_base64(sniff)):
        data = embedded_body(lines)
        per_line = max_line_length // 4 * 3
        return "base64", "".join(
            binascii.b2a_base64(data[i : i + per_line]).decode("ascii") for i in range(0, len(data), per_line)
        )
    if len(lines) <= 10:
        return "quoted-printable", sniff_qp
    return "quoted-printable", _quoted_printable(lines, max_line_length)


def _quoted_printable(lines: list[bytes], max_line_length: int) -> str:
    """quoprimime.body_encode(b"\\n".join(lines) + b"\\n" as latin-1): it encodes line by line (the
    lines hold no CR or LF; other line breaks it quotes before splitting), so lines are encoded once
    each and cached: the lines of a digest repeat across its recipients."""
    return "".join([(_qp_line if len(line) <= 1000 else _qp_line_uncached)(line, max_line_length) for line in lines])


def _qp_line_uncached(line: bytes, max_line_length: int) -> str:
    return quoprimime.body_encode(line.decode("latin-1") + "\n", max_line_length)


_qp_line = functools.lru_cache(maxsize=8192)(_qp_line_uncached)


@functools.cache
def _part_head(subtype: str, cte: str, mime_version: bool) -> bytes:
    head = [
        _folded("Content-Type", f'text/{subtype}; charset="utf-8"')[0],
        _folded("Content-Transfer-Encoding", cte)[0],
    ]
    if mime_version:
        head.append(_folded("MIME-Version", "1.0")[0])
    return b"".join(head) + _CRLF


def _text_part(subtype: str, text: str | Slotted, *, mime_version: bool) -> tuple[bytes, bytes | None]:
    """The part's bytes, and them dot-stuffed (:attr:`Wire.stuffed`) when known without a pass over them."""
    if isinstance(text, Slotted):
        spliced = _spliced_body(text)
        if spliced is not None:
            cte, body, stuffed = spliced
            head = _part_head(subtype, cte, mime_version)  # folded headers: CRLF, no line starts with "."
            return head + body, head + stuffed
        text = str(text)
    cte, payload = _encode_text(text)
    # BytesGenerator._write_lines: every line ending becomes CRLF (the payload's are all LF unless
    # it holds a CR); surrogates are the 8bit bytes
    crlf = _NLCRE.sub("\r\n", payload) if "\r" in payload else payload.replace("\n", "\r\n")
    return _part_head(subtype, cte, mime_version) + crlf.encode("ascii", "surrogateescape"), None


# --- bodies alike but for a few lines (a digest to each member) ------------------------------------
@dataclass(frozen=True)
class Slotted:
    """A body in which only a few lines differ from message to message: ``template`` with each
    placeholder of ``values`` replaced by its value, in order (``str(self)``). wire_message encodes
    the lines without a placeholder once per template (cached) and only the lines with one per
    message: _encode_text encodes line by line (quoted-printable) or joins the lines (7bit, 8bit),
    so the bytes are those of ``str(self)`` (tests/test_email_wire.py compares them); a body that
    comes out base64 (chunks across lines) is encoded whole. Placeholders: no line breaks, and
    found in no value."""

    template: str
    values: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        text = self.template
        for placeholder, value in self.values:
            text = text.replace(placeholder, value)
        return text


_SNIFF_LINES = 10
"""_encode_text's choice between quoted-printable and base64 looks at the first 10 lines."""
_MAX_LINE = _PARSE_POLICY.max_line_length or 78


@dataclass(frozen=True)
class _Lines:
    """Consecutive lines of a body, ready for each encoding. Every piece is CRLF-clean by construction
    (bytes.splitlines leaves no CR or LF in a line; quoted-printable quotes them)."""

    head: tuple[bytes, ...]
    """The first ``_SNIFF_LINES`` lines (bytes.splitlines, as _encode_text splits)."""
    head_qp: tuple[int, ...]
    """The length of each one's quoted-printable encoding."""
    longest: int
    ascii: bool
    plain: bytes
    """7bit or 8bit: the lines, each ending CRLF (BytesGenerator's line endings)."""
    qp: bytes
    """Quoted-printable, CRLF line endings."""
    plain_stuffed: bytes
    qp_stuffed: bytes


def _lines(text: str) -> _Lines | None:
    """``text`` (not empty) as :class:`_Lines`; None when its UTF-8 cannot be encoded."""
    try:
        lines = text.encode("utf-8").splitlines()
    except UnicodeEncodeError:
        return None  # a lone surrogate: _encode_text raises it, on the whole text
    qp_lines = [(_qp_line if len(line) <= 1000 else _qp_line_uncached)(line, _MAX_LINE) for line in lines]
    return _made(lines, qp_lines)


def _made(lines: list[bytes], qp_lines: list[str]) -> _Lines:
    plain = b"\r\n".join(lines) + _CRLF
    qp = "".join(qp_lines).replace("\n", "\r\n").encode("ascii")
    return _Lines(
        head=tuple(lines[:_SNIFF_LINES]),
        head_qp=tuple(len(q) for q in qp_lines[:_SNIFF_LINES]),
        longest=max(map(len, lines)),
        ascii=plain.isascii(),
        plain=plain,
        qp=qp,
        plain_stuffed=_dots(plain),
        qp_stuffed=_dots(qp),
    )


@dataclass(frozen=True)
class _Slot:
    """A line of the template with placeholders: its text between them, UTF-8 and quoted-printable
    translated (each character of a quoted-printable line is encoded on its own; only the soft line
    breaks depend on the whole line, see :func:`_qp_soft_breaks`)."""

    line: str
    """The line as in the template, with its "\n"."""
    order: tuple[str, ...]
    """The placeholders as they come in the line."""
    fixed: tuple[bytes, ...]
    """The UTF-8 around them (``len(order) + 1``)."""
    fixed_qp: tuple[str, ...]


def _slot(line: str, placeholders: tuple[str, ...]) -> _Slot | str:
    """A line with placeholders, ready to be filled quickly; or the line itself, to be filled and
    encoded as text (the last line, a CR in it, overlapping placeholders, text that cannot be encoded)."""
    if not line.endswith("\n") or "\r" in line:
        return line  # (the last line, without a line break, is no line at all when it comes out empty)
    body = line[:-1]
    found = sorted((at, p) for p in set(placeholders) for at in _find_all(body, p))
    order: list[str] = []
    fixed: list[str] = []
    at = 0
    for start, placeholder in found:
        if start < at:
            return line  # overlapping placeholders
        fixed.append(body[at:start])
        order.append(placeholder)
        at = start + len(placeholder)
    fixed.append(body[at:])
    try:
        encoded = [f.encode("utf-8") for f in fixed]
    except UnicodeEncodeError:
        return line
    return _Slot(line, tuple(order), tuple(encoded), tuple(_qp_translate(f) for f in encoded))


def _find_all(text: str, needle: str) -> list[int]:
    found, at = [], text.find(needle)
    while at != -1:
        found.append(at)
        at = text.find(needle, at + 1)
    return found


def _qp_translate(line: bytes) -> str:
    """quoprimime.body_encode's first step: each byte as itself or ``=XX``."""
    return line.decode("latin-1").translate(quoprimime._QUOPRI_BODY_ENCODE_MAP)  # type: ignore[attr-defined]


def _qp_soft_breaks(line: str, maxlinelen: int) -> str:
    """quoprimime.body_encode(``line`` + "\n") for a line translated already (:func:`_qp_translate`;
    it holds no line break then): the same loop, for one line."""
    out: list[str] = []
    start = 0
    laststart = len(line) - 1 - maxlinelen
    maxlinelen1 = maxlinelen - 1
    while start <= laststart:
        stop = start + maxlinelen1
        # make sure we don't break up an escape sequence
        if line[stop - 2] == "=":
            out.append(line[start : stop - 1])
            start = stop - 2
        elif line[stop - 1] == "=":
            out.append(line[start:stop])
            start = stop - 1
        else:
            out.append(line[start:stop] + "=")
            start = stop
    if line and line[-1] in " \t":
        room = start - laststart
        if room >= 3:
            q = quoprimime.quote(line[-1])
        elif room == 2:
            q = line[-1] + "=\n"
        else:
            q = "=\n" + quoprimime.quote(line[-1])
        out.append(line[start:-1] + q)
    else:
        out.append(line[start:])
    out.append("")
    return "\n".join(out)


def _filled_slot(slot: _Slot, values: dict[str, str], placeholders: tuple[str, ...]) -> _Lines | None:
    """The line of ``slot`` filled with ``values``, as :func:`_lines` makes it (``str.replace`` of each
    placeholder in turn); None: fill and encode it as text."""
    pieces: list[bytes] = []
    translated: list[str] = []
    for i, placeholder in enumerate(slot.order):
        value = values[placeholder]
        if "\n" in value or "\r" in value or any(p in value for p in placeholders):
            return None  # not one line, or replaced again
        try:
            encoded = value.encode("utf-8")
        except UnicodeEncodeError:
            return None
        pieces += (slot.fixed[i], encoded)
        translated += (slot.fixed_qp[i], _qp_translate(encoded))
    pieces.append(slot.fixed[-1])
    translated.append(slot.fixed_qp[-1])
    # one line (no CR or LF in the template's line or a value); its translation holds no line break
    return _made([b"".join(pieces)], [_qp_soft_breaks("".join(translated), _MAX_LINE)])


@functools.lru_cache(maxsize=64)
def _layout(template: str, placeholders: tuple[str, ...]) -> tuple[_Lines | _Slot | str, ...] | None:
    """``template`` as runs of lines without a placeholder (:class:`_Lines`) and lines with one
    (:class:`_Slot`, or str); None if a placeholder is empty or spans lines, or a run cannot be encoded."""
    if any(not p or "\n" in p or "\r" in p for p in placeholders):
        return None
    pieces = template.split("\n")
    lines = [piece + "\n" for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
    out: list[_Lines | _Slot | str] = []
    run: list[str] = []
    for line in [*lines, ""]:
        if not line or any(p in line for p in placeholders):
            if run:
                encoded = _lines("".join(run))
                if encoded is None:
                    return None
                out.append(encoded)
                run = []
            if line:
                out.append(_slot(line, placeholders))
        else:
            run.append(line)
    return tuple(out)


def _spliced_body(body: Slotted) -> tuple[str, bytes, bytes] | None:
    """(Content-Transfer-Encoding, the encoded body with CRLF, it dot-stuffed) of ``str(body)`` as
    _text_part writes it, from the cached runs of its template; None: encode ``str(body)`` whole."""
    placeholders = tuple(p for p, _ in body.values)
    layout = _layout(body.template, placeholders)
    if not layout or len(set(placeholders)) != len(placeholders):
        return None
    values = dict(body.values)
    runs: list[_Lines] = []
    for piece in layout:
        if isinstance(piece, _Lines):
            runs.append(piece)
            continue
        encoded = _filled_slot(piece, values, placeholders) if isinstance(piece, _Slot) else None
        if encoded is None:
            text = piece.line if isinstance(piece, _Slot) else piece
            for placeholder, value in body.values:
                text = text.replace(placeholder, value)
            if not text:
                continue
            encoded = _lines(text)
            if encoded is None:
                return None
        runs.append(encoded)
    if not runs:
        return None
    # _encode_text's choice, from the runs
    if max(r.longest for r in runs) <= _MAX_LINE:
        if all(r.ascii for r in runs):
            cte = "7bit"
        elif _PARSE_POLICY.cte_type == "8bit":
            cte = "8bit"
        else:
            return None
        return cte, b"".join([r.plain for r in runs]), b"".join([r.plain_stuffed for r in runs])
    sniff_lines: list[bytes] = []
    sniff_qp = 0
    for r in runs:
        take = _SNIFF_LINES - len(sniff_lines)
        if take <= 0:
            break
        sniff_lines += r.head[:take]
        sniff_qp += sum(r.head_qp[:take])
    sniff = sum(len(line) + 1 for line in sniff_lines)  # b"\n".join(lines) + b"\n"
    if sniff_qp > 4 * ((sniff + 2) // 3) + 1:  # len(binascii.b2a_base64(sniff))
        return None  # base64: encoded across lines
    return "quoted-printable", b"".join([r.qp for r in runs]), b"".join([r.qp_stuffed for r in runs])


def _dots(chunk: bytes) -> bytes:
    """``chunk`` (starting at a line start, CRLF-clean) with each line that starts with "." doubled."""
    if b"\n." in chunk or chunk.startswith(b"."):
        chunk = (b"." if chunk.startswith(b".") else b"") + chunk.replace(b"\n.", b"\n..")
    return chunk


def _stuffed(chunk: bytes) -> bytes | None:
    """``chunk`` (starting at a line start) with each line that starts with "." doubled, as
    :meth:`Wire.payload` stuffs; None unless every line ending in it is CRLF and it ends with one."""
    crlf = chunk.count(_CRLF)
    if not chunk.endswith(_CRLF) or chunk.count(b"\n") != crlf or chunk.count(b"\r") != crlf:
        return None
    return _dots(chunk)


def _boundary_in(text: bytes, boundary: bytes) -> bool:
    """Whether re.search(b"^--" + re.escape(boundary) + b"(--)?$", text, re.MULTILINE) would match."""
    needle = b"--" + boundary
    at = text.find(needle)
    while at != -1:
        if at == 0 or text[at - 1 : at] == b"\n":
            end = at + len(needle)
            ends = (end + 2, end) if text.startswith(b"--", end) else (end,)
            if any(e == len(text) or text[e : e + 1] == b"\n" for e in ends):
                return True
        at = text.find(needle, at + 1)
    return False


def _make_boundary(text: bytes) -> str:
    """email.generator.Generator._make_boundary: random, and not a delimiter line of ``text``."""
    boundary = ("=" * 15) + f"{random.randrange(sys.maxsize):0{_BOUNDARY_WIDTH}d}" + "=="
    candidate, counter = boundary, 0
    while _boundary_in(text, candidate.encode("ascii")):
        candidate = f"{boundary}.{counter}"
        counter += 1
    return candidate


def wire_message(
    *,
    key: str,
    sender: str,
    to_name: str,
    to_email: str,
    subject: str,
    text: str | Slotted,
    html: str | Slotted,
    list_id: str,
    unsubscribe: str | None = None,
    reply_to: str | None = None,
    thread: str | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
    date: datetime | None = None,
) -> Wire:
    """What ``build_message(...)`` (then ``message[name] = value`` for each extra header) puts on the
    wire, byte for byte, with its envelope (as :meth:`SmtpPool.send` derives it from a message).
    ``text``, ``html``: a :class:`Slotted` body is ``str(body)``, encoded mostly from its template's cache."""
    headers = _headers(key, sender, subject, list_id, unsubscribe, reply_to, thread, date)
    from_line, envelope_sender = _from(sender)
    address = to_email if _PLAIN_ADDRESS.fullmatch(to_email) else parseaddr(to_email)[1]  # parseaddr: the same
    to_line, recipients = _to(_header(to_name), address)
    lines = [from_line, to_line]
    for name, value in headers:
        if name == "Message-ID":
            lines.append(_line_like(name, value, value[1:33]))
        else:
            lines.append(_line(name, value))
    (plain, plain_stuffed), (rich, rich_stuffed) = (
        _text_part("plain", text, mime_version=False),
        _text_part("html", html, mime_version=True),
    )
    boundary = _make_boundary(plain + _CRLF + rich)
    delimiter = f"--{boundary}".encode("ascii")
    lines.append(_line("MIME-Version", "1.0"))
    digits = boundary[15 : 15 + _BOUNDARY_WIDTH]
    lines.append(_line_like("Content-Type", f'multipart/alternative; boundary="{boundary}"', digits))
    lines += [_line(name, value) for name, value in extra_headers]
    head = b"".join(lines) + _CRLF + delimiter + _CRLF
    middle = _CRLF + delimiter + _CRLF
    tail = _CRLF + delimiter + b"--" + _CRLF
    data = head + plain + middle + rich + tail
    stuffed = None
    if plain_stuffed is not None and rich_stuffed is not None:
        # every piece starts at a line start; the boundary lines start with "-"
        head_stuffed = _stuffed(head)
        if head_stuffed is not None:
            stuffed = head_stuffed + plain_stuffed + middle + rich_stuffed + tail
    return Wire(sender=envelope_sender, recipients=recipients, data=data, stuffed=stuffed)
