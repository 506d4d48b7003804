"""services/convoys: convoys, companies, people, roles, invitations, sign-in and sessions."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from schemas import api
from schemas import events as ev
from schemas.convoys import Convoys
from services.convoys import recipients
from services.convoys.auth import Sessions
from services.convoys.charter import Charters
from services.convoys.check.service import CheckService
from services.convoys.consumers import FlagLog, ModerationLog
from services.convoys.privacy import Privacy
from services.convoys.service import ConvoysService
from services.runtime.service import Runtime

NAME = "convoys"
MIGRATIONS = Path(str(resources.files(__name__) / "migrations"))


async def setup(rt: Runtime) -> None:
    _ = rt.box_public_key  # refuses to start without the notifier's public key: emails travel sealed
    svc = ConvoysService(rt)
    sessions = Sessions(rt)

    @Convoys.INVITATION_ACCEPT
    async def accept_invitation(req: api.AcceptInvitationRequest) -> api.SignedIn:
        return await svc.accept_invitation(req, sessions)

    rt.background(sessions.purge_forever)
    # --- the notifier's recipients: versions announced after each commit that changes them (recipients.py)
    rt.background(recipients.forwarder(rt).run)
    # --- moderation: audit entries (and notices to authors) for content.moderated from services/milestones
    rt.consumer("moderation", (ev.ContentModerated,), ModerationLog(rt).on_content_moderated)
    # --- flags and charter: audit entries and facilitator emails for flags; the charter of each convoy
    rt.consumer("flags", (ev.ContentFlagged, ev.FlagsResolved), FlagLog(rt).on_flag_event)
    charters = Charters(svc)
    # --- data protection: the export, and deleting one's account (person.erased to every service)
    privacy = Privacy(rt)
    # --- digitalisation check: the public check, the formation pool, programme figures (check/)
    check = CheckService(svc)
    rt.background(check.purge_forever)  # formation-pool entries expire (CONVOY_POOL_RETENTION_DAYS)
    rt.serve(Convoys, accept_invitation, svc, sessions, charters, privacy, check)
