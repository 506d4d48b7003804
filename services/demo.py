"""The demo: a first look without typing.

A facilitator of the competence centre, a convoy of three companies — a plumber setting up online
booking, a fashion shop building a web shop, a metalworker digitising its stock — each with one
representative, projects from the milestone catalogue and four weeks of history, in German (the
content: services/demo_data.py; this module loads it).

Everything goes through the services' request/reply endpoints, the ones the API uses, never into
their tables: the centre's admin appoints the facilitator (who is emailed), she creates the
convoy and invites a representative per company (who are emailed an invitation and accept it
with the token from that email, as a person would), the representatives describe their projects.

**History.** A report belongs to the cycle open when it is posted, so the weeks before today
cannot be posted today. They are brought in with the admin-only ``report_import`` endpoint of
services/milestones (``services/milestones/imports.py``): reports of *closed* cycles with the
times they had, checked like posted reports, with comments and kudos of that time, and no
notifications (history is not news). The convoy starts four weeks before the current check-in,
so cycles 0 to 3 are history and cycle 4 is open now. Then the convoy becomes active, and the
scheduler does what it does for any convoy: it closes cycle 3 (a digest email to everyone) and
opens cycle 4 (a prompt to every company). The metalworker posts this week's report the ordinary
way, so the other two get a "new report" email. Every email lands in the local mail sink.

**Idempotent and resumable.** Each step first looks whether its result exists (the facilitator,
her convoy by name, the companies, their representatives and projects, each cycle's report), so
loading twice adds nothing, and a load that was interrupted completes the next time.

``convoy up`` loads the demo once, on a new data folder (``CONVOY_DEMO=0`` turns it off); see
:func:`mark_new_data_folder`. ``convoy demo`` loads it into a running system on demand.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import msgspec
import structlog

from schemas import api
from schemas.contract import Op
from schemas.convoys import Convoys
from schemas.milestones import Milestones
from schemas.subjects import SERVICES, Subjects
from services.demo_data import (
    CADENCE,
    COMPANIES,
    CONVOY,
    FACILITATOR,
    HISTORY,
    HISTORY_WEEKS,
    LIVE,
    PEOPLE,
    REPRESENTATIVES,
    TIMEZONE,
    Company,
    Entry,
    Person,
)
from services.runtime import cycles
from services.runtime.errors import ConvoyError, Unavailable
from services.runtime.rpc import RpcClient
from services.runtime.settings import Settings

log = structlog.get_logger(__name__)
Req = TypeVar("Req", bound=msgspec.Struct)
Rep = TypeVar("Rep", bound=msgspec.Struct)

TokenSource = Callable[[str, str], set[str]]
"""``tokens(address, prefix)``: the one-time tokens (``cvi_…``) in the mail the sink kept for an address."""

PENDING = "demo.pending"
"""Marker in the data folder: the demo is still to be loaded (written when the folder is new)."""
LOADED = "demo.txt"
"""Written after a successful load: how to sign in as the demo's people."""


@dataclass
class Loaded:
    convoy_id: uuid.UUID
    people: tuple[Person, ...] = PEOPLE
    imported: int = 0
    """Reports of past cycles brought in by this load (0 when they were all there already)."""
    steps: list[str] = field(default_factory=list)
    """What this load did (empty when everything was there already)."""


def start_date(now: datetime) -> date:
    """The Monday HISTORY_WEEKS weeks before the latest check-in: cycles 0..HISTORY_WEEKS-1 are over."""
    local = now.astimezone(ZoneInfo(TIMEZONE)).date()
    monday = local - timedelta(days=local.weekday())
    if cycles.check_in(CADENCE, TIMEZONE, monday, 0) > now:  # this Monday's check-in is still ahead
        monday -= timedelta(days=7)
    return monday - timedelta(weeks=HISTORY_WEEKS)


class Loader:
    def __init__(self, rpc: RpcClient, subjects: Subjects, tokens: TokenSource, *, mail_timeout: float = 60.0) -> None:
        self.rpc = rpc
        self.subjects = subjects
        self.tokens = tokens
        self.mail_timeout = mail_timeout
        self.admin = api.Actor(is_admin=True)

    async def call(self, op: Op[Req, Rep], request: Req) -> Rep:
        return await self.rpc.call(op, request)

    async def load(self, now: datetime | None = None) -> Loaded:
        now = now or datetime.now(UTC)
        steps: list[str] = []
        miriam = await self._facilitator(steps)
        convoy = await self._convoy(miriam, now, steps)
        loaded = Loaded(convoy_id=convoy.id, steps=steps)
        companies = {c.name: c for c in convoy.companies}
        reps: dict[str, api.Actor] = {}
        company_ids: dict[str, uuid.UUID] = {}
        for spec in COMPANIES:
            company = companies.get(spec.company.name)
            if company is None:
                company = await self.call(
                    Convoys.COMPANY_ADD, api.AddCompany(actor=miriam, convoy_id=convoy.id, company=spec.company)
                )
                steps.append(f"company {spec.company.name}")
            company_ids[spec.key] = company.id
            person_id = company.representatives[0].person_id if company.representatives else None
            if person_id is None:
                person_id = await self._invite(miriam, convoy.id, company.id, REPRESENTATIVES[spec.key])
                steps.append(f"representative {REPRESENTATIVES[spec.key].email}")
            reps[spec.key] = api.Actor(person_id=person_id)
        await self._projected(convoy.id, len(COMPANIES))
        milestones: dict[str, uuid.UUID] = {}
        start = convoy.start_date or start_date(now)
        for spec in COMPANIES:
            milestones |= await self._project(reps[spec.key], convoy.id, company_ids[spec.key], spec, start, steps)

        actors = {"miriam": miriam, **reps}
        current = cycles.cycle_at(convoy.cadence, convoy.timezone, start, now)
        last: dict[str, api.Report] = {}
        for entry in HISTORY:
            if current is None or entry.cycle >= current.index:
                continue  # only closed cycles are history
            opens = cycles.cycle_by_index(convoy.cadence, convoy.timezone, start, entry.cycle).opens_at
            at = opens + timedelta(hours=entry.hours)
            result = await self.call(
                Milestones.REPORT_IMPORT,
                api.ImportReport(
                    actor=self.admin,
                    convoy_id=convoy.id,
                    company_id=company_ids[entry.company],
                    author_id=_person(reps[entry.company]),
                    cycle_index=entry.cycle,
                    submitted_at=at,
                    report=_report(entry, milestones, last.get(entry.company)),
                    comments=[
                        api.ImportedComment(
                            author_id=_person(actors[who]), body=text, at=min(at + timedelta(hours=h), now)
                        )
                        for who, h, text in entry.comments
                    ],
                    kudos_by=[_person(reps[who]) for who in entry.kudos],
                ),
            )
            last[entry.company] = result.report
            loaded.imported += result.created
        if loaded.imported:
            steps.append(f"{loaded.imported} reports of past cycles")

        if convoy.status == "forming":
            await self.call(
                Convoys.CONVOY_STATUS,
                api.ChangeStatus(actor=miriam, convoy_id=convoy.id, change=api.StatusChange(status="active")),
            )
            steps.append("convoy active")
        await self._live_report(reps[LIVE.company], convoy.id, company_ids[LIVE.company], milestones, last, steps)
        return loaded

    async def _facilitator(self, steps: list[str]) -> api.Actor:
        known = await self.call(Convoys.FACILITATORS, api.Empty())
        found = next((f for f in known.facilitators if f.email == FACILITATOR.email), None)
        if found is not None:
            return api.Actor(person_id=found.person_id, is_facilitator=True)
        person = await self.call(
            Convoys.FACILITATOR_APPOINT,
            api.AppointFacilitator(
                actor=self.admin,
                facilitator=api.NewFacilitator(name=FACILITATOR.name, email=FACILITATOR.email, language="de"),
            ),
        )
        steps.append(f"facilitator {FACILITATOR.email}")
        return api.Actor(person_id=person.id, is_facilitator=True)

    async def _convoy(self, miriam: api.Actor, now: datetime, steps: list[str]) -> api.Convoy:
        me = await self.call(Convoys.ME_GET, api.Ask(actor=miriam))
        mine = next((c for c in me.convoys if c.name == CONVOY.name and c.role == "facilitator"), None)
        if mine is not None:
            return await self.call(Convoys.CONVOY_GET, api.GetConvoy(actor=miriam, convoy_id=mine.convoy_id))
        new = msgspec.structs.replace(CONVOY, start_date=start_date(now))
        steps.append(f"convoy {CONVOY.name}")
        return await self.call(Convoys.CONVOY_CREATE, api.CreateConvoy(actor=miriam, convoy=new))

    async def _invite(self, miriam: api.Actor, convoy_id: uuid.UUID, company_id: uuid.UUID, who: Person) -> uuid.UUID:
        """Invite, read the invitation's token from the mail (as the person would), accept it."""
        seen = self.tokens(who.email, "cvi_")
        await self.call(
            Convoys.INVITATION_CREATE,
            api.CreateInvitation(
                actor=miriam,
                convoy_id=convoy_id,
                company_id=company_id,
                invitation=api.NewInvitation(email=who.email, name=who.name, language="de"),
            ),
        )
        deadline = asyncio.get_running_loop().time() + self.mail_timeout
        while not (fresh := self.tokens(who.email, "cvi_") - seen):
            if asyncio.get_running_loop().time() > deadline:
                raise Unavailable(f"the invitation to {who.email} did not arrive in the mail sink")
            await asyncio.sleep(0.2)
        signed_in = await self.call(
            Convoys.INVITATION_ACCEPT,
            api.AcceptInvitationRequest(accept=api.AcceptInvitation(token=fresh.pop(), name=who.name, language="de")),
        )
        return signed_in.person.id

    async def _projected(self, convoy_id: uuid.UUID, companies: int, timeout: float = 30.0) -> None:
        """Wait until services/milestones' projection of the convoy has caught up with its companies."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            board = await self.call(Milestones.BOARD, api.ConvoyAsk(actor=self.admin, convoy_id=convoy_id))
            if len(board.companies) >= companies:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise Unavailable("services/milestones did not learn of the demo's companies in time")
            await asyncio.sleep(0.2)

    async def _project(
        self, rep: api.Actor, convoy_id: uuid.UUID, company_id: uuid.UUID, spec: Company, start: date, steps: list[str]
    ) -> dict[str, uuid.UUID]:
        """The company's project from its catalogue ladder, one rung due each week: catalogue key -> milestone."""
        ask = api.CompanyAction(actor=rep, convoy_id=convoy_id, company_id=company_id)
        try:
            project = await self.call(Milestones.PROJECT_GET, ask)
        except ConvoyError as exc:
            if exc.status != 404:
                raise
            project = await self.call(
                Milestones.PROJECT_PUT,
                api.PutProject(actor=rep, convoy_id=convoy_id, company_id=company_id, project=spec.project),
            )
            steps.append(f"project {spec.project.title}")
            for i, m in enumerate(project.milestones):
                await self.call(
                    Milestones.MILESTONE_CHANGE,
                    api.ChangeMilestone(
                        actor=rep,
                        milestone_id=m.id,
                        patch=api.MilestonePatch(target_date=start + timedelta(days=7 * i + 10)),
                    ),
                )
        return {m.catalogue_key: m.id for m in project.milestones if m.catalogue_key}

    async def _live_report(
        self,
        rep: api.Actor,
        convoy_id: uuid.UUID,
        company_id: uuid.UUID,
        milestones: dict[str, uuid.UUID],
        last: dict[str, api.Report],
        steps: list[str],
    ) -> None:
        page = await self.call(
            Milestones.TIMELINE, api.Timeline(actor=self.admin, convoy_id=convoy_id, company_id=company_id, limit=1)
        )
        if page.reports and page.reports[0].cycle_index >= HISTORY_WEEKS:
            return  # posted by an earlier load (or by the person)
        report = _report(LIVE, milestones, last.get(LIVE.company))
        await self.call(Milestones.REPORT_SUBMIT, api.SubmitReport(actor=rep, convoy_id=convoy_id, report=report))
        steps.append("this week's report of " + REPRESENTATIVES[LIVE.company].role)


def _person(actor: api.Actor) -> uuid.UUID:
    assert actor.person_id is not None
    return actor.person_id


def _report(entry: Entry, milestones: dict[str, uuid.UUID], previous: api.Report | None) -> api.NewReport:
    made = previous.commitments if previous is not None else []
    return api.NewReport(
        done=entry.done,
        next=entry.next,
        blockers=entry.blockers,
        help_wanted=bool(entry.help_topic),
        help_topic=entry.help_topic,
        help_milestone_id=milestones[entry.help_milestone] if entry.help_milestone else None,
        mood=entry.mood,
        milestones=[api.MilestoneUpdate(milestone_id=milestones[key], status=s) for key, s in entry.milestones],
        commitments=list(entry.commitments),
        commitment_reviews=[
            api.CommitmentReview(commitment_id=c.id, outcome=outcome, note=note)
            for c, (outcome, note) in zip(made, entry.reviews, strict=False)
        ],
    )


# --- what people are told ----------------------------------------------------------------------
def instructions(public_url: str, people: tuple[Person, ...] = PEOPLE) -> str:
    base = public_url.rstrip("/")
    width = max(len(p.name) for p in people) + 2
    role_width = max(len(p.role) for p in people) + 2
    lines = [
        f'Demo: the convoy "{CONVOY.name}" with three companies and {HISTORY_WEEKS} weeks of history.',
        f"  Sign in as any of these people at {base}/sign-in (no password: you are emailed a link):",
        *(f"    {p.name:<{width}}{p.role:<{role_width}}{p.email}" for p in people),
        f"  Their email (sign-in links, invitations, prompts, digests) is in the mail viewer: {base}/dev/mail",
        "  or on the command line: convoy mail --to ADDRESS  (just the link's token: convoy mail --to ADDRESS"
        " --token cvl_)",
    ]
    return "\n".join(lines)


def maildir_tokens(folder: Path) -> TokenSource:
    """Tokens from the local mail sink's Maildir (what `convoy mail --token` reads)."""
    from services.mailsink import list_messages

    def tokens(address: str, prefix: str) -> set[str]:
        return {
            token
            for item in list_messages(folder, 10_000, address)
            for token in re.findall(rf"{re.escape(prefix)}[A-Za-z0-9_-]{{20,}}", str(item["text"]))
        }

    return tokens


# --- when it is loaded -------------------------------------------------------------------------
def wanted(settings: Settings, new_data_folder: bool) -> bool:
    """Whether `convoy up` loads the demo: CONVOY_DEMO on, a new data folder (the embedded database is
    created by this start), and mail going to the local sink (the demo's people have made-up
    addresses: with a real SMTP server their invitations would leave the machine)."""
    return settings.demo and new_data_folder and not settings.database_url and not settings.smtp_url


def mark_new_data_folder(data: Path) -> None:
    """Called by `convoy up` when it creates the database in a new data folder: the demo is due.

    The marker survives an interrupted first start (the next start completes the load); it is
    replaced by :data:`LOADED` once the demo is in. A data folder that was not new never gets one.
    """
    (data / PENDING).touch()


def due(data: Path) -> bool:
    return (data / PENDING).exists()


async def wait_until_ready(rpc: RpcClient, subjects: Subjects, timeout: float = 120.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    for name in SERVICES:
        while True:
            try:
                if (await rpc.call(subjects.health(name), api.Empty(), api.Health, timeout=2)).ready:
                    break
            except ConvoyError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise Unavailable(f"the {name} service did not become ready")
            await asyncio.sleep(0.5)


async def load_into(
    rpc: RpcClient, subjects: Subjects, data: Path, public_url: str, tokens: TokenSource | None = None
) -> Loaded:
    """Load the demo into a running system whose mail sink keeps its mail in ``data``/mail; record it."""
    await wait_until_ready(rpc, subjects)
    loaded = await Loader(rpc, subjects, tokens or maildir_tokens(data / "mail")).load()
    (data / LOADED).write_text(instructions(public_url) + "\n")
    (data / PENDING).unlink(missing_ok=True)
    log.info("demo loaded", convoy_id=str(loaded.convoy_id), steps=loaded.steps)
    return loaded
