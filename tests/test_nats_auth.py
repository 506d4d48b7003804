"""NATS least privilege on real nats-servers configured as the embedded default is (issue #19).

This module's nats-server is configured for the test's own namespace, exactly as `convoy up` writes
it (``embedded.write_nats_config`` with ``nats_auth.authorization_block``), not with the session
server's wildcard namespace: the stack and the API below run on production's permissions.
"""

from __future__ import annotations

import contextlib
import functools
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api as js_api

from schemas import api
from schemas import events as ev
from schemas.contract import PROCESSES
from schemas.convoys import Convoys
from schemas.notifier import Notifier
from schemas.subjects import Subjects
from services import embedded, nats_auth
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import NATS_PASSWORDS, NatsServer, SmtpSink, Stack, eventually, tokens_for
from tests.world import appoint_facilitator

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def nats_server(tmp_path: Path, namespace: str) -> Iterator[NatsServer]:
    """This module's server: permissions for this test's namespace only (as `convoy up` writes them)."""
    server = NatsServer(tmp_path / "nats", embedded.free_port(), namespace=namespace)
    server.start()
    yield server
    server.stop()


class Connection:
    """A connection as one role, keeping the errors the server reported (permission violations)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Client

    async def open(self, server: NatsServer, role: str, namespace: str) -> Connection:
        async def error_cb(exc: Exception) -> None:
            self.errors.append(str(exc))

        self.nc = await nats.connect(
            server.anonymous_url,
            user=role,
            password=NATS_PASSWORDS[role],
            inbox_prefix=Subjects(namespace).inbox_prefix(role),
            error_cb=error_cb,
            allow_reconnect=False,
        )
        return self

    def violations(self) -> list[str]:
        return [e for e in self.errors if "permissions violation" in e.lower()]


@pytest.fixture
async def connect(nats_server: NatsServer, namespace: str) -> AsyncIterator[list[Connection]]:
    made: list[Connection] = []
    yield made
    for c in made:
        with contextlib.suppress(Exception):
            await c.nc.close()


async def as_role(made: list[Connection], server: NatsServer, role: str, namespace: str) -> Connection:
    conn = await Connection().open(server, role, namespace)
    made.append(conn)
    return conn


# --- connecting ------------------------------------------------------------------------------------
async def test_anonymous_and_wrong_passwords_are_refused(nats_server: NatsServer, namespace: str) -> None:
    for credentials in ({}, {"user": "notifier", "password": "guessed"}, {"user": "nobody", "password": "x"}):
        errors: list[str] = []
        assert not await _connects(nats_server.anonymous_url, errors, **credentials)
        assert any("authorization violation" in e.lower() for e in errors), errors
    for role in PROCESSES:  # each role's own credentials work
        nc = await nats.connect(nats_server.anonymous_url, user=role, password=NATS_PASSWORDS[role])
        assert nc.is_connected
        await nc.close()


async def _connects(url: str, errors: list[str], **credentials: str) -> bool:
    async def error_cb(exc: Exception) -> None:
        errors.append(str(exc))

    nc = Client()
    try:
        await nc.connect(url, allow_reconnect=False, connect_timeout=2, error_cb=error_cb, **credentials)  # type: ignore[arg-type]
    except Exception as exc:
        errors.append(str(exc))
        return False
    finally:
        await nc.close()
    return True


def test_embedded_credentials_are_generated_once_and_private(tmp_path: Path) -> None:
    folder = tmp_path / "data" / nats_auth.CREDENTIALS_FOLDER
    first = nats_auth.credentials(folder)
    assert set(first) == set(PROCESSES)
    assert len(set(first.values())) == len(PROCESSES)  # one password per role
    for role in PROCESSES:
        assert stat.S_IMODE((folder / role).stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert nats_auth.credentials(folder) == first  # kept across starts
    admin = nats_auth.as_admin(Settings(data_dir=str(tmp_path / "data")))
    assert (admin.nats_user, admin.nats_password) == ("admin", first["admin"])


# --- asking: only an operation's callers -----------------------------------------------------------
async def test_a_role_outside_the_callers_is_refused_by_the_server(
    stack: Stack, connect: list[Connection], nats_server: NatsServer, namespace: str
) -> None:
    op = Convoys.FACILITATOR_APPOINT
    assert "notifier" not in op.callers and "api" in op.callers
    request = msgspec.json.encode(
        api.AppointFacilitator(
            actor=api.SYSTEM,
            facilitator=api.NewFacilitator(name="Mallory", email=f"m-{uuid.uuid4().hex[:6]}@x.example"),
        )
    )
    subject = stack.subjects.operation(op)

    notifier = await as_role(connect, nats_server, "notifier", namespace)
    with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await notifier.nc.request(subject, request, timeout=1)
    await eventually(lambda: _has(notifier.violations(), f'publish to "{subject}"'))

    # the same request from a caller the contract names is answered by the service
    edge = await as_role(connect, nats_server, "api", namespace)
    answer = await edge.nc.request(subject, request, timeout=5)  # the service's answer (an error or not)
    assert answer.data or answer.headers
    assert edge.violations() == []


async def _refused(conn: Connection, part: str) -> bool:
    return await _has(conn.violations(), part)


async def _has(items: list[str], part: str) -> bool:
    return any(part.lower() in item.lower() for item in items)


async def test_a_service_cannot_serve_another_services_operations(
    stack: Stack, connect: list[Connection], nats_server: NatsServer, namespace: str
) -> None:
    reminders = await as_role(connect, nats_server, "reminders", namespace)
    subject = stack.subjects.operation(Notifier.PREFS_GET)
    await reminders.nc.subscribe(subject)
    await eventually(lambda: _has(reminders.violations(), f'Subscription to "{subject}"'))


# --- reading: only the notifier reads the messages (one-time links) -------------------------------
async def test_only_the_notifier_reads_the_message_subjects(
    stack: Stack,
    client: object,
    smtp_sink: SmtpSink,
    connect: list[Connection],
    nats_server: NatsServer,
    namespace: str,
) -> None:
    subjects = stack.subjects
    stream = subjects.messages_stream
    spies: dict[str, list[bytes]] = {}
    # the notifier's credentials can (what makes the refusals below mean something)
    notifier = await as_role(connect, nats_server, "notifier", namespace)
    heard: list[str] = []

    async def hear(msg: Msg) -> None:
        heard.append(msg.subject)

    await notifier.nc.subscribe(subjects.messages_wildcard, cb=hear)
    info = await notifier.nc.jetstream(timeout=5).consumer_info(stream, subjects.consumer("notifier", "messages"))
    assert info.config.filter_subjects == sorted(f for t in Notifier.CONSUMERS["messages"] for f in subjects.filters(t))
    others = [r for r in PROCESSES if r != "notifier"]
    for role in others:
        conn = await as_role(connect, nats_server, role, namespace)
        got: list[bytes] = []
        spies[role] = got

        async def keep(msg: Msg, got: list[bytes] = got) -> None:
            got.append(msg.data)

        await conn.nc.subscribe(subjects.messages_wildcard, cb=keep)
        refused = f'subscription to "{subjects.messages_wildcard}"'
        await eventually(functools.partial(_refused, conn, refused))
        js = conn.nc.jetstream(timeout=1)
        with pytest.raises(nats.errors.TimeoutError):  # the API request never reaches JetStream
            await js.add_consumer(
                stream, js_api.ConsumerConfig(durable_name=f"spy_{role}", ack_policy=js_api.AckPolicy.EXPLICIT)
            )
        with pytest.raises(nats.errors.TimeoutError):  # ...nor an ephemeral one, nor reading by sequence
            await js.add_consumer(stream, js_api.ConsumerConfig(ack_policy=js_api.AckPolicy.NONE))
        with pytest.raises(nats.errors.TimeoutError):
            await js.get_msg(stream, 1)

    # a facilitator is appointed and signs in: her sign-in link goes out through the messages
    # stream (so the services' own permissions suffice), and none of them saw it
    email = f"frieda-{uuid.uuid4().hex[:6]}@zentrum.example"
    await appoint_facilitator(client, smtp_sink, email)  # type: ignore[arg-type]
    assert tokens_for(smtp_sink, email, "cvl_")
    assert {role: got for role, got in spies.items() if got} == {}
    assert any(h.startswith(subjects.of(ev.EmailRequested) + ".") for h in heard), heard  # per recipient
    assert notifier.violations() == []


async def test_a_service_cannot_create_consumers_that_deliver_where_it_may_not_publish(
    stack: Stack, connect: list[Connection], nats_server: NatsServer, namespace: str
) -> None:
    """A push consumer's deliver subject is in the request body, beyond subject permissions: a service
    allowed to create one could have JetStream deliver events it published to any operation's subject.
    So services only bind to the durable consumers the admin declared."""
    subjects = stack.subjects
    target = subjects.operation(Convoys.FACILITATOR_APPOINT)
    milestones = await as_role(connect, nats_server, "milestones", namespace)
    js = milestones.nc.jetstream(timeout=1)
    with pytest.raises(nats.errors.TimeoutError):
        await js.add_consumer(
            subjects.events_stream,
            js_api.ConsumerConfig(durable_name="evil", deliver_subject=target, ack_policy=js_api.AckPolicy.NONE),
        )
    await eventually(
        lambda: _has(
            milestones.violations(), f'publish to "$JS.API.CONSUMER.DURABLE.CREATE.{subjects.events_stream}.evil"'
        )
    )
    # its own consumer it may read (what the service does)
    own = await js.consumer_info(subjects.events_stream, subjects.consumer("milestones", "convoys"))
    assert own.config.durable_name == subjects.consumer("milestones", "convoys")


# --- declarations ----------------------------------------------------------------------------------
def test_the_deploy_authorization_is_generated_from_the_contracts() -> None:
    committed = (ROOT / "deploy" / "nats" / "authorization.conf").read_text()
    assert committed == nats_auth.production_block("convoy"), (
        "deploy/nats/authorization.conf is out of date: `convoy nats-authorization > deploy/nats/authorization.conf`"
    )
    printed = subprocess.run(
        [sys.executable, "-m", "services.cli", "nats-authorization"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert printed == committed


def test_a_service_consumes_exactly_what_its_contract_declares() -> None:
    rt = Runtime(Settings(), "notifier")
    rt.contract = Notifier
    with pytest.raises(RuntimeError, match=r"registered  \| declared .*messages: \['EmailRequested'"):
        rt.check_consumes()


def test_permissions_follow_the_contracts() -> None:
    ns = Subjects("convoy")
    perms = {role: nats_auth.permissions(role, "convoy") for role in PROCESSES}

    def pub(role: str) -> list[str]:
        return perms[role]["publish"]["allow"]  # type: ignore[index,no-any-return]

    def sub(role: str) -> list[str]:
        return perms[role]["subscribe"]["allow"]  # type: ignore[index,no-any-return]

    appoint = ns.operation(Convoys.FACILITATOR_APPOINT)
    assert appoint in pub("api") and appoint in pub("admin") and appoint not in pub("notifier")
    assert appoint in sub("convoys") and all(appoint not in sub(r) for r in PROCESSES if r != "convoys")

    def reads_messages(role: str) -> bool:
        core = any(s.startswith(f"{ns.namespace}.messages") for s in sub(role))
        jetstream = any(s.startswith(("$JS.API.CONSUMER.", "$JS.ACK.")) and ns.messages_stream in s for s in pub(role))
        return core or jetstream

    assert [r for r in PROCESSES if reads_messages(r)] == ["notifier"]
    for role in PROCESSES:  # replies: its own inboxes only
        assert [s for s in sub(role) if s.startswith("_INBOX")] == [ns.inbox_prefix(role) + ".>"]
    updaters = [r for r in PROCESSES if any(s.startswith("$JS.API.STREAM.UPDATE.") for s in pub(r))]
    assert updaters == ["admin"]


def test_every_consumed_type_has_a_publisher() -> None:
    """What a consumer reads, some service's outbox may publish (else the permissions would starve it)."""
    published = {t for c in nats_auth.CONTRACTS for t in c.PUBLISHES}
    consumed = {t for c in nats_auth.CONTRACTS for t in c.CONSUMES}
    assert consumed - published == set()
    assert sorted(t.__name__ for t in published - consumed) == []  # and nothing is published for nobody
