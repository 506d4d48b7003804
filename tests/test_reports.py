"""Projects, milestones, reports, timeline, board, search, export, comments, kudos and help,
over HTTP against the real stack."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from tests.conftest import SmtpSink, Stack, eventually, text_of
from tests.world import ADMIN, World, build_world, report_roles

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
XSS = "<script>alert(1)</script><img src=x onerror=alert(2)> [x](javascript:alert(3))"


def assert_harmless(html: str) -> None:
    """No script, no image, no event handler attribute, no javascript: link survived."""
    assert "<script" not in html and "<img" not in html
    assert not re.search(r"<[^>]*\son\w+\s*=", html)
    assert 'href="javascript' not in html.lower()


def opened_days_ago(days: int, window_hours: int) -> dict[str, Any]:
    """A weekly cadence whose current cycle opened ``days`` ago at 00:00 Berlin time."""
    day = (datetime.now(ZoneInfo("Europe/Berlin")) - timedelta(days=days)).date()
    return {
        "cadence": {
            "frequency": "weekly",
            "weekday": WEEKDAYS[day.weekday()],
            "local_time": "00:00",
            "window_hours": window_hours,
        },
        "start_date": (day - timedelta(days=70)).isoformat(),
    }


async def schedule(client: httpx.AsyncClient, world: World, days: int = 2, window_hours: int = 100) -> None:
    r = await client.patch(
        f"/api/v1/convoys/{world.convoy_id}", json=opened_days_ago(days, window_hours), headers=world.facilitator
    )
    assert r.status_code == 200, r.text

    async def milestones_follows() -> bool:  # its projection of the convoy follows convoy.updated
        r = await client.get(f"/api/v1/convoys/{world.convoy_id}/board", headers=world.facilitator)
        return r.status_code == 200 and r.json()["cycle_index"] == 10

    await eventually(milestones_follows)


async def sql(settings: Any, statement: str, *args: Any) -> Any:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return await conn.fetch(statement, *args)
    finally:
        await conn.close()


async def project(
    client: httpx.AsyncClient, world: World, key: str, project_type: str | None = "online_booking"
) -> dict[str, Any]:
    rep = world.reps[key]
    r = await client.put(
        f"/api/v1/convoys/{world.convoy_id}/companies/{rep.company_id}/project",
        json={"title": "Online-Termin-Service", "goal": "Termine online", "project_type": project_type},
        headers=rep.auth,
    )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


async def post_report(client: httpx.AsyncClient, world: World, key: str, **body: Any) -> httpx.Response:
    return await client.post(
        f"/api/v1/convoys/{world.convoy_id}/reports",
        json={"done": f"Fortschritt {key}", **body},
        headers=world.reps[key].auth,
    )


async def test_a_project_starts_from_the_catalogue_and_progress_follows_milestones(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    p = await project(client, world, "a")
    titles = [m["title"] for m in p["milestones"]]
    assert len(titles) >= 5 and all(m["catalogue_key"].startswith("online_booking.") for m in p["milestones"])
    assert p["progress"] == 0.0
    assert (await client.get("/api/v1/catalogue")).json()["project_types"][0]["rungs"]

    base = f"/api/v1/convoys/{world.convoy_id}/companies/{world.reps['a'].company_id}/project"
    anna = world.reps["a"].auth
    r = await client.post(f"{base}/milestones", json={"title": "Eigener Schritt", "weight": 3}, headers=anna)
    assert r.status_code == 201
    own = r.json()
    first = p["milestones"][0]
    r = await client.patch(f"/api/v1/milestones/{first['id']}", json={"status": "done"}, headers=anna)
    assert r.status_code == 200 and r.json()["completed_at"]
    r = await client.get(base, headers=world.reps["b"].auth)  # peers read it
    total = sum(m["weight"] for m in r.json()["milestones"])
    assert r.json()["progress"] == pytest.approx(first["weight"] / total, abs=1e-4)

    order = [own["id"], *[m["id"] for m in p["milestones"]]]
    r = await client.put(f"{base}/milestone-order", json={"milestone_ids": order}, headers=anna)
    assert r.status_code == 200 and r.json()["milestones"][0]["title"] == "Eigener Schritt"
    r = await client.put(f"{base}/milestone-order", json={"milestone_ids": order[:-1]}, headers=anna)
    assert r.status_code == 400

    # Only the company's own representatives change it.
    for headers in (world.reps["b"].auth, world.facilitator):
        assert (
            await client.patch(f"/api/v1/milestones/{own['id']}", json={"title": "x"}, headers=headers)
        ).status_code == 403
    r = await client.put(base, json={"title": "Fremd"}, headers=world.reps["b"].auth)
    assert r.status_code == 403
    r = await client.put(base, json={"title": "x", "project_type": "moon_base"}, headers=anna)
    assert r.status_code == 400 and "unknown type" in r.json()["detail"]

    # At most 50 milestones.
    for i in range(50 - len(order)):
        assert (await client.post(f"{base}/milestones", json={"title": f"M{i}"}, headers=anna)).status_code == 201
    r = await client.post(f"{base}/milestones", json={"title": "one too many"}, headers=anna)
    assert r.status_code == 400 and "at most 50" in r.json()["detail"]


async def test_one_report_per_company_and_cycle_edited_with_versions_and_a_private_note(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, settings: Any
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    await schedule(client, world, days=2, window_hours=100)
    p = await project(client, world, "a")
    milestone = p["milestones"][0]["id"]
    r = await post_report(
        client,
        world,
        "a",
        done=f"Buchungsseite **online** {XSS}",
        mood=4,
        facilitator_note="Personalengpass",
        milestones=[{"milestone_id": milestone, "status": "done"}],
        commitments=["Kalender anbinden"],
    )
    assert r.status_code == 201, r.text
    report = r.json()
    assert report["late"] is False and report["version"] == 1 and report["cycle_index"] == 10
    assert report["milestones"] == [{"milestone_id": milestone, "title": p["milestones"][0]["title"], "status": "done"}]
    assert [c["text"] for c in report["commitments"]] == ["Kalender anbinden"]
    assert "<strong>online</strong>" in report["done_html"]
    assert_harmless(report["done_html"])
    assert report["facilitator_note"] == "Personalengpass"

    # The milestone the report touched is now done.
    project_now = await client.get(
        f"/api/v1/convoys/{world.convoy_id}/companies/{world.reps['a'].company_id}/project",
        headers=world.reps["a"].auth,
    )
    assert project_now.json()["milestones"][0]["status"] == "done"

    # One report per company and cycle.
    r = await post_report(client, world, "a")
    assert r.status_code == 409 and "edit that report" in r.json()["detail"]

    # Peers do not see the facilitator note; the facilitator does.
    url = f"/api/v1/reports/{report['id']}"
    assert (await client.get(url, headers=world.reps["b"].auth)).json()["facilitator_note"] is None
    assert (await client.get(url, headers=world.facilitator)).json()["facilitator_note"] == "Personalengpass"

    # Edits keep the previous version; only the company edits.
    r = await client.patch(url, json={"next": "Kalender testen"}, headers=world.reps["b"].auth)
    assert r.status_code == 403
    r = await client.patch(url, json={"next": "Kalender testen"}, headers=world.reps["a"].auth)
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["next"] == "Kalender testen"
    [version] = await sql(
        settings, "SELECT version, body FROM milestones.report_versions WHERE report_id = $1", uuid.UUID(report["id"])
    )
    assert version["version"] == 1 and '"next": ""' in version["body"]

    # Once the cycle has closed, the report is final.
    await sql(
        settings, "UPDATE milestones.reports SET cycle_index = cycle_index - 1 WHERE id = $1", uuid.UUID(report["id"])
    )
    r = await client.patch(url, json={"next": "zu spät"}, headers=world.reps["a"].auth)
    assert r.status_code == 409 and "closed" in r.json()["detail"]

    # Bad references are named.
    r = await post_report(client, world, "b", milestones=[{"milestone_id": milestone, "status": "done"}])
    assert r.status_code == 400 and "milestones[0].milestone_id" in r.json()["detail"]
    r = await post_report(client, world, "b", commitments=["x" * 301])
    assert r.status_code == 400 and "commitments" in r.json()["detail"]


async def test_late_reports_commitments_and_the_board(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, settings: Any
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    await schedule(client, world, days=2, window_hours=24)  # due a day ago: reports now are late
    await project(client, world, "a")
    r = await post_report(client, world, "a", commitments=["Kalender anbinden", "Testlauf"])
    assert r.status_code == 201 and r.json()["late"] is True
    first = r.json()
    # Time passes: that report belongs to the previous cycle, and was on time.
    await sql(
        settings,
        "UPDATE milestones.reports SET cycle_index = cycle_index - 1, late = false WHERE id = $1",
        uuid.UUID(first["id"]),
    )
    await sql(
        settings,
        "UPDATE milestones.commitments SET cycle_index = cycle_index - 1 WHERE report_id = $1",
        uuid.UUID(first["id"]),
    )
    done_id, partly_id = (c["id"] for c in first["commitments"])
    r = await post_report(
        client,
        world,
        "a",
        commitment_reviews=[
            {"commitment_id": done_id, "outcome": "done"},
            {"commitment_id": partly_id, "outcome": "partly", "note": "Kunde krank"},
        ],
    )
    assert r.status_code == 201, r.text
    assert [(c["text"], c["outcome"]) for c in r.json()["reviews"]] == [
        ("Kalender anbinden", "done"),
        ("Testlauf", "partly"),
    ]
    r = await post_report(client, world, "b", commitment_reviews=[{"commitment_id": done_id, "outcome": "done"}])
    assert r.status_code == 400 and "commitment_reviews[0]" in r.json()["detail"]

    board = (await client.get(f"/api/v1/convoys/{world.convoy_id}/board", headers=world.reps["b"].auth)).json()
    assert board["cycle_index"] == 10 and board["cycles"] == 11
    a, b = (next(c for c in board["companies"] if c["company_id"] == world.reps[k].company_id) for k in ("a", "b"))
    assert a["reports"] == 2 and a["commitments_kept"] == 0.75 and a["rungs"] >= 5 and a["rung"] == 0
    assert a["streak"] == 1  # the previous cycle on time; the current one late
    assert a["missed"] == 9 and b["missed"] == 10  # closed cycles 0..9 without a report
    assert a["participation"] == pytest.approx(2 / 11, abs=1e-4)
    assert b["reports"] == 0 and b["project_title"] is None and b["commitments_kept"] is None


async def test_timeline_filters_and_pages(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    p = await project(client, world, "c")
    assert (await post_report(client, world, "a", blockers="Lieferant antwortet nicht")).status_code == 201
    assert (await post_report(client, world, "b", help_wanted=True, help_topic="Zahlungsanbieter")).status_code == 201
    r = await post_report(
        client, world, "c", milestones=[{"milestone_id": p["milestones"][0]["id"], "status": "blocked"}]
    )
    assert r.status_code == 201
    url = f"/api/v1/convoys/{world.convoy_id}/timeline"
    anna = world.reps["a"].auth

    async def names(**params: Any) -> list[str]:
        r = await client.get(url, params=params, headers=anna)
        assert r.status_code == 200, r.text
        return [x["company_name"] for x in r.json()["reports"]]

    assert await names() == ["Metallbau Stahl", "Laden Schmidt", "Sanitär Müller"]
    assert await names(company_id=world.reps["b"].company_id) == ["Laden Schmidt"]
    assert await names(help_wanted="true") == ["Laden Schmidt"]
    assert await names(blockers="true") == ["Sanitär Müller"]
    assert await names(milestone_status="blocked") == ["Metallbau Stahl"]

    seen, cursor = [], None
    for _ in range(4):
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(url, params=params, headers=anna)).json()
        seen += [x["company_name"] for x in page["reports"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["Metallbau Stahl", "Laden Schmidt", "Sanitär Müller"]
    r = await client.get(url, params={"cursor": "garbage"}, headers=anna)
    assert r.status_code == 400 and "cursor" in r.json()["detail"]


async def test_full_text_search_in_the_convoys_language(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    other = await build_world(client, smtp_sink, companies=1)
    await post_report(client, world, "a", done="Die Kalender der Mitarbeiter sind jetzt synchronisiert")
    await post_report(client, world, "b", done="Webshop-Vorlage gekauft")
    url = f"/api/v1/convoys/{world.convoy_id}/search"
    r = await client.get(url, params={"q": "Kalender"}, headers=world.reps["b"].auth)
    [hit] = r.json()["hits"]
    assert hit["company_name"] == "Sanitär Müller" and "«Kalender»" in hit["snippet"]
    r = await client.get(url, params={"q": "Mitarbeitern"}, headers=world.reps["b"].auth)  # German stemming
    assert len(r.json()["hits"]) == 1
    assert (await client.get(url, params={"q": "Kalender"}, headers=other.reps["a"].auth)).status_code == 404


async def test_comments_kudos_and_help(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    p_a = await project(client, world, "a")
    p_c = await project(client, world, "c")
    key_milestone = p_a["milestones"][2]
    # Clara's company already finished that catalogue step.
    same = next(m for m in p_c["milestones"] if m["catalogue_key"] == key_milestone["catalogue_key"])
    await client.patch(f"/api/v1/milestones/{same['id']}", json={"status": "done"}, headers=world.reps["c"].auth)
    report = (
        await post_report(
            client, world, "a", help_wanted=True, help_topic="Kalender", help_milestone_id=key_milestone["id"]
        )
    ).json()
    rid = report["id"]
    anna, ben, clara = (world.reps[k].auth for k in "abc")

    r = await client.get(f"/api/v1/reports/{rid}/help-suggestions", headers=ben)
    assert [c["name"] for c in r.json()["companies"]] == ["Metallbau Stahl"]

    # Comments, one level deep; text is sanitized.
    r = await client.post(f"/api/v1/reports/{rid}/comments", json={"body": f"Super! {XSS}"}, headers=ben)
    assert r.status_code == 201
    top = r.json()
    assert_harmless(top["body_html"])
    r = await client.post(
        f"/api/v1/reports/{rid}/comments", json={"body": "Danke", "parent_id": top["id"]}, headers=anna
    )
    assert r.status_code == 201
    r = await client.post(
        f"/api/v1/reports/{rid}/comments", json={"body": "x", "parent_id": r.json()["id"]}, headers=ben
    )
    assert r.status_code == 400 and "one level" in r.json()["detail"]
    assert (
        await client.post(f"/api/v1/reports/{rid}/comments", json={"body": "Gut so"}, headers=world.facilitator)
    ).status_code == 201
    comments = (await client.get(f"/api/v1/reports/{rid}/comments", headers=clara)).json()["comments"]
    assert [len(c["replies"]) for c in comments] == [1, 0]

    # Kudos: once per person, peers only, can be taken back.
    assert (await client.put(f"/api/v1/reports/{rid}/kudos", headers=ben)).json()["kudos"] == 1
    assert (await client.put(f"/api/v1/reports/{rid}/kudos", headers=ben)).json()["kudos"] == 1
    assert (await client.put(f"/api/v1/reports/{rid}/kudos", headers=clara)).json()["kudos"] == 2
    assert (await client.put(f"/api/v1/reports/{rid}/kudos", headers=anna)).status_code == 403
    assert (await client.put(f"/api/v1/reports/{rid}/kudos", headers=world.facilitator)).status_code == 403
    r = await client.delete(f"/api/v1/reports/{rid}/kudos", headers=clara)
    assert r.status_code == 200 and r.json()["kudos"] == 1 and r.json()["comments"] == 3

    # "I can help" tells the asker by email.
    r = await client.post(f"/api/v1/reports/{rid}/help-offers", json={"message": "Ruf an: 040 123"}, headers=clara)
    assert r.status_code == 201
    assert (await client.post(f"/api/v1/reports/{rid}/help-offers", json={}, headers=clara)).status_code == 409
    assert (await client.post(f"/api/v1/reports/{rid}/help-offers", json={}, headers=anna)).status_code == 403
    offer = await smtp_sink.wait_for_subject(world.reps["a"].email, "Hilfe")
    assert offer["Subject"] == "Clara Stahl (Metallbau Stahl) bietet Hilfe an"
    assert "Ruf an: 040 123" in text_of(offer)
    plain = (await post_report(client, world, "b")).json()
    r = await client.post(f"/api/v1/reports/{plain['id']}/help-offers", json={}, headers=clara)
    assert r.status_code == 409


async def test_export_for_members_without_private_notes(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    await post_report(client, world, "a", done='=HYPERLINK("http://evil")', facilitator_note="geheim")
    await post_report(client, world, "b", done="Webshop live")
    r = await client.get(f"/api/v1/convoys/{world.convoy_id}/export.json", headers=world.reps["a"].auth)
    reports = r.json()["reports"]
    assert len(reports) == 2 and all(x["facilitator_note"] is None for x in reports)
    r = await client.get(f"/api/v1/convoys/{world.convoy_id}/export.csv", headers=world.facilitator)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "geheim" not in r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["company_name"] for row in rows] == ["Sanitär Müller", "Laden Schmidt"]
    assert rows[0]["done"].startswith("'=")  # no formula for a spreadsheet to run


async def test_export_quotes_every_field_and_no_spreadsheet_runs_a_formula(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    """Issue #19: every field quoted; no cell starts a formula, with our commas or a German spreadsheet's `;`."""
    world = await build_world(client, smtp_sink, companies=2)
    r = await post_report(client, world, "a", done="=1+1", next="Weiter;=1+1;Ende", blockers="@SUMME(A1), -2+3")
    assert r.status_code == 201, r.text
    assert (await post_report(client, world, "b", done="Webshop live")).status_code == 201
    r = await client.get(f"/api/v1/convoys/{world.convoy_id}/export.csv", headers=world.reps["b"].auth)
    assert r.status_code == 200
    lines = r.text.splitlines()
    assert len(lines) == 3
    for line in lines:  # QUOTE_ALL: every field of every row is quoted, numbers and empty fields too
        assert line.startswith('"') and line.endswith('"') and line.count('","') == 11, line
    rows = list(csv.DictReader(io.StringIO(r.text)))
    anna = next(row for row in rows if row["company_name"] == "Sanitär Müller")
    assert anna["done"] == "'=1+1"
    assert anna["next"] == "Weiter;'=1+1;Ende"
    assert anna["blockers"] == "'@SUMME(A1), '-2+3"
    assert next(row for row in rows if row["company_name"] == "Laden Schmidt")["done"] == "Webshop live"
    formula = ("=", "+", "-", "@", "\t", "\r")
    for delimiter in (",", ";"):  # a spreadsheet splitting on either, whatever it makes of the quotes
        cells = [c.lstrip(' "') for line in lines[1:] for c in line.split(delimiter)]
        assert [c for c in cells if c[:1] in formula] == [], (delimiter, cells)
        assert any(c.startswith("'=1+1") for c in cells)


async def test_report_endpoints_by_role(client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack) -> None:
    """Every endpoint of this issue with every role and a foreign convoy's people."""
    world = await build_world(client, smtp_sink, companies=2)
    other = await build_world(client, smtp_sink, companies=1)
    await project(client, world, "a")
    report = (await post_report(client, world, "a", help_wanted=True, help_topic="x")).json()
    cid, rid, company = world.convoy_id, report["id"], world.reps["a"].company_id
    milestone = (await client.get(f"/api/v1/convoys/{cid}/companies/{company}/project", headers=ADMIN)).json()[
        "milestones"
    ][0]["id"]
    roles = report_roles(world, other)
    R = {
        "admin": 200,
        "facilitator": 200,
        "own_rep": 200,
        "peer": 200,
        "other_facilitator": 404,
        "outsider": 404,
        "anonymous": 401,
    }
    W = {
        "admin": 403,
        "facilitator": 403,
        "own_rep": 200,
        "peer": 403,
        "other_facilitator": 404,
        "outsider": 404,
        "anonymous": 401,
    }
    cases: list[tuple[str, str, Any, dict[str, int]]] = [
        ("get", f"/api/v1/convoys/{cid}/timeline", None, R),
        ("get", f"/api/v1/convoys/{cid}/reports", None, R),
        ("get", f"/api/v1/convoys/{cid}/board", None, R),
        ("get", f"/api/v1/convoys/{cid}/search?q=x", None, R),
        ("get", f"/api/v1/convoys/{cid}/export.json", None, R),
        ("get", f"/api/v1/reports/{rid}", None, R),
        ("get", f"/api/v1/reports/{rid}/comments", None, R),
        ("get", f"/api/v1/reports/{rid}/help-suggestions", None, R),
        ("get", f"/api/v1/convoys/{cid}/companies/{company}/project", None, R),
        ("patch", f"/api/v1/reports/{rid}", {"next": "n"}, W),
        ("put", f"/api/v1/convoys/{cid}/companies/{company}/project", {"title": "T"}, W),
        (
            "post",
            f"/api/v1/convoys/{cid}/companies/{company}/project/milestones",
            {"title": "M"},
            {**W, "own_rep": 201},
        ),
        ("patch", f"/api/v1/milestones/{milestone}", {"weight": 2}, W),
        (
            "post",
            f"/api/v1/convoys/{cid}/reports",
            {"done": "d", "company_id": company},
            {**W, "own_rep": 409, "admin": 403, "facilitator": 403, "peer": 403},
        ),
        (
            "post",
            f"/api/v1/reports/{rid}/comments",
            {"body": "b"},
            {**R, "admin": 403, "facilitator": 201, "own_rep": 201, "peer": 201},
        ),
        ("put", f"/api/v1/reports/{rid}/kudos", None, {**R, "admin": 403, "facilitator": 403, "own_rep": 403}),
        (
            "post",
            f"/api/v1/reports/{rid}/help-offers",
            {},
            {**R, "admin": 403, "facilitator": 403, "own_rep": 403, "peer": 201},
        ),
    ]
    failures = []
    for method, path, body, expected in cases:
        for role, headers in roles.items():
            r = await client.request(method, path, json=body, headers=headers)
            if r.status_code != expected[role]:
                failures.append(
                    f"{method.upper()} {path} as {role}: {r.status_code} (expected {expected[role]}) {r.text[:80]}"
                )
    assert failures == []


async def test_removed_representatives_lose_access_through_the_projection(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    report = (await post_report(client, world, "b")).json()
    await client.post(
        f"/api/v1/convoys/{world.convoy_id}/companies/{world.reps['b'].company_id}/removal",
        json={"reason": "Ausgeschieden"},
        headers=world.facilitator,
    )

    async def gone() -> bool:
        r = await client.get(f"/api/v1/reports/{report['id']}", headers=world.reps["b"].auth)
        return r.status_code == 404

    await eventually(gone)
    board = (await client.get(f"/api/v1/convoys/{world.convoy_id}/board", headers=world.reps["a"].auth)).json()
    assert [c["name"] for c in board["companies"]] == ["Sanitär Müller"]


async def test_a_report_right_after_joining_finds_its_company_before_the_event_does(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, settings: Any
) -> None:
    """The projection may lag: membership and company are read through from services/convoys."""
    world = await build_world(client, smtp_sink, companies=1)
    company = uuid.UUID(world.reps["a"].company_id)
    await sql(settings, "DELETE FROM milestones.members WHERE company_id = $1", company)
    await sql(settings, "DELETE FROM milestones.companies WHERE company_id = $1", company)
    r = await post_report(client, world, "a", done="Gleich nach dem Beitritt")
    assert r.status_code == 201, r.text
    assert r.json()["company_name"] == world.companies["a"]["name"]


async def test_the_post_answer_is_what_a_get_reads_back(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, settings: Any
) -> None:
    """The 201 answer is built from what was written (no read-back): field for field what the
    author's GET gives, with milestones, commitments, reviews (given out of order, one twice), help
    and Markdown; the peer's GET differs only in the facilitator note."""
    world = await build_world(client, smtp_sink, companies=2)
    await schedule(client, world, days=2, window_hours=100)
    p = await project(client, world, "a")
    first = (await post_report(client, world, "a", commitments=["Kalender anbinden", "Testlauf", "Schulung"])).json()
    for table, column in (("reports", "id"), ("commitments", "report_id")):  # last cycle's report and commitments
        await sql(
            settings,
            f"UPDATE milestones.{table} SET cycle_index = cycle_index - 1 WHERE {column} = $1",
            uuid.UUID(first["id"]),
        )
    kept, partly, dropped = (c["id"] for c in first["commitments"])
    m0, m1, m2 = (m["id"] for m in p["milestones"][:3])
    r = await post_report(
        client,
        world,
        "a",
        done=f"Buchungsseite **online** {XSS}",
        next="- Kalender\n- Zahlungen",
        blockers="Schnittstelle _fehlt_",
        help_wanted=True,
        help_topic="Zahlungsanbieter",
        help_milestone_id=m1,
        mood=3,
        facilitator_note="Personalengpass",
        milestones=[
            {"milestone_id": m2, "status": "blocked"},
            {"milestone_id": m0, "status": "done"},
            {"milestone_id": m1, "status": "in_progress"},
        ],
        commitments=["Zahlungen anbinden", "Kalender testen"],
        commitment_reviews=[
            {"commitment_id": dropped, "outcome": "not_yet", "note": "verschoben"},
            {"commitment_id": kept, "outcome": "partly"},
            {"commitment_id": partly, "outcome": "partly", "note": "Kunde krank"},
            {"commitment_id": kept, "outcome": "done"},
        ],
    )
    assert r.status_code == 201, r.text
    posted = r.json()
    url = f"/api/v1/reports/{posted['id']}"
    assert posted == (await client.get(url, headers=world.reps["a"].auth)).json()
    assert [m["milestone_id"] for m in posted["milestones"]] == [m0, m1, m2]
    assert [(c["id"], c["outcome"]) for c in posted["reviews"]] == [
        (kept, "done"),
        (partly, "partly"),
        (dropped, "not_yet"),
    ]
    assert posted["facilitator_note"] == "Personalengpass" and "<strong>online</strong>" in posted["done_html"]
    peer = (await client.get(url, headers=world.reps["b"].auth)).json()
    assert peer == {**posted, "facilitator_note": None}

    # The simplest report too (no milestones, commitments or reviews).
    r = await post_report(client, world, "b")
    assert r.status_code == 201, r.text
    assert r.json() == (await client.get(f"/api/v1/reports/{r.json()['id']}", headers=world.reps["b"].auth)).json()


async def test_a_report_whose_company_event_is_late_still_gets_its_company_name(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, settings: Any
) -> None:
    """The member is in the projection but their company is not (its company.joined still on its
    way): the report is stored and answered with the name services/convoys gives for the charter check."""
    world = await build_world(client, smtp_sink, companies=1)
    company = uuid.UUID(world.reps["a"].company_id)
    await sql(settings, "DELETE FROM milestones.companies WHERE company_id = $1", company)
    r = await post_report(client, world, "a", done="Das Ereignis kommt noch")
    assert r.status_code == 201, r.text
    assert r.json()["company_name"] == world.companies["a"]["name"]
    assert r.json() == (await client.get(f"/api/v1/reports/{r.json()['id']}", headers=world.reps["a"].auth)).json()


async def test_a_report_costs_five_statements_whatever_it_carries(settings: Any) -> None:
    """Every statement is a round trip to PostgreSQL, and round trips are what a report costs here
    (issue #21): the transaction, the membership read (share lock) that also takes the round lock, one
    read of what the report needs (seal, time, company, named milestones, open commitments), one
    statement writing the report with its commitments, milestone statuses, reviews and events (outbox
    rows and the relay's wake-up), the commit. The same five for the simplest report and for one
    carrying everything.

    Counted on milestones' own pool in one process (the bench's baseline (c) runtime: handlers called
    directly, the charter check answered by services/convoys' handler in the same process)."""
    from bench import baseline_app, data
    from schemas import api
    from schemas import events as ev
    from schemas.milestones import Milestones
    from schemas.subjects import Subjects
    from services import convoys, milestones

    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    rpc = baseline_app.LocalRpc()
    one = settings.with_(db_pool_min=1, db_pool_max=1)
    convoys_db = await baseline_app._connect(one, convoys.NAME)
    milestones_db = await baseline_app._connect(one, baseline_app.SCHEMA)
    try:
        world = await data.create_convoys(pool, 2, companies=1, start_date=datetime.now().date() - timedelta(weeks=3))
        await data.create_monolith(settings.database_url)
        await data.copy_to_monolith(pool, world.ids)
        await convoys.setup(baseline_app.LocalRuntime(settings, convoys.NAME, convoys_db, rpc))
        await milestones.setup(baseline_app.LocalRuntime(settings, baseline_app.SCHEMA, milestones_db, rpc))
        call: dict[Any, Any] = dict(rpc.handlers)
        sent: list[str] = []

        def log(q: Any) -> None:
            if "typeinfo_tree" not in q.query and "'jit'" not in q.query:  # asyncpg learning a type: once
                sent.append(q.query.split()[0])

        async def submit(rep: Any, report: api.NewReport) -> api.Report:
            async with milestones_db.connection() as conn:  # the pool's one connection
                conn.add_query_logger(log)
            sent.clear()
            try:
                answer: api.Report = await call[Milestones.REPORT_SUBMIT](
                    api.SubmitReport(actor=api.Actor(person_id=rep.person_id), convoy_id=rep.convoy_id, report=report)
                )
            finally:
                async with milestones_db.connection() as conn:
                    conn.remove_query_logger(log)
            return answer

        simple, full = world.reps
        await submit(simple, api.NewReport(done="nur Text"))
        assert sent == ["BEGIN;", "SELECT", "SELECT", "WITH", "COMMIT;"]

        actor = api.Actor(person_id=full.person_id)
        project = await call[Milestones.PROJECT_PUT](
            api.PutProject(
                actor=actor,
                convoy_id=full.convoy_id,
                company_id=full.company_id,
                project=api.ProjectIn(title="Buchung", project_type="online_booking"),
            )
        )
        earlier = await submit(full, api.NewReport(done="letzte Woche", commitments=["Kalender", "Testlauf"]))
        await sql(settings, "UPDATE monolith.reports SET cycle_index = cycle_index - 1 WHERE id = $1", earlier.id)
        await sql(
            settings, "UPDATE monolith.commitments SET cycle_index = cycle_index - 1 WHERE report_id = $1", earlier.id
        )
        m0, m1 = project.milestones[:2]
        report = await submit(
            full,
            api.NewReport(
                done="alles",
                help_wanted=True,
                help_milestone_id=m1.id,
                milestones=[
                    api.MilestoneUpdate(milestone_id=m0.id, status="done"),
                    api.MilestoneUpdate(milestone_id=m1.id, status=m1.status),
                ],
                commitments=["Zahlungen"],
                commitment_reviews=[
                    api.CommitmentReview(commitment_id=c.id, outcome="done") for c in earlier.commitments
                ],
            ),
        )
        assert sent == ["BEGIN;", "SELECT", "SELECT", "WITH", "COMMIT;"]
        # ... and all of it was written: statuses, reviews, commitments, both events.
        assert [(m.milestone_id, m.status) for m in report.milestones] == [(m0.id, "done"), (m1.id, m1.status)]
        after = await call[Milestones.PROJECT_GET](
            api.CompanyAction(actor=actor, convoy_id=full.convoy_id, company_id=full.company_id)
        )
        assert [m.status for m in after.milestones[:2]] == ["done", m1.status]
        read = await call[Milestones.REPORT_GET](api.GetReport(actor=actor, report_id=report.id))
        assert read == report
        assert [(c.id, c.outcome) for c in read.reviews] == [(c.id, "done") for c in earlier.commitments]
        assert [c.text for c in read.commitments] == ["Zahlungen"]
        [row] = await sql(
            settings,
            "SELECT array_agg(subject ORDER BY seq) AS subjects FROM monolith.outbox"
            " WHERE position(convert_to($1, 'UTF8') IN data) > 0",
            str(report.id),
        )
        names = Subjects(settings.namespace)
        assert row["subjects"] == [names.of(ev.ReportSubmitted), names.of(ev.HelpRequested)]
    finally:
        await milestones_db.close(5)
        await convoys_db.close(5)
        await pool.close()


async def test_a_reports_membership_read_takes_the_round_lock_only_after_the_membership_lock(settings: Any) -> None:
    """The report's first statement share-locks the membership rows and, on the common path, takes the
    convoy's round lock shared in the same round trip (issue #21) — in that order: a removal holding the
    membership row keeps the report from taking the round lock, so a seal waiting meanwhile is not held up
    by it; once the removal commits the report finds no membership and takes no lock. Without the charter
    accepted as projected, the statement takes no round lock (the caller asks services/convoys first and
    takes it afterwards, as before)."""
    import asyncio

    from bench import data
    from services.milestones.repository import digests, projections

    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    try:
        world = await data.create_convoys(pool, 2, companies=1, start_date=datetime.now().date() - timedelta(weeks=3))
        await data.create_monolith(settings.database_url)
        await data.copy_to_monolith(pool, world.ids)
        removed, plain = world.reps
        key = digests.round_lock_key(removed.convoy_id)

        async def advisory_locks(pid: int) -> list[tuple[int, int, str]]:
            rows = await pool.fetch(
                "SELECT classid::int, objid::int, mode FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", pid
            )
            return [tuple(r) for r in rows]

        async with pool.acquire() as report, pool.acquire() as removal:
            await report.execute("SET search_path = monolith")
            await removal.execute("SET search_path = monolith")
            # The common path: one statement, both locks.
            async with report.transaction():
                row = await projections.convoy_for(report, plain.convoy_id, plain.person_id, lock=True, round_lock=key)
                assert row is not None and row["round_locked"] is True
                assert list(row["access_companies"]) == [plain.company_id]
                held = await advisory_locks(report.get_server_pid())
                assert [mode for *_, mode in held] == ["ShareLock"]

            # A removal holds the membership row: the report waits for it without holding the round lock.
            tx = removal.transaction()
            await tx.start()
            await removal.execute(
                "DELETE FROM members WHERE convoy_id = $1 AND person_id = $2", removed.convoy_id, removed.person_id
            )
            async with report.transaction():
                waiting = asyncio.create_task(
                    projections.convoy_for(report, removed.convoy_id, removed.person_id, lock=True, round_lock=key)
                )

                async def blocked() -> bool:
                    r = await pool.fetchval(
                        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", report.get_server_pid()
                    )
                    return r == "Lock"

                await eventually(blocked)
                assert await advisory_locks(report.get_server_pid()) == []
                async with pool.acquire() as seal, seal.transaction():  # a close gets the round lock meanwhile
                    await seal.execute("SELECT pg_advisory_xact_lock($1)", key)
                await tx.commit()
                row = await waiting
                assert row is not None and list(row["access_companies"]) == [] and row["round_locked"] is None
                assert await advisory_locks(report.get_server_pid()) == []

            # Charter not accepted as projected: no round lock in the statement.
            await removal.execute(
                "UPDATE members SET charter_version = NULL WHERE convoy_id = $1 AND person_id = $2",
                plain.convoy_id,
                plain.person_id,
            )
            async with report.transaction():
                row = await projections.convoy_for(report, plain.convoy_id, plain.person_id, lock=True, round_lock=key)
                assert row is not None and list(row["access_companies"]) == [plain.company_id]
                assert row["round_locked"] is None
                assert await advisory_locks(report.get_server_pid()) == []
    finally:
        await pool.close()


async def test_kudos_emit_one_event_per_change_in_the_statement_that_writes_them(
    stack: Stack, client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    """Kudos and their event are one statement: giving twice is one ``kudos.given``, taking back twice one
    ``kudos.taken_back``, in the order of the changes; a refused kudos (own company) writes nothing."""
    import contextlib

    import nats

    from schemas import envelope as env
    from schemas import events as ev

    world = await build_world(client, smtp_sink, companies=2)
    rid = (await post_report(client, world, "a")).json()["id"]
    ben, anna = world.reps["b"].auth, world.reps["a"].auth
    steps = [("put", ben, 1), ("put", ben, 1), ("delete", ben, 0), ("delete", ben, 0), ("put", ben, 1)]
    for method, who, count in steps:
        r = await client.request(method.upper(), f"/api/v1/reports/{rid}/kudos", headers=who)
        assert r.status_code == 200 and r.json()["kudos"] == count, (method, r.text)
    assert (await client.put(f"/api/v1/reports/{rid}/kudos", headers=anna)).status_code == 403

    js = stack.nc.jetstream(timeout=10)
    sub = await js.pull_subscribe(stack.subjects.event("kudos.*"), stream=stack.subjects.events_stream)

    async def of_report() -> list[str]:
        seen: list[str] = []
        with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
            while True:
                for msg in await sub.fetch(200, timeout=1):
                    _, event = env.decode(msg.data)
                    assert isinstance(event, ev.KudosGiven | ev.KudosTakenBack)
                    if str(event.report_id) == rid:
                        seen.append(event.TYPE)
                    await msg.ack()
        return seen

    try:
        got: list[str] = []

        async def all_three() -> bool:
            got.extend(await of_report())
            return len(got) >= 3

        await eventually(all_three)
        got.extend(await of_report())  # nothing more follows
        assert got == ["kudos.given", "kudos.taken_back", "kudos.given"]
    finally:
        await sub.unsubscribe()
