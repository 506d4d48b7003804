"""The first slice, end to end on real servers: convoy -> companies -> representatives -> report
-> JetStream -> notifier -> SMTP."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.conftest import SmtpSink, Stack, admin, bearer


async def setup_convoy(client: Any, *, lang_b: str = "en", domain: str = "example") -> dict[str, Any]:
    r = await client.post(
        "/api/v1/convoys",
        json={"name": "Terminvergabe Nord", "theme": "Online-Terminvergabe"},
        headers=admin(),
    )
    assert r.status_code == 201, r.text
    convoy = r.json()
    companies = {}
    for key, name in (("a", "Sanitär Müller"), ("b", "Laden Schmidt")):
        r = await client.post(
            f"/api/v1/convoys/{convoy['id']}/companies", json={"name": name}, headers=admin()
        )
        assert r.status_code == 201, r.text
        companies[key] = r.json()
    reps = {}
    for key, name, email, lang in (
        ("a", "Anna Müller", f"anna@mueller.{domain}", "de"),
        ("b", "Ben Schmidt", f"ben@schmidt.{domain}", lang_b),
    ):
        r = await client.post(
            f"/api/v1/convoys/{convoy['id']}/companies/{companies[key]['id']}/representatives",
            json={"name": name, "email": email, "language": lang},
            headers=admin(),
        )
        assert r.status_code == 201, r.text
        reps[key] = r.json()
    return {"convoy": convoy, "companies": companies, "reps": reps}


async def test_report_reaches_the_other_company_by_email(
    client: Any, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await setup_convoy(client)
    convoy_id = world["convoy"]["id"]
    anna = world["reps"]["a"]

    r = await client.post(
        f"/api/v1/convoys/{convoy_id}/reports",
        json={
            "done": "Booking page is live <script>alert(1)</script>",
            "next": "Connect the calendar",
            "mood": 4,
        },
        headers=bearer(anna["api_token"]),
    )
    assert r.status_code == 201, r.text
    report = r.json()
    assert report["company_id"] == world["companies"]["a"]["id"]
    assert report["author_id"] == anna["representative"]["person_id"]

    [message] = await smtp_sink.wait_for(1)
    assert "ben@schmidt.example" in message["To"]
    assert message["Subject"] == 'Sanitär Müller: new progress report in "Terminvergabe Nord"'
    assert message["List-Id"].endswith(f"<{convoy_id}.convoys.convoy>")
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Connect the calendar" in text
    assert f"http://convoy.test/convoys/{convoy_id}" in text
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    # Nobody else is mailed (the author's own company is not), and nothing arrives twice.
    await asyncio.sleep(1.0)
    assert len(smtp_sink.messages) == 1
    assert smtp_sink.to("anna@mueller.example") == []


async def test_email_is_in_the_recipients_language(client: Any, smtp_sink: SmtpSink, stack: Stack) -> None:
    world = await setup_convoy(client, lang_b="de")
    r = await client.post(
        f"/api/v1/convoys/{world['convoy']['id']}/reports",
        json={"done": "Shop-Software ausgewählt", "help_wanted": "Zahlungsanbieter"},
        headers=bearer(world["reps"]["a"]["api_token"]),
    )
    assert r.status_code == 201, r.text
    [message] = await smtp_sink.wait_for(1)
    assert message["Subject"] == "Sanitär Müller: neuer Fortschrittsbericht in „Terminvergabe Nord“"
    text = message.get_body(("plain",)).get_content()
    assert "Sucht Unterstützung bei:\r\nZahlungsanbieter" in text


async def test_bad_requests_say_which_field_is_wrong(client: Any, stack: Stack) -> None:
    world = await setup_convoy(client)
    url = f"/api/v1/convoys/{world['convoy']['id']}/reports"
    token = bearer(world["reps"]["a"]["api_token"])

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

    r = await client.post("/api/v1/convoys", json={"name": "", "timezone": "Europe/Berlin"}, headers=admin())
    assert r.status_code == 400 and "`name`" in r.json()["detail"]

    r = await client.post("/api/v1/convoys", json={"name": "X", "timezone": "Mars/Olympus"}, headers=admin())
    assert r.status_code == 400 and "unknown time zone" in r.json()["detail"]

    r = await client.post(
        f"/api/v1/convoys/{world['convoy']['id']}/companies/{world['companies']['a']['id']}/representatives",
        json={"name": "Eve", "email": "not-an-email"},
        headers=admin(),
    )
    assert r.status_code == 400 and "`email`" in r.json()["detail"]


async def test_who_may_do_what(client: Any, smtp_sink: SmtpSink, stack: Stack) -> None:
    world = await setup_convoy(client)
    other = await setup_convoy(client, domain="example.org")  # another convoy, other people
    convoy_id = world["convoy"]["id"]
    anna = bearer(world["reps"]["a"]["api_token"])
    outsider = bearer(other["reps"]["a"]["api_token"])

    # No token / a wrong token: 401.
    r = await client.post(f"/api/v1/convoys/{convoy_id}/reports", json={"done": "x"})
    assert r.status_code == 401
    r = await client.post(
        f"/api/v1/convoys/{convoy_id}/reports", json={"done": "x"}, headers=bearer("cvy_nope")
    )
    assert r.status_code == 401

    # A representative cannot report for another company of the same convoy.
    r = await client.post(
        f"/api/v1/convoys/{convoy_id}/reports",
        json={"done": "x", "company_id": world["companies"]["b"]["id"]},
        headers=anna,
    )
    assert r.status_code == 403

    # A member of another convoy learns nothing about this one.
    for method, path, body in (
        ("get", f"/api/v1/convoys/{convoy_id}", None),
        ("get", f"/api/v1/convoys/{convoy_id}/reports", None),
        ("post", f"/api/v1/convoys/{convoy_id}/reports", {"done": "x"}),
    ):
        r = await client.request(method, path, json=body, headers=outsider)
        assert r.status_code == 404, (method, path, r.text)

    # Representatives do not set convoys up.
    r = await client.post("/api/v1/convoys", json={"name": "Mine"}, headers=anna)
    assert r.status_code == 403
    r = await client.post(f"/api/v1/convoys/{convoy_id}/companies", json={"name": "Mine"}, headers=anna)
    assert r.status_code == 403

    # Members see their convoy and its reports.
    r = await client.get(f"/api/v1/convoys/{convoy_id}", headers=anna)
    assert r.status_code == 200 and len(r.json()["companies"]) == 2
    r = await client.get(f"/api/v1/convoys/{uuid.uuid4()}", headers=admin())
    assert r.status_code == 404

    # One email per convoy member address: the same person may not join a convoy twice.
    r = await client.post(
        f"/api/v1/convoys/{convoy_id}/companies/{world['companies']['b']['id']}/representatives",
        json={"name": "Anna again", "email": "ANNA@mueller.example"},
        headers=admin(),
    )
    assert r.status_code == 409


async def test_health_names_what_is_not_ready(client: Any, stack: Stack) -> None:
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
    import json

    for name in ("convoys", "milestones", "reminders", "notifier"):
        micro_name = stack.subjects.micro_name(name)
        ping = json.loads((await stack.nc.request(f"$SRV.PING.{micro_name}", b"", timeout=2)).data)
        assert ping["name"] == micro_name
        info = json.loads((await stack.nc.request(f"$SRV.INFO.{micro_name}", b"", timeout=2)).data)
        subjects = {e["subject"] for e in info["endpoints"]}
        assert stack.subjects.health(name) in subjects


async def test_metrics_endpoints(client: Any, stack: Stack) -> None:
    r = await client.get("/metrics")
    assert r.status_code == 200 and "convoy_api" in r.text
    r = await client.get("/metrics/notifier")
    assert r.status_code == 200 and "convoy_events_processed" in r.text
    r = await client.get("/metrics/nope")
    assert r.status_code == 404
