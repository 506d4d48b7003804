"""Helpers of the fault scenarios (tests/test_chaos.py): real processes to kill, servers to stop,
and the tally each scenario prints and `make chaos` writes into docs/reliability.md.

Sizes: every scenario has a CI-sized run (part of `make test`) and a full-sized one marked
``chaos`` (only `make chaos`); :data:`SIZES` holds both.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import nats
import nats.errors
import pytest

from schemas import api
from schemas.reminders import Reminders
from schemas.subjects import SERVICES, Subjects
from services import embedded, nats_auth
from services.registry import PROCESSES
from services.runtime.settings import Settings
from tests.conftest import NATS_PASSWORDS, NATS_SUPERUSER, Stack, as_role, delete_streams, eventually, wait_ready

RESULTS: list[dict[str, Any]] = []
"""One entry per scenario run in this pytest session: {"scenario", "test", "size", "counts", "ok"}."""


@dataclass
class Tally:
    """What a scenario did and counted; printed, and kept for the `make chaos` summary."""

    scenario: str
    size: str
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def set(self, key: str, value: int) -> None:
        self.counts[key] = value

    def report(self, test: str) -> None:
        line = ", ".join(f"{k}={v}" for k, v in self.counts.items())
        print(f"[chaos] {self.scenario} ({self.size}): {line}", flush=True)
        RESULTS.append({"scenario": self.scenario, "test": test, "size": self.size, "counts": dict(self.counts)})


def message_id(key: str) -> str:
    """The Message-ID the notifier gives the email of delivery ``key`` (notifier/email.py)."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@convoy>"


def ids_in(messages: list[EmailMessage]) -> Counter[str]:
    return Counter(str(m["Message-ID"]) for m in messages)


# --- service processes, as `convoy up` runs them ---------------------------------------------
def env_of(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name in Settings.__struct_fields__:
        env["CONVOY_" + name.upper()] = str(getattr(settings, name))
    env["CONVOY_LOG_LEVEL"] = "WARNING"
    return env


@dataclass
class Processes:
    """Each service as its own `python -m services.cli run NAME` process; kill -9 and restart them."""

    settings: Settings
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)
    """Exits nobody asked for (found by :meth:`check`)."""

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    def start(self, name: str) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        out = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 — the child keeps it
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "run", name],
            env=env_of(as_role(self.settings, name)),  # its own NATS role, as `convoy up` starts it
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()

    def start_all(self, names: tuple[str, ...] = PROCESSES) -> None:
        for name in names:
            self.start(name)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        self.kills[name] += 1

    def check(self) -> None:
        """Count and restart processes that ended by themselves (a crash loop would show here)."""
        for name, proc in list(self.procs.items()):
            if proc.poll() is not None:
                self.crashes[name] += 1
                self.start(name)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    async def healthy(self, timeout: float = 120.0) -> None:
        async with httpx.AsyncClient(base_url=self.api_url, timeout=5) as client:

            async def ok() -> bool:
                self.check()
                try:
                    return (await client.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ok, timeout=timeout, interval=0.5)


# --- an in-process stack on settings of the scenario's own ------------------------------------
@contextlib.asynccontextmanager
async def stack_and_client(settings: Settings) -> AsyncIterator[tuple[Stack, httpx.AsyncClient, list[BaseException]]]:
    """Like conftest's ``stack`` and ``client`` fixtures, on other settings (own NATS, own PostgreSQL).

    Yields the stack, a client of the real API, and the list that collects service tasks that ended
    with an error (the scenario counts them: a crash loop would show there)."""
    import uvicorn

    from convoy_api.app import create_app

    subjects = Subjects(settings.namespace)
    nc = await nats.connect(settings.nats_url.split(","), max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    st = Stack(settings=settings, subjects=subjects, nc=nc, stops={}, tasks={})
    crashed: list[BaseException] = []
    port = embedded.free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(as_role(settings, "api")), host="127.0.0.1", port=port, log_config=None, lifespan="on"
        )
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    api: asyncio.Task[None] | None = None
    try:
        await asyncio.gather(*(st.start_service(name) for name in SERVICES))
        api = asyncio.create_task(server.serve())
        await eventually(lambda: _started(server), timeout=30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield st, client, crashed
    finally:
        if api is not None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(api, 15)
        for name in st.tasks:
            st.stops[name].set()
        results = await asyncio.gather(*st.tasks.values(), return_exceptions=True)
        crashed.extend(r for r in results if isinstance(r, BaseException))
        with contextlib.suppress(Exception):
            await delete_streams(nc, subjects)
        await nc.close()


async def _started(server: Any) -> bool:
    return bool(server.started)


async def ensure_ready(st: Stack, timeout: float = 60.0) -> None:
    await asyncio.gather(*(wait_ready(st.nc, st.subjects, name, timeout) for name in SERVICES))


# --- what is left to do, across services -----------------------------------------------------
SCHEMAS = ("convoys", "milestones", "reminders", "notifier")


async def outbox_rows(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return sum([await conn.fetchval(f"SELECT count(*) FROM {s}.outbox") for s in SCHEMAS])
    finally:
        await conn.close()


async def consumers_idle(nc: nats.NATS, subjects: Subjects) -> tuple[int, int]:
    """(pending, ack pending) summed over every durable consumer of the events and messages streams."""
    js = nc.jetstream(timeout=5)
    pending = ack_pending = 0
    for stream in (subjects.events_stream, subjects.messages_stream):
        for info in await js.consumers_info(stream):
            pending += info.num_pending or 0
            ack_pending += info.num_ack_pending or 0
    return pending, ack_pending


async def dead_letters(nc: nats.NATS, subjects: Subjects) -> int:
    info = await nc.jetstream(timeout=5).stream_info(subjects.dead_letter_stream)
    return int(info.state.messages)


async def deliveries(database_url: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        return [dict(r) for r in await conn.fetch("SELECT key, channel, status FROM notifier.deliveries")]
    finally:
        await conn.close()


async def settled(database_url: str, nc: nats.NATS, subjects: Subjects, timeout: float = 90.0) -> None:
    """Wait until nothing is left: outboxes empty, consumers caught up, no delivery mid-way."""

    async def nothing_left() -> bool:
        try:
            if await outbox_rows(database_url):
                return False
            if await consumers_idle(nc, subjects) != (0, 0):
                return False
        except Exception:
            return False
        return not [d for d in await deliveries(database_url) if d["status"] in ("sending", "retrying")]

    await eventually(nothing_left, timeout=timeout, interval=0.5)
    await asyncio.sleep(1.0)  # a duplicate would have arrived by now
    await eventually(nothing_left, timeout=timeout, interval=0.5)


# --- NATS servers to kill ---------------------------------------------------------------------
@dataclass
class ClusterNode:
    name: str
    folder: Path
    port: int
    route: int
    routes: list[int]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "nats-server.conf"
        conf.write_text(
            f"server_name: {self.name}\nlisten: 127.0.0.1:{self.port}\nmax_payload: 8MB\n"
            f'jetstream {{\n  store_dir: "{self.folder / "js"}"\n  sync_interval: always\n}}\n'
            f"cluster {{\n  name: convoy-chaos\n  listen: 127.0.0.1:{self.route}\n  routes: [\n"
            + "".join(f"    nats-route://127.0.0.1:{r}\n" for r in self.routes)
            + "  ]\n}\n"
            + nats_auth.authorization_block(NATS_PASSWORDS, "*", superuser=NATS_SUPERUSER)
        )
        log = open(self.folder / "nats-server.log", "ab")  # noqa: SIM115 — the child keeps it
        self.proc = subprocess.Popen([embedded.nats_server_binary(), "-c", str(conf)], stderr=log, stdout=log)
        log.close()
        embedded.wait_for_port("127.0.0.1", self.port, 20, self.proc)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Cluster:
    nodes: list[ClusterNode]

    @property
    def url(self) -> str:
        user, password = NATS_SUPERUSER  # the scenario's own connections; each process has its role's
        return ",".join(f"nats://{user}:{password}@127.0.0.1:{n.port}" for n in self.nodes)


@contextlib.contextmanager
def nats_cluster(folder: Path) -> Iterator[Cluster]:
    ports = [embedded.free_port() for _ in range(3)]
    routes = [embedded.free_port() for _ in range(3)]
    nodes = [ClusterNode(f"chaos-{i}", folder / f"nats-{i}", ports[i], routes[i], routes) for i in range(3)]
    try:
        for node in nodes:
            node.start()
        yield Cluster(nodes)
    finally:
        for node in nodes:
            node.kill()


async def wait_for_quorum(url: str, timeout: float = 60.0) -> None:
    nc = await nats.connect(url.split(","))
    try:
        js = nc.jetstream(timeout=2)

        async def r3_works() -> bool:
            try:
                await js.add_stream(name="QUORUM_PROBE", subjects=["quorum.probe"], num_replicas=3)
            except Exception:
                return False
            await js.delete_stream("QUORUM_PROBE")
            return True

        await eventually(r3_works, timeout=timeout, interval=0.5)
    finally:
        await nc.close()


SIZES = pytest.mark.parametrize(
    "full", [pytest.param(False, id="ci"), pytest.param(True, id="full", marks=pytest.mark.chaos)]
)
"""Run a scenario CI-sized (in `make test`) and full-sized (marked ``chaos``: only `make chaos`)."""


async def tick(nc: nats.NATS, subjects: Subjects, now: datetime, within: float = 60.0) -> api.Fired:
    """Run the reminders' manual clock at ``now`` until the leader answers that nothing failed (it may be
    restarting, or a service a fire needs may be down: the real clock ticks again 5 s later).
    The actions of every answered attempt are returned (a tick at the same time fires nothing twice)."""
    actions: list[str] = []

    async def leader_answer() -> api.Fired | None:
        try:
            msg = await nc.request(
                subjects.operation(Reminders.TICK), msgspec.json.encode(api.Tick(now=now)), timeout=10
            )
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError, TimeoutError):
            return None
        if msg.headers and msg.headers.get("Nats-Service-Error-Code"):
            return None
        fired = msgspec.json.decode(msg.data, type=api.Fired)
        if not fired.leader:
            return None
        actions.extend(fired.actions)
        return fired if not fired.failed else None

    result = await eventually(leader_answer, timeout=within, interval=0.3)
    assert result is not None, f"no tick at {now} without failures within {within} s"
    return api.Fired(actions=actions, leader=True, count=len(actions))
