"""The delivery log: a key is sent at most once; a crash mid-send is detected, never silently
resent; a transient failure retries only what was not sent."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import pytest
from aiosmtpd.smtp import SMTP

from notifier.batching import DeliveryBatcher
from notifier.delivery import Mailer
from notifier.render import Rendered
from notifier.repository import Claim, Deliveries
from services.runtime import db
from tests.conftest import SmtpSink, Stack, eventually, settled
from tests.world import build_world


async def test_claims_and_states(settings: Any) -> None:
    database = await db.connect(settings, "notifier")
    try:
        log = Deliveries(database)
        event = uuid.uuid4()
        assert await log.claim("k1", event, "email", "a@x.example") is True
        # The attempt "crashed": a second claim does not send again, it marks the key uncertain.
        assert await log.claim("k1", event, "email", "a@x.example") is False
        [row] = await log.needing_attention("uncertain", 10)
        assert row["key"] == "k1"
        # A transient failure lets the next attempt send.
        assert await log.claim("k2", event, "email", "b@x.example") is True
        await log.note_error("k2", "451 try later")
        assert await log.claim("k2", event, "email", "b@x.example") is True
        await log.finish("k2", "sent")
        assert await log.claim("k2", event, "email", "b@x.example") is False
        assert [r["key"] for r in await log.needing_attention("uncertain", 10)] == ["k1"]
        # An operator decides k1 may go out again (when its event is replayed).
        assert await log.allow_retry("k1") is True
        assert await log.claim("k1", event, "email", "a@x.example") is True
        assert await log.allow_retry("k2") is False  # sent: never again
        assert await log.claim("k3", event, "email", "c@x.example") is True
        assert await log.claim("k3", event, "email", "c@x.example") is False  # k3 is now uncertain
    finally:
        await database.close(5)

    # The command line lists what needs a person.
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "deliveries", "--uncertain"],
        env={**os.environ, "CONVOY_DATABASE_URL": settings.database_url},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert '"key": "k3"' in result.stdout.decode()


async def test_a_transient_failure_mid_batch_resends_only_the_rest(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    smtp_sink.messages.clear()
    ben, clara = world.reps["b"].email, world.reps["c"].email
    smtp_sink.refuse_once[clara] = "451 4.3.0 Try again later"
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/reports", json={"done": "Fortschritt"}, headers=world.reps["a"].auth
    )
    assert r.status_code == 201
    await smtp_sink.wait_for_mail_to(clara)  # the retry after the 451
    await smtp_sink.wait_for_mail_to(ben)
    await settled(stack)
    assert len(smtp_sink.to(ben)) == 1 and len(smtp_sink.to(clara)) == 1
    assert smtp_sink.refuse_once == {}


async def _statuses(database: db.Database, keys: list[str]) -> dict[str, tuple[str, int]]:
    async with database.connection() as conn:
        rows = await conn.fetch("SELECT key, status, attempts FROM deliveries WHERE key = ANY($1::text[])", keys)
    return {r["key"]: (r["status"], r["attempts"]) for r in rows}


async def test_claiming_many_in_one_statement_is_claiming_each(settings: Any) -> None:
    """record_and_claim: a sent or refused key is not claimed, a 'sending' one (an attempt that died
    mid-send) becomes uncertain, a 'retrying' one is claimed again, a new one is claimed; the
    records mark their keys sent in the same commit."""
    database = await db.connect(settings, "notifier")
    try:
        log = Deliveries(database)
        event = uuid.uuid4()
        p = f"many:{uuid.uuid4()}:"
        sent, failed, died, retry, new, recorded = (p + k for k in ("sent", "failed", "died", "retry", "new", "rec"))
        for key in (sent, failed, died, retry, recorded):
            assert await log.claim(key, event, "email", "x@x.example") is True
        await log.finish(sent, "sent")
        await log.finish(failed, "failed", "550 no such user")
        await log.note_error(retry, "451 later")
        claims = [Claim(k, event, "email", "x@x.example") for k in (sent, failed, died, retry, new)]
        assert await log.record_and_claim([Claim(recorded, event, "email", "x@x.example")], claims) == {retry, new}
        assert await _statuses(database, [sent, failed, died, retry, new, recorded]) == {
            sent: ("sent", 1),
            failed: ("failed", 1),
            died: ("uncertain", 1),
            retry: ("sending", 2),
            new: ("sending", 1),
            recorded: ("sent", 1),
        }
        assert [r["key"] for r in await log.needing_attention("uncertain", 100) if r["key"].startswith(p)] == [died]
        assert await log.record_and_claim([], []) == set()
    finally:
        await database.close(5)


async def test_the_batcher_keeps_the_order_of_claims_and_records(settings: Any) -> None:
    """DeliveryBatcher: concurrent claims are answered each; a second claim of a key waits for the
    first (and finds it 'sending': uncertain, as two claims in a row do); a record goes before a
    later claim of its key; flush writes what waits; a database error reaches the callers."""
    database = await db.connect(settings, "notifier")
    try:
        log = Deliveries(database)
        batcher = DeliveryBatcher(log)
        event = uuid.uuid4()
        p = f"batch:{uuid.uuid4()}:"
        keys = [f"{p}{i}" for i in range(10)]
        assert await asyncio.gather(*(batcher.claim(k, event, "email", "x@x.example") for k in keys)) == [True] * 10
        for k in keys[:5]:
            batcher.sent(k, event, "email", "x@x.example")
        await batcher.flush()
        statuses = await _statuses(database, keys)
        assert [statuses[k][0] for k in keys] == ["sent"] * 5 + ["sending"] * 5

        twice = f"{p}twice"
        assert await asyncio.gather(*(batcher.claim(twice, event, "email", "x@x.example") for _ in range(2))) == [
            True,
            False,
        ]
        assert (await _statuses(database, [twice]))[twice] == ("uncertain", 1)

        again = f"{p}again"
        assert await batcher.claim(again, event, "email", "x@x.example") is True
        batcher.sent(again, event, "email", "x@x.example")  # not flushed: the next claim of the key writes it first
        assert await batcher.claim(again, event, "email", "x@x.example") is False
        assert (await _statuses(database, [again]))[again] == ("sent", 1)
        await batcher.flush()  # nothing waiting
    finally:
        await database.close(5)

    # the database gone: claims and flushes raise, nothing hangs
    batcher.sent(f"{p}lost", event, "email", "x@x.example")
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the closed pool raises
        await batcher.claim(f"{p}late", event, "email", "x@x.example")
    with pytest.raises(Exception):  # noqa: B017, PT011
        await batcher.flush()


@dataclass
class _RecordingSink(SmtpSink):
    """The test SMTP server, also noting every envelope command and DATA, and which connection sent it."""

    commands: list[tuple[int, str]] = field(default_factory=list)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        self.commands.append((id(session), "MAIL"))
        envelope.mail_from, envelope.mail_options = address, options
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        self.commands.append((id(session), f"RCPT {address}"))
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        self.commands.append((id(session), "RSET"))
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.commands.append((id(session), "DATA"))
        return await super().handle_DATA(server, session, envelope)


async def test_the_envelope_goes_out_while_the_claim_commits_and_data_only_once_it_holds(settings: Any) -> None:
    """The SMTP envelope (MAIL FROM, RCPT TO) is sent while the delivery claim commits; DATA waits for
    it. A key another replica holds: the envelope is reset (RSET), nothing delivered, nothing recorded
    over the other replica's row, and the connection serves the next email, which is delivered once."""
    sink = _RecordingSink()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(sink, hostname="sink"), "127.0.0.1", 0)
    sink.port = server.sockets[0].getsockname()[1]
    mail_settings = msgspec.structs.replace(settings, smtp_url=f"smtp://127.0.0.1:{sink.port}", smtp_pool_size=1)
    database = await db.connect(mail_settings, "notifier")
    mailer = Mailer(mail_settings, database)
    event = uuid.uuid4()
    taken, fresh = f"message:sign_in:{uuid.uuid4()}", f"message:sign_in:{uuid.uuid4()}"
    rendered = Rendered(subject="Sign in", text="Your link", html="<p>Your link</p>")

    def send(key: str, to: str) -> Coroutine[Any, Any, None]:
        return mailer.send_email(key, event, to_name="Anna", to_email=to, rendered=rendered, list_id="t <t.convoy>")

    try:
        # Another replica claims the key first: its claim is not committed yet, so ours waits on the row.
        async with database.connection() as other:
            replica = other.transaction()
            await replica.start()
            await other.execute(
                "INSERT INTO deliveries (key, event_id, channel, recipient, status, attempts)"
                " VALUES ($1, $2, 'email', 'anna@x.example', 'sending', 1)",
                taken,
                uuid.uuid4(),
            )
            sending = asyncio.create_task(send(taken, "anna@x.example"))

            async def envelope_sent() -> bool:
                assert [c for _, c in sink.commands] == ["MAIL", "RCPT anna@x.example"]
                return True

            await eventually(envelope_sent)  # while our claim still waits for the other replica's commit

            async def claim_waits_on_the_row() -> bool:  # (batched: on a loaded machine it may start late)
                async with database.connection() as probe:  # outside the open transaction: a fresh view
                    return bool(
                        await probe.fetchval(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                            " AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO deliveries%'"
                            " AND pid <> pg_backend_pid()"
                        )
                    )

            await eventually(claim_waits_on_the_row)
            assert not sending.done()
            await replica.commit()
        await asyncio.wait_for(sending, 15)
        assert [c for _, c in sink.commands] == ["MAIL", "RCPT anna@x.example", "RSET"]
        assert sink.messages == []
        assert await _statuses(database, [taken]) == {taken: ("sending", 1)}  # the other replica's, untouched

        # A key nobody holds: delivered once, over the same connection; sent again: reset, not delivered.
        await send(fresh, "ben@x.example")
        await send(fresh, "ben@x.example")
        [message] = sink.messages
        assert message["To"] == "Anna <ben@x.example>" and message["X-Convoy-Delivery"] == fresh
        delivered, reset = ["MAIL", "RCPT ben@x.example", "DATA"], ["MAIL", "RCPT ben@x.example", "RSET"]
        assert [c for _, c in sink.commands][3:] == delivered + reset
        assert len({session for session, _ in sink.commands}) == 1  # the reset left the connection usable
        assert await _statuses(database, [taken, fresh]) == {taken: ("sending", 1), fresh: ("sent", 1)}
    finally:
        await mailer.close()
        await database.close(5)
        server.close()
        await server.wait_closed()
