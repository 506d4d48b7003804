"""Flags and the moderation queue: members point content out, the convoy's facilitators decide.

- Any member of the convoy (a representative or a facilitator, signed in as a person) flags a report
  or comment they can see, with a reason (spam, off_topic, confidential, offensive, other; other
  needs a note in their own words). Members may flag their own content too (posted something
  confidential by mistake). One open flag per person and object: flagging again answers the open
  flag and changes nothing. Flags work in completed convoys too (their content stays readable).
- Each new flag emits ``content.flagged`` in the same transaction: services/convoys records it in
  the audit log and emails the convoy's facilitators at once (not the content itself: a flag for
  ``confidential`` should not spread what it is about). The weekly facilitator digest counts the
  flags open at its moment (``flags_waiting``).
- The queue (facilitators and admins; representatives 403, anyone else 404) lists flagged objects
  with their open flags, oldest first: object, excerpt, company, author, whether it is hidden, and
  per flag who flagged it (person id and the company they represent), reason, note and when.
  Members never learn who flagged: their own receipt is all a flagger gets back.
- Resolving a flag resolves every open flag on its object: ``dismiss`` leaves the content as it is,
  ``act`` hides it through the same code path as a direct hide (so the ``content.moderated`` audit
  entry and the author's notice happen exactly as for …/hide; already hidden: nothing more happens).
  ``content.flags_resolved`` records the resolution in the audit log. A flag already resolved: 409.
"""

from __future__ import annotations

import uuid
from typing import Literal

import asyncpg

from schemas import api
from schemas import events as ev
from schemas.milestones import Milestones
from services.milestones import repository as repo
from services.milestones.access import Access, Grant
from services.milestones.moderation import Moderation, reason_given
from services.runtime.db import struct
from services.runtime.errors import Conflict, Forbidden, InvalidInput, NotFound
from services.runtime.service import Runtime

EXCERPT = 200


def excerpt(text: str, length: int = EXCERPT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= length else flat[: length - 1].rstrip() + "…"


class Flags:
    def __init__(self, rt: Runtime, access: Access, moderation: Moderation) -> None:
        self.rt = rt
        self.access = access
        self.moderation = moderation

    async def _target(
        self,
        conn: asyncpg.Connection,
        actor: api.Actor,
        object_type: Literal["report", "comment"],
        object_id: uuid.UUID,
    ) -> tuple[Grant, asyncpg.Record, asyncpg.Record | None]:
        """The object as the actor may see it: (grant, its report, the comment or None); 404 otherwise."""
        if object_type == "report":
            grant, report = await self.access.report(conn, actor, object_id)
            return grant, report, None
        comment = await repo.flags.comment_target(conn, object_id)
        grant = await self.access.comment(conn, actor, comment)  # deleted by its author: nothing left to flag
        assert comment is not None
        found = await repo.reports.report_row(conn, comment["report_id"])
        assert found is not None
        return grant, found, comment

    @Milestones.FLAG_CREATE
    async def flag(self, req: api.FlagContent) -> api.FlagReceipt:
        note = req.flag.note.strip()
        if req.flag.reason == "other" and not note:
            raise InvalidInput("`note`: say what is wrong (required with reason `other`)")
        async with self.rt.db.transaction() as conn:
            grant, report, comment = await self._target(conn, req.actor, req.object_type, req.object_id)
            if req.actor.person_id is None:
                raise Forbidden("the admin token cannot flag; sign in as a person")
            grant.writes("flag content; the convoy's members and facilitators do")
            assert grant.companies or grant.facilitator or grant.admin
            row = await repo.flags.insert_flag(
                conn,
                convoy_id=report["convoy_id"],
                object_type=req.object_type,
                object_id=req.object_id,
                report_id=report["id"],
                comment_id=comment["id"] if comment is not None else None,
                flagged_by=req.actor.person_id,
                reason=req.flag.reason,
                note=note,
            )
            created = row is not None
            if row is None:
                row = await repo.flags.open_flag_of(conn, req.object_id, req.actor.person_id)
                assert row is not None
            else:
                await self.rt.emit(
                    conn,
                    ev.ContentFlagged(
                        convoy_id=report["convoy_id"],
                        flag_id=row["id"],
                        flagged_by=req.actor.person_id,
                        object_type=req.object_type,
                        object_id=req.object_id,
                        report_id=report["id"],
                        company_id=report["company_id"],
                        author_id=comment["author_id"] if comment is not None else report["author_id"],
                        reason=req.flag.reason,
                        note=note,
                    ),
                )
            return struct(row, api.FlagReceipt, created=created)

    @Milestones.FLAG_QUEUE
    async def queue(self, req: api.ConvoyAsk) -> api.FlagQueue:
        async with self.rt.db.connection() as conn:
            await self.access.moderator(conn, req.actor, req.convoy_id)
            rows = await repo.flags.open_flags(conn, req.convoy_id)
        items: dict[uuid.UUID, api.FlaggedContent] = {}
        for r in rows:
            item = items.get(r["object_id"])
            if item is None:
                item = items[r["object_id"]] = struct(r, api.FlaggedContent, excerpt=excerpt(r["text"] or ""), flags=[])
            item.flags.append(struct(r, api.Flag))  # a row per open flag
        return api.FlagQueue(convoy_id=req.convoy_id, items=list(items.values()))

    @Milestones.FLAG_RESOLVE
    async def resolve(self, req: api.ResolveFlag) -> api.FlagOutcome:
        act = req.resolution.action == "act"
        reason = reason_given(req.resolution.reason, required=act)
        async with self.rt.db.transaction() as conn:
            flag = await repo.flags.flag_row(conn, req.flag_id)
            if flag is None:
                raise NotFound("no such flag")
            await self.access.moderator(conn, req.actor, flag["convoy_id"], not_found="no such flag")
            open_ids = await repo.flags.open_flags_for_update(conn, flag["object_id"])
            if req.flag_id not in open_ids:
                raise Conflict("this flag was already resolved")
            if flag["object_type"] == "report":
                if act:
                    await self.moderation.set_report_hidden_in(conn, req.actor, flag["object_id"], True, reason)
                after = await repo.reports.report_row(conn, flag["report_id"])
            elif act:
                after = await self.moderation.set_comment_hidden_in(conn, req.actor, flag["object_id"], True, reason)
            else:
                after = await repo.comments.comment_row(conn, flag["object_id"])
            assert after is not None
            hidden = after["hidden_at"] is not None
            resolution: Literal["dismissed", "acted"] = "acted" if act else "dismissed"
            await repo.flags.resolve_flags(
                conn, open_ids, resolution=resolution, resolved_by=req.actor.person_id, note=reason
            )
            await self.rt.emit(
                conn,
                ev.FlagsResolved(
                    convoy_id=flag["convoy_id"],
                    actor_id=req.actor.person_id,
                    action=resolution,
                    object_type=flag["object_type"],
                    object_id=flag["object_id"],
                    report_id=flag["report_id"],
                    flag_ids=open_ids,
                    reason=reason,
                ),
            )
        return api.FlagOutcome(
            object_type=flag["object_type"],
            object_id=flag["object_id"],
            action=resolution,
            resolved=open_ids,
            hidden=hidden,
        )
