"""Issue #19: a service acts for a person only on a claim it can verify (services/runtime/claims.py).

Requests go over the real NATS server to the real services, the way an intruder on the bus would send
them: the body says who acts, the ``Convoy-Actor`` header carries (or lacks) the signed claim.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import msgspec
import pytest

from schemas import api
from schemas.contract import Op
from schemas.convoys import Convoys
from schemas.milestones import Milestones
from schemas.notifier import Notifier
from services.runtime import claims
from services.runtime.errors import Forbidden, Unauthenticated
from services.runtime.rpc import RpcClient
from tests.conftest import Stack, admin


async def ask(stack: Stack, op: Op[Any, Any], body: bytes, claim: str | None = None) -> tuple[str | None, Any]:
    """A raw request: (error code or None, error message or decoded reply)."""
    headers = {claims.HEADER: claim} if claim is not None else None
    msg = await stack.nc.request(stack.subjects.operation(op), body, timeout=5, headers=headers)
    found = msg.headers or {}
    if code := found.get("Nats-Service-Error-Code"):
        return code, found.get("Nats-Service-Error", "")
    return None, msgspec.json.decode(msg.data, type=op.reply)


def appoint(email: str, actor: dict[str, Any]) -> bytes:
    return msgspec.json.encode({"actor": actor, "facilitator": {"name": "Mallory", "email": email}})


def key(stack: Stack) -> Any:
    found = claims.private_key(stack.settings)
    assert found is not None
    return found


async def facilitator_emails(stack: Stack) -> set[str]:
    code, listed = await ask(stack, Convoys.FACILITATORS, b"{}")
    assert code is None, listed
    return {f.email for f in listed.facilitators}


async def test_a_forged_claim_creates_no_facilitator(stack: Stack) -> None:
    """The attack of the issue: an anonymous NATS client says `is_admin` in the body."""
    email = f"mallory-{uuid.uuid4().hex[:8]}@example.org"
    body = appoint(email, {"is_admin": True})

    code, message = await ask(stack, Convoys.FACILITATOR_APPOINT, body)
    assert (code, "signed actor claim" in message) == ("401", True), message
    code, message = await ask(stack, Convoys.FACILITATOR_APPOINT, body, "c1.e30.AAAA")
    assert (code, "signature is not valid" in message) == ("401", True), message
    code, message = await ask(stack, Convoys.FACILITATOR_APPOINT, body, "not a claim at all")
    assert (code, "malformed" in message) == ("401", True), message

    # A valid claim of a plain person does not cover a body that says admin, nor another person's id.
    person = claims.sign(key(stack), api.Actor(person_id=uuid.uuid4()), lifetime_s=60)
    code, message = await ask(stack, Convoys.FACILITATOR_APPOINT, body, person)
    assert (code, "claims more" in message) == ("403", True), message
    stranger = appoint(email, {"person_id": str(uuid.uuid4()), "is_admin": False})
    code, message = await ask(stack, Convoys.FACILITATOR_APPOINT, stranger, person)
    assert code == "403", message

    # A payload changed after signing (a person's claim edited to say admin) fails the signature.
    _, _, signature = person.rpartition(".")
    forged_payload = claims._b64(msgspec.json.encode({"sub": None, "adm": True, "fac": False, "iat": 0, "exp": 2**40}))
    tampered = f"c1.{forged_payload.decode()}.{signature}"
    code, message = await ask(stack, Convoys.FACILITATOR_APPOINT, body, tampered)
    assert (code, "signature is not valid" in message) == ("401", True), message

    # The system is no person: is_system with admin rights is refused outright.
    code, message = await ask(stack, Convoys.FACILITATOR_APPOINT, appoint(email, {"is_system": True, "is_admin": True}))
    assert code == "403", message

    assert email not in await facilitator_emails(stack)


async def test_an_expired_claim_is_refused(stack: Stack) -> None:
    email = f"late-{uuid.uuid4().hex[:8]}@example.org"
    old = claims.sign(key(stack), api.Actor(is_admin=True), lifetime_s=60, now=time.time() - 120)
    code, message = await ask(stack, Convoys.FACILITATOR_APPOINT, appoint(email, {"is_admin": True}), old)
    assert (code, "expired" in message) == ("401", True), message
    assert email not in await facilitator_emails(stack)


async def test_a_claim_signed_by_another_key_is_refused(stack: Stack) -> None:
    email = f"other-{uuid.uuid4().hex[:8]}@example.org"
    other = claims.load_private(claims.new_private_pem())
    token = claims.sign(other, api.Actor(is_admin=True), lifetime_s=60)
    code, message = await ask(stack, Convoys.FACILITATOR_APPOINT, appoint(email, {"is_admin": True}), token)
    assert (code, "signature is not valid" in message) == ("401", True), message
    assert email not in await facilitator_emails(stack)


async def test_a_valid_claim_acts_and_travels_on_nested_requests(stack: Stack) -> None:
    email = f"fran-{uuid.uuid4().hex[:8]}@example.org"
    admin_claim = claims.sign(key(stack), api.Actor(is_admin=True), lifetime_s=60)
    code, person = await ask(stack, Convoys.FACILITATOR_APPOINT, appoint(email, {"is_admin": True}), admin_claim)
    assert code is None, person
    assert person.email == email and person.is_facilitator
    assert email in await facilitator_emails(stack)

    # The notifier answers a person's data export by asking services/convoys for that person (ME_GET)
    # with the same actor: it has no signing key, so that nested request works only because it
    # forwards the claim it was sent.
    fran = api.Actor(person_id=person.id, is_facilitator=True)
    body = msgspec.json.encode(api.Ask(actor=fran))
    code, message = await ask(stack, Notifier.PERSONAL_DATA, body)
    assert code == "401", message
    code, data = await ask(stack, Notifier.PERSONAL_DATA, body, claims.sign(key(stack), fran, lifetime_s=60))
    assert code is None, data
    assert data.service == "notifier"

    # A caller may ask with fewer rights than its claim (the facilitator as a plain person).
    code, me = await ask(
        stack, Convoys.ME_GET, msgspec.json.encode(api.Ask(actor=api.Actor(person_id=person.id))), admin_claim
    )
    assert code == "403", me  # ...but only as the person the claim names
    code, me = await ask(
        stack,
        Convoys.ME_GET,
        msgspec.json.encode(api.Ask(actor=api.Actor(person_id=person.id))),
        claims.sign(key(stack), fran, lifetime_s=60),
    )
    assert code is None and me.person.email == email


async def test_a_reply_claim_files_a_reply_and_nothing_else(stack: Stack) -> None:
    """The notifier's reply key (email replies) vouches for a plain person filing a report or a comment only."""
    reply_key = claims.reply_private_key(stack.settings)
    assert reply_key is not None
    email = f"reply-{uuid.uuid4().hex[:8]}@example.org"
    admin_by_reply = claims.sign(reply_key, api.Actor(is_admin=True), lifetime_s=60, prefix=claims.REPLY)
    code, message = await ask(stack, Convoys.FACILITATOR_APPOINT, appoint(email, {"is_admin": True}), admin_by_reply)
    assert (code, "reply" in message) == ("403", True), message
    # The edge's prefix on a reply-key signature: the edge's key does not verify it.
    forged = claims.sign(reply_key, api.Actor(is_admin=True), lifetime_s=60)
    code, message = await ask(stack, Convoys.FACILITATOR_APPOINT, appoint(email, {"is_admin": True}), forged)
    assert (code, "signature is not valid" in message) == ("401", True), message
    assert email not in await facilitator_emails(stack)

    someone = api.Actor(person_id=uuid.uuid4())
    by_reply = claims.sign(reply_key, someone, lifetime_s=60, prefix=claims.REPLY)
    code, message = await ask(stack, Convoys.ME_GET, msgspec.json.encode(api.Ask(actor=someone)), by_reply)
    assert (code, "reply" in message) == ("403", True), message
    # On an operation a reply becomes, the claim is admitted: the handler answers (here: no such report).
    body = api.AddComment(actor=someone, report_id=uuid.uuid4(), comment=api.NewComment(body="Danke!"))
    code, message = await ask(stack, Milestones.COMMENT_ADD, msgspec.json.encode(body), by_reply)
    assert code == "404", message


async def test_the_edge_and_the_operators_tools_sign(stack: Stack, client: httpx.AsyncClient) -> None:
    """The API signs the actor it established; an RPC client with the key (the CLI, the demo loader) signs
    the actor it names; one without a key and no claim to forward is refused."""
    email = f"edge-{uuid.uuid4().hex[:8]}@example.org"
    r = await client.post("/api/v1/facilitators", json={"name": "Edge", "email": email}, headers=admin())
    assert r.status_code == 201, r.text

    request = api.AppointFacilitator(
        actor=api.Actor(is_admin=True), facilitator=api.NewFacilitator(name="Tool", email=f"tool-{email}")
    )
    unsigned = RpcClient(stack.nc, 5, stack.subjects)
    with pytest.raises(Unauthenticated):
        await unsigned.call(Convoys.FACILITATOR_APPOINT, request)
    tool = RpcClient(stack.nc, 5, stack.subjects, signer=claims.Signer.from_settings(stack.settings))
    assert (await tool.call(Convoys.FACILITATOR_APPOINT, request)).email == f"tool-{email}"
    assert {email, f"tool-{email}"} <= await facilitator_emails(stack)


def test_the_rules_without_servers() -> None:
    """What `claims.admit` lets through, and what the signer and verifier keep."""
    private = claims.load_private(claims.new_private_pem())
    verifier = claims.Verifier(private.public_key())
    nobody = claims.Verifier(None)
    person = api.Actor(person_id=uuid.uuid4(), is_facilitator=True)

    assert claims.admit(api.ANONYMOUS, None, nobody) is None  # anonymous: no claim needed
    assert claims.admit(api.SYSTEM, None, nobody) is None  # the system: NATS permissions decide
    with pytest.raises(Unauthenticated):
        claims.admit(person, None, verifier)
    with pytest.raises(Unauthenticated):  # a service without the public key acts for no one
        claims.admit(person, claims.sign(private, person, lifetime_s=60), nobody)
    token = claims.sign(private, person, lifetime_s=60)
    assert claims.admit(person, token, verifier) == token
    assert claims.admit(api.Actor(person_id=person.person_id), token, verifier) == token
    with pytest.raises(Forbidden):
        claims.admit(api.Actor(person_id=person.person_id, is_admin=True), token, verifier)
    # A remembered token still expires.
    assert verifier.actor(token) == person
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.actor(token, now=time.time() + 120)

    # Keys load from PEM and from base64 of their raw bytes; the public half derives from the private key.
    signer = claims.Signer(private, 60)
    assert signer.token(person) == signer.token(person)  # kept for half its life, not signed per request
    public = claims.load_public(claims.public_text(private))
    assert claims.Verifier(public).actor(signer.token(person)) == person
