"""The first slice, end to end on real servers: convoy -> companies -> representatives -> report
-> JetStream -> notifier -> SMTP."""

from __future__ import annotations

import json
import uuid

import httpx

from tests.conftest import SmtpSink, Stack, html_of, settled, text_of
from tests.world import ADMIN, bearer, build_world


async def test_report_reaches_the_other_company_by_email(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink)
    smtp_sink.messages.clear()
    anna, ben = world.reps["a"], world.reps["b"]

    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/reports",
        json={"done": "Booking page is live <script>alert(1)</script>", "next": "Connect the calendar", "mood": 4},
        headers=anna.auth,
    )
    assert r.status_code == 201, r.text
    report = r.json()
    assert report["company_id"] == world.companies["a"]["id"]
    assert report["author_id"] == anna.person_id

    [message] = await smtp_sink.wait_for(1)
    assert ben.email in message["To"]
    assert message["Subject"] == 'Sanitär Müller: new progress report in "Terminvergabe Nord"'
    assert message["List-Id"].endswith(f"<{world.convoy_id}.convoys.convoy>")
    text, html = text_of(message), html_of(message)
    assert "Connect the calendar" in text
    assert f"http://convoy.test/convoys/{world.convoy_id}" in text
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    # Nobody else is mailed (the author's own company is not), and nothing arrives twice.
    await settled(stack)
    assert len(smtp_sink.messages) == 1
    assert smtp_sink.to(anna.email) == []


async def test_email_is_in_the_recipients_language(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, lang_b="de")
    smtp_sink.messages.clear()
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/reports",
        json={"done": "Shop-Software ausgewählt", "help_wanted": True, "help_topic": "Zahlungsanbieter"},
        headers=world.reps["a"].auth,
    )
    assert r.status_code == 201, r.text
    # Ben's notice (the facilitator is also told of the help request, in an email of its own)
    message = await smtp_sink.wait_for_subject(world.reps["b"].email, "Fortschrittsbericht")
    assert message["Subject"] == "Sanitär Müller: neuer Fortschrittsbericht in „Terminvergabe Nord“"
    assert "Sucht Unterstützung bei:\r\nZahlungsanbieter" in text_of(message)


async def test_bad_requests_say_which_field_is_wrong(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink)
    url = f"/api/v1/convoys/{world.convoy_id}/reports"
    token = world.reps["a"].auth

    r = await client.post(url, json={"done": "x", "mood": 9}, headers=token)
    assert r.status_code == 400
    assert "`mood`" in r.json()["detail"] and "<= 5" in r.json()["detail"]

    r = await client.post(url, json={"next": "y"}, headers=token)
    assert r.status_code == 400
    assert "done" in r.json()["detail"]

    r = await client.post(url, json={"done": "x", "colour": "red"}, headers=token)
    assert r.status_code == 400
    assert "unknown field `colour`" in r.json()["detail"]

    r = await client.post(url, content=b"{not json", headers={**token, "content-type": "application/json"})
    assert r.status_code == 400

    r = await client.post("/api/v1/convoys", json={"name": "", "timezone": "Europe/Berlin"}, headers=ADMIN)
    assert r.status_code == 400 and "`name`" in r.json()["detail"]


async def test_reports_are_for_members(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink)
    other = await build_world(client, smtp_sink)  # another convoy, other people
    convoy_id = world.convoy_id
    anna = world.reps["a"].auth
    outsider = other.reps["a"].auth

    r = await client.post(f"/api/v1/convoys/{convoy_id}/reports", json={"done": "x"})
    assert r.status_code == 401
    r = await client.post(f"/api/v1/convoys/{convoy_id}/reports", json={"done": "x"}, headers=bearer("cvy_nope"))
    assert r.status_code == 401

    # A representative cannot report for another company of the same convoy.
    r = await client.post(
        f"/api/v1/convoys/{convoy_id}/reports",
        json={"done": "x", "company_id": world.companies["b"]["id"]},
        headers=anna,
    )
    assert r.status_code == 403

    # The facilitator reads but does not report.
    r = await client.post(f"/api/v1/convoys/{convoy_id}/reports", json={"done": "x"}, headers=world.facilitator)
    assert r.status_code == 403
    r = await client.get(f"/api/v1/convoys/{convoy_id}/reports", headers=world.facilitator)
    assert r.status_code == 200

    # A member of another convoy learns nothing about this one.
    for method, path, body in (
        ("get", f"/api/v1/convoys/{convoy_id}", None),
        ("get", f"/api/v1/convoys/{convoy_id}/reports", None),
        ("post", f"/api/v1/convoys/{convoy_id}/reports", {"done": "x"}),
    ):
        r = await client.request(method, path, json=body, headers=outsider)
        assert r.status_code == 404, (method, path, r.text)

    r = await client.get(f"/api/v1/convoys/{convoy_id}", headers=anna)
    assert r.status_code == 200 and len(r.json()["companies"]) == 2
    r = await client.get(f"/api/v1/convoys/{uuid.uuid4()}", headers=ADMIN)
    assert r.status_code == 404


async def test_health_names_what_is_not_ready(client: httpx.AsyncClient, stack: Stack) -> None:
    r = await client.get("/health")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    assert set(body["services"]) == {"api", "convoys", "milestones", "reminders", "notifier"}
    assert body["services"]["notifier"]["checks"]["consumer:reports"] == "ok"

    await stack.stop_service("notifier")
    r = await client.get("/health")
    assert r.status_code == 503
    assert r.json()["not_ready"] == ["notifier"]

    await stack.start_service("notifier")
    r = await client.get("/health")
    assert r.status_code == 200


async def test_services_answer_nats_micro_discovery(stack: Stack) -> None:
    for name in ("convoys", "milestones", "reminders", "notifier"):
        micro_name = stack.subjects.micro_name(name)
        ping = json.loads((await stack.nc.request(f"$SRV.PING.{micro_name}", b"", timeout=2)).data)
        assert ping["name"] == micro_name
        info = json.loads((await stack.nc.request(f"$SRV.INFO.{micro_name}", b"", timeout=2)).data)
        subjects = {e["subject"] for e in info["endpoints"]}
        assert stack.subjects.health(name) in subjects


async def test_metrics_endpoints(client: httpx.AsyncClient) -> None:
    for path in ("/metrics", "/metrics/notifier"):  # the public port: the admin token only (issue #19)
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers=bearer("cva_not-the-admin"))).status_code == 401
    r = await client.get("/metrics", headers=ADMIN)
    assert r.status_code == 200 and "convoy_api" in r.text
    r = await client.get("/metrics/notifier", headers=ADMIN)
    assert r.status_code == 200 and "convoy_events_processed" in r.text
    r = await client.get("/metrics/nope", headers=ADMIN)
    assert r.status_code == 404
