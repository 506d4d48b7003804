"""services/convoys: convoys, companies, people, roles, invitations, sign-in and sessions."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from schemas import api
from schemas import events as ev
from schemas.subjects import Rpc
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
    svc = ConvoysService(rt)
    sessions = Sessions(rt)

    async def accept_invitation(req: api.AcceptInvitationRequest) -> api.SignedIn:
        return await svc.accept_invitation(req, sessions)

    rt.endpoint(Rpc.CONVOY_CREATE, api.CreateConvoy, svc.create_convoy)
    rt.endpoint(Rpc.CONVOY_GET, api.GetConvoy, svc.get_convoy)
    rt.endpoint(Rpc.CONVOY_UPDATE, api.UpdateConvoy, svc.update_convoy)
    rt.endpoint(Rpc.CONVOY_STATUS, api.ChangeStatus, svc.change_status)
    rt.endpoint(Rpc.CONVOY_LIST_OPEN, api.Empty, svc.list_open)
    rt.endpoint(Rpc.CONVOY_FACILITATOR_ADD, api.AddFacilitator, svc.add_facilitator)
    rt.endpoint(Rpc.FACILITATOR_APPOINT, api.AppointFacilitator, svc.appoint_facilitator)
    rt.endpoint(Rpc.COMPANY_ADD, api.AddCompany, svc.add_company)
    rt.endpoint(Rpc.COMPANY_REMOVE, api.RemoveCompany, svc.remove_company)
    rt.endpoint(Rpc.MEMBER_REMOVE, api.RemoveMember, svc.remove_member)
    rt.endpoint(Rpc.OBSERVER_INVITE, api.InviteObserver, svc.invite_observer)
    rt.endpoint(Rpc.OBSERVER_REMOVE, api.RemoveObserver, svc.remove_observer)
    rt.endpoint(Rpc.INVITATION_CREATE, api.CreateInvitation, svc.create_invitation)
    rt.endpoint(Rpc.INVITATION_PREVIEW, api.PreviewInvitation, svc.preview_invitation)
    rt.endpoint(Rpc.INVITATION_ACCEPT, api.AcceptInvitationRequest, accept_invitation)
    rt.endpoint(Rpc.INVITATION_LIST, api.ListInvitations, svc.list_invitations)
    rt.endpoint(Rpc.INVITATION_RESEND, api.InvitationAction, svc.resend_invitation)
    rt.endpoint(Rpc.INVITATION_WITHDRAW, api.InvitationAction, svc.withdraw_invitation)
    rt.endpoint(Rpc.JOIN_REQUEST_CREATE, api.CreateJoinRequest, svc.create_join_request)
    rt.endpoint(Rpc.JOIN_REQUEST_LIST, api.ListJoinRequests, svc.list_join_requests)
    rt.endpoint(Rpc.JOIN_REQUEST_DECIDE, api.DecideJoinRequest, svc.decide_join_request)
    rt.endpoint(Rpc.AUDIT_LIST, api.ListAudit, svc.list_audit)
    rt.endpoint(Rpc.MEMBERSHIP_GET, api.GetMembership, svc.get_membership)
    rt.endpoint(Rpc.CONVOY_RECIPIENTS, api.GetRecipients, svc.get_recipients)
    rt.endpoint(Rpc.FACILITATORS, api.Empty, svc.facilitators)
    rt.endpoint(Rpc.CONVOY_FACILITATORS, api.GetRecipients, svc.convoy_facilitators)
    rt.endpoint(Rpc.CONVOY_SLACK_SET, api.SetSlack, svc.set_slack)
    rt.endpoint(Rpc.CONVOY_CHAT_SET, api.SetChat, svc.set_chat)
    rt.endpoint(Rpc.CONVOY_CHAT_GET, api.GetRecipients, svc.chat_targets)

    rt.endpoint(Rpc.SIGN_IN_REQUEST, api.SignInRequest, sessions.request_sign_in)
    rt.endpoint(Rpc.SIGN_IN_COMPLETE, api.SignInComplete, sessions.complete_sign_in)
    rt.endpoint(Rpc.SIGN_OUT, api.SignOut, sessions.sign_out)
    rt.endpoint(Rpc.TOKEN_RESOLVE, api.ResolveToken, sessions.resolve)
    rt.endpoint(Rpc.ME_GET, api.Ask, sessions.me)
    rt.endpoint(Rpc.ME_UPDATE, api.UpdateMe, sessions.update_me)
    rt.endpoint(Rpc.API_TOKEN_CREATE, api.CreateApiToken, sessions.create_api_token)
    rt.endpoint(Rpc.API_TOKEN_LIST, api.Ask, sessions.list_api_tokens)
    rt.endpoint(Rpc.API_TOKEN_REVOKE, api.RevokeApiToken, sessions.revoke_api_token)
    rt.endpoint(Rpc.CALENDAR_GET, api.Ask, sessions.calendar_get)
    rt.endpoint(Rpc.CALENDAR_CREATE, api.Ask, sessions.calendar_create)
    rt.endpoint(Rpc.CALENDAR_REVOKE, api.Ask, sessions.calendar_revoke)
    rt.endpoint(Rpc.CALENDAR_RESOLVE, api.ResolveCalendar, sessions.calendar_resolve)
    rt.background(sessions.purge_forever)
    # --- moderation: audit entries (and notices to authors) for content.moderated from services/milestones
    rt.consumer("moderation", (ev.ContentModerated,), ModerationLog(rt).on_content_moderated)
    # --- flags and charter: audit entries and facilitator emails for flags; the charter of each convoy
    rt.consumer("flags", (ev.ContentFlagged, ev.FlagsResolved), FlagLog(rt).on_flag_event)
    charters = Charters(svc)
    rt.endpoint(Rpc.CHARTER_GET, api.AskConvoy, charters.get)
    rt.endpoint(Rpc.CHARTER_PUT, api.PutCharter, charters.put)
    rt.endpoint(Rpc.CHARTER_ACCEPT, api.AcceptCharter, charters.accept)
    # --- data protection: the export, and deleting one's account (person.erased to every service)
    privacy = Privacy(rt)
    rt.endpoint(Rpc.PERSONAL_DATA, api.Ask, privacy.personal_data)
    rt.endpoint(Rpc.ME_ERASE, api.EraseMe, privacy.erase)
    # --- digitalisation check: the public check, the formation pool, programme figures (check/)
    check = CheckService(svc)
    rt.endpoint(Rpc.CHECK_QUESTIONS, api.Empty, check.questions)
    rt.endpoint(Rpc.CHECK_SUBMIT, api.SubmitCheck, check.submit)
    rt.endpoint(Rpc.CHECK_GET, api.GetCheck, check.get)
    rt.endpoint(Rpc.POOL_JOIN, api.JoinPool, check.join)
    rt.endpoint(Rpc.POOL_LIST, api.Ask, check.pool)
    rt.endpoint(Rpc.POOL_FORM, api.FormConvoy, check.form)
    rt.endpoint(Rpc.PROGRAMME_REPORT, api.AskProgramme, check.programme)
