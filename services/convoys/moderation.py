"""The convoy's side of moderation: services/milestones hides, restores and locks content and
emits ``content.moderated``; this consumer writes the audit entry (as of the moment it happened)
and, for hidden content, asks the notifier to tell its author why.

Both happen in the consumer's transaction together with its processed-event row, so a
redelivered event neither audits twice nor emails twice (the email's key is the event id, too).
"""

from __future__ import annotations

import asyncpg

from schemas import envelope as env
from schemas import events as ev
from services.convoys import repository as repo
from services.runtime.service import Runtime

NOTICE_TEMPLATE: dict[str, ev.EmailTemplate] = {"report.hidden": "report_hidden", "comment.hidden": "comment_hidden"}


class ModerationLog:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def on_content_moderated(self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        assert isinstance(event, ev.ContentModerated)
        details = {"report_id": str(event.report_id), "author_id": str(event.author_id)}
        if event.object_type == "comment":
            details["comment_id"] = str(event.object_id)
        await repo.audit_at(
            conn,
            at=envelope.occurred_at,
            convoy_id=event.convoy_id,
            actor_id=event.actor_id,
            action=event.action,
            object_type=event.object_type,
            object_id=event.object_id,
            reason=event.reason,
            details=details,
        )
        template = NOTICE_TEMPLATE.get(event.action)
        if template is None or event.author_id == event.actor_id:
            return
        author = await repo.person_by_id(conn, event.author_id)
        convoy = await repo.convoy_row(conn, event.convoy_id)
        if author is None or convoy is None:
            return
        company = await repo.company_name_any(conn, event.company_id) or ""
        params = {"convoy": convoy["name"], "company": company or "-", "reason": event.reason}
        if template == "comment_hidden":
            params["link"] = f"{self.rt.settings.public_url.rstrip('/')}/reports/{event.report_id}"
        await self.rt.emit(
            conn,
            ev.EmailRequested(
                key=f"{template}:{envelope.id}:{author['id']}",
                to_email=author["email"],
                to_name=author["name"],
                language=author["language"],
                template=template,
                params=params,
            ),
        )
