"""services/milestones: digital projects, milestones, progress reports, comments, kudos, help."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from schemas import api
from schemas import events as ev
from schemas.subjects import Rpc
from services.milestones import consumers
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
    rt.endpoint(Rpc.REPORT_SUBMIT, api.SubmitReport, svc.submit_report)
    rt.endpoint(Rpc.REPORT_EDIT, api.EditReport, svc.edit_report)
    rt.endpoint(Rpc.REPORT_GET, api.GetReport, svc.get_report)
    rt.endpoint(Rpc.REPORT_LIST, api.ListReports, svc.list_reports)
    rt.endpoint(Rpc.TIMELINE, api.Timeline, svc.timeline)
    rt.endpoint(Rpc.SEARCH, api.Search, svc.search)
    rt.endpoint(Rpc.EXPORT, api.ExportAsk, svc.export)
    rt.endpoint(Rpc.BOARD, api.ConvoyAsk, svc.board)
    rt.endpoint(Rpc.PROJECT_PUT, api.PutProject, svc.put_project)
    rt.endpoint(Rpc.PROJECT_GET, api.CompanyAction, svc.get_project)
    rt.endpoint(Rpc.MILESTONE_ADD, api.AddMilestone, svc.add_milestone)
    rt.endpoint(Rpc.MILESTONE_CHANGE, api.ChangeMilestone, svc.change_milestone)
    rt.endpoint(Rpc.MILESTONE_ORDER, api.OrderMilestones, svc.order_milestones)
    rt.endpoint(Rpc.COMMENT_ADD, api.AddComment, svc.add_comment)
    rt.endpoint(Rpc.COMMENT_LIST, api.ReportAction, svc.list_comments)
    rt.endpoint(Rpc.COMMENT_EDIT, api.EditComment, svc.edit_comment)
    rt.endpoint(Rpc.COMMENT_DELETE, api.CommentAction, svc.delete_comment)
    rt.endpoint(Rpc.KUDOS_GIVE, api.ReportAction, svc.give_kudos)
    rt.endpoint(Rpc.KUDOS_TAKE_BACK, api.ReportAction, svc.take_back_kudos)
    rt.endpoint(Rpc.HELP_OFFER, api.OfferHelp, svc.offer_help)
    rt.endpoint(Rpc.HELP_SUGGESTIONS, api.ReportAction, svc.help_suggestions)
    rt.endpoint(Rpc.CATALOGUE, api.Empty, svc.catalogue)
    rt.endpoint(Rpc.CYCLE_STATUS, api.CycleAsk, digests.cycle_status)
    rt.endpoint(Rpc.PROMPT_CONTEXT, api.CycleAsk, digests.prompt_context)
    rt.endpoint(Rpc.DIGEST, api.CycleAsk, digests.digest)
    rt.endpoint(Rpc.ROUNDS_SEAL, api.SealRounds, digests.seal_rounds)
    rt.endpoint(Rpc.FACILITATOR_DIGEST, api.FacilitatorDigestAsk, digests.facilitator_digest)
    # --- demo / import
    rt.endpoint(Rpc.REPORT_IMPORT, api.ImportReport, HistoryImport(rt, access).import_report)
    # --- moderation
    moderation = Moderation(rt, access)
    rt.endpoint(Rpc.REPORT_HIDE, api.ModerateReport, moderation.hide_report)
    rt.endpoint(Rpc.REPORT_RESTORE, api.ModerateReport, moderation.restore_report)
    rt.endpoint(Rpc.REPORT_LOCK_COMMENTS, api.LockComments, moderation.lock_comments)
    rt.endpoint(Rpc.COMMENT_HIDE, api.ModerateComment, moderation.hide_comment)
    rt.endpoint(Rpc.COMMENT_RESTORE, api.ModerateComment, moderation.restore_comment)
    # --- flags and charter: members flag content, the convoy's facilitators work the queue
    flags = Flags(rt, access, moderation)
    rt.endpoint(Rpc.FLAG_CREATE, api.FlagContent, flags.flag)
    rt.endpoint(Rpc.FLAG_QUEUE, api.ConvoyAsk, flags.queue)
    rt.endpoint(Rpc.FLAG_RESOLVE, api.ResolveFlag, flags.resolve)
    # --- data protection: erased authors, the export, the retention rule (hourly, or asked with a `now`)
    privacy = PrivacyRules(rt)
    rt.consumer("erasure", (ev.PersonErased,), consumers.on_person_erased)
    rt.endpoint(Rpc.PERSONAL_DATA, api.Ask, privacy.personal_data)
    rt.endpoint(Rpc.RETENTION_PURGE, api.RetentionPurge, privacy.purge)
    rt.background(privacy.purge_forever)
    # --- digitalisation check: aggregated outcomes per project type (asked by services/convoys)
    rt.endpoint(Rpc.CHECK_OUTCOMES, api.OutcomesAsk, Outcomes(rt).outcomes)
