"""Secrets never travel in clear on the bus, and an erasure removes the person's messages from the streams
(issue #19), on real servers: nats-server (its stream files read from disk too), PostgreSQL, SMTP sink.

Email requests (sign-in links, invitations, every message with a recipient) travel sealed for the notifier
(services/runtime/sealing.py), on a subject tagged by the recipient; the notifier erases them by subject and
sequence when the person deletes their account.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from nats.aio.msg import Msg
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from schemas import envelope as env
from schemas import events as ev
from services.runtime import outbox, sealing
from tests.conftest import NatsServer, SmtpSink, Stack, eventually, new_token_for, settled, tokens_for
from tests.world import ADMIN, invite_and_accept

TOKEN = re.compile(rb"cv[a-z]_[A-Za-z0-9_-]{20,}")


async def stored(stack: Stack, stream: str) -> list[RawStreamMsg]:
    """Every message a stream holds now, read one by one by sequence (JetStream get msg)."""
    js = stack.nc.jetstream()
    state = (await js.stream_info(stream)).state
    found: list[RawStreamMsg] = []
    if not state.messages:
        return found
    for seq in range(state.first_seq, state.last_seq + 1):
        with contextlib.suppress(NotFoundError):  # deleted or purged
            found.append(await js.get_msg(stream, seq))
    return found


def readable(msg: RawStreamMsg | Msg) -> bytes:
    """Subject, headers and body of a message as anyone who can read it sees them."""
    headers = b"".join(f"{k}: {v}\n".encode() for k, v in (msg.headers or {}).items())
    return (msg.subject or "").encode() + b"\n" + headers + (msg.data or b"")


def stream_files(nats_server: NatsServer, stream: str) -> bytes:
    """The bytes of a stream's message files in the test nats-server's store folder (whatever the account)."""
    folders = [p for p in (nats_server.folder / "jetstream").rglob(f"streams/{stream}/msgs") if p.is_dir()]
    assert folders, f"no files of {stream} under {nats_server.folder}"
    data = b""
    for path in sorted(p for folder in folders for p in folder.iterdir()):
        with contextlib.suppress(FileNotFoundError):  # a block compacted or a temporary file renamed meanwhile
            data += Path(path).read_bytes()
    return data


async def on_subject(stack: Stack, stream: str, subject: str) -> list[int]:
    """Sequences of the messages a stream holds on ``subject`` (JetStream's next-by-subject lookup)."""
    js = stack.nc.jetstream()
    seqs: list[int] = []
    while True:
        try:
            msg = await js.get_msg(stream, seq=(seqs[-1] + 1) if seqs else 1, subject=subject, next=True)
        except NotFoundError:
            return seqs
        assert msg.seq is not None
        seqs.append(msg.seq)


async def test_a_sign_in_link_crosses_the_bus_sealed_and_still_signs_in(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack, nats_server: NatsServer
) -> None:
    address = f"frieda-{uuid.uuid4().hex[:8]}@zentrum.example"
    r = await client.post(
        "/api/v1/facilitators", json={"name": "Frieda Berater", "email": address, "language": "de"}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    await smtp_sink.wait_for_mail_to(address)  # "you are a facilitator now"
    await settled(stack)

    # A raw subscriber on every subject of the server while the link is asked for and sent.
    heard: list[Msg] = []

    async def listen(msg: Msg) -> None:
        heard.append(msg)

    sub = await stack.nc.subscribe(">", cb=listen)
    seen = tokens_for(smtp_sink, address, "cvl_")
    r = await client.post("/api/v1/auth/sign-in", json={"email": address})
    assert r.status_code == 202, r.text
    token = await new_token_for(smtp_sink, address, "cvl_", seen)
    await settled(stack)
    await sub.unsubscribe()

    tag = sealing.recipient_tag(address)
    subject = stack.subjects.addressed(ev.EmailRequested, tag)
    carried = [m for m in heard if m.subject == subject]
    # heard on its recipient's subject: published by the relay, and delivered to the notifier's consumer
    assert carried and len({(m.headers or {}).get("Nats-Msg-Id") for m in carried}) == 1
    for msg in heard:  # the link's token is nowhere on the wire; on the message subjects no address either
        assert token.encode() not in readable(msg) and not TOKEN.search(readable(msg)), msg.subject
        if msg.subject.startswith(f"{stack.settings.namespace}.messages."):
            assert address.encode() not in readable(msg) and b"Frieda" not in readable(msg)
    _, message = env.decode(carried[0].data)
    assert isinstance(message, ev.EmailRequested) and message.template == "sign_in"
    assert message.to_email == "" and message.params == {} and message.sealed
    assert message.key.startswith("sign_in:")  # ids and hashes only

    # Stored: the messages stream holds it sealed, in JetStream and in its files on disk.
    messages = await stored(stack, stack.subjects.messages_stream)
    assert any(m.subject == subject for m in messages)
    for m in messages:
        assert not TOKEN.search(readable(m)) and b"/sign-in/" not in readable(m) and address.encode() not in readable(m)
    on_disk = stream_files(nats_server, stack.subjects.messages_stream)
    assert message.key.encode() in on_disk  # the files hold the message ...
    assert not TOKEN.search(on_disk) and address.encode() not in on_disk  # ... and neither token nor address
    assert await stored(stack, stack.subjects.dead_letter_stream) == []

    # Only the notifier's key opens it; a key of another installation does not.
    opened = sealing.unseal(message, stack.settings.notifier_box_key)
    assert opened.to_email == address and token in opened.params["link"]
    other, _ = sealing.generate()
    with pytest.raises(sealing.SealingError):
        sealing.unseal(message, other)

    # The email carries a working link.
    r = await client.post("/api/v1/auth/sign-in/complete", json={"token": token})
    assert r.status_code == 200, r.text
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert me.status_code == 200 and me.json()["person"]["email"] == address


async def add_to_outbox(stack: Stack, message: ev.EmailRequested) -> None:
    """As services/convoys emits it (sealed, on its recipient's subject), straight into its outbox."""
    conn = await asyncpg.connect(stack.settings.database_url, server_settings={"search_path": "convoys"})
    try:
        subject, sealed = sealing.addressed(stack.subjects, message, stack.settings.notifier_box_public_key)
        await outbox.add(conn, stack.subjects, sealed, producer="convoys", subject=subject)
    finally:
        await conn.close()


async def test_erasure_removes_the_persons_messages_from_the_streams_and_their_files(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack, nats_server: NatsServer
) -> None:
    tag_ = uuid.uuid4().hex[:8]
    facilitator_email = f"frieda-{tag_}@zentrum.example"
    r = await client.post(
        "/api/v1/facilitators",
        json={"name": "Frieda Berater", "email": facilitator_email, "language": "de"},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    seen = tokens_for(smtp_sink, facilitator_email, "cvl_")
    await client.post("/api/v1/auth/sign-in", json={"email": facilitator_email})
    token = await new_token_for(smtp_sink, facilitator_email, "cvl_", seen)
    facilitator = {
        "Authorization": "Bearer "
        + (await client.post("/api/v1/auth/sign-in/complete", json={"token": token})).json()["access_token"]
    }
    client.cookies.clear()
    convoy = (
        await client.post("/api/v1/convoys", json={"name": "Nord", "theme": "Termine"}, headers=facilitator)
    ).json()
    company = (
        await client.post(f"/api/v1/convoys/{convoy['id']}/companies", json={"name": "Laden"}, headers=facilitator)
    ).json()
    address, name = f"bertram-{tag_}@laden.example", f"Bertram Quast{tag_}"
    ben = await invite_and_accept(client, smtp_sink, facilitator, convoy["id"], company["id"], name, address)
    # More messages to him: a sign-in link, and one the notifier gives up on (a dead letter).
    seen = tokens_for(smtp_sink, address, "cvl_")
    await client.post("/api/v1/auth/sign-in", json={"email": address})
    await new_token_for(smtp_sink, address, "cvl_", seen)
    client.cookies.clear()
    broken = ev.EmailRequested(key=f"broken:{tag_}", to_email=address, to_name=name, template="sign_in", params={})
    await add_to_outbox(stack, broken)
    # And one to someone else, which stays.
    await add_to_outbox(
        stack,
        ev.EmailRequested(
            key=f"other:{tag_}",
            to_email=f"other-{tag_}@x.example",
            template="member_removed",
            params={"convoy": "N", "company": "L"},
        ),
    )
    js = stack.nc.jetstream()
    tag = sealing.recipient_tag(address)
    subject = stack.subjects.addressed(ev.EmailRequested, tag)
    dead_subject = stack.subjects.dead_letter(stack.subjects.consumer("notifier", "messages"), tag)
    await eventually(lambda: on_subject(stack, stack.subjects.dead_letter_stream, dead_subject))
    await settled(stack)
    his = await on_subject(stack, stack.subjects.messages_stream, subject)
    assert len(his) >= 3  # invitation, sign-in link, the broken one
    sealed_parts = []
    for stream, sub in ((stack.subjects.messages_stream, subject), (stack.subjects.dead_letter_stream, dead_subject)):
        for seq in await on_subject(stack, stream, sub):
            message = env.decode((await js.get_msg(stream, seq)).data)[1]
            assert isinstance(message, ev.EmailRequested) and message.sealed
            sealed_parts.append(message.sealed.encode())
    messages_files = stream_files(nats_server, stack.subjects.messages_stream)
    assert all(part in messages_files for part in sealed_parts[: len(his)])  # on disk before

    # An email asked for before the erasure that reaches the stream only after it (the relay was slow).
    late = env.new_envelope(
        sealing.seal(
            ev.EmailRequested(
                key=f"late:{tag_}",
                to_email=address,
                to_name=name,
                template="sign_in",
                params={"link": "http://convoy.test/sign-in", "minutes": "15"},
            ),
            stack.settings.notifier_box_public_key,
        ),
        producer="convoys",
    )

    r = await client.request("DELETE", "/api/v1/me", json={"confirm": "DELETE"}, headers=ben.auth)
    assert r.status_code == 200, r.text

    async def erased() -> bool:
        return not await on_subject(stack, stack.subjects.messages_stream, subject) and not await on_subject(
            stack, stack.subjects.dead_letter_stream, dead_subject
        )

    await eventually(erased, timeout=20)
    await settled(stack)
    await js.publish(subject, env.encode(late), headers={"Nats-Msg-Id": str(late.id)})
    await eventually(erased, timeout=20)  # dropped, not sent, and erased from the stream
    await settled(stack)
    assert not [m for m in smtp_sink.to(address) if "late" in str(m["Message-ID"])]

    # No message in any stream holds his address or name (in clear), or a message to him at all.
    for stream in (stack.subjects.events_stream, stack.subjects.messages_stream, stack.subjects.dead_letter_stream):
        for m in await stored(stack, stream):
            text = readable(m)
            assert address.encode() not in text and name.encode() not in text, stream
            # a message to him at all (person.erased in the events stream carries the address's hash: by design)
            assert stream == stack.subjects.events_stream or tag.encode() not in text, stream
    others = await stored(stack, stack.subjects.messages_stream)
    assert any(f"other:{tag_}".encode() in (m.data or b"") for m in others)  # the erasure took only his

    # The files: JetStream overwrote the erased messages (deleted by sequence), sealed parts and all.
    for stream in (stack.subjects.messages_stream, stack.subjects.dead_letter_stream):
        files = stream_files(nats_server, stream)
        assert address.encode() not in files and name.encode() not in files
        assert not [part for part in sealed_parts if part in files], stream
    assert f"other:{tag_}".encode() in stream_files(nats_server, stack.subjects.messages_stream)


def test_sealing_round_trip_and_subjects() -> None:
    private, public = sealing.generate()
    assert sealing.public_of(private) == public
    message = ev.EmailRequested(
        key="k", to_email="Anna@Example.test ", to_name="Anna", template="sign_in", params={"link": "x/cvl_abc"}
    )
    sealed = sealing.seal(message, public)
    raw = msgspec.json.encode(sealed)
    assert b"Anna" not in raw and b"cvl_" not in raw and sealed.sealed
    assert sealing.seal(sealed, public) is sealed  # not sealed twice
    assert sealing.unseal(sealed, private) == message
    # The tag is the one person.erased's hash gives (trimmed, lower-cased).
    assert sealing.recipient_tag(message.to_email) == sealing.tag_of_hash(sealing.email_sha256("anna@example.test"))
    from schemas.subjects import Subjects

    s = Subjects("convoy")
    subject = s.addressed(ev.EmailRequested, sealing.recipient_tag("a@b.c"))
    assert s.recipient_of(subject) == sealing.recipient_tag("a@b.c")
    assert s.recipient_of(s.of(ev.EmailRequested)) == "" and s.recipient_of(s.event("report.submitted")) == ""
    with pytest.raises(ValueError, match="recipient tag"):
        s.addressed(ev.EmailRequested, "not.a.tag")
    with pytest.raises(sealing.SealingError, match="32 bytes"):
        sealing.seal(message, "AAAA")
    # A rotation: the notifier holds the new key and the old one; both open, the public half is the new one's.
    new_private, new_public = sealing.generate()
    rotating = f"{new_private},{private}"
    assert sealing.public_of(rotating) == new_public
    assert sealing.unseal(sealed, rotating) == message
    assert sealing.unseal(sealing.seal(message, new_public), rotating) == message
    with pytest.raises(sealing.SealingError, match="does not open"):
        sealing.unseal(sealed, new_private)


def test_logs_mask_one_time_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    """A token that reaches a log line anyway (a path in an error, a library's message) is masked."""
    import json
    import logging

    import structlog

    from services.runtime import logging as convoy_logging
    from services.runtime.settings import Settings

    token = "cvl_" + "A1b2-C3d4_" * 4
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        convoy_logging.configure(Settings(log_format="json"), "test")
        structlog.get_logger("bus").error(
            "unhandled error", path=f"/sign-in/{token}", error=ValueError(f"bad token {token}"), n=1
        )
        logging.getLogger("uvicorn.error").warning("GET /invitations/cvi_%s 500", "Zz9" * 8)
        err = capsys.readouterr().err
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
        root.handlers[:] = handlers
        root.setLevel(level)
    ours, theirs = (json.loads(line) for line in err.splitlines() if line.startswith("{"))
    assert ours["path"] == "/sign-in/cvl_***" and ours["error"] == "bad token cvl_***" and ours["n"] == 1
    assert theirs["event"] == "GET /invitations/cvi_*** 500"
    assert token not in err and "Zz9Zz9" not in err


async def test_no_key_no_start_and_no_email_request_in_clear(tmp_path: Path) -> None:
    """A producer without the notifier's public key cannot emit an email request (nor services/convoys
    start); the notifier does not start without its private key; `convoy up` generates the pair once."""
    from services.runtime.service import Runtime
    from services.runtime.settings import Settings
    from services.supervisor import _box_key

    bare = Runtime(Settings(), "convoys")
    with pytest.raises(sealing.SealingError, match="CONVOY_NOTIFIER_BOX_PUBLIC_KEY is not set"):
        _ = bare.box_public_key
    import services.convoys

    with pytest.raises(sealing.SealingError):
        await services.convoys.setup(bare)
    import notifier

    with pytest.raises(RuntimeError, match="CONVOY_NOTIFIER_BOX_KEY is not set"):
        await notifier.setup(Runtime(Settings(secret_key="key_x"), "notifier"))
    private, public = sealing.generate()
    assert Runtime(Settings(notifier_box_key=private), "convoys").box_public_key == public

    first = _box_key(tmp_path / "notifier-box-key")
    assert _box_key(tmp_path / "notifier-box-key") == first  # kept, not regenerated
    assert (tmp_path / "notifier-box-key").stat().st_mode & 0o077 == 0  # readable by its owner only
