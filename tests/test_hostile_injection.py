"""Issue #10, item 12: hostile text in every user field, through every way it leaves Convoy.

XSS payloads go into every text a person types (convoy, company, person names, reports, comments, projects,
milestones, join requests, skips, flags, the charter) and come back out through the pages, the emails (HTML and
text parts), Slack (mrkdwn) and the CSV export (spreadsheet formulas). SQL metacharacters go into every text field
and query parameter; oversized and deeply nested bodies are turned away early with a readable message.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from email.utils import getaddresses
from typing import Any

import httpx
import msgspec
import pytest

from services.runtime.settings import Settings
from tests.conftest import SlackStub, SmtpSink, html_of, new_token_for, text_of
from tests.world import ADMIN, Rep, World, bearer, build_world, sign_in

XSS = '"><script>alert(1)</script><img src=x onerror=alert(2)><svg/onload=alert(3)>'
"""The markup every field gets; short enough (77 characters) for a name."""
LINKS = "[x](javascript:alert(4)) <a href=javascript:alert(5)>a</a> <!channel> <https://evil.example|click>"
FORMULA = '=HYPERLINK("http://evil.example","x")'
SQL = "'; DROP TABLE reports; -- \\ % _ $1 \" ) OR 1=1 /*"

RAW_MARKUP = re.compile(
    r"<script>alert|<img src=x|<svg/onload|href=\"javascript:|<a href=javascript|\"><script", re.IGNORECASE
)


def raw_markup(html: str) -> list[str]:
    return sorted(set(RAW_MARKUP.findall(html)))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, client_requests_per_minute=100_000, invitations_per_day=100)


async def ok(response: Any) -> dict[str, Any]:
    r = await response
    assert r.status_code < 300, (str(r.request.url), r.status_code, r.text)
    body: dict[str, Any] = r.json() if r.content else {}
    return body


async def hostile_convoy(client: httpx.AsyncClient, sink: SmtpSink, slack: SlackStub) -> tuple[World, Rep, str]:
    """A convoy where every text a person can type carries XSS (and a formula where a CSV shows it)."""
    world = await build_world(client, sink, companies=2, lang_b="en")
    cid, fac = world.convoy_id, world.facilitator
    await ok(
        client.patch(
            f"/api/v1/convoys/{cid}",
            json={"name": f"Nord {XSS}", "theme": f"{FORMULA}{XSS}", "description": f"{XSS} {LINKS}"},
            headers=fac,
        )
    )
    await ok(client.post(f"/api/v1/convoys/{cid}/status", json={"status": "active"}, headers=fac))
    await ok(
        client.put(f"/api/v1/convoys/{cid}/slack", json={"webhook_url": slack.url(), "post_reports": True}, headers=fac)
    )
    company = await ok(
        client.post(
            f"/api/v1/convoys/{cid}/companies",
            json={"name": f"{FORMULA}{XSS}"[:200], "sector": f"@SUM(1){XSS}", "region": "HH"},
            headers=fac,
        )
    )
    email = f"mallory-{uuid.uuid4().hex[:6]}@evil.example"
    await ok(
        client.post(
            f"/api/v1/convoys/{cid}/companies/{company['id']}/invitations",
            json={"email": email, "name": f"+Mallory {XSS}"},
            headers=fac,
        )
    )
    token = await new_token_for(sink, email, "cvi_", set())
    accepted = await ok(client.post("/api/v1/invitations/accept", json={"token": token, "name": f"-Mallory {XSS}"}))
    client.cookies.clear()
    mallory = Rep(accepted["person"]["id"], email, accepted["access_token"], company["id"])

    project = await ok(
        client.put(
            f"/api/v1/convoys/{cid}/companies/{company['id']}/project",
            json={"title": f"@Projekt {XSS}", "goal": f"{XSS} {LINKS}"},
            headers=mallory.auth,
        )
    )
    _ = project
    milestone = await ok(
        client.post(
            f"/api/v1/convoys/{cid}/companies/{company['id']}/project/milestones",
            json={"title": f"={XSS}"[:200]},
            headers=mallory.auth,
        )
    )
    report = await ok(
        client.post(
            f"/api/v1/convoys/{cid}/reports",
            json={
                "done": f"{FORMULA} {XSS} {LINKS} *bold* _it_",
                "next": f"+SUM(1,2) {XSS}",
                "blockers": f"-2+3 {XSS} {LINKS}",
                "help_wanted": True,
                "help_topic": f"@cmd {XSS}"[:200],
                "mood": 2,
                "commitments": [f"={XSS}"],
                "milestones": [{"milestone_id": milestone["id"], "status": "done"}],
            },
            headers=mallory.auth,
        )
    )
    await ok(
        client.post(
            f"/api/v1/reports/{report['id']}/comments", json={"body": f"{XSS} {LINKS}"}, headers=world.reps["a"].auth
        )
    )
    await ok(
        client.post(
            f"/api/v1/reports/{report['id']}/flags", json={"reason": "other", "note": XSS}, headers=world.reps["a"].auth
        )
    )
    await ok(client.put(f"/api/v1/convoys/{cid}/charter", json={"text": f"{XSS} {LINKS}"}, headers=fac))
    return world, mallory, report["id"]


@pytest.mark.timeout(300)
async def test_xss_in_every_field_comes_out_escaped_everywhere(
    client: httpx.AsyncClient,
    smtp_sink: SmtpSink,
    slack_stub: SlackStub,
    browsers: list[httpx.AsyncClient],
) -> None:
    world, mallory, report_id = await hostile_convoy(client, smtp_sink, slack_stub)
    cid = world.convoy_id
    facilitator_email = (await client.get("/api/v1/me", headers=world.facilitator)).json()["person"]["email"]

    # Pages, as the facilitator, a peer and the author.
    pages = [
        "/",
        f"/convoys/{cid}",
        f"/convoys/{cid}/search?q=alert",
        f"/reports/{report_id}",
        f"/reports/{report_id}/comments",
        f"/convoys/{cid}/schedule",
        f"/convoys/{cid}/charter",
        "/profile",
    ]
    representative_pages = [f"/convoys/{cid}/report"]
    facilitator_pages = [f"/convoys/{cid}/manage", f"/convoys/{cid}/audit", f"/convoys/{cid}/flags", "/facilitate"]
    seen = 0
    found: dict[str, list[str]] = {}
    for email, paths in (
        (facilitator_email, pages + facilitator_pages),
        (world.reps["a"].email, pages + representative_pages),
        (mallory.email, [*pages, *representative_pages, f"/convoys/{cid}/project"]),
    ):
        b = httpx.AsyncClient(base_url=client.base_url, timeout=20)
        browsers.append(b)
        await sign_in(b, smtp_sink, email)
        charter = await b.get(f"/convoys/{cid}/charter")
        version = re.search(r'name="version" value="(\d+)"', charter.text)
        csrf = re.search(r'name="_csrf" value="([^"]+)"', charter.text)
        if version and csrf:  # representatives accept the changed charter before they see the convoy
            await b.post(f"/convoys/{cid}/charter/accept", data={"version": version.group(1), "_csrf": csrf.group(1)})
        for path in paths:
            page = await b.get(path)
            assert page.status_code == 200, (email, path, page.status_code, page.text[:300])
            seen += 1
            if bad := raw_markup(page.text):
                found[f"page {path} ({email})"] = bad
    assert "alert(1)" in (await b.get(f"/reports/{report_id}")).text  # the text is there, escaped

    # Emails: the report notification to the peers, invitations, flags, the charter ... every one sent.
    await smtp_sink.wait_for_mail_to(world.reps["a"].email, 2)
    assert len(smtp_sink.messages) > 5
    for message in smtp_sink.messages:
        subject = str(message["Subject"])
        if bad := raw_markup(html_of(message)):
            found[f"email html {subject!r}"] = bad
        recipients = getaddresses(message.get_all("To", []) + message.get_all("Cc", []) + message.get_all("Bcc", []))
        assert len(recipients) == 1, (subject, recipients)  # no header injection through names
        assert "\n" not in subject
        _ = text_of(message)  # a text part exists (plain text needs no escaping; it is never rendered)

    # Slack: no mention, no link, no markup from user text.
    [post, *_] = await slack_stub.wait_for(1)
    for post in slack_stub.posts:
        rendered = json.dumps(post, ensure_ascii=False)
        assert "<!channel>" not in rendered and "<https://evil.example" not in rendered, rendered
        assert "&lt;!channel&gt;" in rendered

    # CSV: no cell a spreadsheet would run as a formula.
    export = await client.get(f"/api/v1/convoys/{cid}/export.csv", headers=world.reps["a"].auth)
    assert export.status_code == 200
    rows = list(csv.reader(io.StringIO(export.text)))
    cells = [cell for row in rows[1:] for cell in row]
    assert any(FORMULA in cell for cell in cells), rows
    formulas = [cell for cell in cells if cell.lstrip()[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert formulas == [], formulas
    assert found == {}, found
    print(f"\nescaping: {seen} pages, {len(smtp_sink.messages)} emails, {len(slack_stub.posts)} Slack posts")


SQL_TEXTS = [
    SQL,
    "Robert'); DROP TABLE convoys.people;--",
    "1' OR '1'='1",
    "%' UNION SELECT secret FROM tokens --",
    "\\x00\\\\ E'\\\\' :* & | ! <-> ( ) '",
    "ü'ß\"€ 𝄞 \u202e gnp.exe",
]


@pytest.mark.timeout(300)
async def test_sql_metacharacters_are_data_everywhere(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    cid, anna = world.convoy_id, world.reps["a"]
    r = await client.post(
        f"/api/v1/convoys/{cid}/companies", json={"name": SQL, "sector": SQL}, headers=world.facilitator
    )
    assert r.status_code == 201 and r.json()["name"] == SQL
    r = await client.patch(f"/api/v1/convoys/{cid}", json={"name": SQL, "description": SQL}, headers=world.facilitator)
    assert r.status_code == 200 and r.json()["name"] == SQL
    report = await ok(
        client.post(
            f"/api/v1/convoys/{cid}/reports",
            json={"done": " ".join(SQL_TEXTS), "next": SQL, "blockers": SQL, "help_topic": SQL, "commitments": [SQL]},
            headers=anna.auth,
        )
    )
    assert report["done"] == " ".join(SQL_TEXTS) and report["next"] == SQL
    comment = await ok(client.post(f"/api/v1/reports/{report['id']}/comments", json={"body": SQL}, headers=anna.auth))
    assert comment["body"] == SQL
    r = await client.patch("/api/v1/me", json={"name": SQL}, headers=anna.auth)
    assert r.status_code == 200 and r.json()["person"]["name"] == SQL

    # Every query parameter: answered (200, or a 400 that names it), never a 500, never more than the convoy's.
    statuses = []
    for text in [*SQL_TEXTS, "DROP", "'", "\\", "%", "*", "a & b", "!x", "(x", "x:*"]:
        r = await client.get(f"/api/v1/convoys/{cid}/search", params={"q": text}, headers=anna.auth)
        statuses.append(r.status_code)
        assert r.status_code == 200, (text, r.text)
        assert all(hit["report_id"] == report["id"] for hit in r.json().get("hits", r.json().get("results", [])))
        for name, value in (("cursor", text), ("company_id", text), ("milestone_status", text), ("limit", text)):
            r = await client.get(f"/api/v1/convoys/{cid}/timeline", params={name: value}, headers=anna.auth)
            statuses.append(r.status_code)
            assert r.status_code in (200, 400), (name, text, r.text)
            if r.status_code == 400:
                assert r.json()["detail"], r.text
        for path, name in (
            ("reports", "limit"),
            ("audit", "limit"),
            ("join-requests", "status"),
            ("schedule", "upcoming"),
        ):
            r = await client.get(f"/api/v1/convoys/{cid}/{path}", params={name: text}, headers=world.facilitator)
            statuses.append(r.status_code)
            assert r.status_code in (200, 400), (path, name, text, r.text)
    r = await client.get(f"/api/v1/convoys/{cid}/search", params={"q": "DROP"}, headers=anna.auth)
    assert r.status_code == 200 and r.text.count(report["id"]) >= 1
    # The tables are all still there.
    assert (await client.get(f"/api/v1/convoys/{cid}", headers=ADMIN)).json()["name"] == SQL
    print(f"\nSQL metacharacters: {len(statuses)} queries, statuses {sorted(set(statuses))}")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("nul \u0000 byte", id="nul"),
        pytest.param("lone surrogate \udcff", id="surrogate"),
        pytest.param("bidi \u202e and bell \u0007", id="control"),
    ],
)
async def test_text_postgresql_cannot_store_is_refused_not_a_500(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, text: str
) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    cid, anna = world.convoy_id, world.reps["a"]
    attempts = [
        ("post", f"/api/v1/convoys/{cid}/reports", {"done": text}, anna.auth),
        ("patch", f"/api/v1/convoys/{cid}", {"name": text}, world.facilitator),
        ("post", f"/api/v1/convoys/{cid}/companies", {"name": text}, world.facilitator),
        ("patch", "/api/v1/me", {"name": text}, anna.auth),
        ("post", "/api/v1/auth/sign-in", {"email": f"a{text}@x.example"}, {}),
    ]
    for method, path, body, headers in attempts:
        content = json.dumps(body, ensure_ascii=True).encode()  # \u escapes: JSON can carry what UTF-8 cannot
        r = await client.request(method, path, content=content, headers={**headers, "content-type": "application/json"})
        assert r.status_code < 500, (path, r.status_code, r.text)
        assert r.status_code in (200, 201, 202, 400), (path, r.status_code, r.text)
        if r.status_code == 400:
            assert r.json()["detail"], r.text
    if "\udcff" not in text:  # a URL cannot carry a lone surrogate at all
        r = await client.get(f"/api/v1/convoys/{cid}/search", params={"q": text}, headers=anna.auth)
        assert r.status_code in (200, 400), r.text


async def test_oversized_and_deeply_nested_bodies_are_turned_away_early(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    cid, anna = world.convoy_id, world.reps["a"]
    json_headers = {**anna.auth, "content-type": "application/json"}
    url = f"/api/v1/convoys/{cid}/reports"

    huge = json.dumps({"done": "x" * 2_000_000}).encode()
    r = await client.post(url, content=huge, headers=json_headers)
    assert r.status_code == 413 and r.json()["detail"], r.text
    r = await client.post("/api/v1/auth/sign-in", content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    r = await client.post(
        f"/convoys/{cid}/report",
        content=b"done=" + b"x" * 2_000_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413, r.status_code

    for depth in (1_000, 100_000):
        nested = b"[" * depth + b"]" * depth
        for body in (nested, b'{"done": ' + nested + b"}", b'{"milestones": ' + nested + b"}"):
            r = await client.post(url, content=body, headers=json_headers)
            assert r.status_code == 400 and r.json()["detail"], (depth, body[:20], r.status_code, r.text[:200])
    # A long but legal body still works: the limits are not in the way of real reports.
    r = await client.post(url, json={"done": "x" * 20_000, "next": "y" * 5000}, headers=anna.auth)
    assert r.status_code == 201, r.text
    _ = bearer
