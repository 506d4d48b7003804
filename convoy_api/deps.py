"""What every controller is handed: the NATS request client, the subjects, and the caller."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec
from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency

from schemas import api
from schemas.subjects import Rpc, Subjects
from services.runtime.errors import NotFound, Unauthenticated
from services.runtime.rpc import RpcClient
from services.runtime.settings import Settings

Rep = TypeVar("Rep", bound=msgspec.Struct)

TOKEN_CACHE_S = 30.0
TOKEN_CACHE_MAX = 10_000


@dataclass
class Backend:
    """The API's handle on the services."""

    settings: Settings
    rpc: RpcClient
    subjects: Subjects
    _tokens: dict[str, tuple[float, api.Actor]] = field(default_factory=dict)

    async def call(self, service: str, operation: str, request: msgspec.Struct, reply_type: type[Rep]) -> Rep:
        return await self.rpc.call(self.subjects.rpc(service, operation), request, reply_type)

    async def actor_for(self, token: str) -> api.Actor:
        admin = self.settings.admin_token
        if admin and hmac.compare_digest(token.encode(), admin.encode()):
            return api.Actor(is_admin=True)
        now = time.monotonic()
        cached = self._tokens.get(token)
        if cached and cached[0] > now:
            return cached[1]
        try:
            owner = await self.call(
                "convoys", Rpc.TOKEN_RESOLVE, api.ResolveToken(token=token), api.TokenOwner
            )
        except NotFound as exc:
            raise Unauthenticated("unknown or revoked token") from exc
        actor = api.Actor(person_id=owner.person_id)
        if len(self._tokens) >= TOKEN_CACHE_MAX:  # bounded: drop the oldest entries
            for stale in list(self._tokens)[: TOKEN_CACHE_MAX // 10]:
                del self._tokens[stale]
        self._tokens[token] = (now + TOKEN_CACHE_S, actor)
        return actor


def provide_backend(state: State) -> Backend:
    backend: Backend = state.backend
    return backend


async def provide_actor(
    request: Request[object, object, State], backend: NamedDependency[Backend]
) -> api.Actor:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send 'Authorization: Bearer <token>'")
    return await backend.actor_for(token.strip())
