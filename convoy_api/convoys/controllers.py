"""Convoys: set-up and lifecycle, facilitators, companies, members, invitations, join requests, audit."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get, patch, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter

from convoy_api import examples as ex
from convoy_api.deps import Backend, anonymous_request_limit, provide_actor
from schemas import api
from schemas.convoys import Convoys

Actor = NamedDependency[api.Actor]
Services = NamedDependency[Backend]
ConvoyId = FromPath[uuid.UUID]


class ConvoyController(Controller):
    path = "/api/v1/convoys"
    tags = ["convoys"]
    dependencies = {"actor": Provide(provide_actor)}

    @post("/", summary="Create a convoy (facilitators, admins); its creator facilitates it")
    async def create(self, data: ex.NewConvoy, actor: Actor, backend: Services) -> api.Convoy:
        return await backend.call(Convoys.CONVOY_CREATE, api.CreateConvoy(actor=actor, convoy=data))

    @get("/{convoy_id:uuid}", summary="A convoy with facilitators, companies, representatives (its people)")
    async def read(self, convoy_id: ConvoyId, actor: Actor, backend: Services) -> api.Convoy:
        return await backend.call(Convoys.CONVOY_GET, api.GetConvoy(actor=actor, convoy_id=convoy_id))

    @patch("/{convoy_id:uuid}", summary="Change name, description, cadence, dates (its facilitators)")
    async def update(self, convoy_id: ConvoyId, data: ex.ConvoyPatch, actor: Actor, backend: Services) -> api.Convoy:
        return await backend.call(Convoys.CONVOY_UPDATE, api.UpdateConvoy(actor=actor, convoy_id=convoy_id, patch=data))

    @post(
        "/{convoy_id:uuid}/status", summary="forming → active → paused → completed (its facilitators)", status_code=200
    )
    async def status(self, convoy_id: ConvoyId, data: ex.StatusChange, actor: Actor, backend: Services) -> api.Convoy:
        return await backend.call(
            Convoys.CONVOY_STATUS, api.ChangeStatus(actor=actor, convoy_id=convoy_id, change=data)
        )

    @put("/{convoy_id:uuid}/slack", summary="Set or remove the convoy's Slack incoming webhook (its facilitators)")
    async def slack(self, convoy_id: ConvoyId, data: ex.SlackWebhook, actor: Actor, backend: Services) -> api.Convoy:
        return await backend.call(Convoys.CONVOY_SLACK_SET, api.SetSlack(actor=actor, convoy_id=convoy_id, slack=data))

    @put(
        "/{convoy_id:uuid}/teams",
        summary="Set or remove the convoy's Microsoft Teams (Workflows) webhook (its facilitators)",
    )
    async def teams(self, convoy_id: ConvoyId, data: ex.TeamsWebhook, actor: Actor, backend: Services) -> api.Convoy:
        return await backend.call(
            Convoys.CONVOY_CHAT_SET, api.SetChat(actor=actor, convoy_id=convoy_id, channel="teams", hook=data)
        )

    @post("/{convoy_id:uuid}/facilitators", summary="Add a co-facilitator (its facilitators)")
    async def add_facilitator(
        self, convoy_id: ConvoyId, data: ex.CoFacilitator, actor: Actor, backend: Services
    ) -> api.Convoy:
        return await backend.call(
            Convoys.CONVOY_FACILITATOR_ADD,
            api.AddFacilitator(actor=actor, convoy_id=convoy_id, person_id=data.person_id),
        )

    @post("/{convoy_id:uuid}/companies", summary="Add a company (its facilitators)")
    async def add_company(
        self, convoy_id: ConvoyId, data: ex.NewCompany, actor: Actor, backend: Services
    ) -> api.Company:
        return await backend.call(Convoys.COMPANY_ADD, api.AddCompany(actor=actor, convoy_id=convoy_id, company=data))

    @post(
        "/{convoy_id:uuid}/companies/{company_id:uuid}/removal",
        summary="Remove a company, with a reason",
        status_code=200,
    )
    async def remove_company(
        self,
        convoy_id: ConvoyId,
        company_id: FromPath[uuid.UUID],
        data: ex.Removal,
        actor: Actor,
        backend: Services,
    ) -> api.Convoy:
        return await backend.call(
            Convoys.COMPANY_REMOVE,
            api.RemoveCompany(actor=actor, convoy_id=convoy_id, company_id=company_id, removal=data),
        )

    @post(
        "/{convoy_id:uuid}/members/{person_id:uuid}/removal",
        summary="Remove a representative, with a reason",
        status_code=200,
    )
    async def remove_member(
        self,
        convoy_id: ConvoyId,
        person_id: FromPath[uuid.UUID],
        data: ex.Removal,
        actor: Actor,
        backend: Services,
    ) -> api.Convoy:
        return await backend.call(
            Convoys.MEMBER_REMOVE, api.RemoveMember(actor=actor, convoy_id=convoy_id, person_id=person_id, removal=data)
        )

    @post(
        "/{convoy_id:uuid}/companies/{company_id:uuid}/invitations",
        summary="Invite a representative by email: a single-use link that expires (its facilitators)",
    )
    async def invite(
        self,
        convoy_id: ConvoyId,
        company_id: FromPath[uuid.UUID],
        data: ex.NewInvitation,
        actor: Actor,
        backend: Services,
    ) -> api.Invitation:
        return await backend.call(
            Convoys.INVITATION_CREATE,
            api.CreateInvitation(actor=actor, convoy_id=convoy_id, company_id=company_id, invitation=data),
        )

    @post(
        "/{convoy_id:uuid}/observers/invitations",
        summary="Invite an observer by email: reads along, gets the digest, writes nothing (its facilitators;"
        " a representative for their own company's second reader)",
    )
    async def invite_observer(
        self, convoy_id: ConvoyId, data: ex.NewObserverInvitation, actor: Actor, backend: Services
    ) -> api.Invitation:
        return await backend.call(
            Convoys.OBSERVER_INVITE, api.InviteObserver(actor=actor, convoy_id=convoy_id, invitation=data)
        )

    @get(
        "/{convoy_id:uuid}/invitations",
        summary="Pending invitations: not accepted, not withdrawn (expired ones too, to resend) (its facilitators)",
    )
    async def invitations(self, convoy_id: ConvoyId, actor: Actor, backend: Services) -> api.PendingInvitations:
        return await backend.call(Convoys.INVITATION_LIST, api.ListInvitations(actor=actor, convoy_id=convoy_id))

    @post(
        "/{convoy_id:uuid}/invitations/{invitation_id:uuid}/resend",
        summary="Send a pending invitation again: a new link by email, the old one stops working; the address's"
        " daily invitation limit applies (its facilitators)",
    )
    async def resend_invitation(
        self, convoy_id: ConvoyId, invitation_id: FromPath[uuid.UUID], actor: Actor, backend: Services
    ) -> api.Invitation:
        return await backend.call(
            Convoys.INVITATION_RESEND,
            api.InvitationAction(actor=actor, convoy_id=convoy_id, invitation_id=invitation_id),
        )

    @post(
        "/{convoy_id:uuid}/invitations/{invitation_id:uuid}/withdrawal",
        summary="Withdraw a pending invitation: its link stops working; answers the invitations still pending"
        " (its facilitators)",
        status_code=200,
    )
    async def withdraw_invitation(
        self, convoy_id: ConvoyId, invitation_id: FromPath[uuid.UUID], actor: Actor, backend: Services
    ) -> api.PendingInvitations:
        return await backend.call(
            Convoys.INVITATION_WITHDRAW,
            api.InvitationAction(actor=actor, convoy_id=convoy_id, invitation_id=invitation_id),
        )

    @post(
        "/{convoy_id:uuid}/observers/{person_id:uuid}/removal",
        summary="End an observer's seat, with a reason (its facilitators)",
        status_code=200,
    )
    async def remove_observer(
        self,
        convoy_id: ConvoyId,
        person_id: FromPath[uuid.UUID],
        data: ex.Removal,
        actor: Actor,
        backend: Services,
    ) -> api.Convoy:
        return await backend.call(
            Convoys.OBSERVER_REMOVE,
            api.RemoveObserver(actor=actor, convoy_id=convoy_id, person_id=person_id, removal=data),
        )

    @get("/{convoy_id:uuid}/join-requests", summary="Requests to join (its facilitators)")
    async def join_requests(
        self,
        convoy_id: ConvoyId,
        actor: Actor,
        backend: Services,
        status: Annotated[api.JoinRequestFilter, QueryParameter()] = "pending",
    ) -> api.JoinRequests:
        return await backend.call(
            Convoys.JOIN_REQUEST_LIST, api.ListJoinRequests(actor=actor, convoy_id=convoy_id, status=status)
        )

    @post(
        "/{convoy_id:uuid}/join-requests/{request_id:uuid}/decision",
        summary="Approve or decline a join request",
        status_code=200,
    )
    async def decide(
        self,
        convoy_id: ConvoyId,
        request_id: FromPath[uuid.UUID],
        data: ex.JoinDecision,
        actor: Actor,
        backend: Services,
    ) -> api.JoinRequest:
        return await backend.call(
            Convoys.JOIN_REQUEST_DECIDE,
            api.DecideJoinRequest(actor=actor, convoy_id=convoy_id, request_id=request_id, decision=data),
        )

    @get("/{convoy_id:uuid}/audit", summary="Audit log of membership and administration (its facilitators)")
    async def audit(
        self,
        convoy_id: ConvoyId,
        actor: Actor,
        backend: Services,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 200,
    ) -> api.AuditLog:
        return await backend.call(Convoys.AUDIT_LIST, api.ListAudit(actor=actor, convoy_id=convoy_id, limit=limit))


class OpenConvoyController(Controller):
    """What anyone may see and do without an account."""

    path = "/api/v1"
    tags = ["convoys"]

    @get("/open-convoys", summary="Convoys that companies may ask to join")
    async def open_convoys(self, backend: Services) -> api.OpenConvoys:
        return await backend.call(Convoys.CONVOY_LIST_OPEN, api.Empty())

    @post(
        "/open-convoys/{convoy_id:uuid}/join-requests",
        summary="Ask for a company to join",
        status_code=202,
        guards=[anonymous_request_limit],
    )
    async def ask_to_join(self, convoy_id: ConvoyId, data: ex.NewJoinRequest, backend: Services) -> api.Accepted:
        await backend.call(Convoys.JOIN_REQUEST_CREATE, api.CreateJoinRequest(convoy_id=convoy_id, request=data))
        return api.Accepted(message="Thank you: the convoy's facilitators will answer by email.")
