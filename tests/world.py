"""Building a convoy the way people do it: over HTTP, with invitations read from the mail sink."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import ADMIN_TOKEN, SmtpSink, new_token_for, tokens_for

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Rep:
    person_id: str
    email: str
    token: str
    company_id: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)


@dataclass
class World:
    convoy: dict[str, Any]
    facilitator: dict[str, str]
    companies: dict[str, dict[str, Any]] = field(default_factory=dict)
    reps: dict[str, Rep] = field(default_factory=dict)

    @property
    def convoy_id(self) -> str:
        return str(self.convoy["id"])


def report_roles(world: World, other: World) -> dict[str, dict[str, str]]:
    """The headers of everyone who might act on company a's report in ``world`` (two companies), with
    ``other``'s people (another convoy) and nobody: the roles of the by-role authorization tests."""
    return {
        "admin": ADMIN,
        "facilitator": world.facilitator,
        "own_rep": world.reps["a"].auth,
        "peer": world.reps["b"].auth,
        "other_facilitator": other.facilitator,
        "outsider": other.reps["a"].auth,
        "anonymous": {},
    }


async def sign_in(client: httpx.AsyncClient, sink: SmtpSink, email: str) -> dict[str, Any]:
    """Ask for a link, read it from the mail, exchange it: the SignInResult (cookie set on client)."""
    seen = tokens_for(sink, email, "cvl_")
    r = await client.post("/api/v1/auth/sign-in", json={"email": email})
    assert r.status_code == 202, r.text
    token = await new_token_for(sink, email, "cvl_", seen)
    r = await client.post("/api/v1/auth/sign-in/complete", json={"token": token})
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


async def appoint_facilitator(client: httpx.AsyncClient, sink: SmtpSink, email: str) -> dict[str, str]:
    r = await client.post(
        "/api/v1/facilitators", json={"name": "Frieda Berater", "email": email, "language": "de"}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    signed_in = await sign_in(client, sink, email)
    client.cookies.clear()
    return bearer(signed_in["access_token"])


async def invite_and_accept(
    client: httpx.AsyncClient,
    sink: SmtpSink,
    headers: dict[str, str],
    convoy_id: str,
    company_id: str,
    name: str,
    email: str,
    language: str = "de",
) -> Rep:
    r = await client.post(
        f"/api/v1/convoys/{convoy_id}/companies/{company_id}/invitations",
        json={"email": email, "name": name, "language": language},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    token = await new_token_for(sink, email, "cvi_", set())
    r = await client.post("/api/v1/invitations/accept", json={"token": token, "name": name, "language": language})
    assert r.status_code == 201, r.text
    client.cookies.clear()
    body = r.json()
    return Rep(person_id=body["person"]["id"], email=email, token=body["access_token"], company_id=company_id)


async def build_world(
    client: httpx.AsyncClient, sink: SmtpSink, *, lang_b: str = "en", companies: int = 2, open_: bool = False
) -> World:
    """A facilitator's convoy with companies a, b (, c), each with one representative."""
    tag = uuid.uuid4().hex[:8]
    facilitator = await appoint_facilitator(client, sink, f"frieda-{tag}@zentrum.example")
    r = await client.post(
        "/api/v1/convoys",
        json={"name": "Terminvergabe Nord", "theme": "Online-Terminvergabe", "open_for_requests": open_},
        headers=facilitator,
    )
    assert r.status_code == 201, r.text
    world = World(convoy=r.json(), facilitator=facilitator)
    people = [
        ("a", "Sanitär Müller", "Anna Müller", f"anna-{tag}@mueller.example", "de"),
        ("b", "Laden Schmidt", "Ben Schmidt", f"ben-{tag}@schmidt.example", lang_b),
        ("c", "Metallbau Stahl", "Clara Stahl", f"clara-{tag}@stahl.example", "de"),
    ][:companies]
    for key, company, name, email, language in people:
        r = await client.post(
            f"/api/v1/convoys/{world.convoy_id}/companies", json={"name": company}, headers=facilitator
        )
        assert r.status_code == 201, r.text
        world.companies[key] = r.json()
        world.reps[key] = await invite_and_accept(
            client, sink, facilitator, world.convoy_id, r.json()["id"], name, email, language
        )
    return world


async def rpc_answered(client: httpx.AsyncClient, service: str, operation: str) -> float:
    """How many requests ``service`` has answered for ``operation`` (its own metrics, via the API)."""
    r = await client.get(f"/metrics/{service}", headers=ADMIN)
    assert r.status_code == 200, r.text
    total = 0.0
    for line in r.text.splitlines():
        if line.startswith("convoy_rpc_handler_seconds_count{") and f'operation="{operation}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total
