"""services/convoys: convoys, companies, people, memberships and their tokens."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from schemas import api
from schemas.subjects import Rpc
from services.convoys.service import ConvoysService
from services.runtime.service import Runtime

NAME = "convoys"
MIGRATIONS = Path(str(resources.files(__name__) / "migrations"))


async def setup(rt: Runtime) -> None:
    svc = ConvoysService(rt)
    rt.endpoint(Rpc.CONVOY_CREATE, api.CreateConvoy, svc.create_convoy)
    rt.endpoint(Rpc.CONVOY_GET, api.GetConvoy, svc.get_convoy)
    rt.endpoint(Rpc.COMPANY_ADD, api.AddCompany, svc.add_company)
    rt.endpoint(Rpc.REPRESENTATIVE_ADD, api.AddRepresentative, svc.add_representative)
    rt.endpoint(Rpc.TOKEN_RESOLVE, api.ResolveToken, svc.resolve_token)
    rt.endpoint(Rpc.MEMBERSHIP_GET, api.GetMembership, svc.get_membership)
    rt.endpoint(Rpc.CONVOY_RECIPIENTS, api.GetRecipients, svc.get_recipients)
