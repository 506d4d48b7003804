"""Data protection: download everything Convoy stores about me; delete my account."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency, Provide

from convoy_api.deps import SESSION_COOKIE, Backend, bearer_token, provide_actor
from schemas import api
from schemas.convoys import Convoys
from schemas.milestones import Milestones
from schemas.notifier import Notifier
from schemas.reminders import Reminders
from services.runtime.errors import Forbidden

Actor = NamedDependency[api.Actor]
Services = NamedDependency[Backend]


CONTRACTS = (Convoys, Milestones, Reminders, Notifier)
"""Every service keeps personal data; each answers for itself."""


class PrivacyController(Controller):
    path = "/api/v1/me/export"
    tags = ["profile"]
    dependencies = {"actor": Provide(provide_actor)}

    @get(
        "/",
        summary="Download everything Convoy stores about me (JSON, one section per service)",
        description=(
            "Each service answers for itself, asked in parallel: convoys (person, memberships and roles,"
            " invitations to my address, join requests I made, API tokens without secrets, live sessions,"
            " audit entries by or about me), milestones (my reports with earlier versions, comments, kudos"
            " given, help offers, flags), notifier (preferences, deliveries to me), reminders (absences I"
            " marked). My own hidden content is included, marked hidden."
        ),
    )
    async def export(self, actor: Actor, backend: Services) -> Response[api.PersonalExport]:
        if actor.person_id is None:
            raise Forbidden("the admin token has no personal data; sign in as a person")
        parts = await asyncio.gather(
            *(backend.call(contract.PERSONAL_DATA, api.Ask(actor=actor)) for contract in CONTRACTS)
        )
        now = datetime.now(UTC)
        document = api.PersonalExport(
            person_id=actor.person_id,
            exported_at=now,
            services={c.SERVICE: part.sections for c, part in zip(CONTRACTS, parts, strict=True)},
        )
        filename = f"convoy-export-{now.date().isoformat()}.json"
        return Response(document, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


ERASE_SUMMARY = 'Delete my account: send {"confirm": "DELETE"}'
ERASE_DESCRIPTION = (
    "Erases my personal data in every service (name, email, sessions, tokens, invitations,"
    " preferences, the address in the delivery log) and ends my memberships. My reports and"
    " comments stay in their convoys, attributed to 'a former representative of <company>'"
    " (`author_erased`, `former_author`). Cannot be undone; signs me out everywhere."
)


async def erase_account(
    data: api.EraseConfirm, request: Request[Any, Any, Any], actor: api.Actor, backend: Backend
) -> Response[api.Erased]:
    """DELETE /api/v1/me (registered on the profile controller, which owns that path)."""
    erased = await backend.call(Convoys.ME_ERASE, api.EraseMe(actor=actor, confirm=data.confirm))
    for token in (bearer_token(request), request.cookies.get(SESSION_COOKIE)):
        if token:
            backend.forget(token)
    response: Response[api.Erased] = Response(erased)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
