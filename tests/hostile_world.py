"""A world with something in it for the hostile-input tests: two convoys, each with a project, milestones,
a report, a comment, a flag, a join request, a pending invitation and an observer, so every path parameter
has a real object to point at and every role a person to act as."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import SmtpSink, new_token_for
from tests.world import World, bearer, build_world


@dataclass
class Rich:
    world: World
    ids: dict[str, str] = field(default_factory=dict)
    """Path parameter name -> the id of a real object of this convoy (convoy_id, report_id, ...)."""
    observer: dict[str, str] = field(default_factory=dict)
    """Headers of the convoy's observer (reads along, writes nothing)."""
    observer_email: str = ""

    @property
    def facilitator(self) -> dict[str, str]:
        return self.world.facilitator

    @property
    def rep(self) -> dict[str, str]:
        return self.world.reps["a"].auth


async def build_rich_world(client: httpx.AsyncClient, sink: SmtpSink, *, open_: bool = True) -> Rich:
    world = await build_world(client, sink, companies=2, open_=open_)
    cid = world.convoy_id
    anna, ben = world.reps["a"], world.reps["b"]
    ids: dict[str, str] = {
        "convoy_id": cid,
        "company_id": anna.company_id,
        "person_id": ben.person_id,
        "cycle_index": "0",
    }

    async def ok(r: Any) -> dict[str, Any]:
        response = await r
        assert response.status_code < 300, (response.request.url, response.text)
        body: dict[str, Any] = response.json() if response.content else {}
        return body

    project = await ok(
        client.put(
            f"/api/v1/convoys/{cid}/companies/{anna.company_id}/project",
            json={"title": "Online-Termine", "goal": "Kunden buchen online", "project_type": "online_booking"},
            headers=anna.auth,
        )
    )
    ids["milestone_id"] = project["milestones"][0]["id"]
    report = await ok(
        client.post(f"/api/v1/convoys/{cid}/reports", json={"done": "Kalender gewählt", "mood": 4}, headers=anna.auth)
    )
    ids["report_id"] = report["id"]
    comment = await ok(
        client.post(f"/api/v1/reports/{report['id']}/comments", json={"body": "Welches Tool?"}, headers=ben.auth)
    )
    ids["comment_id"] = comment["id"]
    await ok(client.post(f"/api/v1/reports/{report['id']}/flags", json={"reason": "spam"}, headers=ben.auth))
    queue = await ok(client.get(f"/api/v1/convoys/{cid}/flags", headers=world.facilitator))
    ids["flag_id"] = queue["items"][0]["flags"][0]["id"]
    if open_:
        r = await client.post(
            f"/api/v1/open-convoys/{cid}/join-requests",
            json={
                "company": {"name": f"Anfrage {uuid.uuid4().hex[:6]}"},
                "contact_name": "Kim",
                "contact_email": f"kim-{uuid.uuid4().hex[:6]}@kim.example",
            },
        )
        assert r.status_code == 202, r.text
        requests = await ok(client.get(f"/api/v1/convoys/{cid}/join-requests", headers=world.facilitator))
        ids["request_id"] = requests["requests"][0]["id"]
    pending = await ok(
        client.post(
            f"/api/v1/convoys/{cid}/companies/{anna.company_id}/invitations",
            json={"email": f"zweite-{uuid.uuid4().hex[:6]}@brandt.example", "name": "Zweite Person"},
            headers=world.facilitator,
        )
    )
    ids["invitation_id"] = pending["id"]  # left pending: resend and withdraw have an object to point at
    token = await ok(client.post("/api/v1/me/tokens", json={"name": "Skript"}, headers=anna.auth))
    ids["token_id"] = token["token"]["id"]
    observer_email = f"olga-{uuid.uuid4().hex[:6]}@ihk.example"
    await ok(
        client.post(
            f"/api/v1/convoys/{cid}/observers/invitations",
            json={"email": observer_email, "name": "Olga Observer", "note": "IHK"},
            headers=world.facilitator,
        )
    )
    invitation = await new_token_for(sink, observer_email, "cvi_", set())
    accepted = await ok(client.post("/api/v1/invitations/accept", json={"token": invitation, "name": "Olga Observer"}))
    client.cookies.clear()
    return Rich(world=world, ids=ids, observer=bearer(accepted["access_token"]), observer_email=observer_email)
