"""The demo: loaded through the services' endpoints into the real stack, with weeks of history,
readable mail, and nothing added the second time; and the history import's rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from schemas import api
from schemas.convoys import Convoys
from schemas.milestones import Milestones
from services import demo
from services.runtime import claims, cycles
from services.runtime.errors import Forbidden, InvalidInput
from services.runtime.rpc import RpcClient
from services.runtime.settings import Settings
from tests.conftest import SmtpSink, Stack, new_token_for, text_of, token_in, tokens_for
from tests.test_scheduler import tick

ADMIN = api.Actor(is_admin=True)


def loader(stack: Stack, sink: SmtpSink) -> demo.Loader:
    return demo.Loader(rpc(stack), stack.subjects, lambda address, prefix: tokens_for(sink, address, prefix))


def rpc(stack: Stack) -> RpcClient:
    return RpcClient(stack.nc, 10, stack.subjects, signer=claims.Signer.from_settings(stack.settings))


async def timeline(stack: Stack, convoy_id: uuid.UUID) -> list[api.Report]:
    page = await rpc(stack).call(Milestones.TIMELINE, api.Timeline(actor=ADMIN, convoy_id=convoy_id, limit=50))
    return page.reports


async def test_the_demo_loads_its_convoy_history_and_mail_once(stack: Stack, smtp_sink: SmtpSink) -> None:
    loaded = await loader(stack, smtp_sink).load()
    call = rpc(stack).call

    convoy = await call(Convoys.CONVOY_GET, api.GetConvoy(actor=ADMIN, convoy_id=loaded.convoy_id))
    assert convoy.status == "active" and convoy.language == "de"
    assert [f.name for f in convoy.facilitators] == ["Miriam Kessler"]
    assert sorted(c.name for c in convoy.companies) == [
        "Metallbau Özdemir KG",
        "Modehaus Lindner",
        "Sanitär Brandt GmbH",
    ]
    assert all(len(c.representatives) == 1 for c in convoy.companies)

    # Four closed cycles of history (Modehaus Lindner silent in one), and this week's first report.
    reports = await timeline(stack, loaded.convoy_id)
    assert loaded.imported == len(demo.HISTORY) == 11
    assert len(reports) == 12
    assert sorted({r.cycle_index for r in reports}) == [0, 1, 2, 3, 4]
    assert all(r.submitted_at < datetime.now(UTC) for r in reports)
    for r in reports:  # each report sits in the cycle it was submitted in
        assert (
            cycles.cycle_at(convoy.cadence, convoy.timezone, convoy.start_date, r.submitted_at).index == r.cycle_index
        )  # type: ignore[arg-type, union-attr]
    assert sum(r.late for r in reports if r.cycle_index < demo.HISTORY_WEEKS) == 1  # this week: depends on the day
    assert sum(r.help_wanted for r in reports) == 2
    assert sum(r.comments for r in reports) >= 2 and sum(r.kudos for r in reports) >= 5
    assert {r.mood for r in reports} >= {2, 3, 4, 5}
    assert any(r.reviews for r in reports) and any(r.milestones for r in reports)
    live = reports[0]
    assert live.company_name == "Metallbau Özdemir KG" and live.cycle_index == demo.HISTORY_WEEKS

    help_report = next(r for r in reports if r.blockers)
    comments = await call(Milestones.COMMENT_LIST, api.ReportAction(actor=ADMIN, report_id=help_report.id))
    assert len(comments.comments) == 2
    assert all(help_report.submitted_at <= c.created_at < reports[0].submitted_at for c in comments.comments)

    board = await call(Milestones.BOARD, api.ConvoyAsk(actor=ADMIN, convoy_id=loaded.convoy_id))
    assert board.cycle_index == demo.HISTORY_WEEKS and len(board.companies) == 3
    by_name = {c.name: c for c in board.companies}
    assert by_name["Modehaus Lindner"].missed == 1 and by_name["Sanitär Brandt GmbH"].missed == 0
    assert all(0 < c.progress < 1 and c.rung is not None and c.milestones_due > 0 for c in board.companies)
    assert by_name["Metallbau Özdemir KG"].commitments_kept is not None

    # The digest of the last closed cycle tells that week's history.
    digest = await call(Milestones.DIGEST, api.CycleAsk(convoy_id=loaded.convoy_id, cycle_index=3))
    assert len(digest.reports) == 3 and digest.completed_milestones and not digest.late_addenda

    # Mail: the facilitator's appointment, each invitation, this week's report to the peers ...
    anna, sabine, emre = (demo.REPRESENTATIVES[k].email for k in ("brandt", "lindner", "oezdemir"))
    await smtp_sink.wait_for_mail_to(demo.FACILITATOR.email)
    for address in (anna, sabine, emre):
        assert token_in(smtp_sink.to(address)[0], "cvi_")
    await smtp_sink.wait_for_subject(anna, "Metallbau Özdemir KG")
    await smtp_sink.wait_for_subject(sabine, "Metallbau Özdemir KG")
    # ... and once the scheduler runs: last week's digest and this week's prompt.
    await tick(stack, datetime.now(UTC).isoformat())
    digest_mail = await smtp_sink.wait_for_subject(anna, "Konvoi-Digest")
    assert "Sync-Problem" in text_of(digest_mail)
    await smtp_sink.wait_for_subject(sabine, "Check-in")
    for message in smtp_sink.messages:  # every one a readable email
        assert message["Subject"] and message["To"] and text_of(message).strip()

    # Each person signs in with an emailed link.
    for person in demo.PEOPLE:
        seen = tokens_for(smtp_sink, person.email, "cvl_")
        await call(Convoys.SIGN_IN_REQUEST, api.SignInAsk(sign_in=api.SignInRequest(email=person.email)))
        token = await new_token_for(smtp_sink, person.email, "cvl_", seen)
        signed_in = await call(Convoys.SIGN_IN_COMPLETE, api.SignInComplete(token=token))
        assert signed_in.person.email == person.email and signed_in.person.name == person.name

    # Loading again adds nothing.
    mails = len(smtp_sink.messages)
    again = await loader(stack, smtp_sink).load()
    assert again.convoy_id == loaded.convoy_id and again.imported == 0 and again.steps == []
    assert len(await timeline(stack, loaded.convoy_id)) == 12
    convoy = await call(Convoys.CONVOY_GET, api.GetConvoy(actor=ADMIN, convoy_id=loaded.convoy_id))
    assert len(convoy.companies) == 3 and all(len(c.representatives) == 1 for c in convoy.companies)
    facilitators = await call(Convoys.FACILITATORS, api.Empty())
    assert [f.email for f in facilitators.facilitators] == [demo.FACILITATOR.email]
    assert len(smtp_sink.messages) == mails


async def test_importing_history_keeps_the_rules(stack: Stack, smtp_sink: SmtpSink) -> None:
    loaded = await loader(stack, smtp_sink).load()
    call = rpc(stack).call
    subject = stack.subjects.operation(Milestones.REPORT_IMPORT)
    convoy = await call(Convoys.CONVOY_GET, api.GetConvoy(actor=ADMIN, convoy_id=loaded.convoy_id))
    brandt = next(c for c in convoy.companies if c.name == "Sanitär Brandt GmbH")
    lindner = next(c for c in convoy.companies if c.name == "Modehaus Lindner")
    anna = brandt.representatives[0].person_id
    assert convoy.start_date is not None

    def when(index: int, hours: float = 30) -> datetime:
        assert convoy.start_date is not None
        return cycles.cycle_by_index(convoy.cadence, convoy.timezone, convoy.start_date, index).opens_at + timedelta(
            hours=hours
        )

    def ask(**changes: object) -> api.ImportReport:
        base = api.ImportReport(
            actor=ADMIN,
            convoy_id=loaded.convoy_id,
            company_id=lindner.id,
            author_id=lindner.representatives[0].person_id,
            cycle_index=1,
            submitted_at=when(1),
            report=api.NewReport(done="Inventur"),
        )
        return msgspec.structs.replace(base, **changes)

    with pytest.raises(Forbidden):
        await call(subject, ask(actor=api.Actor(person_id=anna)), api.ImportedReport)
    with pytest.raises(InvalidInput, match="has not closed"):
        await call(subject, ask(cycle_index=demo.HISTORY_WEEKS, submitted_at=when(4, 0.1)), api.ImportedReport)
    with pytest.raises(InvalidInput, match="submitted_at"):
        await call(subject, ask(submitted_at=when(2)), api.ImportedReport)
    with pytest.raises(InvalidInput, match="author_id"):
        await call(subject, ask(author_id=anna), api.ImportedReport)
    with pytest.raises(InvalidInput, match="kudos_by"):
        await call(subject, ask(kudos_by=[lindner.representatives[0].person_id]), api.ImportedReport)

    # The silent week filled in, once; a second import answers it unchanged.
    first = await call(
        subject, ask(report=api.NewReport(done="Inventur, daher kein Fortschritt", mood=3)), api.ImportedReport
    )
    assert first.created and first.report.cycle_index == 1 and not first.report.late
    assert first.report.submitted_at == when(1)
    second = await call(subject, ask(report=api.NewReport(done="anders")), api.ImportedReport)
    assert not second.created and second.report.id == first.report.id and second.report.done == first.report.done
    # An existing report of a cycle is never replaced.
    kept = await call(subject, ask(company_id=brandt.id, author_id=anna, cycle_index=0), api.ImportedReport)
    assert not kept.created and kept.report.done.startswith("Auftakt im Team")


def test_convoy_up_loads_the_demo_only_on_a_new_data_folder_with_the_local_mail_sink(tmp_path: Path) -> None:
    assert demo.wanted(Settings(), new_data_folder=True)
    assert not demo.wanted(Settings(demo=False), new_data_folder=True)  # CONVOY_DEMO=0
    assert not demo.wanted(Settings(), new_data_folder=False)
    assert not demo.wanted(Settings(smtp_url="smtp://mail.example:25"), new_data_folder=True)
    assert not demo.wanted(Settings(database_url="postgresql://db.example/convoy"), new_data_folder=True)
    from services.runtime import settings as settings_mod

    assert settings_mod.load({"CONVOY_DEMO": "0"}).demo is False
    assert not demo.due(tmp_path)
    demo.mark_new_data_folder(tmp_path)
    assert demo.due(tmp_path)


async def test_load_into_records_the_demo_in_the_data_folder(stack: Stack, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    demo.mark_new_data_folder(tmp_path)
    loaded = await demo.load_into(
        rpc(stack),
        stack.subjects,
        tmp_path,
        "http://convoy.test",
        tokens=lambda address, prefix: tokens_for(smtp_sink, address, prefix),
    )
    assert loaded.imported == len(demo.HISTORY)
    assert not demo.due(tmp_path)
    text = (tmp_path / demo.LOADED).read_text()
    assert "http://convoy.test/dev/mail" in text
    assert all(p.email in text for p in demo.PEOPLE)
