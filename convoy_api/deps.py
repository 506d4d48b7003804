"""What every controller is handed: the services (over NATS), the caller, and limits per client."""

from __future__ import annotations

import collections
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler

from convoy_api.conditional import Versions
from schemas import api
from schemas.contract import Op
from schemas.convoys import Convoys
from schemas.milestones import Milestones
from schemas.subjects import Subjects
from services.runtime.coalesce import Coalescer
from services.runtime.errors import Forbidden, TooManyRequests, Unauthenticated
from services.runtime.rpc import RpcClient
from services.runtime.settings import Settings

Req = TypeVar("Req", bound=msgspec.Struct)
Rep = TypeVar("Rep", bound=msgspec.Struct)

SESSION_COOKIE = "convoy_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_CACHE_MAX = 10_000
TOKENS_PER_REQUEST = 256
RESOLVING_AT_ONCE = 16
"""``TOKENS_RESOLVE`` requests out at a time (services/runtime/coalesce.py). Not 1: with one out, every cold
token waited for the request already out (a second round trip at moderate rates; behind a stalled request,
up to two timeouts). With 16 a token goes at once unless 16 are out; under a burst they share requests."""


class ClientLimiter:
    """Requests per client per minute, in a bounded map (oldest clients forgotten first).

    Per API process: with N replicas a client gets up to N times the limit.
    """

    def __init__(
        self,
        per_minute: int,
        max_clients: int = 10_000,
        window_s: float = 60.0,
        refusal: str = "too many requests from your address; try again in a minute",
    ) -> None:
        self.per_minute = per_minute
        """Requests per window (a minute unless ``window_s`` says otherwise)."""
        self.max_clients = max_clients
        self.window_s = window_s
        self.refusal = refusal
        self.hits: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

    def check(self, client: str) -> None:
        now = time.monotonic()
        hits = self.hits.pop(client, None) or collections.deque()
        while hits and hits[0] < now - self.window_s:
            hits.popleft()
        self.hits[client] = hits
        while len(self.hits) > self.max_clients:
            self.hits.popitem(last=False)
        if len(hits) >= self.per_minute:
            raise TooManyRequests(self.refusal)
        hits.append(now)


def daily_limiter(per_day: int) -> ClientLimiter:
    """Anonymous requests that reach people (join and pool requests) per client per day."""
    return ClientLimiter(per_day, window_s=86_400, refusal="too many requests from your address today; try tomorrow")


NARROWING: frozenset[Op[Any, Any]] = frozenset(
    {
        Convoys.MEMBER_REMOVE,
        Convoys.COMPANY_REMOVE,
        Convoys.OBSERVER_REMOVE,
        Milestones.REPORT_HIDE,
        Milestones.COMMENT_HIDE,
    }
)
"""Operations after which someone sees less of a convoy (conditional GETs, convoy_api/conditional.py)."""


@dataclass
class Backend:
    """The API's handle on the services."""

    settings: Settings
    rpc: RpcClient
    subjects: Subjects
    limiter: ClientLimiter
    daily: ClientLimiter
    """Anonymous join and pool requests per client per day (``anonymous_request_limit``)."""
    versions: Versions
    """The newest convoy versions heard of: conditional GETs (convoy_api/conditional.py)."""
    _tokens: dict[str, tuple[float, api.Principal]] = field(default_factory=dict)
    _resolver: Coalescer[str, api.Principal | None] | None = None
    """Cold tokens on their way to services/convoys (made on first use: it belongs to the running loop)."""
    _forgets: int = 0
    """Sign-outs seen by this process: a resolution that overlapped one is not kept in the cache."""

    async def call(self, op: Op[Req, Rep], request: Req) -> Rep:
        reply = await self.rpc.call(op, request)
        if op in NARROWING:
            # Someone may now see less: this process forgets the convoy's version before answering, so no
            # revalidation here answers 304 from it (milestones' announcement travels on another path).
            convoy_id = getattr(request, "convoy_id", None) or getattr(reply, "convoy_id", None)
            self.versions.forget(convoy_id) if convoy_id is not None else self.versions.reset()
        return reply

    async def call_with_headers(self, op: Op[Req, Rep], request: Req) -> tuple[Rep, Mapping[str, str]]:
        return await self.rpc.call_with_headers(op, request)

    async def principal(self, token: str) -> api.Principal:
        """The token's owner: from this process's cache, else asked of services/convoys.

        Cold tokens go to services/convoys through :attr:`_resolver`: alone, at once; while a request is out, the
        tokens that arrive meanwhile together in the next ``TOKENS_RESOLVE`` (one message and one statement for
        several, issue #21). Each answer is services/convoys' as of the request that carried it."""
        cached = self._tokens.get(token)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        if self._resolver is None:
            self._resolver = Coalescer(self._resolve, max_keys=TOKENS_PER_REQUEST, at_once=RESOLVING_AT_ONCE)
        principal = await self._resolver.get(token)
        if principal is None:
            raise Unauthenticated("unknown, expired or revoked token; sign in again")
        return principal

    async def _resolve(self, tokens: list[str]) -> list[api.Principal | None]:
        forgets = self._forgets
        reply = await self.call(Convoys.TOKENS_RESOLVE, api.ResolveTokens(tokens=tokens))
        if forgets == self._forgets:  # a sign-out here while the request was out: answered, not kept
            now = time.monotonic()
            for token, principal in zip(tokens, reply.principals, strict=True):
                if principal is not None:
                    self._keep(token, principal, now)
        return reply.principals

    def _keep(self, token: str, principal: api.Principal, now: float) -> None:
        if len(self._tokens) >= TOKEN_CACHE_MAX:  # bounded: drop the oldest entries
            for stale in list(self._tokens)[: TOKEN_CACHE_MAX // 10]:
                del self._tokens[stale]
        keep = self.settings.token_cache_s
        if principal.expires_at is not None:  # never beyond the token's expiry
            keep = min(keep, (principal.expires_at - datetime.now(UTC)).total_seconds())
        self._tokens[token] = (now + keep, principal)

    def forget(self, token: str) -> None:
        self._tokens.pop(token, None)
        self._forgets += 1

    def is_admin_token(self, token: str) -> bool:
        admin = self.settings.admin_token
        return bool(admin) and hmac.compare_digest(token.encode(), admin.encode())


def provide_backend(request: Request[Any, Any, Any]) -> Backend:
    """The app's backend (taken from the connection: asking for ``state`` copies the app's state per request)."""
    backend: Backend = request.app.state.backend
    return backend


def bearer_token(request: Request[Any, Any, Any]) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def provide_actor(request: Request[Any, Any, State], backend: NamedDependency[Backend]) -> api.Actor:
    """The caller: a bearer token (admin, access or API token) or the session cookie with CSRF."""
    token = bearer_token(request)
    if token is not None:
        if backend.is_admin_token(token):
            if request.method not in SAFE_METHODS:
                backend.versions.wrote(None)
            return api.Actor(is_admin=True)
        if token.startswith("cvs_"):
            raise Unauthenticated("a session token goes in the cookie, not in the Authorization header")
        principal = await backend.principal(token)
        if principal.kind == "api" and principal.scope == "read" and request.method not in SAFE_METHODS:
            raise Forbidden(
                "this personal API token is read-only (scope `read`): it may only read (GET);"
                " create a read-write token to change anything"
            )
    elif cookie := request.cookies.get(SESSION_COOKIE):
        principal = await backend.principal(cookie)
        if principal.kind != "browser":
            raise Unauthenticated("not a session cookie")
        if request.method not in SAFE_METHODS and not (
            principal.csrf_token
            and hmac.compare_digest(request.headers.get(CSRF_HEADER, "").encode(), principal.csrf_token.encode())
        ):
            raise Forbidden("missing or wrong X-CSRF-Token header")
    else:
        raise Unauthenticated("sign in, or send 'Authorization: Bearer <token>'")
    if request.method not in SAFE_METHODS:
        backend.versions.wrote(principal.person_id)  # their next conditional GET reads their write
    return api.Actor(
        person_id=principal.person_id, is_admin=principal.is_admin, is_facilitator=principal.is_facilitator
    )


def client_of(connection: ASGIConnection[Any, Any, Any, State]) -> str:
    """The client's address as the per-client limits see it."""
    return connection.client.host if connection.client else "unknown"


def client_key(settings: Settings, connection: ASGIConnection[Any, Any, Any, State], purpose: str) -> str:
    """A keyed hash of the client's address for one purpose: services count per client without ever holding
    (or being able to recover) the address."""
    key = f"convoy-client-{purpose}:{settings.secret_key}".encode()
    return hmac.new(key, client_of(connection).encode(), hashlib.sha256).hexdigest()[:32]


def admin_token_only(connection: ASGIConnection[Any, Any, Any, State], _: BaseRouteHandler) -> None:
    """Guard for the operations' metrics on the public port: only the admin token (Prometheus can send it
    as a bearer credential; or it scrapes CONVOY_OPS_PORT, which is not published)."""
    backend: Backend = connection.app.state.backend
    scheme, _sep, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not backend.is_admin_token(token.strip()):
        raise Unauthenticated("metrics need 'Authorization: Bearer <admin token>' here, or CONVOY_OPS_PORT")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def json_from_this_site(connection: ASGIConnection[Any, Any, Any, State], _: BaseRouteHandler) -> None:
    """Guard against login CSRF: a form on another site cannot send JSON without a CORS preflight (which
    this API never grants), and a browser names the page's origin; a client without Origin is no browser."""
    media_type = connection.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise HTTPException(status_code=415, detail="send the body as application/json")
    origin = connection.headers.get("origin")
    if origin is None:
        return
    backend: Backend = connection.app.state.backend
    ours = {origin_of(backend.settings.public_url), origin_of(str(connection.base_url))}
    if origin.strip().lower() not in ours:
        raise Forbidden("this request must come from Convoy's own pages")


def client_rate_limit(connection: ASGIConnection[Any, Any, Any, State], _: BaseRouteHandler) -> None:
    """Guard for endpoints anyone may call (sign-in, invitations, join requests)."""
    backend: Backend = connection.app.state.backend
    backend.limiter.check(client_of(connection))


def anonymous_request_limit(connection: ASGIConnection[Any, Any, Any, State], handler: BaseRouteHandler) -> None:
    """Guard for anonymous requests that facilitators hear of (join requests, the formation pool): the per-minute
    limit and a daily cap per client, so one client cannot flood the queues and the facilitators' inboxes."""
    client_rate_limit(connection, handler)
    backend: Backend = connection.app.state.backend
    backend.daily.check(client_of(connection))
