"""One request's correlation id, followed from the HTTP request through NATS into the logs and the email.

The services run in this process (tests/conftest.py), so one structlog configuration sees every
service's log lines; each line gets what its task bound (structlog context variables), exactly
as in production where each process prints JSON lines.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from structlog.testing import LogCapture

from services.runtime import correlation
from tests.conftest import SmtpSink, eventually
from tests.world import build_world

CONVOY = str(Path(sys.executable).parent / "convoy")


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Every structlog line as an event dict, with the context variables merged in as in production."""
    before = structlog.get_config()
    capture = LogCapture()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level, capture],
        wrapper_class=structlog.make_filtering_bound_logger(0),
        cache_logger_on_first_use=False,
    )
    try:
        yield capture
    finally:
        structlog.configure(**before)


def lines(capture: LogCapture, correlation_id: uuid.UUID) -> list[dict[str, Any]]:
    return [e for e in capture.entries if e.get("correlation_id") == str(correlation_id)]


async def test_a_reports_correlation_id_reaches_the_email_and_its_delivery_log_line(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, logs: LogCapture
) -> None:
    world = await build_world(client, smtp_sink)
    smtp_sink.messages.clear()
    anna, ben = world.reps["a"], world.reps["b"]
    request_id = uuid.uuid4()

    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/reports",
        json={"done": "Booking page is live", "next": "Connect the calendar", "mood": 4},
        headers={**anna.auth, correlation.HTTP_HEADER: str(request_id)},
    )
    assert r.status_code == 201, r.text
    assert r.headers[correlation.HTTP_HEADER] == str(request_id)

    # HTTP -> RPC (NATS header) -> milestones -> outbox envelope -> JetStream -> notifier -> SMTP.
    [message] = await smtp_sink.wait_for_mail_to(ben.email)
    assert message[correlation.HTTP_HEADER] == str(request_id)

    async def delivered() -> list[dict[str, Any]]:
        return [e for e in lines(logs, request_id) if e["event"] == "email sent"]

    [sent] = await eventually(delivered)
    assert sent["key"].startswith("report:") and sent["key"].endswith(ben.person_id)
    assert ben.email not in str(sent)  # the log line names the person by id, not by address

    async def handled() -> list[dict[str, Any]]:  # logged after the consumer's commit, so after the send
        return [e for e in lines(logs, request_id) if e["event"] == "event handled" and e["type"] == "report.submitted"]

    assert await eventually(handled)
    # Nothing else carries this id: the requests that built the world had ids of their own.
    assert all(e["event"] in {"email sent", "event handled"} for e in lines(logs, request_id))


async def test_every_request_gets_an_id_and_a_sign_in_link_carries_it(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, logs: LogCapture
) -> None:
    bare = await client.get("/health")
    made = correlation.parse(bare.headers[correlation.HTTP_HEADER])
    assert made is not None
    forged = await client.get("/health", headers={correlation.HTTP_HEADER: "<script>alert(1)</script>"})
    replaced = correlation.parse(forged.headers[correlation.HTTP_HEADER])
    assert replaced is not None and replaced != made

    # The messages stream (EmailRequested via the outbox) carries it too.
    request_id = uuid.uuid4()
    address = f"someone-{request_id.hex[:8]}@example.com"
    appointed = await client.post("/api/v1/facilitators", json={"name": "Frieda", "email": address}, headers=_admin())
    [welcome] = await smtp_sink.wait_for_mail_to(address)  # the appointment's own email, with its own id
    assert welcome[correlation.HTTP_HEADER] == appointed.headers[correlation.HTTP_HEADER]
    r = await client.post(
        "/api/v1/auth/sign-in", json={"email": address}, headers={correlation.HTTP_HEADER: str(request_id)}
    )
    assert r.status_code == 202
    _, link = await smtp_sink.wait_for_mail_to(address, count=2)
    assert link[correlation.HTTP_HEADER] == str(request_id)
    await eventually(lambda: _has(logs, request_id, "email sent"))


async def test_convoy_health_api_probes_the_api_process(client: httpx.AsyncClient) -> None:
    port = str(client.base_url.port)
    env = {**os.environ, "CONVOY_HTTP_PORT": port, "CONVOY_HTTP_HOST": "0.0.0.0"}  # noqa: S104
    proc = await asyncio.create_subprocess_exec(
        CONVOY, "health", "api", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, (out, err)
    assert out.decode().startswith("api: ready")


async def _has(logs: LogCapture, request_id: uuid.UUID, event: str) -> bool:
    return any(e["event"] == event for e in lines(logs, request_id))


def _admin() -> dict[str, str]:
    from tests.conftest import admin

    return admin()
