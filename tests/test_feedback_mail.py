"""Feedback by email (issue #17): comments, replies and kudos on a report are collected per report
over a short window and sent as one email per person, in their language; a reply to it files an
answer; unsubscribing from "feedback" stops only that. Over the real stack (JetStream events, the
notifier's flusher, the SMTP sink and the inbound SMTP server), with a window of two seconds."""

from __future__ import annotations

import asyncio
import uuid
from email.message import EmailMessage
from typing import Any

import asyncpg
import httpx
import nats.js.errors
import pytest

from notifier import feedback, replies
from schemas import api
from schemas import envelope as env
from schemas import events as ev
from schemas.milestones import Milestones
from services import embedded
from services.registry import backend
from services.runtime import claims, signing
from services.runtime.rpc import RpcClient
from services.runtime.service import serve
from services.runtime.settings import Settings
from tests.conftest import SmtpSink, Stack, eventually, html_of, text_of
from tests.test_email_replies import reply, send
from tests.world import Rep, World, build_world, invite_and_accept, rpc_answered

WINDOW_S = 2.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_(feedback_window_s=WINDOW_S)


async def feedback_world(client: httpx.AsyncClient, sink: SmtpSink) -> tuple[World, Rep]:
    """Three companies (Anna de, Ben en, Clara de); Anna's company has a second, English representative."""
    world = await build_world(client, sink, companies=3)
    alex = await invite_and_accept(
        client,
        sink,
        world.facilitator,
        world.convoy_id,
        world.reps["a"].company_id,
        "Alex Weber",
        f"alex-{uuid.uuid4().hex[:8]}@mueller.example",
        "en",
    )
    return world, alex


async def post_report(client: httpx.AsyncClient, world: World, key: str, done: str) -> str:
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/reports", json={"done": done}, headers=world.reps[key].auth
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def comment(
    client: httpx.AsyncClient, report_id: str, auth: dict[str, str], body: str, parent_id: str | None = None
) -> dict[str, Any]:
    r = await client.post(
        f"/api/v1/reports/{report_id}/comments", json={"body": body, "parent_id": parent_id}, headers=auth
    )
    assert r.status_code == 201, r.text
    found: dict[str, Any] = r.json()
    return found


async def kudos(client: httpx.AsyncClient, report_id: str, auth: dict[str, str], give: bool = True) -> None:
    url = f"/api/v1/reports/{report_id}/kudos"
    r = await (client.put(url, headers=auth) if give else client.delete(url, headers=auth))
    assert r.status_code == 200, r.text


def mails(sink: SmtpSink, address: str, kind: str) -> list[EmailMessage]:
    return [m for m in sink.to(address) if str(m["X-Convoy-Delivery"] or "").startswith(f"{kind}:")]


async def first_mail(sink: SmtpSink, address: str, kind: str, count: int = 1) -> EmailMessage:
    """The ``count``-th email of ``kind`` to ``address``, once it arrived."""

    async def arrived() -> EmailMessage | None:
        found = mails(sink, address, kind)
        return found[count - 1] if len(found) >= count else None

    mail = await eventually(arrived)
    assert mail is not None
    return mail


async def open_batches(stack: Stack) -> int:
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM notifier.feedback_batches"))
    finally:
        await conn.close()


async def settled(stack: Stack) -> None:
    """Every batch is sent (a batch is deleted only after its last email)."""

    async def none_left() -> bool:
        return await open_batches(stack) == 0

    await eventually(none_left)


async def redeliver(stack: Stack, comment_id: str) -> None:
    """Publish the comment.added of this comment once more, as a redelivery would bring it (same
    envelope, so the same event id; another Nats-Msg-Id, so JetStream keeps it)."""
    js = stack.nc.jetstream()

    async def relayed() -> bytes | None:
        try:
            msg = await js.get_last_msg(stack.subjects.events_stream, stack.subjects.of(ev.CommentAdded))
        except nats.js.errors.NotFoundError:
            return None
        _, event = env.decode(msg.data)
        assert isinstance(event, ev.CommentAdded)
        return msg.data if str(event.comment_id) == comment_id else None

    data = await eventually(relayed)
    ack = await js.publish(stack.subjects.of(ev.CommentAdded), data, headers={"Nats-Msg-Id": str(uuid.uuid4())})
    assert not ack.duplicate


def test_a_feedback_reply_address_names_the_comment_it_answers() -> None:
    settings = Settings(secret_key="key_unit")
    ids = [uuid.uuid4() for _ in range(4)]
    target = replies.Target(kind="comment", person_id=ids[0], convoy_id=ids[1], report_id=ids[2], parent_id=ids[3])
    token = replies.token_of(replies.address(settings, target), settings)
    assert token is not None
    assert replies.Target.from_payload(signing.verify(settings, "reply", token, 60)) == target
    with pytest.raises(ValueError, match="answers no comment"):
        replies.Target.from_payload(
            replies.Target(kind="report", person_id=ids[0], convoy_id=ids[1], parent_id=ids[3]).payload()
        )


def test_comment_excerpts_are_plain_and_bounded() -> None:
    assert feedback.excerpt("  Erster   Absatz\nmit Umbruch\n\n\n\nZweiter  ") == "Erster Absatz mit Umbruch\nZweiter"
    long = feedback.excerpt("wort " * 300)
    assert len(long) <= feedback.EXCERPT_CHARS + 2 and long.endswith(" …") and "wor …" not in long


def thread_of(report_id: str) -> str:
    return f"<report.{report_id}@localhost>"  # the domain of CONVOY_MAIL_FROM (convoy@localhost)


async def test_a_kudos_and_three_comments_make_one_email_per_representative_and_a_reply_files_an_answer(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world, alex = await feedback_world(client, smtp_sink)
    anna, ben, clara = world.reps["a"], world.reps["b"], world.reps["c"]
    report_id = await post_report(client, world, "a", "Die Buchungsseite ist live.")
    notice = await smtp_sink.wait_for_subject(ben.email, "Sanitär Müller")
    assert notice["In-Reply-To"] == notice["References"] == thread_of(report_id)  # the report's thread

    await kudos(client, report_id, ben.auth)
    await comment(client, report_id, clara.auth, "<b>Stark!</b> Wie lange hat es gedauert?")
    await comment(client, report_id, world.facilitator, "Schön, dass es läuft.")
    c3 = await comment(client, report_id, ben.auth, "Which booking tool do you use?")
    await redeliver(stack, c3["id"])

    to_anna = await first_mail(smtp_sink, anna.email, "feedback")
    to_alex = await first_mail(smtp_sink, alex.email, "feedback")
    await settled(stack)
    assert len(mails(smtp_sink, anna.email, "feedback")) == len(mails(smtp_sink, alex.email, "feedback")) == 1
    for person in (ben, clara):  # not the report's company, and nobody answered them
        assert mails(smtp_sink, person.email, "feedback") == mails(smtp_sink, person.email, "reply") == []

    # Anna reads German, Alex English; each lists all four, in order, each once.
    assert "Rückmeldungen zum Bericht von Sanitär Müller" in str(to_anna["Subject"])
    text = text_of(to_anna)
    lines = [
        "Clara Stahl (Metallbau Stahl) schreibt:",
        "Frieda Berater (Moderation) schreibt:",
        "Ben Schmidt (Laden Schmidt) schreibt:",
    ]
    assert [text.index(line) for line in lines] == sorted(text.index(line) for line in lines)
    assert "Kudos von: Ben Schmidt (Laden Schmidt)" in text
    assert text.count("Which booking tool do you use?") == 1  # the redelivered event added nothing
    assert "<b>Stark!</b> Wie lange hat es gedauert?" in text  # plain text as written
    html = html_of(to_anna)
    assert "&lt;b&gt;Stark!&lt;/b&gt;" in html and "<b>Stark!</b>" not in html  # escaped in HTML
    assert 'lang="de"' in html and f"http://convoy.test/reports/{report_id}" in html

    assert "Feedback on the report of Sanitär Müller" in str(to_alex["Subject"])
    english = text_of(to_alex)
    assert "Frieda Berater (facilitator) writes:" in english and "Kudos from: Ben Schmidt (Laden Schmidt)" in english
    assert "Just reply to this email" in english

    for mail in (to_anna, to_alex):
        assert mail["In-Reply-To"] == mail["References"] == thread_of(report_id)
        assert str(mail["List-Unsubscribe"]).startswith("<http://convoy.test/unsubscribe/")
        assert str(mail["Reply-To"]).startswith("reply+")

    # The same event once more after the batch went out: nothing new is collected.
    await redeliver(stack, c3["id"])

    # Anna answers by email: a reply to the latest comment listed (Ben's).
    code, answer = await send(
        stack.settings, reply(str(to_anna["Reply-To"]), anna.email, "Wir nutzen Calendly.\n\n> Which booking tool")
    )
    assert (code, answer) == (250, "Thank you, filed")
    r = await client.get(f"/api/v1/reports/{report_id}/comments", headers=ben.auth)
    [answered] = [c for c in r.json()["comments"] if c["id"] == c3["id"]]
    [filed] = answered["replies"]
    assert filed["body"] == "Wir nutzen Calendly." and filed["author_id"] == anna.person_id
    assert filed["parent_id"] == c3["id"]

    # Ben hears of the answer (kind "reply", English); Alex of it as feedback; Anna not of her own.
    to_ben = await first_mail(smtp_sink, ben.email, "reply")
    assert "Reply to your comment" in str(to_ben["Subject"]) and to_ben["In-Reply-To"] == thread_of(report_id)
    assert "Anna Müller (Sanitär Müller) answers you:" in text_of(to_ben) and "Wir nutzen Calendly." in text_of(to_ben)
    second = await first_mail(smtp_sink, alex.email, "feedback", count=2)
    assert "Anna Müller (Sanitär Müller) answers Ben Schmidt:" in text_of(second)
    assert "Which booking tool" not in text_of(second)  # nothing from the first batch again
    await settled(stack)
    assert len(mails(smtp_sink, anna.email, "feedback")) == 1 and mails(smtp_sink, anna.email, "reply") == []
    assert len(mails(smtp_sink, ben.email, "reply")) == 1


async def test_unsubscribing_from_feedback_stops_only_feedback(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world, alex = await feedback_world(client, smtp_sink)
    anna, ben, clara = world.reps["a"], world.reps["b"], world.reps["c"]
    report_id = await post_report(client, world, "a", "Kalender angebunden.")
    await comment(client, report_id, ben.auth, "Great progress!")
    mail = await first_mail(smtp_sink, alex.email, "feedback")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = str(mail["List-Unsubscribe"]).strip("<>").removeprefix("http://convoy.test")
    r = await client.post(
        path, content=b"List-Unsubscribe=One-Click", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 200, r.text
    r = await client.get("/api/v1/me/notifications", headers=alex.auth)
    assert r.json()["immediate"] == {"feedback": False}

    await comment(client, report_id, clara.auth, "Wie habt ihr das gemacht?")
    await first_mail(smtp_sink, anna.email, "feedback", count=2)  # the batch went out ...
    await settled(stack)
    assert len(mails(smtp_sink, alex.email, "feedback")) == 1  # ... but not to Alex

    # Other kinds still reach Alex: the next report notice.
    await post_report(client, world, "b", "Shop online.")
    notice = await smtp_sink.wait_for_subject(alex.email, "Laden Schmidt")
    assert str(notice["X-Convoy-Delivery"]).startswith("report:")


async def test_kudos_taken_back_and_hidden_comments_are_left_out_and_nothing_left_sends_nothing(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    world, alex = await feedback_world(client, smtp_sink)
    anna, ben, clara = world.reps["a"], world.reps["b"], world.reps["c"]
    report_id = await post_report(client, world, "a", "Neue Website.")

    await kudos(client, report_id, ben.auth)
    await kudos(client, report_id, ben.auth, give=False)
    await kudos(client, report_id, clara.auth)
    spam = await comment(client, report_id, clara.auth, "Billige Uhren hier")
    r = await client.post(f"/api/v1/comments/{spam['id']}/hide", json={"reason": "Spam"}, headers=world.facilitator)
    assert r.status_code == 200, r.text
    await comment(client, report_id, ben.auth, "Looks great.")

    text = text_of(await first_mail(smtp_sink, anna.email, "feedback"))
    assert "Kudos von: Clara Stahl (Metallbau Stahl)" in text.splitlines()  # Ben took his back
    assert "Ben Schmidt (Laden Schmidt) schreibt:" in text and "Looks great." in text
    assert "Billige Uhren" not in text
    await settled(stack)

    # Kudos given and taken back within the window, and nothing else: no email at all.
    await kudos(client, report_id, ben.auth)
    await kudos(client, report_id, ben.auth, give=False)

    async def collected() -> bool:
        return await open_batches(stack) == 1

    await eventually(collected)
    await settled(stack)
    assert len(mails(smtp_sink, anna.email, "feedback")) == len(mails(smtp_sink, alex.email, "feedback")) == 1


async def test_two_notifier_replicas_send_each_batch_once(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    """Both replicas consume and flush; every batch still goes out once (SKIP LOCKED, delivery keys)."""
    stop = asyncio.Event()
    second = asyncio.create_task(
        serve(backend("notifier"), stack.settings.with_(inbound_smtp_port=embedded.free_port()), stop)
    )
    try:
        world, alex = await feedback_world(client, smtp_sink)
        reports = {key: await post_report(client, world, key, f"Bericht {key}") for key in ("a", "b", "c")}
        for key, report_id in reports.items():
            for other in sorted(set(reports) - {key}):
                await comment(client, report_id, world.reps[other].auth, f"Kommentar von {other} zu {key}")
        for rep in [*world.reps.values(), alex]:
            await first_mail(smtp_sink, rep.email, "feedback")
        await settled(stack)
        for key, rep in [*world.reps.items(), ("a", alex)]:
            [mail] = mails(smtp_sink, rep.email, "feedback")
            text = text_of(mail)
            assert all(f"Kommentar von {o} zu {key}" in text for o in set(reports) - {key})
        conn = await asyncpg.connect(stack.settings.database_url)
        try:
            statuses = await conn.fetch("SELECT DISTINCT status FROM notifier.deliveries WHERE key LIKE 'feedback:%'")
        finally:
            await conn.close()
        assert [r["status"] for r in statuses] == ["sent"]
    finally:
        stop.set()
        await asyncio.wait_for(second, 15)


async def test_a_batch_that_fails_in_a_pass_is_retried_alone_and_the_others_are_forgotten(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    """The flusher sends a pass's batches side by side and forgets the sent ones in one statement: a
    batch whose email the server refuses for now stays (retried after its backoff, sending only what
    did not go out), the others are deleted at once, and every email goes once."""
    world, alex = await feedback_world(client, smtp_sink)
    anna, ben, clara = world.reps["a"], world.reps["b"], world.reps["c"]
    report_a = await post_report(client, world, "a", "Kalender angebunden.")
    report_b = await post_report(client, world, "b", "Shop online.")
    for rep in (anna, alex, ben):  # the report notices first (they would meet the refusal otherwise)
        await first_mail(smtp_sink, rep.email, "report")
    smtp_sink.refuse_once[anna.email] = "451 4.3.0 Try again later"
    await kudos(client, report_a, clara.auth)
    await kudos(client, report_b, clara.auth)
    await first_mail(smtp_sink, ben.email, "feedback")
    await first_mail(smtp_sink, alex.email, "feedback")  # Anna's colleague: not refused

    async def batches() -> dict[str, str | None]:
        conn = await asyncpg.connect(stack.settings.database_url)
        try:
            rows = await conn.fetch("SELECT report_id::text, last_error FROM notifier.feedback_batches")
        finally:
            await conn.close()
        return {r["report_id"]: r["last_error"] for r in rows}

    async def only_a_waits() -> bool:
        return list(await batches()) == [report_a]

    await eventually(only_a_waits)  # b's batch forgotten while a's waits for its retry
    assert "451" in str((await batches())[report_a])
    assert smtp_sink.refuse_once == {}
    await first_mail(smtp_sink, anna.email, "feedback")  # the retry
    await settled(stack)
    for rep in (anna, alex, ben):
        assert len(mails(smtp_sink, rep.email, "feedback")) == 1


async def test_a_pass_reads_its_reports_in_one_request_and_what_is_true_at_the_flush_counts(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, stack: Stack
) -> None:
    """The flusher asks services/milestones for the reports of a whole pass at once (``FEEDBACK_REPORTS``:
    hidden, company, kudos as given now), never ``REPORT_GET`` per batch; a report hidden within the
    window sends nothing, the others list exactly the kudos given, and an unknown report is left out."""
    world, alex = await feedback_world(client, smtp_sink)
    anna, ben, clara = world.reps["a"], world.reps["b"], world.reps["c"]
    reports = {key: await post_report(client, world, key, f"Bericht {key}") for key in ("a", "b", "c")}
    for rep in (anna, alex, ben, clara):  # the notices are out (their consumer reads no report here)
        await first_mail(smtp_sink, rep.email, "report", count=2)
    report_gets = await rpc_answered(client, "milestones", "report_get")
    asked = await rpc_answered(client, "milestones", "feedback_reports")

    await kudos(client, reports["a"], clara.auth)
    await kudos(client, reports["b"], anna.auth)
    await kudos(client, reports["b"], clara.auth)
    await kudos(client, reports["c"], ben.auth)
    r = await client.post(f"/api/v1/reports/{reports['c']}/hide", json={"reason": "Werbung"}, headers=world.facilitator)
    assert r.status_code == 200, r.text

    answer = await RpcClient(stack.nc, 10, stack.subjects, signer=claims.Signer.from_settings(stack.settings)).call(
        Milestones.FEEDBACK_REPORTS,
        api.FeedbackAsk(report_ids=[uuid.UUID(reports["a"]), uuid.UUID(reports["c"]), uuid.uuid4()]),
    )
    found = {str(f.id): f for f in answer.reports}
    assert sorted(found) == sorted([reports["a"], reports["c"]])  # the unknown one left out
    assert (found[reports["a"]].hidden, found[reports["c"]].hidden) == (False, True)
    assert found[reports["a"]].kudos_by == [uuid.UUID(clara.person_id)]
    assert str(found[reports["a"]].company_id) == anna.company_id
    assert found[reports["a"]].company_name == "Sanitär Müller"
    assert str(found[reports["c"]].convoy_id) == world.convoy_id

    to_anna = text_of(await first_mail(smtp_sink, anna.email, "feedback"))
    assert "Kudos von: Clara Stahl (Metallbau Stahl)" in to_anna.splitlines()
    to_ben = text_of(await first_mail(smtp_sink, ben.email, "feedback"))
    assert "Kudos from: Anna Müller (Sanitär Müller), Clara Stahl (Metallbau Stahl)" in to_ben.splitlines()
    await settled(stack)
    assert mails(smtp_sink, clara.email, "feedback") == []  # her report was hidden before the flush
    assert len(mails(smtp_sink, alex.email, "feedback")) == 1
    assert await rpc_answered(client, "milestones", "report_get") == report_gets
    # one request per pass: at most one per batch (three), besides the one above
    assert 2 <= await rpc_answered(client, "milestones", "feedback_reports") - asked <= 4
