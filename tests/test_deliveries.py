"""The delivery log: a key is sent at most once; a crash mid-send is detected, never silently
resent; a transient failure retries only what was not sent."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from typing import Any

import httpx

from notifier.repository import Deliveries
from services.runtime import db
from tests.conftest import SmtpSink, Stack
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
    await asyncio.sleep(1.0)
    assert len(smtp_sink.to(ben)) == 1 and len(smtp_sink.to(clara)) == 1
    assert smtp_sink.refuse_once == {}
