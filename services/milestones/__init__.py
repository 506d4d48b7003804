"""services/milestones: digital projects, milestones, progress reports, comments, kudos, help."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from schemas import events as ev
from schemas.milestones import Milestones
from services.milestones import consumers, versions
from services.milestones.access import Access
from services.milestones.consumers import PROJECTED
from services.milestones.digests import Digests
from services.milestones.flags import Flags
from services.milestones.imports import HistoryImport
from services.milestones.moderation import Moderation
from services.milestones.outcomes import Outcomes
from services.milestones.privacy import PrivacyRules
from services.milestones.service import MilestonesService
from services.runtime.service import Runtime

NAME = "milestones"
MIGRATIONS = Path(str(resources.files(__name__) / "migrations"))


async def setup(rt: Runtime) -> None:
    access = Access(rt)
    svc = MilestonesService(rt, access)
    digests = Digests(rt, access)
    rt.consumer("convoys", PROJECTED, consumers.on_convoys_event)
    # --- demo / import
    # --- moderation
    moderation = Moderation(rt, access)
    # --- flags and charter: members flag content, the convoy's facilitators work the queue
    flags = Flags(rt, access, moderation)
    # --- data protection: erased authors, the export, the retention rule (hourly, or asked with a `now`)
    privacy = PrivacyRules(rt)
    rt.consumer("erasure", (ev.PersonErased,), consumers.on_person_erased)
    rt.background(privacy.purge_forever)
    # --- conditional GETs: the convoys' change counters, forwarded to the API after each commit
    rt.background(versions.forwarder(rt).run)
    # --- digitalisation check: aggregated outcomes per project type (asked by services/convoys)
    rt.serve(Milestones, svc, digests, HistoryImport(rt, access), moderation, flags, privacy, Outcomes(rt))
