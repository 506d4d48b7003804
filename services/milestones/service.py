"""Rules of services/milestones: projects, milestones, reports, comments, kudos, help.

Who may do what (checked here, from the projection of memberships kept from convoys events):
- a company's representatives write its project, milestones and reports;
- the convoy's members (representatives) and facilitators read everything in the convoy and
  comment; representatives give kudos and offer help to *other* companies;
- observers read what members read and write nothing (403): no report, comment, kudos, help
  offer, flag or project change;
- the facilitator-only note of a report is seen by the convoy's facilitators and the company's
  own representatives, never by peers, never in exports;
- anyone else is told the convoy (or report) does not exist.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from schemas import api
from schemas import envelope as env
from schemas import events as ev
from schemas.subjects import Rpc
from schemas.values import Cadence
from services.milestones import catalogue as cat
from services.milestones import privacy
from services.milestones import repository as repo
from services.runtime import cycles, markdown
from services.runtime.errors import Conflict, Forbidden, InvalidInput, NotFound
from services.runtime.service import Runtime

_cadence = msgspec.json.Decoder(Cadence)
TS_CONFIG = {"de": "german", "en": "english"}
OUTCOME_SCORE = {"done": 1.0, "partly": 0.5, "not_yet": 0.0}


@dataclass(frozen=True)
class Access:
    convoy: asyncpg.Record
    companies: list[uuid.UUID]
    facilitator: bool
    admin: bool
    observer: bool = False

    @property
    def sees_everything(self) -> bool:
        """Facilitators and admins see hidden content and facilitator notes."""
        return self.facilitator or self.admin

    @property
    def reads_only(self) -> bool:
        """An observer (and nothing more here): reads as members do, writes nothing."""
        return self.observer and not (self.companies or self.facilitator or self.admin)

    def writer(self, what: str) -> None:
        if self.reads_only:
            raise Forbidden(f"observers read along; they do not {what}")

    def represents(self, company_id: uuid.UUID) -> bool:
        return company_id in self.companies


def cadence_of(convoy: asyncpg.Record) -> Cadence:
    raw = convoy["cadence"]
    return _cadence.decode(raw.encode() if isinstance(raw, str) else raw)


def current_cycle(convoy: asyncpg.Record, at: datetime) -> cycles.Cycle | None:
    return cycles.cycle_at(cadence_of(convoy), convoy["timezone"], convoy["start_date"], at)


def editable_until(convoy: asyncpg.Record, cycle_index: int, digest_cycle: int | None) -> datetime | None:
    """When a report's edits end unless a digest carries it first (``edit_report``'s rule); None once carried."""
    if digest_cycle is not None:
        return None
    try:
        return cycles.cycle_by_index(
            cadence_of(convoy), convoy["timezone"], convoy["start_date"], cycle_index
        ).closes_at
    except (ValueError, OverflowError):  # a cycle outside the calendar (history brought in by SQL): not editable
        return None


def encode_cursor(submitted_at: datetime, report_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{submitted_at.isoformat()}|{report_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        stamp, report_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(stamp), uuid.UUID(report_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("`cursor`: not a cursor this API gave out") from exc


class MilestonesService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.base_url = rt.settings.public_url.rstrip("/")
        self.edit_window = timedelta(seconds=rt.settings.comment_edit_window_s)

    # --- projections ---------------------------------------------------------------------------
    async def on_convoys_event(self, envelope: env.Envelope, event: ev.Event, conn: asyncpg.Connection) -> None:
        """Keep the projections (convoys, companies, members, facilitators) that authorize everything."""
        if isinstance(event, ev.ConvoyCreated):
            start = event.start_date or envelope.occurred_at.date()
            await repo.upsert_convoy(
                conn,
                convoy_id=event.convoy_id,
                name=event.name,
                timezone=event.timezone,
                language=event.language,
                cadence=event.cadence,
                start_date=start,
                retention_days=event.retention_days,
            )
            if event.facilitator_id:
                await repo.add_facilitator(conn, event.convoy_id, event.facilitator_id)
        elif isinstance(event, ev.ConvoyUpdated):
            known = await repo.convoy(conn, event.convoy_id)
            start = event.start_date or (known["start_date"] if known else envelope.occurred_at.date())
            await repo.upsert_convoy(
                conn,
                convoy_id=event.convoy_id,
                name=event.name,
                timezone=event.timezone,
                language=event.language,
                cadence=event.cadence,
                start_date=start,
                retention_days=event.retention_days,
            )
        elif isinstance(event, ev.ConvoyStatusChanged):
            await repo.set_convoy_status(conn, event.convoy_id, event.new_status)
        elif isinstance(event, ev.ConvoyFacilitatorAdded):
            await repo.add_facilitator(conn, event.convoy_id, event.person_id)
        elif isinstance(event, ev.CompanyJoined):
            await repo.upsert_company(conn, event.company_id, event.convoy_id, event.name)
        elif isinstance(event, ev.CompanyLeft):
            await repo.remove_company(conn, event.company_id, left_at=envelope.occurred_at)
        elif isinstance(event, ev.PersonJoined):
            await repo.add_member(conn, event.person_id, event.company_id, event.convoy_id)
        elif isinstance(event, ev.PersonRemoved):
            await repo.remove_member(conn, event.person_id, event.company_id)
        elif isinstance(event, ev.ObserverJoined):
            await repo.add_observer(conn, event.person_id, event.convoy_id)
        elif isinstance(event, ev.ObserverRemoved):
            await repo.remove_observer(conn, event.person_id, event.convoy_id)

    async def _read_through(self, conn: asyncpg.Connection, convoy_id: uuid.UUID) -> asyncpg.Record | None:
        """The convoy from the projection; on a miss (its events still on their way) ask services/convoys."""
        row = await repo.convoy(conn, convoy_id)
        if row is not None:
            return row
        try:
            convoy = await self.rt.rpc.call(
                self.rt.subjects.rpc("convoys", Rpc.CONVOY_GET),
                api.GetConvoy(actor=api.SYSTEM, convoy_id=convoy_id),
                api.Convoy,
            )
        except NotFound:
            return None
        await repo.upsert_convoy(
            conn,
            convoy_id=convoy.id,
            name=convoy.name,
            timezone=convoy.timezone,
            language=convoy.language,
            cadence=convoy.cadence,
            start_date=convoy.start_date or convoy.created_at.date(),
            status=convoy.status,
            retention_days=convoy.retention_days,
        )
        for company in convoy.companies:
            await repo.upsert_company(conn, company.id, convoy.id, company.name)
            for rep in company.representatives:
                await repo.add_member(conn, rep.person_id, company.id, convoy.id)
        for f in convoy.facilitators:
            await repo.add_facilitator(conn, convoy.id, f.person_id)
        for o in convoy.observers:
            await repo.add_observer(conn, o.person_id, convoy.id)
        return await repo.convoy(conn, convoy_id)

    async def _access(
        self, conn: asyncpg.Connection, actor: api.Actor, convoy_id: uuid.UUID, not_found: str = "no such convoy"
    ) -> Access:
        # One round trip on the hot path (every read and write): the convoy and the caller's part in it.
        convoy = await repo.convoy_for(conn, convoy_id, actor.person_id)
        if convoy is None:  # not in the projection yet: read through, then ask the projection again
            if await self._read_through(conn, convoy_id) is None:
                raise NotFound(not_found)
            convoy = await repo.convoy_for(conn, convoy_id, actor.person_id)
            if convoy is None:
                raise NotFound(not_found)
        if actor.is_admin or actor.is_system:
            return Access(convoy=convoy, companies=[], facilitator=False, admin=True)
        if actor.person_id is None:
            raise NotFound(not_found)
        companies: list[uuid.UUID] = list(convoy["access_companies"])
        facilitator = bool(convoy["access_facilitator"])
        observer = bool(convoy["access_observer"])
        if not companies and not facilitator and not observer:
            # Maybe they joined a moment ago and the event is still on its way: ask once, remember.
            membership = await self.rt.rpc.call(
                self.rt.subjects.rpc("convoys", Rpc.MEMBERSHIP_GET),
                api.GetMembership(person_id=actor.person_id, convoy_id=convoy_id),
                api.Membership,
            )
            for company_id in membership.company_ids:
                if company_id in membership.company_names:  # its company.added event may be on its way too
                    await repo.ensure_company(conn, company_id, convoy_id, membership.company_names[company_id])
                await repo.add_member(conn, actor.person_id, company_id, convoy_id)
            if membership.is_facilitator:
                await repo.add_facilitator(conn, convoy_id, actor.person_id)
            if membership.is_observer:
                await repo.add_observer(conn, actor.person_id, convoy_id)
            companies, facilitator = membership.company_ids, membership.is_facilitator
            observer = membership.is_observer
        if not companies and not facilitator and not observer:
            raise NotFound(not_found)
        return Access(convoy=convoy, companies=companies, facilitator=facilitator, admin=False, observer=observer)

    async def _under_charter(self, access: Access, actor: api.Actor) -> api.Membership | None:
        """A representative writes reports and comments only once they accepted the convoy's current charter.

        Asked from services/convoys (``MEMBERSHIP_GET``, which answers ``charter_accepted``) at the
        moment of writing rather than kept in a projection: writes are rare, so one request each costs
        little, and the answer is exact: an acceptance a second ago counts, a charter changed a second
        ago binds, and milestones keeps no copy of charter versions and acceptances that could lag
        behind. Facilitators and admins are not bound (they keep the charter; they do not accept it).
        Returns the answer (None when nobody was asked).
        """
        if access.sees_everything or not access.companies or actor.person_id is None:
            return None
        membership = await self.rt.rpc.call(
            self.rt.subjects.rpc("convoys", Rpc.MEMBERSHIP_GET),
            api.GetMembership(person_id=actor.person_id, convoy_id=access.convoy["convoy_id"]),
            api.Membership,
        )
        if membership.company_ids and not membership.charter_accepted:
            raise Conflict(
                "accept the convoy's updated charter first"
                f" (read it at GET /api/v1/convoys/{access.convoy['convoy_id']}/charter, then POST …/charter/accept)"
            )
        return membership

    def _writer(self, access: Access, company_id: uuid.UUID, what: str) -> None:
        if not access.represents(company_id):
            raise Forbidden(f"only the company's representatives {what}")
        if access.convoy["status"] == "completed":
            raise Conflict("the convoy is completed and read-only")

    async def _report_access(
        self, conn: asyncpg.Connection, actor: api.Actor, report_id: uuid.UUID
    ) -> tuple[Access, asyncpg.Record]:
        row = await repo.report_row(conn, report_id)
        if row is None:
            raise NotFound("no such report")
        access = await self._access(conn, actor, row["convoy_id"], not_found="no such report")
        if row["hidden_at"] is not None and not access.sees_everything:
            raise NotFound("no such report")
        return access, row

    # --- projects and milestones ---------------------------------------------------------------
    async def put_project(self, req: api.PutProject) -> api.Project:
        p = req.project
        ladder = None
        if p.project_type is not None:
            ladder = cat.project_type(p.project_type)
            if ladder is None:
                known = ", ".join(t.key for t in cat.catalogue().project_types)
                raise InvalidInput(f"`project_type`: unknown type {p.project_type!r} (one of {known})")
        async with self.rt.db.transaction() as conn:
            access = await self._access(conn, req.actor, req.convoy_id)
            self._writer(access, req.company_id, "describe its project")
            project = await repo.upsert_project(conn, req.convoy_id, req.company_id, p)
            if ladder is not None and await repo.count_milestones(conn, project["id"]) == 0:
                german = access.convoy["language"] == "de"
                for rung in ladder.rungs:
                    await repo.insert_milestone(
                        conn,
                        project,
                        title=rung.title_de if german else rung.title_en,
                        target_date=None,
                        weight=rung.weight,
                        catalogue_key=rung.key,
                    )
            return await self._project(conn, project)

    async def get_project(self, req: api.CompanyAction) -> api.Project:
        async with self.rt.db.connection() as conn:
            await self._access(conn, req.actor, req.convoy_id)
            project = await repo.project(conn, req.company_id)
            if project is None or project["convoy_id"] != req.convoy_id:
                raise NotFound("this company has no project yet")
            return await self._project(conn, project)

    async def _project(self, conn: asyncpg.Connection, project: asyncpg.Record) -> api.Project:
        milestones = await repo.milestones_of(conn, project["id"])
        return api.Project(
            id=project["id"],
            convoy_id=project["convoy_id"],
            company_id=project["company_id"],
            title=project["title"],
            goal=project["goal"],
            project_type=project["project_type"],
            progress=repo.progress(milestones),
            milestones=milestones,
        )

    async def add_milestone(self, req: api.AddMilestone) -> api.Milestone:
        m = req.milestone
        if m.catalogue_key is not None and cat.rung(m.catalogue_key) is None:
            raise InvalidInput(f"`catalogue_key`: no milestone {m.catalogue_key!r} in the catalogue")
        async with self.rt.db.transaction() as conn:
            access = await self._access(conn, req.actor, req.convoy_id)
            self._writer(access, req.company_id, "change its milestones")
            project = await repo.project(conn, req.company_id)
            if project is None:
                raise Conflict("describe the project first (PUT …/project)")
            if await repo.count_milestones(conn, project["id"]) >= api.MAX_MILESTONES:
                raise InvalidInput(f"a project has at most {api.MAX_MILESTONES} milestones")
            return await repo.insert_milestone(
                conn, project, title=m.title, target_date=m.target_date, weight=m.weight, catalogue_key=m.catalogue_key
            )

    async def change_milestone(self, req: api.ChangeMilestone) -> api.Milestone:
        changes = {k: v for k, v in msgspec.structs.asdict(req.patch).items() if v is not msgspec.UNSET}
        async with self.rt.db.transaction() as conn:
            row = await repo.milestone_row(conn, req.milestone_id, lock=True)
            if row is None:
                raise NotFound("no such milestone")
            access = await self._access(conn, req.actor, row["convoy_id"], not_found="no such milestone")
            self._writer(access, row["company_id"], "change its milestones")
            if not changes:
                return repo.milestone(row)
            updated = await repo.update_milestone(conn, req.milestone_id, changes)
            return updated

    async def order_milestones(self, req: api.OrderMilestones) -> api.Project:
        async with self.rt.db.transaction() as conn:
            access = await self._access(conn, req.actor, req.convoy_id)
            self._writer(access, req.company_id, "change its milestones")
            project = await repo.project(conn, req.company_id)
            if project is None:
                raise NotFound("this company has no project yet")
            current = {m.id for m in await repo.milestones_of(conn, project["id"])}
            wanted = req.order.milestone_ids
            if set(wanted) != current or len(wanted) != len(current):
                raise InvalidInput("`milestone_ids`: list every milestone of the project exactly once")
            await repo.reorder(conn, project["id"], wanted)
            return await self._project(conn, project)

    # --- reports -------------------------------------------------------------------------------
    async def submit_report(self, req: api.SubmitReport) -> api.Report:
        r = req.report
        now = datetime.now(UTC)
        async with self.rt.db.transaction() as conn:
            access = await self._access(conn, req.actor, req.convoy_id)
            access.writer("post reports")
            if not access.companies:
                raise Forbidden("facilitators do not post reports; a company's representatives do")
            company_id = r.company_id
            if company_id is None:
                if len(access.companies) > 1:
                    raise InvalidInput("`company_id`: you represent several companies here; say which")
                company_id = access.companies[0]
            self._writer(access, company_id, "post its reports")
            membership = await self._under_charter(access, req.actor)
            assert req.actor.person_id is not None
            cycle = current_cycle(access.convoy, now)
            index = cycle.index if cycle else 0
            # After its cycle's seal (the scheduler closed it, also early by "close now") a report
            # is late and goes into the next digest as an addendum (repository.enter_round).
            sealed_through = await repo.enter_round(conn, req.convoy_id)
            late = (cycle.is_late(now) if cycle else False) or index <= sealed_through
            refs = await self._check_report_refs(conn, company_id, index, r)
            report_id = uuid.uuid4()
            written = await repo.insert_report(
                conn,
                report_id=report_id,
                convoy_id=req.convoy_id,
                company_id=company_id,
                author_id=req.actor.person_id,
                cycle_index=index,
                late=late,
                r=r,
                ts_config=TS_CONFIG.get(access.convoy["language"], "simple"),
            )
            if written is None:
                raise Conflict("your company already reported in this cycle; edit that report instead")
            await self._apply_milestone_updates(conn, access, r.milestones, report_id, before=refs.milestones)
            commitment_ids = await repo.insert_commitments(
                conn,
                report_id=report_id,
                convoy_id=req.convoy_id,
                company_id=company_id,
                cycle_index=index,
                texts=list(r.commitments),
            )
            await repo.review_commitments(conn, report_id, list(r.commitment_reviews))
            company_name = written["company_name"]
            if company_name is None and membership is not None and company_id in membership.company_names:
                # The member is in the projection but not (yet, or no longer) their company: its
                # company.joined may still be on its way. services/convoys just named it.
                company_name = membership.company_names[company_id]
                await repo.ensure_company(conn, company_id, req.convoy_id, company_name)
            if company_name is not None:
                report = _written_report(
                    req, report_id, company_id, company_name, index, late, written, refs, commitment_ids
                )
                report.editable_until = editable_until(access.convoy, index, None)
            else:  # not known here at all: let the read decide, as before
                [report] = await self._reports(conn, access, "r.id = $1", [report_id], limit=1)
            await self.rt.emit(
                conn,
                ev.ReportSubmitted(
                    convoy_id=req.convoy_id,
                    company_id=company_id,
                    report_id=report_id,
                    author_id=req.actor.person_id,
                    report=msgspec.convert(report, ev.ReportSnapshot, from_attributes=True),  # what peers see
                ),
            )
            if r.help_wanted:
                await self.rt.emit(
                    conn,
                    ev.HelpRequested(
                        convoy_id=req.convoy_id,
                        company_id=company_id,
                        report_id=report_id,
                        milestone_id=r.help_milestone_id,
                    ),
                )
            # Built from what was written, not read back (six round trips less): the same answer
            # as GET /reports/{id} gives its author (tests/test_reports.py compares them).
            return report

    async def _check_report_refs(
        self, conn: asyncpg.Connection, company_id: uuid.UUID, index: int, r: api.NewReport
    ) -> ReportRefs:
        """Refuse milestones and commitments the report may not name; returns those it names, as read."""
        ids = [u.milestone_id for u in r.milestones] + ([r.help_milestone_id] if r.help_milestone_id else [])
        known = await repo.milestones_by_id(conn, ids) if ids else {}
        for i, u in enumerate(r.milestones):
            if u.milestone_id not in known or known[u.milestone_id]["company_id"] != company_id:
                raise InvalidInput(f"`milestones[{i}].milestone_id`: not a milestone of your company's project")
        if len({u.milestone_id for u in r.milestones}) != len(r.milestones):
            raise InvalidInput("`milestones`: each milestone at most once")
        if r.help_milestone_id and (
            r.help_milestone_id not in known or known[r.help_milestone_id]["company_id"] != company_id
        ):
            raise InvalidInput("`help_milestone_id`: not a milestone of your company's project")
        open_: dict[uuid.UUID, asyncpg.Record] = {}
        if r.commitment_reviews:
            open_ = await repo.open_commitments(conn, company_id, index)
            for i, review in enumerate(r.commitment_reviews):
                if review.commitment_id not in open_:
                    raise InvalidInput(
                        f"`commitment_reviews[{i}].commitment_id`: not an open commitment of your company"
                    )
        return ReportRefs(milestones=known, open_commitments=open_)

    async def _apply_milestone_updates(
        self,
        conn: asyncpg.Connection,
        access: Access,
        updates: list[api.MilestoneUpdate],
        report_id: uuid.UUID,
        *,
        before: dict[uuid.UUID, asyncpg.Record] | None = None,
    ) -> None:
        """``before``: the milestones as read in this transaction (read here when not given)."""
        if not updates:
            return
        if before is None:
            before = await repo.milestones_by_id(conn, [u.milestone_id for u in updates])
        await repo.touch_milestones(conn, report_id, updates)
        for u in updates:
            old = before[u.milestone_id]
            if old["status"] != u.status:
                await repo.update_milestone(conn, u.milestone_id, {"status": u.status})

    async def edit_report(self, req: api.EditReport) -> api.Report:
        changes = {k: v for k, v in msgspec.structs.asdict(req.patch).items() if v is not msgspec.UNSET}
        now = datetime.now(UTC)
        async with self.rt.db.transaction() as conn:
            row = await repo.report_row(conn, req.report_id, lock=True)
            if row is None:
                raise NotFound("no such report")
            access = await self._access(conn, req.actor, row["convoy_id"], not_found="no such report")
            self._writer(access, row["company_id"], "edit its reports")
            await self._under_charter(access, req.actor)
            assert req.actor.person_id is not None
            convoy = access.convoy
            cycle = cycles.cycle_by_index(
                cadence_of(convoy), convoy["timezone"], convoy["start_date"], row["cycle_index"]
            )
            if row["digest_cycle"] is not None or now >= cycle.closes_at:
                raise Conflict(
                    "this report's round has closed and its digest has gone out, so it can no longer be"
                    " edited; add a comment to it instead"
                )
            made = changes.pop("commitments", None)
            reviews = changes.pop("commitment_reviews", None)
            if made is not None:
                await repo.replace_commitments(conn, row, list(made))
            if reviews is not None:
                await repo.unreview_commitments(conn, row["id"])
                open_ = await repo.open_commitments(conn, row["company_id"], row["cycle_index"])
                for i, review in enumerate(reviews):
                    if review.commitment_id not in open_:
                        raise InvalidInput(
                            f"`commitment_reviews[{i}].commitment_id`: not an open commitment of your company"
                        )
                await repo.review_commitments(conn, row["id"], list(reviews))
            if changes or made is not None or reviews is not None:
                await repo.save_version(conn, row, req.actor.person_id)
                await repo.update_report(conn, req.report_id, changes)
            [report] = await self._reports(conn, access, "r.id = $1", [req.report_id], limit=1)
            return report

    async def get_report(self, req: api.GetReport) -> api.Report:
        async with self.rt.db.connection() as conn:
            access, _ = await self._report_access(conn, req.actor, req.report_id)
            [report] = await self._reports(conn, access, "r.id = $1", [req.report_id], limit=1)
            return report

    async def list_reports(self, req: api.ListReports) -> api.ReportList:
        page = await self.timeline(api.Timeline(actor=req.actor, convoy_id=req.convoy_id, limit=min(req.limit, 100)))
        return api.ReportList(reports=page.reports)

    async def timeline(self, req: api.Timeline) -> api.TimelinePage:
        async with self.rt.db.connection() as conn:
            access = await self._access(conn, req.actor, req.convoy_id)
            where, args = ["r.convoy_id = $1"], [req.convoy_id]

            def bind(value: Any) -> str:
                args.append(value)
                return f"${len(args)}"

            if not access.sees_everything:
                where.append("r.hidden_at IS NULL")
            if req.company_id is not None:
                where.append(f"r.company_id = {bind(req.company_id)}")
            if req.help_wanted is not None:
                where.append(f"r.help_wanted = {bind(req.help_wanted)}")
            if req.blockers is not None:
                where.append("r.blockers <> ''" if req.blockers else "r.blockers = ''")
            if req.milestone_status is not None:
                where.append(
                    "EXISTS (SELECT 1 FROM report_milestones rm WHERE rm.report_id = r.id"
                    f" AND rm.status = {bind(req.milestone_status)})"
                )
            if req.cursor is not None:
                stamp, last_id = decode_cursor(req.cursor)
                where.append(f"(r.submitted_at, r.id) < ({bind(stamp)}, {bind(last_id)})")
            reports = await self._reports(
                conn, access, " AND ".join(where), args, limit=req.limit + 1, order="r.submitted_at DESC, r.id DESC"
            )
        more = len(reports) > req.limit
        reports = reports[: req.limit]
        cursor = encode_cursor(reports[-1].submitted_at, reports[-1].id) if more and reports else None
        return api.TimelinePage(reports=reports, next_cursor=cursor)

    async def _reports(
        self,
        conn: asyncpg.Connection,
        access: Access,
        where: str,
        args: list[Any],
        *,
        limit: int,
        order: str = "r.submitted_at DESC, r.id DESC",
    ) -> list[api.Report]:
        """Reports with everything a reader sees, in a fixed number of queries (no N+1)."""
        rows = await repo.report_rows(conn, where, args, order=order, limit=limit)
        if not rows:
            return []
        details = await repo.report_details(conn, [r["id"] for r in rows])
        touched: dict[uuid.UUID, list[api.TouchedMilestone]] = {}
        for t in details["touched"]:
            touched.setdefault(t["report_id"], []).append(
                api.TouchedMilestone(milestone_id=t["milestone_id"], title=t["title"], status=t["status"])
            )
        made: dict[uuid.UUID, list[api.Commitment]] = {}
        for c in details["made"]:
            made.setdefault(c["report_id"], []).append(_commitment(c))
        reviewed: dict[uuid.UUID, list[api.Commitment]] = {}
        for c in details["reviewed"]:
            reviewed.setdefault(c["reviewed_in"], []).append(_commitment(c))
        kudos: dict[uuid.UUID, list[uuid.UUID]] = {}
        for k in details["kudos"]:
            kudos.setdefault(k["report_id"], []).append(k["person_id"])
        out = []
        until: dict[tuple[int, int | None], datetime | None] = {}
        for r in rows:
            private = access.sees_everything or access.represents(r["company_id"])
            out.append(
                api.Report(
                    id=r["id"],
                    convoy_id=r["convoy_id"],
                    company_id=r["company_id"],
                    company_name=r["company_name"],
                    author_id=r["author_id"],
                    cycle_index=r["cycle_index"],
                    late=r["late"],
                    version=r["version"],
                    submitted_at=r["submitted_at"],
                    updated_at=r["updated_at"],
                    done=r["done"],
                    done_html=markdown.render(r["done"]),
                    next=r["next"],
                    next_html=markdown.render(r["next"]),
                    blockers=r["blockers"],
                    blockers_html=markdown.render(r["blockers"]),
                    help_wanted=r["help_wanted"],
                    help_topic=r["help_topic"],
                    help_milestone_id=r["help_milestone_id"],
                    mood=r["mood"],
                    milestones=touched.get(r["id"], []),
                    commitments=made.get(r["id"], []),
                    reviews=reviewed.get(r["id"], []),
                    kudos=len(kudos.get(r["id"], [])),
                    kudos_by=kudos.get(r["id"], []),
                    comments=r["comment_count"],
                    hidden=r["hidden_at"] is not None,
                    hidden_reason=r["hidden_reason"] if r["hidden_at"] is not None and access.sees_everything else None,
                    comments_locked=r["comments_locked_at"] is not None,
                    facilitator_note=r["facilitator_note"] if private else None,
                    digest_cycle=r["digest_cycle"],
                    editable_until=until.setdefault(
                        (r["cycle_index"], r["digest_cycle"]),
                        editable_until(access.convoy, r["cycle_index"], r["digest_cycle"]),
                    ),
                )
            )
        await privacy.attribute(conn, access.convoy["language"], out)
        return out

    async def search(self, req: api.Search) -> api.SearchResults:
        async with self.rt.db.connection() as conn:
            access = await self._access(conn, req.actor, req.convoy_id)
            config = TS_CONFIG.get(access.convoy["language"], "simple")
            hits = await repo.search(conn, req.convoy_id, config, req.q, req.limit, hidden=access.sees_everything)
        return api.SearchResults(hits=hits)

    async def export(self, req: api.ExportAsk) -> api.Export:
        """One page of the export, oldest first, peer view (no hidden reports, no facilitator notes)."""
        async with self.rt.db.connection() as conn:
            access = await self._access(conn, req.actor, req.convoy_id)
            peer_view = Access(convoy=access.convoy, companies=[], facilitator=False, admin=False)
            where = "r.convoy_id = $1 AND r.hidden_at IS NULL"
            args: list[Any] = [req.convoy_id]
            if req.cursor is not None:
                stamp, last_id = decode_cursor(req.cursor)
                where += " AND (r.submitted_at, r.id) > ($2, $3)"
                args += [stamp, last_id]
            reports = await self._reports(
                conn, peer_view, where, args, limit=req.limit + 1, order="r.submitted_at, r.id"
            )
        more = len(reports) > req.limit
        reports = reports[: req.limit]
        cursor = encode_cursor(reports[-1].submitted_at, reports[-1].id) if more and reports else None
        return api.Export(convoy_id=req.convoy_id, reports=reports, next_cursor=cursor)

    async def board(self, req: api.ConvoyAsk) -> api.Board:
        now = datetime.now(UTC)
        async with self.rt.db.connection() as conn:
            access = await self._access(conn, req.actor, req.convoy_id)
            cycle = current_cycle(access.convoy, now)
            rows = await repo.board_rows(
                conn, req.convoy_id, _local_today(access.convoy, now), cycle.index if cycle else None
            )
        return build_board(req.convoy_id, cycle, rows)

    # --- comments, kudos, help -----------------------------------------------------------------
    async def add_comment(self, req: api.AddComment) -> api.Comment:
        async with self.rt.db.transaction() as conn:
            access, report = await self._report_access(conn, req.actor, req.report_id)
            assert req.actor.person_id is not None or access.admin
            if req.actor.person_id is None:
                raise Forbidden("the admin token cannot comment; sign in as a person")
            access.writer("comment")
            if report["comments_locked_at"] is not None and not access.sees_everything:
                raise Conflict("the convoy's facilitators have locked the comments on this report")
            await self._under_charter(access, req.actor)
            parent_id = req.comment.parent_id
            if parent_id is not None:
                parent = await repo.comment_row(conn, parent_id)
                if (
                    parent is None
                    or parent["report_id"] != req.report_id
                    or (parent["hidden_at"] is not None and not access.sees_everything)
                ):
                    raise InvalidInput("`parent_id`: not a comment on this report")
                if parent["parent_id"] is not None:
                    raise InvalidInput("`parent_id`: answers go one level deep; answer the first comment")
            row = await repo.insert_comment(
                conn,
                report_id=req.report_id,
                convoy_id=report["convoy_id"],
                parent_id=parent_id,
                author_id=req.actor.person_id,
                body=req.comment.body,
            )
            await self.rt.emit(
                conn,
                ev.CommentAdded(
                    convoy_id=report["convoy_id"],
                    report_id=req.report_id,
                    comment_id=row["id"],
                    author_id=req.actor.person_id,
                    parent_id=parent_id,
                ),
            )
            return _comment(row, self.edit_window)

    async def list_comments(self, req: api.ReportAction) -> api.Comments:
        async with self.rt.db.connection() as conn:
            access, _ = await self._report_access(conn, req.actor, req.report_id)
            rows = await repo.comments_of(conn, req.report_id, hidden=access.sees_everything)
            former = await repo.former_authors(conn, [r["author_id"] for r in rows])
        top: list[api.Comment] = []
        by_id: dict[uuid.UUID, api.Comment] = {}
        for row in rows:
            comment = _comment(row, self.edit_window)
            by_id[comment.id] = comment
            if row["parent_id"] is None:
                top.append(comment)
            elif row["parent_id"] in by_id:
                by_id[row["parent_id"]].replies.append(comment)
        # Deleted comments: an answer goes; a first comment stays as a placeholder while it has answers.
        for comment in top:
            comment.replies = [a for a in comment.replies if not a.deleted]
        top = [c for c in top if not c.deleted or c.replies]
        privacy.attribute_comments(access.convoy, former, list(by_id.values()))
        return api.Comments(comments=top)

    async def _own_comment(
        self, conn: asyncpg.Connection, actor: api.Actor, comment_id: uuid.UUID, what: str
    ) -> asyncpg.Record:
        """The actor's own comment, still theirs to change: 404 if they cannot see it, 403 if it is not
        theirs (facilitators hide instead), 409 after the edit window or in a locked thread."""
        row = await repo.comment_for_update(conn, comment_id)
        if row is None or row["deleted_at"] is not None:
            raise NotFound("no such comment")
        access = await self._access(conn, actor, row["convoy_id"], not_found="no such comment")
        hidden = any(row[k] is not None for k in ("hidden_at", "report_hidden_at", "parent_hidden_at"))
        if hidden and not access.sees_everything:
            raise NotFound("no such comment")
        access.writer(what)
        if actor.person_id is None or row["author_id"] != actor.person_id:
            if access.sees_everything:
                raise Forbidden(f"only its author may {what}; facilitators hide a comment instead")
            raise Forbidden(f"only its author may {what}")
        if datetime.now(UTC) >= row["created_at"] + self.edit_window:
            minutes = round(self.edit_window.total_seconds() / 60)
            raise Conflict(f"a comment can be changed only within {minutes} minutes of posting")
        if row["comments_locked_at"] is not None and not access.sees_everything:
            raise Conflict("the convoy's facilitators have locked the comments on this report")
        if row["hidden_at"] is not None:
            raise Conflict("the convoy's facilitators have hidden this comment")
        return row

    async def edit_comment(self, req: api.EditComment) -> api.Comment:
        async with self.rt.db.transaction() as conn:
            row = await self._own_comment(conn, req.actor, req.comment_id, "edit a comment")
            if row["body"] == req.edit.body:
                return _comment(row, self.edit_window)  # nothing changed: not "edited"
            updated = await repo.edit_comment(conn, req.comment_id, req.edit.body)
            return _comment(updated, self.edit_window)

    async def delete_comment(self, req: api.CommentAction) -> api.Comment:
        async with self.rt.db.transaction() as conn:
            await self._own_comment(conn, req.actor, req.comment_id, "delete a comment")
            deleted = await repo.delete_comment(conn, req.comment_id)
            return _comment(deleted, self.edit_window)

    async def give_kudos(self, req: api.ReportAction) -> api.Report:
        async with self.rt.db.transaction() as conn:
            access, report = await self._report_access(conn, req.actor, req.report_id)
            if req.actor.person_id is None or not access.companies:
                raise Forbidden("kudos come from the convoy's representatives")
            if access.represents(report["company_id"]):
                raise Forbidden("kudos are for peers, not for your own company")
            if await repo.give_kudos(conn, req.report_id, req.actor.person_id, report["convoy_id"]):
                await self.rt.emit(
                    conn,
                    ev.KudosGiven(
                        convoy_id=report["convoy_id"], report_id=req.report_id, person_id=req.actor.person_id
                    ),
                )
            [out] = await self._reports(conn, access, "r.id = $1", [req.report_id], limit=1)
            return out

    async def take_back_kudos(self, req: api.ReportAction) -> api.Report:
        async with self.rt.db.transaction() as conn:
            access, report = await self._report_access(conn, req.actor, req.report_id)
            access.writer("give kudos")
            if req.actor.person_id is not None and await repo.take_back_kudos(conn, req.report_id, req.actor.person_id):
                await self.rt.emit(
                    conn,
                    ev.KudosTakenBack(
                        convoy_id=report["convoy_id"], report_id=req.report_id, person_id=req.actor.person_id
                    ),
                )
            [out] = await self._reports(conn, access, "r.id = $1", [req.report_id], limit=1)
            return out

    async def offer_help(self, req: api.OfferHelp) -> api.HelpOffer:
        async with self.rt.db.transaction() as conn:
            access, report = await self._report_access(conn, req.actor, req.report_id)
            if req.actor.person_id is None or not access.companies:
                raise Forbidden("help is offered by the convoy's representatives")
            if access.represents(report["company_id"]):
                raise Forbidden("offer help to other companies; this is your own report")
            if not report["help_wanted"]:
                raise Conflict("this report asks for no help")
            row = await repo.insert_help_offer(
                conn,
                report_id=req.report_id,
                person_id=req.actor.person_id,
                company_id=access.companies[0],
                message=req.offer.message,
            )
            if row is None:
                raise Conflict("you already offered help on this report")
            await self.rt.emit(
                conn,
                ev.HelpOffered(
                    convoy_id=report["convoy_id"],
                    report_id=req.report_id,
                    offer_id=row["id"],
                    person_id=req.actor.person_id,
                    message=row["message"],
                ),
            )
            return api.HelpOffer(
                id=row["id"],
                report_id=row["report_id"],
                person_id=row["person_id"],
                company_id=row["company_id"],
                message=row["message"],
                created_at=row["created_at"],
            )

    async def help_suggestions(self, req: api.ReportAction) -> api.HelpSuggestions:
        async with self.rt.db.connection() as conn:
            _, report = await self._report_access(conn, req.actor, req.report_id)
            if not report["help_milestone_id"]:
                return api.HelpSuggestions(companies=[])
            milestone = await repo.milestone_row(conn, report["help_milestone_id"])
            if milestone is None or not milestone["catalogue_key"]:
                return api.HelpSuggestions(companies=[])
            rows = await repo.companies_that_completed(
                conn, report["convoy_id"], milestone["catalogue_key"], report["company_id"]
            )
        return api.HelpSuggestions(companies=[api.PersonRef(person_id=r["company_id"], name=r["name"]) for r in rows])

    async def catalogue(self, _: api.Empty) -> cat.Catalogue:
        return cat.catalogue()

    # --- check-in cycles: what the notifier asks (system calls, no actor) -----------------------
    async def cycle_status(self, req: api.CycleAsk) -> api.CycleStatus:
        """Companies with a visible report for the cycle: one query (plus a read-through on a miss)."""
        _check_index(req.cycle_index)
        async with self.rt.db.connection() as conn:
            reported = await repo.cycle_reporters(conn, req.convoy_id, req.cycle_index)
            if reported is None:
                if await self._read_through(conn, req.convoy_id) is None:
                    raise NotFound("no such convoy")
                reported = await repo.cycle_reporters(conn, req.convoy_id, req.cycle_index) or []
        return api.CycleStatus(convoy_id=req.convoy_id, cycle_index=req.cycle_index, reported_company_ids=reported)

    async def prompt_context(self, req: api.CycleAsk) -> api.PromptContexts:
        """What each active company's prompt reminds it of: the convoy, then three set-based queries."""
        _check_index(req.cycle_index)
        async with self.rt.db.connection() as conn:
            convoy = await self._read_through(conn, req.convoy_id)
            if convoy is None:
                raise NotFound("no such convoy")
            cycle = _cycle(convoy, req.cycle_index)
            due_date = cycle.due_at.astimezone(ZoneInfo(convoy["timezone"])).date()
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                data = await repo.prompt_rows(conn, req.convoy_id, req.cycle_index, due_date)
        due: dict[uuid.UUID, list[api.DueMilestone]] = {}
        for m in data["milestones"]:
            due.setdefault(m["company_id"], []).append(api.DueMilestone(title=m["title"], target_date=m["target_date"]))
        open_: dict[uuid.UUID, list[str]] = {}
        for c in data["commitments"]:
            open_.setdefault(c["company_id"], []).append(c["text"])
        return api.PromptContexts(
            convoy_id=req.convoy_id,
            cycle_index=req.cycle_index,
            companies=[
                api.PromptContext(
                    company_id=c["company_id"],
                    milestones_due=due.get(c["company_id"], []),
                    last_next_steps=c["last_next"],
                    open_commitments=open_.get(c["company_id"], []),
                )
                for c in data["companies"]
            ],
        )

    async def digest(self, req: api.CycleAsk) -> api.Digest:
        """One cycle's digest, peer view: the convoy, then four set-based queries in one snapshot.

        A report counts for the digest of its own cycle if it was in before that cycle's seal (the
        close), and otherwise, once, as a late addendum of the next digest sealed after it arrived;
        for a sealed cycle, calling it again (a retry, or days later) gives the same reports, addenda
        and completed milestones. For a cycle not sealed yet it is a preview: what a seal now would carry.
        """
        _check_index(req.cycle_index)
        async with self.rt.db.connection() as conn:
            convoy = await self._read_through(conn, req.convoy_id)
            if convoy is None:
                raise NotFound("no such convoy")
            cycle = _cycle(convoy, req.cycle_index)
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                through = await repo.sealed_through(conn, req.convoy_id)
                data = await repo.digest_rows(
                    conn, req.convoy_id, req.cycle_index, cycle.opens_at, cycle.closes_at, sealed_through=through
                )
        return build_digest(convoy, req.cycle_index, data)

    async def seal_rounds(self, req: api.SealRounds) -> api.RoundsSealed:
        """services/reminders seals cycles before it closes them: from here on they are closed.

        Idempotent (a retried close seals nothing again); see repository.seal_rounds.
        """
        async with self.rt.db.transaction() as conn:
            sealed = await repo.seal_rounds(
                conn, [r.convoy_id for r in req.rounds], [r.cycle_index for r in req.rounds]
            )
        return api.RoundsSealed(sealed=sealed)

    async def facilitator_digest(self, req: api.FacilitatorDigestAsk) -> api.FacilitatorDigest:
        """The weekly health of a facilitator's convoys at ``req.at``: six set-based queries for all
        of them together (the convoys, then five in one snapshot); unknown convoy ids are skipped.
        ``flags_waiting`` counts the flags open at ``req.at``.

        A pure function of the stored data and ``at``: asked again, it says the same.
        """
        if req.at.tzinfo is None or req.at.utcoffset() is None:
            raise InvalidInput("`at`: must carry a time zone offset")
        wanted = list(dict.fromkeys(req.convoy_ids))  # in the order asked, each once
        if not wanted:
            return api.FacilitatorDigest(convoys=[])
        async with (
            self.rt.db.connection() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            known = {row["convoy_id"]: row for row in await repo.convoys(conn, wanted)}
            convoys = [known[c] for c in wanted if c in known]
            if not convoys:
                return api.FacilitatorDigest(convoys=[])
            currents = [_current_index(c, req.at) for c in convoys]
            data = await repo.facilitator_digest_rows(
                conn,
                [c["convoy_id"] for c in convoys],
                [max(k, 0) for k in currents],
                currents,
                [_local_today(c, req.at) for c in convoys],
                req.at,
            )
        return build_facilitator_digest(convoys, currents, data)


@dataclass(frozen=True)
class ReportRefs:
    """What a new report names, as read while checking it: milestones by id, open commitments by id."""

    milestones: dict[uuid.UUID, asyncpg.Record]
    open_commitments: dict[uuid.UUID, asyncpg.Record]


def _written_report(
    req: api.SubmitReport,
    report_id: uuid.UUID,
    company_id: uuid.UUID,
    company_name: str,
    cycle_index: int,
    late: bool,
    written: asyncpg.Record,
    refs: ReportRefs,
    commitment_ids: list[uuid.UUID],
) -> api.Report:
    """A report just posted, as :meth:`MilestonesService._reports` would read it back for its author
    in the same transaction: no kudos, comments or hide yet; the author represents the company, so
    the facilitator note is theirs to see; the author is posting, so they are not an erased one."""
    r = req.report
    assert req.actor.person_id is not None
    touched = sorted(r.milestones, key=lambda u: refs.milestones[u.milestone_id]["position"])
    last_review = {c.commitment_id: c for c in r.commitment_reviews}  # reviewed twice: the last one counts
    reviewed = sorted(
        last_review.values(),
        key=lambda c: (
            refs.open_commitments[c.commitment_id]["cycle_index"],
            refs.open_commitments[c.commitment_id]["position"],
        ),
    )
    return api.Report(
        id=report_id,
        convoy_id=req.convoy_id,
        company_id=company_id,
        company_name=company_name,
        author_id=req.actor.person_id,
        cycle_index=cycle_index,
        late=late,
        version=written["version"],
        submitted_at=written["submitted_at"],
        updated_at=written["updated_at"],
        done=r.done,
        done_html=markdown.render(r.done),
        next=r.next,
        next_html=markdown.render(r.next),
        blockers=r.blockers,
        blockers_html=markdown.render(r.blockers),
        help_wanted=r.help_wanted,
        help_topic=r.help_topic,
        help_milestone_id=r.help_milestone_id,
        mood=r.mood,
        milestones=[
            api.TouchedMilestone(
                milestone_id=u.milestone_id, title=refs.milestones[u.milestone_id]["title"], status=u.status
            )
            for u in touched
        ],
        commitments=[
            api.Commitment(id=cid, text=text, outcome=None, note="")
            for cid, text in zip(commitment_ids, r.commitments, strict=True)
        ],
        reviews=[
            api.Commitment(
                id=c.commitment_id,
                text=refs.open_commitments[c.commitment_id]["text"],
                outcome=c.outcome,
                note=c.note,
            )
            for c in reviewed
        ],
        facilitator_note=r.facilitator_note,
    )


def _commitment(row: asyncpg.Record) -> api.Commitment:
    return api.Commitment(id=row["id"], text=row["text"], outcome=row["outcome"], note=row["outcome_note"])


def _comment(row: asyncpg.Record, edit_window: timedelta | None = None) -> api.Comment:
    deleted = row["deleted_at"] is not None
    return api.Comment(
        id=row["id"],
        report_id=row["report_id"],
        parent_id=row["parent_id"],
        author_id=row["author_id"],
        body=row["body"],
        body_html=markdown.render(row["body"]) if not deleted else "",
        created_at=row["created_at"],
        # Hidden comments reach facilitators and admins only (members' reads leave them out).
        hidden=row["hidden_at"] is not None,
        hidden_reason=row["hidden_reason"] if row["hidden_at"] is not None else None,
        edited=row["edited_at"] is not None and not deleted,
        deleted=deleted,
        editable_until=row["created_at"] + edit_window if edit_window and not deleted else None,
    )


def _local_today(convoy: asyncpg.Record, now: datetime) -> date:
    return now.astimezone(ZoneInfo(convoy["timezone"])).date()


def build_board(convoy_id: uuid.UUID, cycle: cycles.Cycle | None, rows: list[asyncpg.Record]) -> api.Board:
    """The progress board from :func:`repository.board_rows` (one row per company); pure arithmetic from here."""
    cycles_so_far = cycle.index + 1 if cycle else 0
    companies = []
    for c in rows:
        ladder = cat.project_type(c["project_type"]) if c["project_type"] else None
        done_keys = set(c["done_keys"])
        reviewed = c["kept_done"] + c["kept_partly"] + c["kept_not_yet"]
        kept = (
            c["kept_done"] * OUTCOME_SCORE["done"]
            + c["kept_partly"] * OUTCOME_SCORE["partly"]
            + c["kept_not_yet"] * OUTCOME_SCORE["not_yet"]
        )
        companies.append(
            api.CompanyProgress(
                company_id=c["company_id"],
                name=c["name"],
                project_title=c["title"],
                project_type=c["project_type"],
                progress=round(c["weight_done"] / c["weight_total"], 4) if c["weight_total"] else 0.0,
                milestones_done=c["milestones_done"],
                milestones_due=c["milestones_due"],
                milestones_total=c["milestones_total"],
                reports=c["reports"],
                participation=round(min(c["reports"] / cycles_so_far, 1.0), 4) if cycles_so_far else 0.0,
                streak=c["streak"],
                missed=(cycle.index - c["reported_closed"]) if cycle else 0,
                commitments_kept=round(kept / reviewed, 4) if reviewed else None,
                rung=sum(1 for r in ladder.rungs if r.key in done_keys) if ladder else None,
                rungs=len(ladder.rungs) if ladder else None,
            )
        )
    n = len(companies)
    return api.Board(
        convoy_id=convoy_id,
        cycle_index=cycle.index if cycle else None,
        cycles=cycles_so_far,
        progress=round(sum(c.progress for c in companies) / n, 4) if n else 0.0,
        participation=round(sum(c.participation for c in companies) / n, 4) if n else 0.0,
        companies=companies,
    )


def _check_index(index: int) -> None:
    if index < 0:
        raise InvalidInput("`cycle_index`: must be >= 0")


def _cycle(convoy: asyncpg.Record, index: int) -> cycles.Cycle:
    try:
        return cycles.cycle_by_index(cadence_of(convoy), convoy["timezone"], convoy["start_date"], index)
    except (ValueError, OverflowError) as exc:  # an index beyond the calendar (year 9999)
        raise InvalidInput(f"`cycle_index`: this convoy has no cycle {index}") from exc


def build_digest(convoy: asyncpg.Record, cycle_index: int, data: dict[str, list[asyncpg.Record]]) -> api.Digest:
    """The digest from the set-based rows of :func:`repository.digest_rows`; pure arithmetic from here."""
    names: dict[uuid.UUID, str] = {}
    progress: dict[uuid.UUID, float] = {}
    for c in data["companies"]:
        names[c["company_id"]] = c["name"]
        total = c["total_weight"]
        progress[c["company_id"]] = round(c["done_weight"] / total, 4) if total else 0.0
    changes: dict[uuid.UUID, list[tuple[str, str]]] = {}
    for t in data["touched"]:
        changes.setdefault(t["report_id"], []).append((t["title"], t["status"]))
    reports: list[api.DigestReport] = []
    addenda: list[api.DigestReport] = []
    for r in data["reports"]:
        company_id, name = r["company_id"], names[r["company_id"]]
        (reports if r["cycle_index"] == cycle_index else addenda).append(
            api.DigestReport(
                report_id=r["id"],
                company_id=company_id,
                company_name=name,
                cycle_index=r["cycle_index"],
                late=r["late"],
                done=r["done"],
                next=r["next"],
                blockers=r["blockers"],
                help_wanted=r["help_wanted"],
                help_topic=r["help_topic"],
                mood=r["mood"],
                progress=progress[company_id],
                milestone_changes=[
                    api.DigestMilestone(company_id=company_id, company_name=name, title=title, status=status)
                    for title, status in changes.get(r["id"], [])
                ],
                kudos_by=list(r["kudos_by"]),
            )
        )
    reported = {r.company_id for r in reports}
    n = len(names)
    return api.Digest(
        convoy_id=convoy["convoy_id"],
        convoy_name=convoy["name"],
        cycle_index=cycle_index,
        completed_milestones=[
            api.DigestMilestone(
                company_id=m["company_id"], company_name=m["company_name"], title=m["title"], status=m["status"]
            )
            for m in data["completed"]
        ],
        help_requests=[r for r in reports if r.help_wanted],
        reports=reports,
        late_addenda=addenda,
        silent_company_ids=[c for c in names if c not in reported],
        progress=round(sum(progress.values()) / n, 4) if n else 0.0,
        participation=round(len(reported) / n, 4) if n else 0.0,
    )


def _current_index(convoy: asyncpg.Record, at: datetime) -> int:
    """The index of the cycle open at ``at``; -1 before the first check-in."""
    try:
        cycle = current_cycle(convoy, at)
    except (ValueError, OverflowError):  # a moment beyond the calendar
        return -1
    return cycle.index if cycle else -1


SILENT_AFTER = 2
"""A company is listed as silent after this many cycles in a row without a visible report."""
MOOD_CYCLES = 4


def build_facilitator_digest(
    convoys: list[asyncpg.Record], currents: list[int], data: dict[str, list[asyncpg.Record]]
) -> api.FacilitatorDigest:
    """The facilitator digest from the rows of :func:`repository.facilitator_digest_rows`.

    ``currents`` holds each convoy's current cycle (-1 before its first check-in). Silence counts
    the cycles ``0..current`` in a row, back from the current one, without a visible report.
    """
    companies: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for c in data["companies"]:
        companies.setdefault(c["convoy_id"], []).append(c)
    stalled: dict[uuid.UUID, list[api.StalledMilestone]] = {}
    for m in data["milestones"]:
        stalled.setdefault(m["convoy_id"], []).append(
            api.StalledMilestone(
                company_name=m["company_name"], title=m["title"], target_date=m["target_date"], status=m["status"]
            )
        )
    help_: dict[uuid.UUID, list[api.OpenItem]] = {}
    for h in data["help"]:
        help_.setdefault(h["convoy_id"], []).append(
            api.OpenItem(company_name=h["company_name"], report_id=h["report_id"], text=h["help_topic"] or "")
        )
    moods: dict[tuple[uuid.UUID, int], float] = {
        (m["convoy_id"], m["cycle_index"]): float(m["mood"]) for m in data["moods"]
    }
    flags: dict[uuid.UUID, int] = {f["convoy_id"]: int(f["flags"]) for f in data.get("flags", [])}
    out: list[api.ConvoyHealth] = []
    for convoy, k in zip(convoys, currents, strict=True):
        convoy_id = convoy["convoy_id"]
        silent: list[api.SilentCompany] = []
        blockers: list[api.OpenItem] = []
        for c in companies.get(convoy_id, []):
            if k >= 0:
                last = c["cycle_index"]
                cycles_silent = k + 1 if last is None else max(k - last, 0)
                if cycles_silent >= SILENT_AFTER:
                    silent.append(
                        api.SilentCompany(company_id=c["company_id"], name=c["name"], cycles_silent=cycles_silent)
                    )
            if c["report_id"] is not None and c["blockers"]:
                blockers.append(api.OpenItem(company_name=c["name"], report_id=c["report_id"], text=c["blockers"]))
        out.append(
            api.ConvoyHealth(
                convoy_id=convoy_id,
                convoy_name=convoy["name"],
                cycle_index=k if k >= 0 else None,
                silent_companies=silent,
                stalled_milestones=stalled.get(convoy_id, []),
                open_blockers=blockers,
                unanswered_help=help_.get(convoy_id, []),
                mood_trend=[moods.get((convoy_id, i)) for i in range(max(k - MOOD_CYCLES + 1, 0), k + 1)],
                flags_waiting=flags.get(convoy_id, 0),
            )
        )
    return api.FacilitatorDigest(convoys=out)
