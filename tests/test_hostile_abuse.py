"""Issue #10, item 14: abuse of the endpoints anyone may call, of tokens, of sessions and of forms.

Sign-in links and invitations are rate-limited per address and per client; one-time tokens are single-use,
expire and cannot be guessed; a session cookie planted before sign-in is never the one after it; every unsafe page
route (generated from the route table) and every unsafe API route refuses a session without its CSRF token.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections import Counter
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from services.runtime.settings import Settings
from tests.conftest import SmtpSink, eventually, new_token_for, text_of, token_in, tokens_for
from tests.hostile_world import build_rich_world
from tests.test_hostile_authz import EXTRA_PARAMS, OBJECT_ALIASES, PUBLIC, example_body, fill, route_table
from tests.world import ADMIN, build_world, sign_in


def entropy_bits(secret: str) -> float:
    """Shannon entropy of the characters times the length: a rough floor for how guessable it is."""
    counts = Counter(secret)
    per_char = -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values())
    return per_char * len(secret)


async def test_public_endpoints_are_rate_limited_per_client(client: httpx.AsyncClient, settings: Settings) -> None:
    limit = settings.client_requests_per_minute
    calls = [
        ("/api/v1/auth/sign-in", lambda i: {"email": f"x{i}@flood.example"}),
        ("/api/v1/auth/sign-in/complete", lambda i: {"token": f"cvl_{'x' * 40}{i}"}),
        ("/api/v1/invitations/preview", lambda i: {"token": f"cvi_{'x' * 40}{i}"}),
        ("/api/v1/invitations/accept", lambda i: {"token": f"cvi_{'x' * 40}{i}", "name": "X"}),
    ]
    statuses = []
    for i in range(limit):
        path, body = calls[i % len(calls)]
        statuses.append((await client.post(path, json=body(i))).status_code)
    assert 429 not in statuses, statuses
    for path, body in calls:  # the client's budget is spent: every public endpoint now refuses it
        r = await client.post(path, json=body(999))
        assert r.status_code == 429 and "too many" in r.json()["detail"], (path, r.text)
    r = await client.post("/sign-in", data={"email": "page@flood.example"})
    assert r.status_code == 429


async def test_a_sign_in_flood_from_one_client_neither_locks_her_out_nor_fills_her_inbox(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, settings: Settings
) -> None:
    """Issue #19: above the cap (per address and client) the same 202, and nothing sent; her own client still
    gets a link. Client A is this test's client (127.0.0.1), client B a second one from 127.0.0.2."""
    email = "frieda-flood@zentrum.example"
    r = await client.post(
        "/api/v1/facilitators", json={"name": "Frieda Berater", "email": email, "language": "de"}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    cap = settings.sign_in_requests_per_hour
    for i in range(cap):
        r = await client.post("/api/v1/auth/sign-in", json={"email": email, "next": f"/from-a-{i}"})
        assert r.status_code == 202, r.text

    async def links(count: int) -> bool:
        assert len(tokens_for(smtp_sink, email, "cvl_")) == count
        return True

    await eventually(lambda: links(cap))
    flood = await client.post("/api/v1/auth/sign-in", json={"email": email, "next": "/from-a-over"})
    page = await client.post("/sign-in", data={"email": email, "next": "/from-a-page"})  # the page: the same
    assert flood.status_code == 202 and flood.json() == r.json()
    assert page.status_code == 200 and "429" not in page.text
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=client.base_url, transport=transport, timeout=20) as her_client:
        r = await her_client.post("/api/v1/auth/sign-in", json={"email": email, "next": "/from-b"})
        assert r.status_code == 202, r.text
        await eventually(lambda: links(cap + 1))
        texts = [text_of(m) for m in smtp_sink.to(email)]
        [hers] = [t for t in texts if "next=/from-b" in t or "next=%2Ffrom-b" in t]
        assert not [t for t in texts if "from-a-over" in t or "from-a-page" in t]
        [token] = re.findall(r"cvl_[A-Za-z0-9_-]{20,}", hers)
        r = await her_client.post("/api/v1/auth/sign-in/complete", json={"token": token})
        assert r.status_code == 200 and r.json()["person"]["email"] == email, r.text
    # What is stored to count clients is a keyed hash, never the address.
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT client_hash FROM convoys.sign_in_requests WHERE email_hash = $1",
            hashlib.sha256(email.encode()).digest(),
        )
    finally:
        await conn.close()
    clients = Counter(bytes(row["client_hash"]) for row in rows)
    assert sorted(clients.values()) == [1, cap + 2], clients  # A: the cap, the flood, the page; B: one
    assert all(len(c) == 16 and b"127.0.0" not in c for c in clients), clients


async def test_anonymous_join_and_pool_requests_are_capped_per_client_and_day(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, settings: Settings
) -> None:
    """Issue #19: one client cannot flood the queues (and the facilitators' inboxes) with anonymous requests."""
    world = await build_world(client, smtp_sink, companies=1, open_=True)
    cap = settings.anonymous_requests_per_client_per_day
    assert cap < settings.client_requests_per_minute  # this is the daily cap at work, not the per-minute one

    def ask(c: httpx.AsyncClient, i: int) -> Any:
        return c.post(
            f"/api/v1/open-convoys/{world.convoy_id}/join-requests",
            json={"company": {"name": f"Flut {i}"}, "contact_name": "Eve", "contact_email": f"eve{i}@flood.example"},
        )

    def from_(address: str) -> httpx.AsyncClient:  # a client of its own (its own per-minute budget, too)
        transport = httpx.AsyncHTTPTransport(local_address=address)
        return httpx.AsyncClient(base_url=client.base_url, transport=transport, timeout=20)

    async with from_("127.0.0.3") as flooder:
        statuses = [(await ask(flooder, i)).status_code for i in range(cap + 1)]
        assert statuses == [202] * cap + [429], statuses
        r = await flooder.post(f"/api/v1/check/{uuid.uuid4()}/join", json={})  # the pool shares the cap
        assert r.status_code == 429 and "today" in r.json()["detail"]
    async with from_("127.0.0.2") as other:
        assert (await ask(other, cap + 1)).status_code == 202  # another client is not affected
    r = await client.get(f"/api/v1/convoys/{world.convoy_id}/join-requests", headers=world.facilitator)
    assert len(r.json()["requests"]) == cap + 1


async def test_invitations_to_one_address_are_limited(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, settings: Settings
) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    url = f"/api/v1/convoys/{world.convoy_id}/companies/{world.companies['a']['id']}/invitations"
    statuses = [
        (await client.post(url, json={"email": "target@victim.example"}, headers=world.facilitator)).status_code
        for _ in range(settings.invitations_per_day + 1)
    ]
    assert statuses[:-1] == [201] * settings.invitations_per_day and statuses[-1] == 429, statuses
    await smtp_sink.wait_for_mail_to("target@victim.example", settings.invitations_per_day)


async def test_one_time_tokens_are_long_random_and_single_use(client: httpx.AsyncClient, smtp_sink: SmtpSink) -> None:
    world = await build_world(client, smtp_sink, companies=1)
    email = world.reps["a"].email
    links: list[str] = []
    for _ in range(3):
        seen = tokens_for(smtp_sink, email, "cvl_")
        assert (await client.post("/api/v1/auth/sign-in", json={"email": email})).status_code == 202
        links.append(await new_token_for(smtp_sink, email, "cvl_", seen))
    invitation = token_in(smtp_sink.to(email)[0], "cvi_")
    results = []
    for link in links:
        r = await client.post("/api/v1/auth/sign-in/complete", json={"token": link})
        assert r.status_code == 200
        results.append(r.json())
        client.cookies.clear()
    secrets = [*links, invitation, *(r["access_token"] for r in results), *(r["csrf_token"] for r in results)]
    assert len(set(secrets)) == len(secrets)
    for secret in secrets:
        body = secret.split("_", 1)[1] if secret[:4] in ("cvl_", "cvi_", "cva_") else secret
        assert re.fullmatch(r"[A-Za-z0-9_-]{32,}", body), secret
        assert entropy_bits(body) >= 128, secret  # 32 random bytes carry 256 bits; no pattern cuts that below 128
    # Single use: each link again, a link as an access token, a truncated link.
    for link in links:
        again = await client.post("/api/v1/auth/sign-in/complete", json={"token": link})
        assert again.status_code == 410
        assert (await client.get("/api/v1/me", headers={"Authorization": f"Bearer {link}"})).status_code == 401
    r = await client.post("/api/v1/auth/sign-in/complete", json={"token": links[0][:-1]})
    assert r.status_code in (404, 410)
    r = await client.post("/api/v1/invitations/accept", json={"token": invitation, "name": "Again"})
    assert r.status_code == 410


async def test_a_session_planted_before_sign_in_is_not_the_one_after_it(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, browsers: list[httpx.AsyncClient]
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    attacker = httpx.AsyncClient(base_url=client.base_url, timeout=20)
    victim = httpx.AsyncClient(base_url=client.base_url, timeout=20)
    browsers += [attacker, victim]
    await sign_in(attacker, smtp_sink, world.reps["b"].email)
    planted = attacker.cookies.get("convoy_session")
    assert planted

    for cookie in (planted, "cvs_" + "A" * 43, "chosen-by-the-attacker"):
        victim.cookies.clear()
        victim.cookies.set("convoy_session", cookie)
        seen = tokens_for(smtp_sink, world.reps["a"].email, "cvl_")
        r = await client.post("/api/v1/auth/sign-in", json={"email": world.reps["a"].email})
        assert r.status_code == 202
        token = await new_token_for(smtp_sink, world.reps["a"].email, "cvl_", seen)
        # (With a live session planted, the sign-in form asks for that session's CSRF token: the page refuses.)
        r = await victim.post("/api/v1/auth/sign-in/complete", json={"token": token})
        assert r.status_code == 200, r.text
        issued = next(h for h in r.headers.get_list("set-cookie") if h.startswith("convoy_session="))
        fresh = issued.split("=", 1)[1].split(";", 1)[0]
        assert fresh != cookie and fresh.startswith("cvs_")
        # The planted cookie (the attacker's own session, or nothing) still is not the victim.
        me = await attacker.get("/api/v1/me")
        assert me.status_code == 200 and me.json()["person"]["email"] == world.reps["b"].email
        mine = await victim.get("/api/v1/me")
        assert mine.json()["person"]["email"] == world.reps["a"].email


def unsafe(method: str) -> bool:
    return method in ("POST", "PUT", "PATCH", "DELETE")


@pytest.mark.timeout(300)
async def test_every_unsafe_route_refuses_a_session_without_its_csrf_token(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, settings: Settings, browsers: list[httpx.AsyncClient]
) -> None:
    rich = await build_rich_world(client, smtp_sink, open_=True)
    document = (await client.get("/schema/openapi.json")).json()
    facilitator_email = (await client.get("/api/v1/me", headers=rich.facilitator)).json()["person"]["email"]
    people = {}
    for role, email in (("facilitator", facilitator_email), ("representative", rich.world.reps["a"].email)):
        b = httpx.AsyncClient(base_url=client.base_url, timeout=20)
        browsers.append(b)
        await sign_in(b, smtp_sink, email)
        people[role] = b
    routes = sorted((m, p) for m, p in route_table(settings) if unsafe(m) and (m, p) not in PUBLIC)
    assert routes
    failures = []
    checked = 0
    known = set(rich.ids) | set(EXTRA_PARAMS) | set(OBJECT_ALIASES)
    for method, path in routes:
        if any(name not in known for name in re.findall(r"{(\w+)}", path)):
            failures.append(f"{method} {path}: cannot fill its path")
            continue
        url = fill(path, rich.ids)
        for role, b in people.items():
            for sent in ({}, {"_csrf": "wrong"}):
                checked += 1
                if path.startswith("/api/"):
                    headers = {"X-CSRF-Token": sent["_csrf"]} if sent else {}
                    r = await b.request(method, url, json=example_body(document, method, path), headers=headers)
                else:
                    r = await b.request(method, url, data=sent)
                if r.status_code != 403:
                    failures.append(f"{method} {url} as {role} with {sent or 'no token'}: {r.status_code}")
    # Forms anyone may send are refused from another site (login CSRF).
    # A browser without Sec-Fetch-Site (before 2023) still names the Origin of a cross-site POST.
    foreign = ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}, {"Origin": "null"})
    for path in ("/sign-in", "/language"):
        for headers in foreign:
            r = await client.post(path, data={"email": "x@y.example"}, headers=headers)
            checked += 1
            if r.status_code != 403:
                failures.append(f"POST {path} with {headers}: {r.status_code}")
    own = str(client.base_url).rstrip("/")
    for headers in ({"Origin": own}, {"Sec-Fetch-Site": "same-origin", "Origin": own}):
        r = await client.post("/language", data={"lang": "de"}, headers=headers)
        if r.status_code >= 400:
            failures.append(f"POST /language from our own page with {headers}: {r.status_code}")
    print(f"\nCSRF: {len(routes)} unsafe routes, {checked} refusals checked")
    assert failures == [], "\n".join(failures)
    _: Any = (uuid, msgspec)
