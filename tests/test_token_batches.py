"""Cold tokens and unknown convoys asked together (issue #21): services/convoys answers ``TOKENS_RESOLVE`` and
``CONVOYS_RECIPIENTS`` for several keys in one request, each key exactly as its one-key request would; the
API's tokens of requests that arrive together share a request, and each request still gets its own caller.
Over the real stack; services/runtime/coalesce.py alone with a plain function."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from schemas import api
from schemas.convoys import Convoys
from services.runtime.coalesce import Coalescer
from services.runtime.rpc import RpcClient
from tests.conftest import SmtpSink, Stack
from tests.world import bearer, build_world, sign_in


async def test_tokens_resolve_answers_each_token_as_alone(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=2)
    anna, bert = world.reps["a"], world.reps["b"]
    r = await client.post("/api/v1/me/tokens", json={"name": "Skript", "scope": "read"}, headers=anna.auth)
    assert r.status_code == 201, r.text
    api_token = r.json()["secret"]
    r = await client.post("/api/v1/me/tokens", json={"name": "Alt"}, headers=anna.auth)
    revoked = r.json()["secret"]
    assert (await client.delete(f"/api/v1/me/tokens/{r.json()['token']['id']}", headers=anna.auth)).status_code == 204
    browser = httpx.AsyncClient(base_url=client.base_url, timeout=20)
    try:
        await sign_in(browser, smtp_sink, anna.email)
        session = browser.cookies["convoy_session"]
    finally:
        await browser.aclose()

    rpc = RpcClient(stack.nc, 10, stack.subjects)
    tokens = [anna.token, "cva_unknown", api_token, session, revoked, bert.token, anna.token, "nope"]
    many = (await rpc.call(Convoys.TOKENS_RESOLVE, api.ResolveTokens(tokens=tokens))).principals
    assert len(many) == len(tokens)
    for token, principal in zip(tokens, many, strict=True):
        try:
            alone: api.Principal | None = await rpc.call(Convoys.TOKEN_RESOLVE, api.ResolveToken(token=token))
        except Exception:  # NotFound: unknown, expired or revoked
            alone = None
        assert principal == alone, token
    assert [p and (str(p.person_id), p.kind) for p in many] == [
        (anna.person_id, "access"),
        None,
        (anna.person_id, "api"),
        (anna.person_id, "browser"),
        None,
        (bert.person_id, "access"),
        (anna.person_id, "access"),
        None,
    ]
    assert many[2] is not None and many[2].scope == "read"
    assert many[3] is not None and many[3].csrf_token  # a browser session carries its CSRF token


async def test_concurrent_cold_tokens_each_get_their_own_caller(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    fresh: dict[str, str] = {}  # tokens the API has not seen yet: made here, never used
    for key, rep in world.reps.items():
        r = await client.post("/api/v1/me/tokens", json={"name": "neu"}, headers=rep.auth)
        assert r.status_code == 201, r.text
        fresh[key] = r.json()["secret"]
    asks: list[tuple[str | None, str]] = [(key, fresh[key]) for key in world.reps for _ in range(3)]
    asks += [(None, "cvy_unknown"), (None, "cva_x")]

    async def me(token: str) -> httpx.Response:
        return await client.get("/api/v1/me", headers=bearer(token))

    answers = await asyncio.gather(*(me(token) for _, token in asks))
    for (who, _), r in zip(asks, answers, strict=True):
        if who is None:
            assert r.status_code == 401 and "sign in again" in r.json()["detail"], r.text
        else:
            assert r.status_code == 200, r.text
            assert r.json()["person"]["id"] == world.reps[who].person_id


async def test_convoys_recipients_answers_each_convoy_as_alone(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    one = await build_world(client, smtp_sink, companies=2)
    two = await build_world(client, smtp_sink, companies=1)
    ids = [uuid.UUID(one.convoy_id), uuid.uuid4(), uuid.UUID(two.convoy_id), uuid.UUID(one.convoy_id)]
    rpc = RpcClient(stack.nc, 10, stack.subjects)
    many = (await rpc.call(Convoys.CONVOYS_RECIPIENTS, api.GetManyRecipients(convoy_ids=ids))).recipients
    assert many[1] is None  # no such convoy
    for convoy_id, found in zip(ids, many, strict=True):
        if found is not None:
            alone = await rpc.call(Convoys.CONVOY_RECIPIENTS, api.GetRecipients(convoy_id=convoy_id))
            assert found == alone
    assert many[0] is not None and many[2] is not None
    assert sorted(str(m.person_id) for m in many[0].members) == sorted(r.person_id for r in one.reps.values())
    assert [str(m.person_id) for m in many[2].members] == [two.reps["a"].person_id]


async def test_the_coalescer_sends_alone_at_once_and_together_while_one_is_out() -> None:
    asked: list[list[int]] = []
    release = asyncio.Event()

    async def fetch(keys: list[int]) -> list[str]:
        asked.append(keys)
        if len(asked) == 1:
            await release.wait()  # the first request is out while the others arrive
        if 13 in keys:
            raise LookupError("thirteen")
        return [f"v{k}" for k in keys]

    coalescer: Coalescer[int, str] = Coalescer(fetch)
    first = asyncio.create_task(coalescer.get(1))
    for _ in range(5):  # the task's step, the dispatch at the tick's end, the fetch's first step
        await asyncio.sleep(0)
    assert asked == [[1]]  # alone: asked at once
    later = [asyncio.create_task(coalescer.get(k)) for k in (2, 3, 2)]
    gone = asyncio.create_task(coalescer.get(4))
    await asyncio.sleep(0)
    gone.cancel()  # its caller went away: the others still get their answers
    release.set()
    assert await first == "v1"
    assert [await t for t in later] == ["v2", "v3", "v2"]
    assert asked == [[1], [2, 3, 4]]  # together, each key once
    with pytest.raises(LookupError):
        await asyncio.gather(coalescer.get(13), coalescer.get(5))  # one fetch, its failure everyone's
    assert asked[-1] == [13, 5]
    assert await coalescer.get(5) == "v5"  # a failure is not kept
