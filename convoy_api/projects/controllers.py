"""Digital projects and milestones; the milestone catalogue."""

from __future__ import annotations

import uuid

from litestar import Controller, get, patch, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from convoy_api import examples as ex
from convoy_api.deps import Backend, provide_actor
from schemas import api
from schemas.catalogue import Catalogue
from schemas.milestones import Milestones

Actor = NamedDependency[api.Actor]
Services = NamedDependency[Backend]
ConvoyId = FromPath[uuid.UUID]
CompanyId = FromPath[uuid.UUID]


class ProjectController(Controller):
    path = "/api/v1/convoys/{convoy_id:uuid}/companies/{company_id:uuid}/project"
    tags = ["projects"]
    dependencies = {"actor": Provide(provide_actor)}

    @get("/", summary="A company's digital project with its milestones and progress (members)")
    async def read(self, convoy_id: ConvoyId, company_id: CompanyId, actor: Actor, backend: Services) -> api.Project:
        return await backend.call(
            Milestones.PROJECT_GET, api.CompanyAction(actor=actor, convoy_id=convoy_id, company_id=company_id)
        )

    @put("/", summary="Describe my company's project; a catalogue type seeds its milestone ladder")
    async def describe(
        self, convoy_id: ConvoyId, company_id: CompanyId, data: ex.ProjectIn, actor: Actor, backend: Services
    ) -> api.Project:
        return await backend.call(
            Milestones.PROJECT_PUT,
            api.PutProject(actor=actor, convoy_id=convoy_id, company_id=company_id, project=data),
        )

    @post("/milestones", summary="Add a milestone (at most 50 per project)")
    async def add_milestone(
        self, convoy_id: ConvoyId, company_id: CompanyId, data: ex.NewMilestone, actor: Actor, backend: Services
    ) -> api.Milestone:
        return await backend.call(
            Milestones.MILESTONE_ADD,
            api.AddMilestone(actor=actor, convoy_id=convoy_id, company_id=company_id, milestone=data),
        )

    @put("/milestone-order", summary="Reorder the milestones")
    async def order(
        self, convoy_id: ConvoyId, company_id: CompanyId, data: ex.MilestoneOrder, actor: Actor, backend: Services
    ) -> api.Project:
        return await backend.call(
            Milestones.MILESTONE_ORDER,
            api.OrderMilestones(actor=actor, convoy_id=convoy_id, company_id=company_id, order=data),
        )


class MilestoneController(Controller):
    path = "/api/v1"
    tags = ["projects"]

    @patch(
        "/milestones/{milestone_id:uuid}",
        summary="Rename, re-date, re-weight or set the status of a milestone",
        dependencies={"actor": Provide(provide_actor)},
    )
    async def change(
        self, milestone_id: FromPath[uuid.UUID], data: ex.MilestonePatch, actor: Actor, backend: Services
    ) -> api.Milestone:
        return await backend.call(
            Milestones.MILESTONE_CHANGE, api.ChangeMilestone(actor=actor, milestone_id=milestone_id, patch=data)
        )

    @get("/catalogue", summary="Typical milestone ladders per project type (German and English)")
    async def catalogue(self, backend: Services) -> Catalogue:
        return await backend.call(Milestones.CATALOGUE, api.Empty())
