"""Sign-in without passwords, sessions, access and API tokens, and each person's profile.

Token kinds, told apart by prefix and stored only as SHA-256 hashes:
``cvl_`` emailed sign-in link (once, minutes) · ``cvi_`` invitation link (once, days) ·
``cvs_`` browser session (cookie + CSRF token) · ``cva_`` access token (bearer, an hour) ·
``cvy_`` personal API token (bearer, until revoked) · ``cvc_`` calendar feed (in the feed URL, until
rotated or revoked; it grants reading the person's check-in dates and nothing else).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import asyncpg
import msgspec
import structlog

from schemas import api
from schemas.convoys import Convoys
from services.convoys import repository as repo
from services.convoys.access import Access
from services.convoys.repository import auth as auth_repo
from services.convoys.service import check_timezone, email_to, hash_token, new_token
from services.runtime.db import struct
from services.runtime.errors import Gone, InvalidInput, NotFound
from services.runtime.lifecycle import wait_or_stop
from services.runtime.service import Runtime

log = structlog.get_logger(__name__)

PURGE_EVERY_S = 3600.0
NO_PERSON = "the admin token has no profile; sign in as a person"


def _next_query(target: str | None) -> str:
    """``?next=…`` for a sign-in link that returns to a path on this site (the schema allows paths only)."""
    if not target or target == "/" or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return ""
    return "?next=" + quote(target, safe="")


class Sessions:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.base_url = rt.settings.public_url.rstrip("/")
        self.access = Access()

    async def open(self, conn: asyncpg.Connection, person: asyncpg.Record) -> api.SignedIn:
        """Start a browser session and an access token for ``person`` (inside the caller's transaction)."""
        now = datetime.now(UTC)
        session, access, csrf = new_token("cvs_"), new_token("cva_"), secrets.token_urlsafe(24)
        session_expires = now + timedelta(days=self.settings.session_days)
        access_expires = now + timedelta(minutes=self.settings.access_token_minutes)
        await auth_repo.insert_session(
            conn,
            token_hash=hash_token(session),
            person_id=person["id"],
            kind="browser",
            csrf_token=csrf,
            expires_at=session_expires,
        )
        await auth_repo.insert_session(
            conn,
            token_hash=hash_token(access),
            person_id=person["id"],
            kind="access",
            csrf_token=None,
            expires_at=access_expires,
        )
        await auth_repo.cap_sessions(conn, person["id"], self.settings.max_sessions_per_person)
        return api.SignedIn(
            person=repo.person(person),
            access_token=access,
            access_expires_at=access_expires,
            session_token=session,
            session_expires_at=session_expires,
            csrf_token=csrf,
        )

    # --- sign-in -------------------------------------------------------------------------------
    @Convoys.SIGN_IN_REQUEST
    async def request_sign_in(self, ask: api.SignInAsk) -> api.Accepted:
        # Above the cap (per address and client) the answer is the same and nothing more is sent: a flood
        # from one client for someone's address neither fills her inbox nor keeps her own request (from her
        # client) from getting its link, and the answer tells the flooder nothing.
        req = ask.sign_in
        now = datetime.now(UTC)
        email_hash = hashlib.sha256(req.email.strip().lower().encode()).digest()
        async with self.rt.db.transaction() as conn:
            count = await auth_repo.record_sign_in_request(
                conn, email_hash, bytes.fromhex(ask.client), now - timedelta(hours=1)
            )
            person = await repo.person_by_email(conn, req.email)
            if person is not None and count <= self.settings.sign_in_requests_per_hour:
                token = new_token("cvl_")
                await auth_repo.insert_sign_in_link(
                    conn,
                    hash_token(token),
                    person["id"],
                    now + timedelta(minutes=self.settings.sign_in_link_minutes),
                )
                await self.rt.emit(
                    conn,
                    email_to(
                        person,
                        "sign_in",
                        key=f"sign_in:{hash_token(token).hex()[:32]}",
                        params={
                            "link": f"{self.base_url}/sign-in/{token}{_next_query(req.next)}",
                            "minutes": str(self.settings.sign_in_link_minutes),
                        },
                    ),
                )
        # The same answer whether or not the address is known.
        return api.Accepted(message="If this address belongs to a Convoy account, a sign-in link is on its way.")

    @Convoys.SIGN_IN_COMPLETE
    async def complete_sign_in(self, req: api.SignInComplete) -> api.SignedIn:
        async with self.rt.db.transaction() as conn:
            person_id = await auth_repo.use_sign_in_link(conn, hash_token(req.token))
            if person_id is None:
                raise Gone("this sign-in link is invalid, expired or already used; ask for a new one")
            person = await repo.person_by_id(conn, person_id)
            assert person is not None
            return await self.open(conn, person)

    @Convoys.SIGN_OUT
    async def sign_out(self, req: api.SignOut) -> api.Accepted:
        async with self.rt.db.transaction() as conn:
            await auth_repo.revoke_session(conn, hash_token(req.token))
        return api.Accepted(message="signed out")

    @Convoys.TOKEN_RESOLVE
    async def resolve(self, req: api.ResolveToken) -> api.Principal:
        [principal] = (await self.resolve_many(api.ResolveTokens(tokens=[req.token]))).principals
        if principal is None:
            raise NotFound("unknown, expired or revoked token")
        return principal

    @Convoys.TOKENS_RESOLVE
    async def resolve_many(self, req: api.ResolveTokens) -> api.ResolvedTokens:
        """The owners of the tokens the edge met (None: unknown, expired, revoked, or of the wrong kind for its
        prefix): one statement per kind of token."""
        hashes = [hash_token(t) for t in req.tokens]
        sessions = [h for t, h in zip(req.tokens, hashes, strict=True) if t.startswith(("cvs_", "cva_"))]
        api_tokens = [h for t, h in zip(req.tokens, hashes, strict=True) if t.startswith("cvy_")]
        of_sessions: dict[bytes, api.Principal] = {}
        of_api_tokens: dict[bytes, api.Principal] = {}
        if sessions or api_tokens:
            async with self.rt.db.connection() as conn:
                if sessions:
                    for row in await auth_repo.session_principals(conn, sessions):
                        csrf = row["csrf_token"] if row["kind"] == "browser" else None
                        of_sessions[bytes(row["token_hash"])] = struct(row, api.Principal, csrf_token=csrf)
                if api_tokens:
                    for row in await auth_repo.api_token_principals(conn, api_tokens):
                        of_api_tokens[bytes(row["token_hash"])] = struct(row, api.Principal, kind="api")
        principals: list[api.Principal | None] = []
        for token, token_hash in zip(req.tokens, hashes, strict=True):
            principal = None
            if token.startswith("cvy_"):
                principal = of_api_tokens.get(token_hash)
            elif token.startswith(("cvs_", "cva_")):
                principal = of_sessions.get(token_hash)
                # a browser session only as the cookie (cvs_), an access token only in the header (cva_)
                if principal is not None and (principal.kind == "browser") != token.startswith("cvs_"):
                    principal = None
            principals.append(principal)
        return api.ResolvedTokens(principals=principals)

    # --- profile -------------------------------------------------------------------------------
    @Convoys.ME_GET
    async def me(self, req: api.Ask) -> api.Me:
        person_id = self.access.person(req.actor, NO_PERSON)
        async with self.rt.db.connection() as conn:
            row = await repo.person_by_id(conn, person_id)
            if row is None:
                raise NotFound("no such person")
            return api.Me(person=repo.person(row), convoys=await repo.my_convoys(conn, row["id"]))

    @Convoys.ME_UPDATE
    async def update_me(self, req: api.UpdateMe) -> api.Me:
        person_id = self.access.person(req.actor, NO_PERSON)
        changes = {k: v for k, v in msgspec.structs.asdict(req.patch).items() if v is not msgspec.UNSET}
        if "timezone" in changes:
            check_timezone(changes["timezone"])
        async with self.rt.db.transaction() as conn:
            if changes:
                await repo.update_person(conn, person_id, changes)
        return await self.me(api.Ask(actor=req.actor))

    # --- personal API tokens -------------------------------------------------------------------
    @Convoys.API_TOKEN_CREATE
    async def create_api_token(self, req: api.CreateApiToken) -> api.ApiTokenCreated:
        person_id = self.access.person(req.actor, NO_PERSON)
        days = req.request.expires_in_days or self.settings.api_token_days
        if days > self.settings.api_token_max_days:
            raise InvalidInput(f"`expires_in_days`: at most {self.settings.api_token_max_days} days")
        expires_at = datetime.now(UTC) + timedelta(days=days)
        secret = new_token("cvy_")
        async with self.rt.db.transaction() as conn:
            token = await auth_repo.insert_api_token(
                conn, hash_token(secret), person_id, req.request.name, req.request.scope, expires_at
            )
        return api.ApiTokenCreated(token=token, secret=secret)

    @Convoys.API_TOKEN_LIST
    async def list_api_tokens(self, req: api.Ask) -> api.ApiTokens:
        person_id = self.access.person(req.actor, NO_PERSON)
        async with self.rt.db.connection() as conn:
            return api.ApiTokens(tokens=await auth_repo.list_api_tokens(conn, person_id))

    @Convoys.API_TOKEN_REVOKE
    async def revoke_api_token(self, req: api.RevokeApiToken) -> api.Accepted:
        person_id = self.access.person(req.actor, NO_PERSON)
        async with self.rt.db.transaction() as conn:
            if not await auth_repo.revoke_api_token(conn, person_id, req.token_id):
                raise NotFound("no such token")
        return api.Accepted(message="revoked")

    # --- calendar feed (issue #22) ---------------------------------------------------------------
    @Convoys.CALENDAR_GET
    async def calendar_get(self, req: api.Ask) -> api.CalendarFeed:
        person_id = self.access.person(req.actor, NO_PERSON)
        async with self.rt.db.connection() as conn:
            return auth_repo.calendar_feed(await auth_repo.live_calendar_feed(conn, person_id))

    @Convoys.CALENDAR_CREATE
    async def calendar_create(self, req: api.Ask) -> api.CalendarFeedCreated:
        """A new feed token; the previous one (if any) stops working in the same transaction (rotate)."""
        person_id = self.access.person(req.actor, NO_PERSON)
        secret = new_token("cvc_")
        async with self.rt.db.transaction() as conn:
            if await repo.person_for_erasure(conn, person_id) is None:
                raise NotFound("no such person")  # also serialises two creates of one person (row lock)
            await auth_repo.revoke_calendar_feeds(conn, person_id)
            row = await auth_repo.insert_calendar_feed(conn, hash_token(secret), person_id)
        return api.CalendarFeedCreated(feed=auth_repo.calendar_feed(row), secret=secret)

    @Convoys.CALENDAR_REVOKE
    async def calendar_revoke(self, req: api.Ask) -> api.Accepted:
        person_id = self.access.person(req.actor, NO_PERSON)
        async with self.rt.db.transaction() as conn:
            if not await auth_repo.revoke_calendar_feeds(conn, person_id):
                raise NotFound("no calendar feed to turn off")
        return api.Accepted(message="revoked")

    @Convoys.CALENDAR_RESOLVE
    async def calendar_resolve(self, req: api.ResolveCalendar) -> api.CalendarOwner:
        """Whose feed this is, with the convoys they report in, facilitate or observe (one round trip for the feed)."""
        async with self.rt.db.transaction() as conn:
            row = await auth_repo.calendar_feed_owner(conn, hash_token(req.token))
            if row is None:
                raise NotFound("unknown or revoked calendar feed")
            convoys = await repo.my_convoys(conn, row["person_id"])
        return struct(
            row,
            api.CalendarOwner,
            convoys=[c for c in convoys if c.role in ("facilitator", "representative", "observer")],
        )

    # --- housekeeping --------------------------------------------------------------------------
    async def purge_forever(self, stop: asyncio.Event) -> None:
        """Keep the session store bounded: drop what expired, every hour."""
        while not stop.is_set():
            try:
                async with self.rt.db.transaction() as conn:
                    await auth_repo.purge_expired(conn)
            except Exception as exc:
                log.warning("purge failed; next round in an hour", error=repr(exc))
            await wait_or_stop(stop, PURGE_EVERY_S)
