"""Event handlers of services/convoys: the audit entries and emails of moderation and flags.

Moderation: services/milestones hides, restores and locks content and
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
from services.convoys.service import email_to
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
        if author is None or convoy is None or author["erased_at"] is not None:  # erased: nobody to tell
            return
        company = await repo.company_name_any(conn, event.company_id) or ""
        params = {"convoy": convoy["name"], "company": company or "-", "reason": event.reason}
        if template == "comment_hidden":
            params["link"] = f"{self.rt.settings.public_url.rstrip('/')}/reports/{event.report_id}"
        await self.rt.emit(
            conn,
            email_to(
                author,
                template,
                key=f"{template}:{envelope.id}:{author['id']}",
                params=params,
            ),
        )


# --- flags and charter: flags raised and resolved in services/milestones ------------------------------
FLAG_WORDS: dict[str, dict[str, str]] = {
    "de": {
        "report": "einen Fortschrittsbericht",
        "comment": "einen Kommentar zum Bericht",
        "spam": "Spam",
        "off_topic": "gehört nicht zum Thema",
        "confidential": "vertraulich",
        "offensive": "beleidigend oder unangemessen",
        "other": "anderer Grund",
    },
    "en": {
        "report": "a progress report",
        "comment": "a comment on the report",
        "spam": "spam",
        "off_topic": "off topic",
        "confidential": "confidential",
        "offensive": "offensive or inappropriate",
        "other": "another reason",
    },
}
"""The words a ``content_flagged`` email carries for the object and the flag's reason, per language."""


class FlagLog:
    """Audit entries for flags (``flag.raised``, ``flags.dismissed``, ``flags.acted``) and an email to each
    of the convoy's facilitators (except the one who flagged) as soon as a flag is raised.

    Like :class:`ModerationLog`, in the consumer's transaction with its processed-event row: once per
    event, and the email key carries the event id. The email does not quote the content (a flag for
    ``confidential`` should not spread it); the queue shows it.
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def on_flag_event(self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        if isinstance(event, ev.ContentFlagged):
            await self._flagged(envelope, event, conn)
        elif isinstance(event, ev.FlagsResolved):
            await repo.audit_at(
                conn,
                at=envelope.occurred_at,
                convoy_id=event.convoy_id,
                actor_id=event.actor_id,
                action=f"flags.{event.action}",
                object_type=event.object_type,
                object_id=event.object_id,
                reason=event.reason,
                details={
                    "report_id": str(event.report_id),
                    "flags": str(len(event.flag_ids)),
                    "flag_ids": ",".join(str(f) for f in event.flag_ids),
                },
            )

    async def _flagged(self, envelope: env.Envelope, event: ev.ContentFlagged, conn: asyncpg.Connection) -> None:
        await repo.audit_at(
            conn,
            at=envelope.occurred_at,
            convoy_id=event.convoy_id,
            actor_id=event.flagged_by,
            action="flag.raised",
            object_type=event.object_type,
            object_id=event.object_id,
            reason=event.reason if not event.note else f"{event.reason}: {event.note}",
            details={
                "flag_id": str(event.flag_id),
                "flag_reason": event.reason,
                "report_id": str(event.report_id),
                "author_id": str(event.author_id),
            },
        )
        found = await repo.flag_recipients(conn, event.convoy_id)
        if found is None:
            return
        convoy_name, facilitators = found
        company = await repo.company_name_any(conn, event.company_id) or "-"
        link = f"{self.rt.settings.public_url.rstrip('/')}/convoys/{event.convoy_id}/flags"
        for f in facilitators:
            if f["id"] == event.flagged_by:
                continue
            words = FLAG_WORDS.get(f["language"], FLAG_WORDS["en"])
            await self.rt.emit(
                conn,
                email_to(
                    f,
                    "content_flagged",
                    key=f"content_flagged:{envelope.id}:{f['id']}",
                    params={
                        "convoy": convoy_name,
                        "company": company,
                        "what": words[event.object_type],
                        "category": words.get(event.reason, event.reason),
                        "link": link,
                        "note": event.note,
                    },
                ),
            )
