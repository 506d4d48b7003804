"""Moderation by a convoy's facilitators: hide and restore reports and comments, lock comments.

- Only the convoy's facilitators and the centre's admins moderate (``Grant.moderates``);
  a representative of the convoy is refused (403), anyone else is told the report or comment
  does not exist (404), as everywhere in services/milestones.
- Hiding needs a reason (1..500 characters). Hidden content disappears from every read members
  have (report, timeline, search, board, digest, export, comment lists and counts; answers to a
  hidden comment go with it); facilitators and admins still see it, marked ``hidden`` with the
  reason. Restoring brings it back as it was.
- Locked comments: members can no longer comment on the report (409); facilitators still can
  (to explain, for instance). Reading, kudos and help are unaffected.
- Every change emits ``content.moderated`` in the same transaction (outbox): services/convoys
  records it in the convoy's audit log (who, what, which object, when, why) and emails the
  author of hidden content the reason. Asking for the state something is already in (hiding a
  hidden comment, locking locked comments) changes nothing and records nothing.
- Moderation works in completed convoys too: their content stays readable, so it stays moderable.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg

from schemas import api
from schemas import events as ev
from schemas.milestones import Milestones
from services.milestones import repository as repo
from services.milestones import versions
from services.milestones.access import Access, Grant
from services.milestones.service import comment_view, read_report
from services.runtime.errors import InvalidInput
from services.runtime.service import Runtime


def reason_given(reason: str, *, required: bool) -> str:
    reason = reason.strip()
    if required and not reason:
        raise InvalidInput("`reason`: say why (1 to 500 characters); the author is told")
    return reason


class Moderation:
    def __init__(self, rt: Runtime, access: Access) -> None:
        self.rt = rt
        self.access = access
        self.edit_window = timedelta(seconds=rt.settings.comment_edit_window_s)

    async def _report(
        self, conn: asyncpg.Connection, actor: api.Actor, report_id: uuid.UUID
    ) -> tuple[Grant, asyncpg.Record]:
        grant, row = await self.access.report(conn, actor, report_id, lock=True)
        grant.moderates()
        return grant, row

    async def _emit(
        self,
        conn: asyncpg.Connection,
        actor: api.Actor,
        action: ev.ModerationAction,
        report: asyncpg.Record,
        *,
        object_id: uuid.UUID,
        author_id: uuid.UUID,
        reason: str,
    ) -> None:
        await self.rt.emit(
            conn,
            ev.ContentModerated(
                convoy_id=report["convoy_id"],
                actor_id=actor.person_id,
                action=action,
                object_type="report" if action.startswith(("report.", "comments.")) else "comment",
                object_id=object_id,
                report_id=report["id"],
                company_id=report["company_id"],
                author_id=author_id,
                reason=reason,
            ),
        )

    async def _set_report_hidden(self, req: api.ModerateReport, hidden: bool) -> api.Report:
        reason = reason_given(req.reason, required=hidden)
        async with self.rt.db.transaction() as conn:
            grant = await self.set_report_hidden_in(conn, req.actor, req.report_id, hidden, reason)
            report = await read_report(conn, grant, req.report_id)
        await versions.announce_now(self.rt, report.convoy_id)  # no member revalidates the old page after our 200
        return report

    async def set_report_hidden_in(
        self, conn: asyncpg.Connection, actor: api.Actor, report_id: uuid.UUID, hidden: bool, reason: str
    ) -> Grant:
        """Hide or restore a report in the caller's transaction (the one path: direct, or acting on a flag)."""
        grant, row = await self._report(conn, actor, report_id)
        if (row["hidden_at"] is not None) != hidden:
            await repo.moderation.set_report_hidden(conn, report_id, hidden, reason)
            await self._emit(
                conn,
                actor,
                "report.hidden" if hidden else "report.restored",
                row,
                object_id=row["id"],
                author_id=row["author_id"],
                reason=reason,
            )
        return grant

    @Milestones.REPORT_HIDE
    async def hide_report(self, req: api.ModerateReport) -> api.Report:
        return await self._set_report_hidden(req, True)

    @Milestones.REPORT_RESTORE
    async def restore_report(self, req: api.ModerateReport) -> api.Report:
        return await self._set_report_hidden(req, False)

    @Milestones.REPORT_LOCK_COMMENTS
    async def lock_comments(self, req: api.LockComments) -> api.Report:
        reason = reason_given(req.reason, required=False)
        async with self.rt.db.transaction() as conn:
            grant, row = await self._report(conn, req.actor, req.report_id)
            if (row["comments_locked_at"] is not None) != req.locked:
                await repo.moderation.set_comments_locked(conn, req.report_id, req.locked)
                await self._emit(
                    conn,
                    req.actor,
                    "comments.locked" if req.locked else "comments.unlocked",
                    row,
                    object_id=row["id"],
                    author_id=row["author_id"],
                    reason=reason,
                )
            return await read_report(conn, grant, req.report_id)

    async def _set_comment_hidden(self, req: api.ModerateComment, hidden: bool) -> api.Comment:
        reason = reason_given(req.reason, required=hidden)
        async with self.rt.db.transaction() as conn:
            row = await self.set_comment_hidden_in(conn, req.actor, req.comment_id, hidden, reason)
        await versions.announce_now(self.rt, row["convoy_id"])  # as for reports: announced before the 200
        return comment_view(row, self.edit_window)

    async def set_comment_hidden_in(
        self, conn: asyncpg.Connection, actor: api.Actor, comment_id: uuid.UUID, hidden: bool, reason: str
    ) -> asyncpg.Record:
        """Hide or restore a comment in the caller's transaction (direct, or acting on a flag); its row after."""
        row = await repo.moderation.comment_row_for_update(conn, comment_id)
        grant = await self.access.comment(conn, actor, row, deleted=True)
        assert row is not None
        grant.moderates()
        if (row["hidden_at"] is not None) == hidden:
            return row
        updated = await repo.moderation.set_comment_hidden(conn, comment_id, hidden, reason)
        report = await repo.reports.report_row(conn, row["report_id"])
        assert report is not None
        await self._emit(
            conn,
            actor,
            "comment.hidden" if hidden else "comment.restored",
            report,
            object_id=row["id"],
            author_id=row["author_id"],
            reason=reason,
        )
        return updated

    @Milestones.COMMENT_HIDE
    async def hide_comment(self, req: api.ModerateComment) -> api.Comment:
        return await self._set_comment_hidden(req, True)

    @Milestones.COMMENT_RESTORE
    async def restore_comment(self, req: api.ModerateComment) -> api.Comment:
        return await self._set_comment_hidden(req, False)
