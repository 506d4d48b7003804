"""Real servers for the tests: one embedded PostgreSQL and one nats-server per test session,
isolated per test by a fresh database (copied from a migrated template) and a fresh NATS
namespace (its own streams and subjects); a real aiosmtpd SMTP server per test."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import secrets
import subprocess
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import msgspec
import nats
import pytest
from aiosmtpd.smtp import SMTP

from schemas import api
from schemas.subjects import SERVICES, Subjects
from services import embedded, nats_auth
from services.registry import BACKEND_MODULES, backend
from services.runtime import bus, claims, consumer, db, outbox, sealing, tracing
from services.runtime.service import serve
from services.runtime.settings import Settings

T = TypeVar("T")
TEMPLATE_DB = "convoy_template"
ADMIN_TOKEN = "adm_test-admin-token"
ACTOR_SIGNING_KEY = claims.new_private_pem()
REPLY_SIGNING_KEY = claims.new_private_pem()
"""The key the test API (and the test's own RPC clients, like the operator's tools) sign actor claims with."""
NOTIFIER_BOX_KEY, NOTIFIER_BOX_PUBLIC_KEY = sealing.generate()
"""The notifier's key pair of a test session (email requests travel sealed with it)."""
TOKEN_CACHE_S = 1.0
"""The API's token cache in tests: short, so a test of revocation waits a second, not ten."""
NATS_PASSWORDS = {role: f"nats_test_{role}_{secrets.token_hex(8)}" for role in nats_auth.ROLES}
"""Every role's password on the tests' nats-servers (the same on each server of the session)."""
NATS_SUPERUSER = ("test", f"nats_test_{secrets.token_hex(8)}")
"""A user allowed everything, on the tests' servers only: the tests' own helper connections
(``NatsServer.url`` carries it) and services a test starts with its bare ``settings``."""


@pytest.fixture
async def browsers(client: httpx.AsyncClient) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Separate cookie jars, one per person (a browser each); closed after the test."""
    made: list[httpx.AsyncClient] = []
    yield made
    for b in made:
        await b.aclose()


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 15.0, interval: float = 0.05) -> T:
    """Await ``check`` until it returns a truthy value (or stops raising AssertionError)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            result = await check()
            if result:
                return result
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


@pytest.fixture(scope="session", autouse=True)
def prompt_stops() -> Iterator[None]:
    """Services in tests stop within a quarter second instead of two.

    A consumer notices its stop event between two pull fetches, which wait up to ``FETCH_WAIT_S``
    (2 s) for messages when there are none; the outbox relay between two polls (``POLL_S``, 1 s).
    Every test stops a whole stack, so those waits were two of every test's seconds. Shorter waits
    poll a little more often and change nothing else: messages are fetched as soon as they are
    there either way, and the relay is woken by PostgreSQL's NOTIFY, not by the poll."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(consumer, "FETCH_WAIT_S", 0.25)
        patch.setattr(outbox, "POLL_S", 0.25)
        yield


# --- PostgreSQL ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[embedded.EmbeddedPostgres]:
    # pgserver logs each pg_ctl command at INFO; at a worker's end (pytest-xdist) nothing captures it
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    pg = embedded.start_postgres(tmp_path_factory.mktemp("pg") / "data")

    async def prepare() -> None:
        conn = await asyncpg.connect(pg.uri("postgres"))
        try:
            # The test cluster is thrown away: durability costs time and proves nothing here.
            for setting in ("fsync = off", "synchronous_commit = off", "full_page_writes = off"):
                await conn.execute(f"ALTER SYSTEM SET {setting}")
            await conn.execute("SELECT pg_reload_conf()")
            await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
            await conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        finally:
            await conn.close()
        for name in BACKEND_MODULES:
            module = backend(name)
            await db.migrate(pg.uri(TEMPLATE_DB), module.NAME, module.MIGRATIONS)

    asyncio.run(prepare())
    yield pg
    pg.stop()


@pytest.fixture
async def database_url(pg_server: embedded.EmbeddedPostgres) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(pg_server.uri("postgres"))
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
        yield pg_server.uri(name)
        await conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await conn.close()


@pytest.fixture
async def empty_database_url(pg_server: embedded.EmbeddedPostgres) -> AsyncIterator[str]:
    name = f"e_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(pg_server.uri("postgres"))
    try:
        await conn.execute(f"CREATE DATABASE {name}")
        yield pg_server.uri(name)
        await conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await conn.close()


# --- NATS ----------------------------------------------------------------------------------------
@dataclass
class NatsServer:
    folder: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    namespace: str = "*"
    """Whose subjects the role users' permissions name: ``*`` (the session's server) serves every test's namespace."""

    @property
    def url(self) -> str:
        """The server's URL with the test superuser's credentials (a process's own user wins over them)."""
        user, password = NATS_SUPERUSER
        return f"nats://{user}:{password}@127.0.0.1:{self.port}"

    @property
    def anonymous_url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        authorization = nats_auth.authorization_block(NATS_PASSWORDS, self.namespace, superuser=NATS_SUPERUSER)
        conf = embedded.write_nats_config(self.folder, self.port, authorization=authorization, log_to_file=True)
        self.proc = subprocess.Popen([embedded.nats_server_binary(), "-c", str(conf)])
        embedded.wait_for_port("127.0.0.1", self.port, 20, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats"), embedded.free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test's own, for tests that stop and restart it."""
    server = NatsServer(tmp_path / "nats", embedded.free_port())
    server.start()
    yield server
    server.stop()
    # nats-py (2.16) drops a reconnect attempt's transport unclosed when the attempt fails after the TCP
    # connect (the server going down or not yet ready): a transport/protocol cycle that the garbage
    # collector finalises at any later moment, in whichever test runs then ("unclosed transport",
    # "loop is closed": an error under filterwarnings=error). Finalised here, where it comes from,
    # with only the ResourceWarnings of that collection ignored.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


# --- SMTP ----------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def dkim_dns() -> Iterator[Any]:
    """Email replies are DKIM-verified against the tests' own resolver (tests/mailkit.py), never the real DNS."""
    from notifier import replies
    from tests import mailkit

    replies.DNS_TXT = mailkit.DNS
    yield mailkit.DNS
    replies.DNS_TXT = None
    mailkit.DNS.timeouts.clear()


@dataclass
class SmtpSink:
    """A real aiosmtpd server that keeps every message it accepts."""

    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    refuse_with: str | None = None
    refuse_once: dict[str, str] = field(default_factory=dict)
    """Address -> SMTP answer to give the first time a message to it arrives (e.g. a 451)."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse_with:
            return self.refuse_with
        for address in envelope.rcpt_tos:
            if address in self.refuse_once:
                return self.refuse_once.pop(address)
        msg = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        async with self.arrived:
            self.messages.append(msg)
            self.arrived.notify_all()
        return "250 OK"

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[EmailMessage]:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.messages) >= count), timeout)
        return list(self.messages)

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]

    async def wait_for_subject(self, address: str, part: str, timeout: float = 15.0) -> EmailMessage:
        """Wait for a message to ``address`` whose subject contains ``part``."""

        def found() -> EmailMessage | None:
            return next((m for m in self.to(address) if part in str(m["Subject"])), None)

        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: found() is not None), timeout)
        message = found()
        assert message is not None
        return message

    async def wait_for_mail_to(self, address: str, count: int = 1, timeout: float = 15.0) -> list[EmailMessage]:
        """Wait until ``count`` messages to ``address`` arrived; return them."""
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.to(address)) >= count), timeout)
        return self.to(address)


async def new_token_for(sink: SmtpSink, address: str, prefix: str, seen: set[str], timeout: float = 15.0) -> str:
    """Wait for an email to ``address`` carrying a ``prefix`` token not in ``seen``; return that token."""

    def fresh() -> str | None:
        for message in sink.to(address):
            for token in re.findall(rf"{prefix}[A-Za-z0-9_-]{{20,}}", text_of(message)):
                if token not in seen:
                    return str(token)
        return None

    async with sink.arrived:
        await asyncio.wait_for(sink.arrived.wait_for(lambda: fresh() is not None), timeout)
    token = fresh()
    assert token is not None
    return token


def tokens_for(sink: SmtpSink, address: str, prefix: str) -> set[str]:
    return {t for m in sink.to(address) for t in re.findall(rf"{prefix}[A-Za-z0-9_-]{{20,}}", text_of(m))}


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def token_in(message: EmailMessage, prefix: str) -> str:
    """The one-time token of a link in the email (cvi_… invitation, cvl_… sign-in)."""
    found = re.findall(rf"{prefix}[A-Za-z0-9_-]{{20,}}", text_of(message))
    assert found, f"no {prefix} link in {text_of(message)!r}"
    return str(found[-1])


@pytest.fixture
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(sink, hostname="test-sink"), "127.0.0.1", 0)
    sink.port = server.sockets[0].getsockname()[1]
    yield sink
    server.close()
    await server.wait_closed()


# --- Slack stand-in ----------------------------------------------------------------------------
@dataclass
class SlackStub:
    """A real HTTP server standing in for Slack's incoming webhooks; answers can be scripted."""

    port: int = 0
    posts: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    script: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    """Answers to give first, in order: (status, headers, body); then 200 "ok"."""
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def url(self, path: str = "/services/T000/B000/XXXX") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.posts) >= count), timeout)
        return list(self.posts)


@pytest.fixture
async def slack_stub() -> AsyncIterator[SlackStub]:
    from aiohttp import web

    stub = SlackStub()

    async def webhook(request: web.Request) -> web.Response:
        stub.requests += 1
        body = await request.json()
        if stub.script:
            status, headers, text = stub.script.pop(0)
            return web.Response(status=status, headers=headers, text=text)
        async with stub.arrived:
            stub.posts.append(body)
            stub.arrived.notify_all()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/services/{rest:.*}", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    stub.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield stub
    await runner.cleanup()


# --- the stack -----------------------------------------------------------------------------------
@pytest.fixture
def settings(database_url: str, nats_server: NatsServer, smtp_sink: SmtpSink, namespace: str) -> Settings:
    return Settings(
        database_url=database_url,
        nats_url=nats_server.url,
        smtp_url=f"smtp://127.0.0.1:{smtp_sink.port}",
        namespace=namespace,
        admin_token=ADMIN_TOKEN,
        consumer_backoff="0.1,0.2",
        consumer_max_deliver=3,
        db_pool_max=5,
        shutdown_timeout=5,
        public_url="http://convoy.test",
        reminders_manual_clock=True,
        slack_webhook_hosts="hooks.slack.com,127.0.0.1",
        teams_webhook_hosts="*.logic.azure.com,*.powerplatform.com,127.0.0.1",
        secret_key="key_test-secret",
        actor_signing_key=ACTOR_SIGNING_KEY,
        reply_signing_key=REPLY_SIGNING_KEY,
        notifier_box_key=NOTIFIER_BOX_KEY,
        notifier_box_public_key=NOTIFIER_BOX_PUBLIC_KEY,
        inbound_smtp_port=embedded.free_port(),
        token_cache_s=TOKEN_CACHE_S,
    )


def as_role(settings: Settings, role: str) -> Settings:
    """``settings`` with ``role``'s NATS credentials: how `convoy up` starts that process."""
    return settings.with_(nats_user=role, nats_password=NATS_PASSWORDS[role])


@dataclass
class Stack:
    settings: Settings
    subjects: Subjects
    nc: nats.NATS
    stops: dict[str, asyncio.Event]
    tasks: dict[str, asyncio.Task[None]]

    async def stop_service(self, name: str) -> None:
        self.stops[name].set()
        await asyncio.wait_for(self.tasks[name], 15)

    declared: bool = False
    declaring: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Services started together (``gather``) declare once: concurrent creates of the same durable
    consumer on a cluster wait on each other past any timeout."""

    async def start_service(self, name: str) -> None:
        async with self.declaring:
            if not self.declared:  # what `convoy up` does as admin before it starts the services
                await declare_jetstream(self.nc, self.settings)
                self.declared = True
        self.stops[name] = asyncio.Event()
        # each service connects as its own role, as in production
        self.tasks[name] = asyncio.create_task(serve(backend(name), as_role(self.settings, name), self.stops[name]))
        await wait_ready(self.nc, self.subjects, name)


async def declare_jetstream(nc: nats.NATS, settings: Settings) -> None:
    """Streams and the services' durable consumers, declared by a superuser connection (the admin's
    job: a service role may only bind to its consumers). As `convoy up` does: a setup step may wait on a
    cluster's meta leader (a node just restarted), so it waits longer than a request."""
    js = nc.jetstream(timeout=nats_auth.DECLARE_TIMEOUT_S)
    await bus.ensure_streams(js, Subjects(settings.namespace), settings.stream_replicas)
    await consumer.ensure_consumers(js, Subjects(settings.namespace), nats_auth.CONTRACTS)


async def settings_declared(settings: Settings) -> None:
    """:func:`declare_jetstream` on a connection of its own (before starting service processes)."""
    nc = await nats.connect(settings.nats_url.split(","))
    try:
        await declare_jetstream(nc, settings)
    finally:
        await nc.close()


async def wait_ready(nc: nats.NATS, subjects: Subjects, name: str, timeout: float = 20.0) -> None:
    async def ready() -> bool:
        with contextlib.suppress(Exception):
            msg = await nc.request(subjects.health(name), b"{}", timeout=1)
            return msgspec.json.decode(msg.data, type=api.Health).ready
        return False

    await eventually(ready, timeout=timeout)


async def delete_streams(nc: nats.NATS, subjects: Subjects) -> None:
    js = nc.jetstream()
    for stream in (subjects.events_stream, subjects.messages_stream, subjects.dead_letter_stream):
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)


STOP_ORDER: tuple[tuple[str, ...], ...] = (("notifier", "reminders"), ("milestones", "convoys"))
"""The order a stack stops in: the notifier and reminders ask the others over NATS (a request to a
service that stopped would wait out CONVOY_NATS_REQUEST_TIMEOUT), milestones and convoys ask each
other; anything else stops with the last group."""


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    subjects = Subjects(settings.namespace)
    nc = await nats.connect(settings.nats_url)
    st = Stack(settings=settings, subjects=subjects, nc=nc, stops={}, tasks={})
    try:
        await asyncio.gather(*(st.start_service(name) for name in SERVICES))
        yield st
    finally:
        results = []
        for group in STOP_ORDER:  # callers first: a handler in flight never waits on a stopped service
            names = [name for name in st.tasks if name in group or group is STOP_ORDER[-1]]
            for name in names:
                st.stops[name].set()
            results += await asyncio.gather(*(st.tasks[name] for name in names), return_exceptions=True)
        await delete_streams(nc, subjects)
        await nc.close()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"a service ended with an error: {errors!r}"


async def settled(stack: Stack, timeout: float = 15.0) -> None:
    """Wait until the event pipeline is at rest: every service's outbox relayed, and every consumer
    of the events and messages streams has handled and acknowledged all there is (nothing pending,
    nothing in a handler, nothing waiting for a redelivery). Whatever follows from what the test did
    has happened then (sent, posted, recorded), so "nothing more arrives" can be asserted at once.

    Work is always in an outbox row or an unacknowledged stream message (a handler commits the rows
    it emits before it acks), so outbox, consumers, outbox again with the streams' last sequence
    unchanged leaves no gap for an event to slip through."""
    js = stack.nc.jetstream()
    streams = (stack.subjects.events_stream, stack.subjects.messages_stream)

    async def last_seqs() -> list[int]:
        return [(await js.stream_info(stream)).state.last_seq for stream in streams]

    async def outboxes_empty(conn: asyncpg.Connection) -> bool:
        union = " UNION ALL ".join(f"SELECT 1 FROM {name}.outbox" for name in SERVICES)
        return not await conn.fetchval(f"SELECT EXISTS ({union})")

    async def consumers_idle() -> bool:
        for stream in streams:
            for info in await js.consumers_info(stream):
                if info.num_pending or info.num_ack_pending:
                    return False
        return True

    async def at_rest() -> bool:
        conn = await asyncpg.connect(stack.settings.database_url)
        try:
            before = await last_seqs()
            quiet = await outboxes_empty(conn) and await consumers_idle() and await outboxes_empty(conn)
            return quiet and await last_seqs() == before
        finally:
            await conn.close()

    await eventually(at_rest, timeout=timeout)


class _TestSettings:
    """The settings a worker's API app reads: those of the test that runs now."""

    def __init__(self, settings: Settings) -> None:
        self.current = settings

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current, name)


_APPS: dict[bool, tuple[Any, _TestSettings]] = {}


def api_app(settings: Settings) -> Any:
    """The API app (convoy_api.app.create_app) for a test.

    Building one registers some 330 route handlers: 0.4 s of CPU, the largest part of most tests'
    set-up. The app keeps nothing between two runs of its lifespan (the lifespan makes a new
    Backend: NATS connection, RPC client, token cache, rate limiter, from the settings), and reads
    its settings when it starts and while it answers, except `dev_mail_viewer` (which pages it
    has). So a worker builds one app per `dev_mail_viewer` and points it at each test's settings.
    """
    from convoy_api.app import create_app

    if settings.dev_mail_viewer not in _APPS:
        current = _TestSettings(settings)
        _APPS[settings.dev_mail_viewer] = (create_app(current), current)  # type: ignore[arg-type]
    app, current = _APPS[settings.dev_mail_viewer]
    current.current = settings
    tracing.configure(settings, "api")  # what create_app does first
    return app


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """The real API (uvicorn on a free port, in this event loop) and an HTTP client for it."""
    import uvicorn

    port = embedded.free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            api_app(as_role(stack.settings, "api")), host="127.0.0.1", port=port, log_config=None, lifespan="on"
        )
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    await eventually(lambda: _started(server))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as c:
        yield c
    server.should_exit = True
    await asyncio.wait_for(task, 15)


async def _started(server: Any) -> bool:
    return bool(server.started)


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
