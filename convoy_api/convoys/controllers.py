"""Convoys, companies and representatives (foundation: set up by the centre's admin)."""

from __future__ import annotations

import uuid

from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from convoy_api.deps import Backend, provide_actor
from schemas import api
from schemas.subjects import Rpc

Actor = NamedDependency[api.Actor]
Services = NamedDependency[Backend]


class ConvoyController(Controller):
    path = "/api/v1/convoys"
    tags = ["convoys"]
    dependencies = {"actor": Provide(provide_actor)}

    @post("/", summary="Create a convoy (admin)")
    async def create(self, data: JSONBody[api.NewConvoy], actor: Actor, backend: Services) -> api.Convoy:
        return await backend.call(
            "convoys", Rpc.CONVOY_CREATE, api.CreateConvoy(actor=actor, convoy=data), api.Convoy
        )

    @get("/{convoy_id:uuid}", summary="A convoy with its companies (admin or member)")
    async def read(self, convoy_id: FromPath[uuid.UUID], actor: Actor, backend: Services) -> api.Convoy:
        return await backend.call(
            "convoys", Rpc.CONVOY_GET, api.GetConvoy(actor=actor, convoy_id=convoy_id), api.Convoy
        )

    @post("/{convoy_id:uuid}/companies", summary="Add a company to a convoy (admin)")
    async def add_company(
        self, convoy_id: FromPath[uuid.UUID], data: JSONBody[api.NewCompany], actor: Actor, backend: Services
    ) -> api.Company:
        return await backend.call(
            "convoys",
            Rpc.COMPANY_ADD,
            api.AddCompany(actor=actor, convoy_id=convoy_id, company=data),
            api.Company,
        )

    @post(
        "/{convoy_id:uuid}/companies/{company_id:uuid}/representatives",
        summary="Add a company representative; answers with their personal API token (admin)",
    )
    async def add_representative(
        self,
        convoy_id: FromPath[uuid.UUID],
        company_id: FromPath[uuid.UUID],
        data: JSONBody[api.NewRepresentative],
        actor: Actor,
        backend: Services,
    ) -> api.RepresentativeAdded:
        return await backend.call(
            "convoys",
            Rpc.REPRESENTATIVE_ADD,
            api.AddRepresentative(
                actor=actor, convoy_id=convoy_id, company_id=company_id, representative=data
            ),
            api.RepresentativeAdded,
        )
