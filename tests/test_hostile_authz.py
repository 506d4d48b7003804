"""Issue #10, item 11: the authorization matrix, generated from the application's route table.

Every route the Litestar app serves (JSON API and pages) is classified here as public, about the caller only
(``ACCOUNT``), or about objects named by its path parameters. Each object route is called as each role of one
convoy against the objects of *another* convoy (and, for a convoy's own path, with another convoy's objects inside
it) and must be refused: 401 / 403 / 404, a page sends the stranger to sign in. A route this file cannot classify,
or a path parameter it cannot fill, fails the test: a new endpoint cannot slip in without a check.

The observer persona (issue #22) is checked inside its own convoy too: every read a member may make answers
200, every change and every facilitator-only read answers 403 (``FACILITATOR_READS``, ``REPRESENTATIVE_PAGES``).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import msgspec
import pytest

from convoy_api.app import create_app
from services.runtime.settings import Settings
from tests.conftest import SmtpSink
from tests.hostile_world import Rich, build_rich_world
from tests.world import ADMIN, sign_in

PUBLIC = {
    # operations
    ("GET", "/health"),
    ("GET", "/favicon.ico"),
    # signing in, invitations, joining, the catalogue: anyone, rate-limited per client
    ("POST", "/api/v1/auth/sign-in"),
    ("POST", "/api/v1/auth/sign-in/complete"),
    ("POST", "/api/v1/invitations/preview"),
    ("POST", "/api/v1/invitations/accept"),
    ("GET", "/api/v1/open-convoys"),
    ("POST", "/api/v1/open-convoys/{convoy_id}/join-requests"),
    ("GET", "/api/v1/catalogue"),
    # ends whatever session or token it is sent with; without one there is nothing to end (200 all the same)
    ("POST", "/api/v1/auth/sign-out"),
    # the signed link in every notification email
    ("GET", "/unsubscribe/{token}"),
    ("POST", "/unsubscribe/{token}"),
    # the signed withdraw link of the pool confirmation email (GET shows, POST deletes the contact)
    ("GET", "/check/withdraw/{token}"),
    ("POST", "/check/withdraw/{token}"),
    # calendar feeds: calendar apps cannot sign in; the random token in the address is the key (404 otherwise)
    ("GET", "/calendar/{name}"),
    # the digitalisation check: anonymous; a result is read by whoever holds its (random) id
    ("GET", "/api/v1/check/questions"),
    ("POST", "/api/v1/check"),
    ("GET", "/api/v1/check/{check_id}"),
    ("POST", "/api/v1/check/{check_id}/join"),
    ("DELETE", "/api/v1/check/{check_id}/join"),  # taking a contact back: the same link that left it
    ("GET", "/check"),
    ("POST", "/check"),
    ("GET", "/check/{check_id}"),
    ("POST", "/check/{check_id}/join"),
    # pages anyone may see
    ("GET", "/sign-in"),
    ("POST", "/sign-in"),
    ("GET", "/sign-in/{token}"),
    ("POST", "/sign-in/{token}"),
    ("GET", "/invitations/{token}"),
    ("POST", "/invitations/{token}"),
    ("POST", "/language"),
    ("POST", "/preview"),
    ("GET", "/static/{file_path}"),
    ("GET", "/dev/mail"),
    ("GET", "/dev/mail/{key}"),
}
"""Endpoints that need no sign-in, on purpose. Adding one here is a decision; write down why."""

ACCOUNT = {
    # about the caller only: anonymous is refused, a signed-in person reaches only their own things
    ("GET", "/api/v1/me"),
    ("PATCH", "/api/v1/me"),
    ("DELETE", "/api/v1/me"),
    ("GET", "/api/v1/me/tokens"),
    ("POST", "/api/v1/me/tokens"),
    ("GET", "/api/v1/me/notifications"),
    ("PUT", "/api/v1/me/notifications"),
    ("GET", "/api/v1/me/export"),
    ("GET", "/api/v1/me/calendar"),
    ("POST", "/api/v1/me/calendar"),
    ("DELETE", "/api/v1/me/calendar"),
    ("POST", "/api/v1/convoys"),  # facilitators only
    ("POST", "/api/v1/facilitators"),  # the admin only
    ("GET", "/metrics"),  # the admin token only (or CONVOY_OPS_PORT)
    ("GET", "/metrics/{service}"),
    ("GET", "/api/v1/pool"),  # facilitators only: the formation pool and programme figures
    ("POST", "/api/v1/pool/convoys"),
    ("GET", "/api/v1/programme"),
    ("GET", "/api/v1/programme.csv"),
    ("GET", "/pool"),
    ("POST", "/pool"),
    ("GET", "/programme"),
    ("GET", "/"),
    ("GET", "/facilitate"),
    ("GET", "/convoys/new"),
    ("POST", "/convoys/new"),
    ("GET", "/profile"),
    ("POST", "/profile"),
    ("POST", "/profile/notifications"),
    ("POST", "/profile/tokens"),
    ("POST", "/profile/delete"),
    ("POST", "/profile/calendar"),
    ("POST", "/profile/calendar/revoke"),
    ("POST", "/sign-out"),
}

COMPANY_OWNED = {
    # writes only the company's own representatives may make: a representative of another company of the
    # same convoy is refused too
    ("PUT", "/api/v1/convoys/{convoy_id}/companies/{company_id}/project"),
    ("POST", "/api/v1/convoys/{convoy_id}/companies/{company_id}/project/milestones"),
    ("PUT", "/api/v1/convoys/{convoy_id}/companies/{company_id}/project/milestone-order"),
    ("POST", "/api/v1/convoys/{convoy_id}/companies/{company_id}/skips"),
    ("PATCH", "/api/v1/milestones/{milestone_id}"),
    ("PATCH", "/api/v1/reports/{report_id}"),
}

AUTHOR_OWNED = {
    # a comment's own author only (within the edit window): another representative and the convoy's
    # facilitator are refused (403; facilitators hide instead of deleting)
    ("PATCH", "/api/v1/comments/{comment_id}"),
    ("DELETE", "/api/v1/comments/{comment_id}"),
}

FACILITATORS_ONLY = {
    ("POST", "/api/v1/convoys"),
    ("POST", "/api/v1/facilitators"),
    ("GET", "/api/v1/pool"),
    ("POST", "/api/v1/pool/convoys"),
    ("GET", "/api/v1/programme"),
    ("GET", "/api/v1/programme.csv"),
}
"""ACCOUNT routes a representative is refused (403)."""

FACILITATOR_READS = {
    # reads a convoy's facilitators make and its members (and observers) may not: 403 inside the convoy
    ("GET", "/api/v1/convoys/{convoy_id}/audit"),
    ("GET", "/api/v1/convoys/{convoy_id}/flags"),
    ("GET", "/api/v1/convoys/{convoy_id}/join-requests"),
    ("GET", "/api/v1/convoys/{convoy_id}/invitations"),
    ("GET", "/convoys/{convoy_id}/manage"),
    ("GET", "/convoys/{convoy_id}/audit"),
    ("GET", "/convoys/{convoy_id}/flags"),
    ("GET", "/convoys/{convoy_id}/schedule/prompt-now"),  # the confirmation pages before a round opens or closes
    ("GET", "/convoys/{convoy_id}/schedule/close-now"),
}
REPRESENTATIVE_PAGES = {
    # a company's own forms (report, project): an observer reports for no company
    ("GET", "/convoys/{convoy_id}/report"),
    ("GET", "/convoys/{convoy_id}/project"),
}
NOT_IN_A_CONVOY = {
    # the caller's own API tokens: someone else's token is "not found" for everyone (404)
    ("DELETE", "/api/v1/me/tokens/{token_id}"),
    ("POST", "/profile/tokens/{token_id}/revoke"),
}

EXTRA_PARAMS = {"action": "hide", "object_type": "report", "service": "notifier"}
"""Path parameters that name no object (page actions)."""
OBJECT_ALIASES = {"object_id": "report_id"}

REFUSED_API = {401, 403, 404}
REFUSED_PAGE = {303, 401, 403, 404}  # 303: to the sign-in page
REFUSED_PAGE_ANONYMOUS = {303, 404}  # a few convoy pages answer a stranger 404 before asking them to sign in


def _schema_free(path: str) -> str:
    return re.sub(r"{(\w+):\w+}", r"{\1}", path).rstrip("/") or "/"


def route_table(settings: Settings) -> set[tuple[str, str]]:
    app = create_app(msgspec.structs.replace(settings, dev_mail_viewer=True))
    return {
        (method, _schema_free(route.path))
        for route in app.routes
        for method in getattr(route, "methods", ())
        if method not in ("HEAD", "OPTIONS") and not route.path.startswith("/schema")
    }


def params_of(path: str) -> list[str]:
    return re.findall(r"{(\w+)}", path)


def fill(path: str, ids: dict[str, str], inner: dict[str, str] | None = None) -> str:
    """The path with every parameter taken from ``ids`` (``inner`` for all but convoy_id, when given)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in EXTRA_PARAMS:
            return EXTRA_PARAMS[name]
        source = ids if inner is None or name == "convoy_id" else inner
        return source[OBJECT_ALIASES.get(name, name)]

    return re.sub(r"{(\w+)}", value, path)


def example_body(document: dict[str, Any], method: str, path: str) -> Any:
    """The request body's first example in the OpenAPI document (every body has one)."""
    operation = document["paths"].get(path, {}).get(method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    if content.get("examples"):
        return next(iter(content["examples"].values()))["value"]
    return content["schema"]["examples"][0]


def example_query(document: dict[str, Any], method: str, path: str) -> dict[str, str]:
    operation = document["paths"].get(path, {}).get(method.lower(), {})
    query = {}
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query" and parameter.get("required"):
            schema = parameter["schema"]
            if schema.get("type") == "integer":
                query[parameter["name"]] = "1"
            elif schema.get("format") == "date":
                query[parameter["name"]] = "2026-01-01"
            else:
                query[parameter["name"]] = "Kalender"
    return query


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The per-client limit up: this test signs in many people from one address."""
    return msgspec.structs.replace(settings, client_requests_per_minute=100_000)


async def browser(client: httpx.AsyncClient, sink: SmtpSink, made: list[httpx.AsyncClient], email: str) -> Any:
    b = httpx.AsyncClient(base_url=client.base_url, timeout=20)
    made.append(b)
    await sign_in(b, sink, email)
    return b


def test_every_route_is_classified(settings: Settings) -> None:
    """A new route must be put in PUBLIC, ACCOUNT, or be callable with objects the matrix knows."""
    known = set(EXTRA_PARAMS) | set(OBJECT_ALIASES) | set(OBJECT_KINDS)
    unknown = [
        f"{method} {path}: unknown path parameter {name!r}"
        for method, path in sorted(route_table(settings))
        if (method, path) not in PUBLIC
        for name in params_of(path)
        if name not in known
    ]
    bare = [
        f"{method} {path}: no object in its path; put it in PUBLIC or ACCOUNT"
        for method, path in sorted(route_table(settings))
        if (method, path) not in PUBLIC | ACCOUNT and not params_of(path)
    ]
    assert unknown + bare == []
    stale = (
        PUBLIC
        | ACCOUNT
        | COMPANY_OWNED
        | AUTHOR_OWNED
        | FACILITATORS_ONLY
        | FACILITATOR_READS
        | REPRESENTATIVE_PAGES
        | NOT_IN_A_CONVOY
    ) - route_table(settings)
    assert stale == set(), "routes listed here that the app no longer has"


OBJECT_KINDS = {
    "convoy_id",
    "company_id",
    "person_id",
    "report_id",
    "comment_id",
    "milestone_id",
    "flag_id",
    "request_id",
    "token_id",
    "cycle_index",
    "invitation_id",
}


@pytest.mark.heavy  # the authorization-matrix sweep: make test, not make test-fast
@pytest.mark.timeout(400)
async def test_every_endpoint_refuses_every_role_of_another_convoy(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, settings: Settings, browsers: list[httpx.AsyncClient]
) -> None:
    ours = await build_rich_world(client, smtp_sink, open_=False)
    theirs = await build_rich_world(client, smtp_sink)
    document = (await client.get("/schema/openapi.json")).json()
    routes = sorted(route_table(settings) - PUBLIC)

    facilitator_email = (await client.get("/api/v1/me", headers=ours.facilitator)).json()["person"]["email"]
    page_clients = {
        "facilitator": await browser(client, smtp_sink, browsers, facilitator_email),
        "representative": await browser(client, smtp_sink, browsers, ours.world.reps["a"].email),
        "observer": await browser(client, smtp_sink, browsers, ours.observer_email),
        "anonymous": httpx.AsyncClient(base_url=client.base_url, timeout=20),
    }
    browsers.append(page_clients["anonymous"])
    api_roles = {
        "facilitator": ours.facilitator,
        "representative": ours.rep,
        "representative_b": ours.world.reps["b"].auth,
        "observer": ours.observer,
        "anonymous": {},
    }
    before = await snapshot(client, theirs)

    failures: list[str] = []
    calls = 0

    async def expect_refusal(role: str, method: str, path: str, url: str) -> None:
        nonlocal calls
        calls += 1
        if path.startswith(("/api/", "/metrics")):  # JSON answers (metrics: the admin token's), not pages
            r = await client.request(
                method,
                url,
                json=example_body(document, method, path),
                params=example_query(document, method, path),
                headers=api_roles[role],
            )
            refused = REFUSED_API if role != "anonymous" else {401}
        else:
            if method != "GET":
                return  # page forms: CSRF and the same services (tests/test_hostile_abuse.py)
            r = await page_clients[role].get(url, params={"q": "Kalender"} if url.endswith("/search") else None)
            refused = REFUSED_PAGE if role != "anonymous" else REFUSED_PAGE_ANONYMOUS
        if r.status_code not in refused:
            failures.append(f"{method} {url} ({path}) as {role}: {r.status_code} {r.text[:120]!r}")

    for method, path in routes:
        names = params_of(path)
        if (method, path) in ACCOUNT:
            await expect_refusal("anonymous", method, path, path)
            if (method, path) in FACILITATORS_ONLY:
                await expect_refusal("representative", method, path, path)
                await expect_refusal("observer", method, path, path)
            continue
        # The objects of another convoy, as each role of ours.
        for role in ("facilitator", "representative", "observer", "anonymous"):
            await expect_refusal(role, method, path, fill(path, theirs.ids))
        # Another convoy's objects inside our own convoy's path (our roles have rights on our convoy).
        if "convoy_id" in names and len(names) > 1 and not set(names) <= {"convoy_id", "cycle_index"}:
            for role in ("facilitator", "representative", "observer"):
                await expect_refusal(role, method, path, fill(path, ours.ids, inner=theirs.ids))
        # Another company's things in our own convoy.
        if (method, path) in COMPANY_OWNED:
            await expect_refusal("representative_b", method, path, fill(path, ours.ids))
        # Someone else's comment in our own convoy (the world's comment is representative b's).
        if (method, path) in AUTHOR_OWNED:
            for role in ("representative", "facilitator"):
                await expect_refusal(role, method, path, fill(path, ours.ids))

    print(f"\nauthorization matrix: {len(routes)} routes, {calls} refusals checked")
    assert failures == [], "\n".join(failures)
    assert await snapshot(client, theirs) == before, "a refused request changed another convoy"


@pytest.mark.heavy  # the authorization-matrix sweep: make test, not make test-fast
@pytest.mark.timeout(300)
async def test_an_observer_reads_what_members_read_and_every_change_is_refused(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, settings: Settings, browsers: list[httpx.AsyncClient]
) -> None:
    """Every route about our own convoy's objects, as its observer: a member's read answers 200; a change, a
    facilitator-only read or a representative's own form answers 403 (the caller's own tokens: 404)."""
    ours = await build_rich_world(client, smtp_sink, open_=True)
    document = (await client.get("/schema/openapi.json")).json()
    page = await browser(client, smtp_sink, browsers, ours.observer_email)
    before = await snapshot(client, ours)
    failures: list[str] = []
    reads = changes = 0
    for method, path in sorted(route_table(settings) - PUBLIC - ACCOUNT):
        url = fill(path, ours.ids)
        if path.startswith(("/api/", "/metrics")):  # JSON answers (metrics: the admin token's), not pages
            r = await client.request(
                method,
                url,
                json=example_body(document, method, path),
                params=example_query(document, method, path),
                headers=ours.observer,
            )
        elif method == "GET":
            r = await page.get(url, params={"q": "Kalender"} if url.endswith("/search") else None)
        else:
            continue  # page forms: CSRF and the same services (the API calls above)
        if (method, path) in NOT_IN_A_CONVOY:
            wanted = {404}
        elif method == "GET" and (method, path) not in FACILITATOR_READS | REPRESENTATIVE_PAGES:
            wanted, reads = {200}, reads + 1
        else:
            wanted, changes = {403}, changes + 1
        if r.status_code not in wanted:
            failures.append(f"{method} {url} ({path}) as observer: {r.status_code}, not {wanted}: {r.text[:120]!r}")
    print(f"\nobserver: {reads} reads answered, {changes} changes refused")
    assert failures == [], "\n".join(failures)
    assert reads >= 15 and changes >= 40  # the matrix really ran (19 and 46 when written)
    assert await snapshot(client, ours) == before, "an observer changed the convoy"


async def snapshot(client: httpx.AsyncClient, rich: Rich) -> Any:
    """What a refused request must not have changed in the other convoy."""
    cid = rich.ids["convoy_id"]
    convoy = (await client.get(f"/api/v1/convoys/{cid}", headers=ADMIN)).json()
    report = (await client.get(f"/api/v1/reports/{rich.ids['report_id']}", headers=ADMIN)).json()
    project = await client.get(f"/api/v1/convoys/{cid}/companies/{rich.ids['company_id']}/project", headers=ADMIN)
    pending = (await client.get(f"/api/v1/convoys/{cid}/invitations", headers=ADMIN)).json()
    return (
        convoy["name"],
        convoy["status"],
        sorted(c["name"] for c in convoy["companies"]),
        sorted(p["name"] for c in convoy["companies"] for p in c["representatives"]),
        len(convoy["facilitators"]),
        report["done"],
        report.get("hidden"),
        [(m["title"], m["status"]) for m in project.json()["milestones"]],
        sorted(i["id"] for i in pending["invitations"]),
    )
