"""The digitalisation check, the formation pool and programme figures (issue #12).

Scoring against golden files per question-set version; the consent rules (without consent nothing
personal is stored anywhere: every table of every schema is searched); k-anonymity of the outcomes;
the competitor warning, in the suggestions and when forming a convoy; the programme report counts.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import msgspec
import pytest

from schemas import api
from services.convoys.check import formation
from services.convoys.check import questions as q
from services.milestones import catalogue as cat
from tests.conftest import SmtpSink, Stack, html_of, settled, text_of
from tests.world import ADMIN, appoint_facilitator, build_world

GOLDEN = Path(__file__).resolve().parent / "golden"
PLUMBER: dict[str, Any] = json.loads((GOLDEN / "check-v1" / "plumber-hamburg.json").read_text())["answers"]


# --- the question set and the scoring (pure) -------------------------------------------------------
@pytest.mark.parametrize("version", q.versions())
def test_every_version_has_golden_files_and_scores_them_exactly(version: int) -> None:
    qs = q.question_set(version)
    cases = sorted((GOLDEN / f"check-v{version}").glob("*.json"))
    assert cases, f"tests/golden/check-v{version}/ needs at least one golden file"
    for case in cases:
        data = json.loads(case.read_text())
        scored = q.score(qs, msgspec.convert(data["answers"], api.CheckAnswers))
        got = {"areas": scored.areas, "overall": scored.overall, "potentials": scored.potentials}
        assert got == data["expected"], case.name


def test_the_question_set_is_data_in_two_languages_pointing_into_the_milestone_catalogue() -> None:
    qs = q.question_set()
    assert qs.version == q.CURRENT_VERSION == max(q.versions())
    assert {a.key for a in qs.areas} == {
        "customer_contact",
        "appointments_orders",
        "internal_processes",
        "stock_purchasing",
        "logistics_routes",
        "it_security",
        "people_skills",
    }
    known = {t.key for t in cat.catalogue().project_types}
    assert set(q.themes(qs)) <= known
    assert {"online_booking", "web_shop", "digital_stock", "route_planning"} <= set(q.themes(qs))
    assert 15 <= len(qs.questions) <= 30  # 10 to 15 minutes


def test_broken_question_sets_are_refused_with_the_place_named() -> None:
    good = json.loads((Path(q.__file__).parent / "questions-v1.json").read_text())
    broken = json.loads(json.dumps(good))
    broken["questions"][1]["area"] = "nowhere"
    with pytest.raises(q.QuestionSetError, match="question 'cc_listings': unknown area 'nowhere'"):
        q.load(json.dumps(broken))
    broken = json.loads(json.dumps(good))
    broken["questions"][1]["key"] = "cc_website"
    with pytest.raises(q.QuestionSetError, match="duplicate question key 'cc_website'"):
        q.load(json.dumps(broken))
    broken = json.loads(json.dumps(good))
    broken["questions"][0]["surprise"] = 1
    with pytest.raises(q.QuestionSetError, match="surprise"):
        q.load(json.dumps(broken))


def test_answers_that_do_not_fit_are_named() -> None:
    qs = q.question_set()
    answers = {**PLUMBER["answers"]}
    del answers["ao_booking"]
    with pytest.raises(q.AnswerError, match=r"`answers\.ao_booking`: choose one answer"):
        q.score(qs, msgspec.convert({**PLUMBER, "answers": answers}, api.CheckAnswers))
    with pytest.raises(q.AnswerError, match="no option 'maybe'"):
        q.score(qs, msgspec.convert({**PLUMBER, "answers": {**answers, "ao_booking": "maybe"}}, api.CheckAnswers))


def test_answers_are_typed_strictly_one_key_or_a_list() -> None:
    qs = q.question_set()
    one_as_list = {**PLUMBER, "answers": {**PLUMBER["answers"], "ao_booking": [PLUMBER["answers"]["ao_booking"]]}}
    with pytest.raises(q.AnswerError, match=r"`answers\.ao_booking`: one option key, not a list"):
        q.score(qs, msgspec.convert(one_as_list, api.CheckAnswers))
    several_as_one = {**PLUMBER, "answers": {**PLUMBER["answers"], "cc_channels": "phone"}}
    with pytest.raises(q.AnswerError, match=r"`answers\.cc_channels`: a list of option keys"):
        q.score(qs, msgspec.convert(several_as_one, api.CheckAnswers))


# --- formation (pure) -------------------------------------------------------------------------------
def candidate(sector: str, region: str, overall: int, theme: str = "online_booking") -> formation.Candidate:
    return formation.Candidate(id=uuid.uuid4(), theme=theme, sector=sector, region=region, overall=overall)


def test_competitors_are_same_trade_and_region_and_suggestions_keep_them_apart() -> None:
    a, b = candidate("Sanitär", "HH", 20), candidate(" sanitär ", "HH", 25)
    assert formation.competitors([a, b, candidate("Sanitär", "SH", 30), candidate("", "HH", 30)]) == [(a, b)]
    assert formation.competitors([candidate("", "HH", 1), candidate("", "HH", 2)]) == []  # unknown trade
    # Nine waiting on one theme: two groups (5 and 4), the two plumbers from Hamburg in different ones.
    others = [candidate(f"Gewerk {i}", "HH", 21 + i) for i in range(7)]
    groups = formation.suggest([a, b, *others, candidate("Friseur", "BY", 50, theme="web_shop")])
    assert [len(g.members) for g in groups] == [5, 4]  # web_shop: one waiting, no suggestion
    assert all(g.competitors == [] for g in groups)
    assert any(a in g.members for g in groups) and not any(a in g.members and b in g.members for g in groups)
    # Four plumbers from Hamburg: one group, and the warning stays.
    [group] = formation.suggest([candidate("Sanitär", "HH", i) for i in range(4)])
    assert len(group.competitors) == 6


# --- end to end --------------------------------------------------------------------------------------
async def every_table_mentioning(stack: Stack, *needles: str) -> list[str]:
    """Every table (any schema of the database) with a row whose text contains one of the needles."""
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        tables = await conn.fetch(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        found = []
        for t in tables:
            name = f'"{t["schemaname"]}"."{t["tablename"]}"'
            for needle in needles:
                if await conn.fetchval(f"SELECT count(*) FROM {name} x WHERE x::text ILIKE $1", f"%{needle}%"):
                    found.append(f"{t['schemaname']}.{t['tablename']}")
        return sorted(set(found))
    finally:
        await conn.close()


async def take_check(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.post("/api/v1/check/", json=PLUMBER)
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


async def test_a_list_for_a_single_choice_question_is_refused_not_scored(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """Issue #19: the question is named in the 400, and nothing is stored."""
    before = await count_results(stack)
    for key, value in (("ao_booking", ["phone", "online"]), ("ao_booking", ["phone"]), ("ip_time", ["hours"])):
        r = await client.post("/api/v1/check/", json={**PLUMBER, "answers": {**PLUMBER["answers"], key: value}})
        assert r.status_code == 400, r.text
        assert f"answers.{key}" in r.text and "not a list" in r.text
    r = await client.post("/api/v1/check/", json={**PLUMBER, "answers": {**PLUMBER["answers"], "cc_channels": "phone"}})
    assert r.status_code == 400 and "answers.cc_channels" in r.text
    assert await count_results(stack) == before
    assert (await client.post("/api/v1/check/", json=PLUMBER)).status_code == 201
    assert await count_results(stack) == before + 1


async def count_results(stack: Stack) -> int:
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM convoys.check_results"))
    finally:
        await conn.close()


async def test_without_consent_nothing_personal_is_stored(
    client: httpx.AsyncClient, stack: Stack, smtp_sink: SmtpSink
) -> None:
    r = await client.get("/api/v1/check/questions")
    assert r.status_code == 200 and r.json()["version"] == 1
    result = await take_check(client)
    assert [p["area"] for p in result["potentials"]] == ["appointments_orders", "logistics_routes", "stock_purchasing"]
    assert result["overall"] == 27
    assert (await client.get(f"/api/v1/check/{result['id']}")).json()["areas"] == result["areas"]

    person = {
        "theme": "online_booking",
        "company": {"name": "Kesselflicker Zwoelf", "sector": "Sanitär", "region": "HH"},
        "contact_name": "Xaver Zuversicht",
        "contact_email": "xaver@zuversicht.example",
        "message": "Bitte melden Sie sich.",
    }
    r = await client.post(f"/api/v1/check/{result['id']}/join", json=person)  # consent missing
    assert r.status_code == 400 and "consent" in r.text
    r = await client.post(f"/api/v1/check/{result['id']}/join", json={**person, "consent": False})
    assert r.status_code == 400
    page = await client.post(  # the page: the error sits at the box, and nothing goes to the service
        f"/check/{result['id']}/join",
        data={
            "theme": "online_booking",
            "company_name": "Kesselflicker Zwoelf",
            "contact_name": "Xaver Zuversicht",
            "contact_email": "xaver@zuversicht.example",
        },
        headers={"accept-language": "de"},
    )
    assert page.status_code == 422
    assert 'id="e-consent"' in page.text and "Bitte stimmen Sie zu" in page.text
    assert await every_table_mentioning(stack, "zuversicht", "Kesselflicker", "127.0.0.1") == []
    # The anonymous result is there, as answers and scores only.
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'convoys'"
            " AND table_name = 'check_results' ORDER BY ordinal_position"
        )
        assert [c["column_name"] for c in columns] == [
            "id", "version", "answers", "scores", "overall", "sector", "size_class", "region", "completed_on"
        ]  # fmt: skip
    finally:
        await conn.close()

    # With consent: stored in the pool (only there), and the facilitators hear of it.
    facilitator = await appoint_facilitator(client, smtp_sink, "fiona@zentrum.example")
    r = await client.post(f"/api/v1/check/{result['id']}/join", json={**person, "consent": True})
    assert r.status_code == 202, r.text
    mail = await smtp_sink.wait_for_subject("fiona@zentrum.example", "Online-Terminbuchung")
    assert "/pool" in text_of(mail)  # a link to the queue, and nothing the sender typed
    seen = str(mail["Subject"]) + text_of(mail) + html_of(mail)
    for typed in ("Kesselflicker", "Zwoelf", "Xaver", "zuversicht", "Bitte melden"):
        assert typed not in seen, typed
    # The contact is confirmed (issue #19; tests/test_pool_contact.py): their address is in the delivery log too.
    await smtp_sink.wait_for_mail_to("xaver@zuversicht.example")
    assert await every_table_mentioning(stack, "zuversicht") == ["convoys.pool_requests", "notifier.deliveries"]
    pool = (await client.get("/api/v1/pool", headers=facilitator)).json()
    [entry] = pool["entries"]
    assert entry["contact_email"] == "xaver@zuversicht.example" and entry["overall"] == 27
    [rep_free] = [e for e in pool["entries"] if e["check_id"] == result["id"]]
    assert rep_free["areas"][1]["score"] == 8
    assert (await client.get("/api/v1/pool")).status_code == 401


async def test_outcomes_come_only_from_sharing_convoys_and_groups_of_three(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink, companies=3)
    for i, key in enumerate(("a", "b", "c")):
        rep = world.reps[key]
        r = await client.put(
            f"/api/v1/convoys/{world.convoy_id}/companies/{rep.company_id}/project",
            json={"title": "Online-Termine", "project_type": "online_booking"},
            headers=rep.auth,
        )
        assert r.status_code == 200, r.text
        go_live = next(m for m in r.json()["milestones"] if m["catalogue_key"] == "online_booking.go_live")
        if i < 2:  # two of three go live
            r = await client.patch(f"/api/v1/milestones/{go_live['id']}", json={"status": "done"}, headers=rep.auth)
            assert r.status_code == 200, r.text

    def booking(result: dict[str, Any]) -> dict[str, Any]:
        return next(t for t in result["themes"] if t["project_type"] == "online_booking")

    assert booking(await take_check(client))["companies"] is None  # the convoy does not share
    r = await client.patch(
        f"/api/v1/convoys/{world.convoy_id}", json={"share_anonymised_results": True}, headers=world.facilitator
    )
    assert r.status_code == 200 and r.json()["share_anonymised_results"] is True
    result = await take_check(client)
    shown = booking(result)
    assert (shown["companies"], shown["went_live"], shown["went_live_share"]) == (3, 2, 0.667)
    assert shown["median_weeks"] is None  # two went live: fewer than three, no time shown
    assert booking(result)["title_de"] == "Online-Terminbuchung"
    potential = next(p for p in result["potentials"] if p["area"] == "appointments_orders")
    assert potential["projects"][0]["companies"] == 3
    web_shop = next(t for t in result["themes"] if t["project_type"] == "web_shop")
    assert web_shop["companies"] is None  # nobody: nothing shown


async def join_pool(client: httpx.AsyncClient, check_id: str, company: str, sector: str, region: str) -> str:
    email = f"{uuid.uuid4().hex[:8]}@{company.split()[0].lower()}.example"
    r = await client.post(
        f"/api/v1/check/{check_id}/join",
        json={
            "theme": "online_booking",
            "company": {"name": company, "sector": sector, "region": region, "size_class": "1-9"},
            "contact_name": f"Kontakt {company}",
            "contact_email": email,
            "consent": True,
        },
    )
    assert r.status_code == 202, r.text
    return email


async def test_forming_warns_about_competitors_and_the_programme_counts_it(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    facilitator = await appoint_facilitator(client, smtp_sink, "greta@zentrum.example")
    check_id = (await take_check(client))["id"]
    contacts = {}
    for company, sector, region in [
        ("Sanitär Nord", "Sanitär", "HH"),
        ("Sanitär Elbe", "sanitär", "HH"),
        ("Friseur Ost", "Friseur", "HH"),
        ("Tischlerei West", "Tischlerei", "SH"),
    ]:
        contacts[company] = await join_pool(client, check_id, company, sector, region)
    pool = (await client.get("/api/v1/pool", headers=facilitator)).json()
    ids = {e["company_name"]: e["id"] for e in pool["entries"]}
    [suggested] = pool["suggestions"]
    assert sorted(suggested["request_ids"]) == sorted(ids.values())
    assert [(c["sector"].casefold(), c["region"]) for c in suggested["competitors"]] == [("sanitär", "HH")]

    body = {"request_ids": list(ids.values()), "convoy": {"name": "Termine Nord", "theme": "Online-Terminbuchung"}}
    r = await client.post("/api/v1/pool/convoys", json=body, headers=facilitator)
    assert r.status_code == 409 and "competitors" in r.text and "Sanitär Nord and Sanitär Elbe" in r.text
    others = [ids["Sanitär Nord"], ids["Friseur Ost"], ids["Tischlerei West"]]
    r = await client.post("/api/v1/pool/convoys", json={**body, "request_ids": others}, headers=facilitator)
    assert r.status_code == 201, r.text
    convoy = r.json()
    assert sorted(c["name"] for c in convoy["companies"]) == ["Friseur Ost", "Sanitär Nord", "Tischlerei West"]
    r = await client.post("/api/v1/pool/convoys", json={**body, "request_ids": others[:1]}, headers=facilitator)
    assert r.status_code == 409  # no longer waiting
    pool = (await client.get("/api/v1/pool", headers=facilitator)).json()
    assert [e["company_name"] for e in pool["entries"]] == ["Sanitär Elbe"]
    invitation = await smtp_sink.wait_for_subject(contacts["Tischlerei West"], "Termine Nord")
    assert "Tischlerei West" in invitation.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    today = datetime.now(ZoneInfo("Europe/Berlin")).date().isoformat()  # the checks' day (their time zone)
    r = await client.get(f"/api/v1/programme?from_date={today}&to_date={today}", headers=facilitator)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["check_completions"] >= 1 and report["pool_requests"] >= 4
    assert report["convoys_formed_from_pool"] >= 1
    [row] = [c for c in report["convoys"] if c["convoy_id"] == convoy["id"]]
    assert row["formed_from_pool"] is True and row["companies"] == 3
    csv = await client.get(f"/api/v1/programme.csv?from_date={today}&to_date={today}", headers=facilitator)
    assert csv.status_code == 200 and "Termine Nord" in csv.text
    assert "@" not in csv.text and "Kontakt" not in csv.text  # no personal data
    r = await client.get(f"/api/v1/programme?from_date={today}&to_date=2000-01-01", headers=facilitator)
    assert r.status_code == 400
    r = await client.get(f"/api/v1/programme?from_date={today}&to_date={today}", headers=ADMIN)
    assert r.status_code == 200


async def test_pool_and_programme_pages_are_for_facilitators_only(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    r = await client.get("/pool")
    assert r.status_code == 303 and r.headers["location"].startswith("/sign-in?next=%2Fpool")
    world = await build_world(client, smtp_sink, companies=1)
    rep = httpx.AsyncClient(base_url=client.base_url, timeout=20)
    try:
        from tests.world import sign_in

        await sign_in(rep, smtp_sink, world.reps["a"].email)
        assert (await rep.get("/pool")).status_code == 403
        assert (await rep.get("/programme")).status_code == 403
        assert (await rep.get("/api/v1/programme?from_date=2027-01-01&to_date=2027-01-31")).status_code == 403
        page = await rep.get("/check/")  # signed in, too: in the person's language, with the CSRF field
        assert page.status_code == 200 and "Digitalisierungscheck" in page.text and 'name="_csrf"' in page.text
    finally:
        await rep.aclose()


async def test_a_contact_left_in_the_pool_can_be_taken_back_and_is_deleted(
    client: httpx.AsyncClient, stack: Stack, smtp_sink: SmtpSink
) -> None:
    facilitator = await appoint_facilitator(client, smtp_sink, "wanda@zentrum.example")
    check_id = (await take_check(client))["id"]
    await join_pool(client, check_id, "Zauderer Handwerk", "Sanitär", "HH")
    await settled(stack)  # the confirmation went to the contact (its address in the delivery log)
    assert await every_table_mentioning(stack, "Zauderer") == ["convoys.pool_requests", "notifier.deliveries"]

    r = await client.delete(f"/api/v1/check/{check_id}/join")
    assert r.status_code == 200, r.text
    assert "deleted" in r.json()["message"]
    await settled(stack)  # pool.contact_deleted: the notifier forgets the address, keeps the key
    assert await every_table_mentioning(stack, "Zauderer") == []  # deleted, not marked
    pool = (await client.get("/api/v1/pool", headers=facilitator)).json()
    assert pool["entries"] == []
    r = await client.delete(f"/api/v1/check/{check_id}/join")
    assert r.status_code == 404 and "waiting" in r.json()["detail"]
    assert (await client.delete(f"/api/v1/check/{uuid.uuid4()}/join")).status_code == 404

    # Once formed into a convoy, the pool can no longer take it back: the convoy's facilitator can.
    check_id = (await take_check(client))["id"]
    await join_pool(client, check_id, "Feste Werkstatt", "Tischlerei", "SH")
    [entry] = (await client.get("/api/v1/pool", headers=facilitator)).json()["entries"]
    body = {"request_ids": [entry["id"]], "convoy": {"name": "Werkstatt Nord", "theme": "Online-Terminbuchung"}}
    assert (await client.post("/api/v1/pool/convoys", json=body, headers=facilitator)).status_code == 201
    r = await client.delete(f"/api/v1/check/{check_id}/join")
    assert r.status_code == 409 and "facilitator" in r.json()["detail"]
