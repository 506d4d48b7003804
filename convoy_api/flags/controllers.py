"""Flags and the moderation queue (services/milestones), and the convoy's charter (services/convoys).

Members (representatives and facilitators) flag reports and comments; the convoy's facilitators and
admins read the queue and resolve flags (dismiss, or act: hide). Everyone in the convoy reads the
charter; facilitators change it; representatives accept it (accepting the invitation accepts it too).
"""

from __future__ import annotations

import uuid

from litestar import Controller, Response, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from convoy_api import examples as ex
from convoy_api.deps import Backend, provide_actor
from schemas import api
from schemas.convoys import Convoys
from schemas.milestones import Milestones

Actor = NamedDependency[api.Actor]
Services = NamedDependency[Backend]
ObjectId = FromPath[uuid.UUID]
ConvoyId = FromPath[uuid.UUID]
FlagId = FromPath[uuid.UUID]


def _receipt(receipt: api.FlagReceipt) -> Response[api.FlagReceipt]:
    """201 for a new flag, 200 when the caller's flag on it was already open (nothing happened)."""
    return Response(receipt, status_code=201 if receipt.created else 200)


class FlagController(Controller):
    path = "/api/v1"
    tags = ["moderation"]
    dependencies = {"actor": Provide(provide_actor)}

    @post(
        "/reports/{report_id:uuid}/flags",
        summary="Flag a report for the convoy's facilitators (members; once per person until resolved)",
    )
    async def flag_report(
        self, report_id: ObjectId, data: ex.NewFlag, actor: Actor, backend: Services
    ) -> Response[api.FlagReceipt]:
        request = api.FlagContent(actor=actor, object_type="report", object_id=report_id, flag=data)
        return _receipt(await backend.call(Milestones.FLAG_CREATE, request))

    @post(
        "/comments/{comment_id:uuid}/flags",
        summary="Flag a comment for the convoy's facilitators (members; once per person until resolved)",
    )
    async def flag_comment(
        self, comment_id: ObjectId, data: ex.NewFlag, actor: Actor, backend: Services
    ) -> Response[api.FlagReceipt]:
        request = api.FlagContent(actor=actor, object_type="comment", object_id=comment_id, flag=data)
        return _receipt(await backend.call(Milestones.FLAG_CREATE, request))

    @get("/convoys/{convoy_id:uuid}/flags", summary="The convoy's moderation queue: open flags (facilitators)")
    async def queue(self, convoy_id: ConvoyId, actor: Actor, backend: Services) -> api.FlagQueue:
        return await backend.call(Milestones.FLAG_QUEUE, api.ConvoyAsk(actor=actor, convoy_id=convoy_id))

    @post(
        "/flags/{flag_id:uuid}/resolve",
        summary="Dismiss, or act on (hide), a flagged object: resolves every open flag on it (facilitators)",
        status_code=200,
    )
    async def resolve(
        self, flag_id: FlagId, data: ex.FlagResolution, actor: Actor, backend: Services
    ) -> api.FlagOutcome:
        return await backend.call(
            Milestones.FLAG_RESOLVE, api.ResolveFlag(actor=actor, flag_id=flag_id, resolution=data)
        )


class CharterController(Controller):
    path = "/api/v1/convoys/{convoy_id:uuid}/charter"
    tags = ["convoys"]
    dependencies = {"actor": Provide(provide_actor)}

    @get("/", summary="The convoy's charter: text, version, and whether I accepted it (its people)")
    async def read(self, convoy_id: ConvoyId, actor: Actor, backend: Services) -> api.Charter:
        return await backend.call(Convoys.CHARTER_GET, api.AskConvoy(actor=actor, convoy_id=convoy_id))

    @put("/", summary="Change the charter: a new version every representative accepts again (its facilitators)")
    async def change(self, convoy_id: ConvoyId, data: ex.CharterText, actor: Actor, backend: Services) -> api.Charter:
        return await backend.call(Convoys.CHARTER_PUT, api.PutCharter(actor=actor, convoy_id=convoy_id, charter=data))

    @post(
        "/accept",
        summary="Accept the current charter: needed before posting reports or comments again (representatives)",
        status_code=200,
    )
    async def accept(
        self, convoy_id: ConvoyId, data: ex.CharterAcceptance, actor: Actor, backend: Services
    ) -> api.Charter:
        return await backend.call(
            Convoys.CHARTER_ACCEPT, api.AcceptCharter(actor=actor, convoy_id=convoy_id, acceptance=data)
        )
