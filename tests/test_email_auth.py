"""Email trust (issue #19): a reply files only when its sender is authenticated (a DKIM signature
aligned with From:, or the trusted receiving relay's Authentication-Results), the inbound server
offers STARTTLS with a certificate, and outgoing SMTP upgrades to TLS and never sends the relay
password in clear (the email then waits, retried, nothing lost).

Everything over real SMTP: the notifier's inbound aiosmtpd server, aiosmtpd relays with and
without STARTTLS; DKIM keys are made here and published in the tests' own resolver (tests/mailkit.py);
certificates come from a throwaway CA (trustme).
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from notifier import mailauth, replies
from notifier.delivery import MESSAGES_LIST_ID, Mailer
from notifier.email import SmtpConfig, TransientDeliveryError
from notifier.render import Rendered
from services import embedded
from services.runtime import db
from services.runtime.settings import Settings, SettingsError, refuse_open_edge
from tests import mailkit
from tests.conftest import SmtpSink, Stack, eventually
from tests.test_email_replies import prompted, reply, reports, send
from tests.world import build_world

RELAY_ID = "mx.convoy.test"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@dataclass
class TlsFiles:
    cert: str
    key: str
    ca: str


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: Path) -> TlsFiles:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(cert=str(tmp_path / "cert.pem"), key=str(tmp_path / "key.pem"), ca=str(tmp_path / "ca.pem"))
    Path(files.cert).write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(files.key)
    ca.cert_pem.write_to_path(files.ca)
    return files


@pytest.fixture
def settings(settings: Settings, tls_files: TlsFiles) -> Settings:
    """The test stack with DKIM or the trusted relay, and a certificate for STARTTLS."""
    return settings.with_(
        inbound_sender_auth="dkim-or-relay",
        inbound_trusted_authserv_id=RELAY_ID,
        inbound_tls_cert_file=tls_files.cert,
        inbound_tls_key_file=tls_files.key,
    )


def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


# --- pure parts -----------------------------------------------------------------------------------
def test_alignment_is_relaxed_but_never_between_strangers() -> None:
    assert mailauth.aligned("mueller.example", "mueller.example")
    assert mailauth.aligned("mail.mueller.example", "MUELLER.example.")  # a subdomain signs for its parent
    assert mailauth.aligned("mueller.example", "news.mueller.example")  # the parent signs for a subdomain
    assert not mailauth.aligned("evil.example", "mueller.example")
    assert not mailauth.aligned("xmueller.example", "mueller.example")  # a suffix is not a subdomain
    assert not mailauth.aligned("a.mueller.example", "b.mueller.example")  # siblings: not without the PSL
    assert not mailauth.aligned("", "mueller.example")


def _message(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_dkim_signatures_count_only_whole_aligned_and_covering_from() -> None:
    raw = mailkit.wire(reply("reply+x@reply.convoy.localhost", "anna@mueller.example", "Erledigt."))
    assert mailauth.verify_dkim(mailkit.sign(raw, "mueller.example"), "mueller.example", mailkit.DNS).ok
    assert mailauth.verify_dkim(raw, "mueller.example", mailkit.DNS).how == "dkim_none"
    evil = mailkit.sign(raw, "evil.example")  # valid, but for the attacker's own domain
    assert mailauth.verify_dkim(evil, "mueller.example", mailkit.DNS).how == "dkim_unaligned"
    other_author = mailkit.sign(raw, "mueller.example").replace(b"anna@mueller", b"chef@mueller")
    assert mailauth.verify_dkim(other_author, "mueller.example", mailkit.DNS).how == "dkim_fail"
    tampered = mailkit.sign(raw, "mueller.example").replace(b"Erledigt.", b"Gefaelscht")
    assert mailauth.verify_dkim(tampered, "mueller.example", mailkit.DNS).how == "dkim_fail"
    unknown = mailkit.sign(raw, "mueller.example").replace(b"s=convoy", b"s=nokey")
    assert not mailauth.verify_dkim(unknown, "mueller.example", mailkit.DNS).ok


def test_a_dns_timeout_is_temporary() -> None:
    import dkim

    def timing_out(name: bytes, timeout: int = 5) -> bytes | None:
        raise dkim.DnsTimeoutError("no answer")

    raw = mailkit.sign(
        mailkit.wire(reply("reply+x@reply.convoy.localhost", "anna@mueller.example", "Hi")), "mueller.example"
    )
    assert mailauth.verify_dkim(raw, "mueller.example", timing_out).how == mailauth.TEMPORARY


def test_only_the_topmost_authentication_results_of_the_trusted_relay_counts() -> None:
    def verdict(*headers: str) -> mailauth.Verdict:
        message = reply("reply+x@reply.convoy.localhost", "Anna <anna@mueller.example>", "Hallo")
        for header in headers:
            message["Authentication-Results"] = header
        return mailauth.verify_relay(message, "mueller.example", RELAY_ID)

    assert verdict(f"{RELAY_ID}; dmarc=pass (p=reject) header.from=mueller.example").ok
    assert verdict(f"{RELAY_ID.upper()} 1; spf=fail; dkim=pass (2048-bit) header.d=mail.mueller.example").ok
    assert verdict(f'{RELAY_ID}; dkim=pass header.i="@mueller.example"').ok
    assert not verdict(f"{RELAY_ID}; dkim=pass header.d=evil.example").ok
    assert not verdict(f"{RELAY_ID}; dmarc=pass header.from=evil.example").ok
    assert not verdict(f"{RELAY_ID}; dkim=fail header.d=mueller.example; spf=pass smtp.mailfrom=mueller.example").ok
    assert not verdict("mx.evil.example; dmarc=pass header.from=mueller.example").ok  # not our relay
    # The relay writes its header on top; one below it with the same id is the sender's own.
    top, below = f"{RELAY_ID}; dmarc=fail header.from=mueller.example", f"{RELAY_ID}; dmarc=pass"
    assert not verdict(top, below).ok
    assert verdict("mx.evil.example; dmarc=fail", f"{RELAY_ID}; dmarc=pass").ok


def test_settings_refuse_open_or_incomplete_sender_checks(tls_files: TlsFiles) -> None:
    base = Settings(inbound_smtp_port=2526)
    refuse_open_edge(base.with_(inbound_sender_auth="off"))  # loopback: local development
    with pytest.raises(SettingsError, match="CONVOY_INBOUND_SENDER_AUTH=off"):
        refuse_open_edge(base.with_(inbound_sender_auth="off", inbound_smtp_host="0.0.0.0"))  # noqa: S104
    with pytest.raises(SettingsError, match="CONVOY_INBOUND_TRUSTED_AUTHSERV_ID"):
        refuse_open_edge(base.with_(inbound_sender_auth="trusted-relay"))
    with pytest.raises(SettingsError, match="go together"):
        refuse_open_edge(base.with_(inbound_tls_cert_file=tls_files.cert))
    with pytest.raises(SettingsError, match="REQUIRE_STARTTLS"):
        refuse_open_edge(base.with_(inbound_require_starttls=True))


@pytest.mark.parametrize(
    ("host", "chosen", "expected"),
    [("127.0.0.1", None, "off"), ("0.0.0.0", None, "dkim"), ("127.0.0.1", "dkim", "dkim")],  # noqa: S104
)
async def test_convoy_up_believes_from_only_with_its_own_sink_on_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, chosen: str | None, expected: str
) -> None:
    from services.supervisor import Supervisor

    monkeypatch.delenv("CONVOY_INBOUND_SENDER_AUTH", raising=False)
    if chosen:
        monkeypatch.setenv("CONVOY_INBOUND_SENDER_AUTH", chosen)
    given = Settings(
        data_dir=str(tmp_path),
        database_url="postgresql://127.0.0.1:1/unused",  # given: nothing embedded but the mail sink
        nats_url="nats://127.0.0.1:1",
        admin_token="adm_test",
        secret_key="key_test",
        http_port=embedded.free_port(),
        embedded_smtp_port=embedded.free_port(),
        inbound_smtp_host=host,
        inbound_smtp_port=embedded.free_port(),
    )
    supervisor = Supervisor(given)
    prepared = await supervisor.prepare()
    supervisor._lock_file.close()
    assert prepared.inbound_sender_auth == expected


# --- inbound, end to end ----------------------------------------------------------------------------
async def test_only_authenticated_senders_file_replies_over_starttls(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack, ca: trustme.CA, dkim_dns: mailkit.TestDns
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    reply_to = await prompted(client, smtp_sink, stack, world)
    anna, ben = world.reps["a"], world.reps["b"]
    s, tls = stack.settings, client_tls(ca)

    # The server offers STARTTLS (a certificate is configured); the client upgrades and verifies it.
    probe = aiosmtplib.SMTP(hostname="127.0.0.1", port=s.inbound_smtp_port, timeout=10, start_tls=False)
    await probe.connect()
    await probe.ehlo()
    assert probe.supports_extension("starttls")
    await probe.starttls(tls_context=tls)
    assert probe.get_transport_info("sslcontext") is not None
    probe.close()

    def refused(code: int, answer: str) -> bool:
        return code == 550 and "not be verified" in answer and "nicht bestaetigt" in answer

    # The probe of #19: envelope from the attacker, From: forged to the representative, unsigned.
    forged = reply(reply_to["a"], anna.email, "Wir geben auf.")
    assert refused(*await send(s, forged, "attacker@evil.example", sign=None, tls=tls))
    # Signed, but by the attacker's own domain.
    assert refused(*await send(s, forged, "attacker@evil.example", sign="evil.example", tls=tls))
    # An Authentication-Results header "from" a relay that is not the trusted one.
    spoofed = reply(reply_to["a"], anna.email, "Wir geben auf.", Authentication_Results="mx.evil.example; dmarc=pass")
    assert refused(*await send(s, spoofed, "attacker@evil.example", sign=None, tls=tls))
    # The trusted id, but below the relay's own verdict (the sender wrote it, the relay put its own on top).
    below = reply(reply_to["a"], anna.email, "Wir geben auf.")
    below["Authentication-Results"] = f"{RELAY_ID}; dmarc=fail header.from={mailkit.from_domain(below)}"
    below["Authentication-Results"] = f"{RELAY_ID}; dmarc=pass header.from={mailkit.from_domain(below)}"
    assert refused(*await send(s, below, sign=None, tls=tls))
    # The sender's key cannot be looked up right now: 451, their server tries again later.
    dkim_dns.timeouts.add(f"{mailkit.SELECTOR}._domainkey.slow.example")
    code, answer = await send(s, reply(reply_to["a"], "anna@slow.example", "Später"), tls=tls)
    assert code == 451 and "DKIM key could not be looked up" in answer
    assert await reports(client, world) == []

    # A prompt's address for an earlier round files nothing into this one.
    old = replies.address(
        s,
        replies.Target(
            kind="report",
            person_id=uuid.UUID(anna.person_id),
            convoy_id=uuid.UUID(world.convoy_id),
            company_id=uuid.UUID(anna.company_id),
            cycle_index=9,
        ),
    )
    code, answer = await send(s, reply(old, anna.email, "Letzte Woche"), tls=tls)
    assert code == 550 and "round this prompt was for is over" in answer
    assert await reports(client, world) == []

    # Anna's own mail server signed it: filed, over STARTTLS; the key was looked up in the test DNS.
    code, answer = await send(s, reply(reply_to["a"], f"Anna <{anna.email}>", "Kalender angebunden."), tls=tls)
    assert (code, answer) == (250, "Thank you, filed")
    [report] = await reports(client, world)
    assert report["done"] == "Kalender angebunden." and report["author_id"] == anna.person_id
    assert f"convoy._domainkey.{anna.email.rpartition('@')[2]}" in dkim_dns.lookups

    # Ben answers the notice of Anna's report through the trusted relay (it checked DKIM itself).
    notice = await smtp_sink.wait_for_subject(ben.email, "Sanitär Müller")
    comment_to = str(notice["Reply-To"])
    domain = ben.email.rpartition("@")[2]
    via_relay = reply(
        comment_to,
        ben.email,
        "Glückwunsch!",
        Authentication_Results=f"{RELAY_ID} 1; spf=pass smtp.mailfrom={domain}; dkim=pass (2048-bit key)"
        f" header.d={domain} header.i=@{domain}",
        Message_ID="<c1@schmidt.example>",
    )
    assert await send(s, via_relay, sign=None) == (250, "Thank you, filed")
    # A comment thread takes more than one answer from the same address (each message once).
    again = reply(comment_to, ben.email, "Und noch eine Frage.", Message_ID="<c2@schmidt.example>")
    assert await send(s, again, tls=tls) == (250, "Thank you, filed")
    # Ben's address cannot be used by Anna, even signed by her own domain: bound to whom it was made for.
    code, answer = await send(s, reply(comment_to, anna.email, "Ich bin Ben", Message_ID="<c3@m.example>"), tls=tls)
    assert code == 550 and "does not come from the address" in answer

    async def two_comments() -> bool:
        r = await client.get(f"/api/v1/reports/{report['id']}/comments", headers=anna.auth)
        return [c["body"] for c in r.json()["comments"]] == ["Glückwunsch!", "Und noch eine Frage."]

    await eventually(two_comments)


# --- outgoing ---------------------------------------------------------------------------------------
@dataclass
class Relay:
    """An aiosmtpd relay that wants a password; records each login and whether it came over TLS."""

    port: int = 0
    logins: list[tuple[str, bool]] = field(default_factory=list)
    received: list[tuple[EmailMessage, bool]] = field(default_factory=list)

    def authenticator(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login.decode(), session.ssl is not None))
        return AuthResult(success=data.login == b"convoy" and data.password == b"s3cret")

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((_message(envelope.original_content), session.ssl is not None))
        return "250 OK"


@pytest.fixture
async def relays(ca: trustme.CA) -> AsyncIterator[tuple[Relay, Relay]]:
    """(a relay without STARTTLS that would take a password in clear, one with STARTTLS)."""
    import asyncio

    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    plain, secure = Relay(), Relay()
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(
            lambda: SMTP(plain, hostname="plain", authenticator=plain.authenticator, auth_require_tls=False),
            "127.0.0.1",
            0,
        ),
        await loop.create_server(
            lambda: SMTP(secure, hostname="secure", authenticator=secure.authenticator, tls_context=server_tls),
            "127.0.0.1",
            0,
        ),
    ]
    plain.port, secure.port = (srv.sockets[0].getsockname()[1] for srv in servers)
    yield plain, secure
    for srv in servers:
        srv.close()
        await srv.wait_closed()


def test_smtp_urls_upgrade_whenever_they_can() -> None:
    assert SmtpConfig.from_url("smtp://relay.example:587").start_tls is None  # opportunistic
    assert SmtpConfig.from_url("smtp://relay.example:587?starttls=true").start_tls is True
    assert SmtpConfig.from_url("smtp://relay.example:25?starttls=false").start_tls is False
    implicit = SmtpConfig.from_url("smtps://u:p%40ss@relay.example")
    assert (implicit.use_tls, implicit.port, implicit.password) == (True, 465, "p@ss")
    assert SmtpConfig.from_url("smtp://relay.example?cafile=/etc/ca.pem").cafile == "/etc/ca.pem"


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[db.Database]:
    database = await db.connect(settings, "notifier")
    yield database
    await database.close(5)


async def _status(database: db.Database, key: str) -> str:
    async with database.connection() as conn:
        return str(await conn.fetchval("SELECT status FROM deliveries WHERE key = $1", key))


async def test_the_relay_password_never_crosses_in_clear_and_the_email_waits(
    settings: Settings, relays: tuple[Relay, Relay], tls_files: TlsFiles, database: db.Database
) -> None:
    plain, secure = relays
    key, event_id = f"message:sign_in:{uuid.uuid4()}", uuid.uuid4()
    email = Rendered(subject="Ihr Anmeldelink", text="https://convoy.test/s/cvl_x", html="<p>Link</p>", lang="de")

    async def deliver(url: str, to: str = "anna@mueller.example", key: str = key) -> None:
        mailer = Mailer(settings.with_(smtp_url=url), database)
        try:
            await mailer.send_email(
                key, event_id, to_name="Anna", to_email=to, rendered=email, list_id=MESSAGES_LIST_ID
            )
        finally:
            await mailer.close()

    # The relay offers no STARTTLS: no AUTH is sent, nothing is sent; the email stays to be retried.
    with pytest.raises(TransientDeliveryError, match="offers no TLS"):
        await deliver(f"smtp://convoy:s3cret@127.0.0.1:{plain.port}")
    assert plain.logins == [] and plain.received == []
    assert await _status(database, key) == "retrying"

    # The relay offers STARTTLS: upgraded, logged in over TLS, sent; the same delivery key, once.
    await deliver(f"smtp://convoy:s3cret@127.0.0.1:{secure.port}?cafile={tls_files.ca}")
    assert secure.logins == [("convoy", True)]
    [(message, over_tls)] = secure.received
    assert over_tls and message["Subject"] == "Ihr Anmeldelink"
    assert await _status(database, key) == "sent"
    await deliver(f"smtp://convoy:s3cret@127.0.0.1:{secure.port}?cafile={tls_files.ca}")  # a redelivery
    assert len(secure.received) == 1

    # (A redelivery may open a connection and log in, over TLS: the envelope goes out while the claim
    # commits, issue #21; the claim says "sent", so RSET and no DATA.)
    assert all(over_tls for _, over_tls in secure.logins)

    # Without credentials the client still upgrades whenever the relay offers it, and logs in to nothing.
    logins = len(secure.logins)
    other = f"message:sign_in:{uuid.uuid4()}"
    await deliver(f"smtp://127.0.0.1:{secure.port}?cafile={tls_files.ca}", "ben@schmidt.example", other)
    assert secure.received[-1][1] is True and len(secure.logins) == logins
