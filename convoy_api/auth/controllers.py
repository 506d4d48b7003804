"""Sign-in by emailed link, invitations, sign-out, profile, personal API tokens, facilitators."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from convoy_api import examples as ex
from convoy_api.deps import (
    SESSION_COOKIE,
    Backend,
    bearer_token,
    client_key,
    client_rate_limit,
    json_from_this_site,
    provide_actor,
)
from convoy_api.privacy import controllers as privacy
from schemas import api
from schemas.convoys import Convoys

Actor = NamedDependency[api.Actor]
Services = NamedDependency[Backend]


def signed_in_response(backend: Backend, signed_in: api.SignedIn, status_code: int = 200) -> Response[api.SignInResult]:
    """The session goes into a secure, HttpOnly cookie; API clients use the access token in the body."""
    max_age = int((signed_in.session_expires_at - datetime.now(UTC)).total_seconds())
    return Response(
        api.SignInResult(
            person=signed_in.person,
            access_token=signed_in.access_token,
            access_expires_at=signed_in.access_expires_at,
            session_expires_at=signed_in.session_expires_at,
            csrf_token=signed_in.csrf_token,
        ),
        status_code=status_code,
        cookies=[
            Cookie(
                key=SESSION_COOKIE,
                value=signed_in.session_token,
                max_age=max_age,
                path="/",
                httponly=True,
                secure=backend.settings.public_url.startswith("https://"),
                samesite="lax",
            )
        ],
    )


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["sign-in"]

    @post(
        "/sign-in",
        summary="Ask for a sign-in link by email (the answer never tells if the address is known)",
        status_code=202,
        guards=[client_rate_limit],
    )
    async def request_link(
        self, data: ex.SignInRequest, backend: Services, request: Request[Any, Any, Any]
    ) -> api.Accepted:
        ask = api.SignInAsk(sign_in=data, client=client_key(backend.settings, request, "sign-in"))
        return await backend.call(Convoys.SIGN_IN_REQUEST, ask)

    @post(
        "/sign-in/complete",
        summary="Exchange the link's token for a session and an access token",
        guards=[json_from_this_site, client_rate_limit],
    )
    async def complete(self, data: ex.TokenBody, backend: Services) -> Response[api.SignInResult]:
        return signed_in_response(backend, await backend.call(Convoys.SIGN_IN_COMPLETE, data))

    @post("/sign-out", summary="End this session (cookie) or revoke this access token", status_code=200)
    async def sign_out(self, request: Request[Any, Any, Any], backend: Services) -> Response[api.Accepted]:
        for token in (bearer_token(request), request.cookies.get(SESSION_COOKIE)):
            if token and token.startswith(("cvs_", "cva_")):
                await backend.call(Convoys.SIGN_OUT, api.SignOut(token=token))
                backend.forget(token)
        response: Response[api.Accepted] = Response(api.Accepted(message="signed out"))
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


class InvitationController(Controller):
    path = "/api/v1/invitations"
    tags = ["sign-in"]

    @post(
        "/preview",
        summary="What an invitation is for (convoy, company, address)",
        guards=[client_rate_limit],
        status_code=200,
    )
    async def preview(self, data: ex.TokenBody, backend: Services) -> api.InvitationPreview:
        return await backend.call(Convoys.INVITATION_PREVIEW, api.PreviewInvitation(token=data.token))

    @post(
        "/accept",
        summary="Accept an invitation: creates the person and the membership, and signs in",
        guards=[client_rate_limit],
    )
    async def accept(self, data: ex.AcceptInvitation, backend: Services) -> Response[api.SignInResult]:
        signed_in = await backend.call(Convoys.INVITATION_ACCEPT, api.AcceptInvitationRequest(accept=data))
        return signed_in_response(backend, signed_in, status_code=201)


class MeController(Controller):
    path = "/api/v1/me"
    tags = ["profile"]
    dependencies = {"actor": Provide(provide_actor)}

    @get("/", summary="My profile and my convoys with my role in each")
    async def me(self, actor: Actor, backend: Services) -> api.Me:
        return await backend.call(Convoys.ME_GET, api.Ask(actor=actor))

    @patch("/", summary="Change my name, language or time zone")
    async def update(self, data: ex.ProfilePatch, actor: Actor, backend: Services) -> api.Me:
        return await backend.call(Convoys.ME_UPDATE, api.UpdateMe(actor=actor, patch=data))

    @delete("/", summary=privacy.ERASE_SUMMARY, description=privacy.ERASE_DESCRIPTION, status_code=200)
    async def erase(
        self, data: ex.EraseConfirm, request: Request[Any, Any, Any], actor: Actor, backend: Services
    ) -> Response[api.Erased]:
        return await privacy.erase_account(data, request, actor, backend)

    @post("/tokens", summary="Create a personal API token (shown once)")
    async def create_token(self, data: ex.NewApiToken, actor: Actor, backend: Services) -> api.ApiTokenCreated:
        return await backend.call(Convoys.API_TOKEN_CREATE, api.CreateApiToken(actor=actor, request=data))

    @get("/tokens", summary="My personal API tokens")
    async def tokens(self, actor: Actor, backend: Services) -> api.ApiTokens:
        return await backend.call(Convoys.API_TOKEN_LIST, api.Ask(actor=actor))

    @delete("/tokens/{token_id:uuid}", summary="Revoke one of my API tokens", status_code=204)
    async def revoke(self, token_id: FromPath[uuid.UUID], actor: Actor, backend: Services) -> None:
        await backend.call(Convoys.API_TOKEN_REVOKE, api.RevokeApiToken(actor=actor, token_id=token_id))


class FacilitatorController(Controller):
    path = "/api/v1/facilitators"
    tags = ["convoys"]
    dependencies = {"actor": Provide(provide_actor)}

    @post("/", summary="Appoint a facilitator (admins); they get an email to sign in")
    async def appoint(self, data: ex.NewFacilitator, actor: Actor, backend: Services) -> api.Person:
        return await backend.call(Convoys.FACILITATOR_APPOINT, api.AppointFacilitator(actor=actor, facilitator=data))
