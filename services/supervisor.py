"""``convoy up``: start the embedded servers, migrate, run every service, keep them running.

A crashed service is restarted with exponential backoff (0.5 s doubling to 30 s; reset after
a minute of good health). SIGINT/SIGTERM stops the services (SIGTERM, then SIGKILL after the
shutdown timeout), then the mail sink and NATS, then PostgreSQL. Children run in their own
sessions (a terminal's Ctrl-C reaches only the supervisor, which stops them in order) and die
with the supervisor if it is killed (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import structlog

from schemas.subjects import Subjects
from services import demo, embedded, nats_auth
from services.registry import BACKEND_MODULES, PROCESSES, backend
from services.runtime import bus, claims, db, sealing
from services.runtime.lifecycle import wait_or_stop
from services.runtime.rpc import RpcClient
from services.runtime.settings import Settings, is_loopback

log = structlog.get_logger(__name__)

MAX_BACKOFF_S = 30.0
HEALTHY_AFTER_S = 60.0


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    failures: int = field(default=0)

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            stdin=asyncio.subprocess.DEVNULL,
        )
        self.started_at = time.monotonic()
        log.info("started", process=self.name, pid=self.proc.pid)

    async def stop(self, timeout: float) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            log.warning("did not stop in time; killing", process=self.name)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopping = asyncio.Event()
        self.infra: list[Child] = []
        self.services: list[Child] = []
        self.postgres: embedded.EmbeddedPostgres | None = None
        self.nats_passwords: dict[str, str] = {}
        """Every role's NATS password when the NATS is embedded (each child gets its own only)."""

    # --- start ---------------------------------------------------------------------------------
    async def prepare(self) -> Settings:
        """Start what is embedded and return the settings every child gets."""
        s = self.settings
        data = s.data_path
        data.mkdir(parents=True, exist_ok=True)
        self._lock_data_folder(data)
        changes: dict[str, object] = {"data_dir": str(data)}
        if demo.wanted(s, new_data_folder=not (data / "pg").exists()):
            demo.mark_new_data_folder(data)  # loaded once the services are up (also after an interrupted start)
        if not s.database_url:
            self.postgres = await asyncio.to_thread(embedded.start_postgres, data / "pg")
            await _ensure_database(self.postgres.uri("postgres"), "convoy")
            changes["database_url"] = self.postgres.uri("convoy")
        if not s.nats_url:
            if not embedded.port_free("127.0.0.1", s.embedded_nats_port):
                raise SystemExit(f"port {s.embedded_nats_port} (embedded NATS) is taken; set CONVOY_EMBEDDED_NATS_PORT")
            self.nats_passwords = nats_auth.credentials(data / nats_auth.CREDENTIALS_FOLDER)
            conf = embedded.write_nats_config(
                data / "nats",
                s.embedded_nats_port,
                authorization=nats_auth.authorization_block(self.nats_passwords, s.namespace),
                log_to_file=True,
            )
            self.infra.append(Child("nats", [embedded.nats_server_binary(), "-c", str(conf)], dict(os.environ)))
            changes["nats_url"] = f"nats://127.0.0.1:{s.embedded_nats_port}"
            # the supervisor itself (streams, demo) is the admin; each child gets its own role below
            changes["nats_user"] = "admin"
            changes["nats_password"] = self.nats_passwords["admin"]
        if not s.smtp_url:
            if not embedded.port_free("127.0.0.1", s.embedded_smtp_port):
                raise SystemExit(f"port {s.embedded_smtp_port} (mail sink) is taken; set CONVOY_EMBEDDED_SMTP_PORT")
            self.infra.append(Child("mailsink", [sys.executable, "-m", "services.cli", "mailsink"], self._env(s)))
            changes["smtp_url"] = f"smtp://127.0.0.1:{s.embedded_smtp_port}"
            if is_loopback(s.http_host):
                changes["dev_mail_viewer"] = True
            else:  # the viewer shows every sign-in link, unauthenticated: never on a reachable interface
                log.warning(
                    "mail viewer off: the API listens beyond this machine; read the sink with `convoy mail`",
                    http_host=s.http_host,
                )
            # Local development: no mail server signs the replies typed into a local mail client, so
            # the From header is believed, but only on loopback and only unless the operator chose.
            chosen = any(f"CONVOY_INBOUND_SENDER_AUTH{x}" in os.environ for x in ("", "_FILE"))
            if not chosen and s.inbound_smtp_port and is_loopback(s.inbound_smtp_host):
                changes["inbound_sender_auth"] = "off"
        if not s.admin_token:
            changes["admin_token"] = _admin_token(data / "admin-token")
        if not s.secret_key:
            changes["secret_key"] = _admin_token(data / "secret-key", prefix="key_")
        if not s.actor_signing_key:
            changes["actor_signing_key"] = claims.ensure_key_file(data / claims.KEY_FILE)
        if not s.actor_public_key:
            signing = str(changes.get("actor_signing_key", s.actor_signing_key))
            changes["actor_public_key"] = claims.public_text(claims.load_private(signing))
        if not s.reply_signing_key:
            changes["reply_signing_key"] = claims.ensure_key_file(data / claims.REPLY_KEY_FILE)
        if not s.reply_public_key:
            signing = str(changes.get("reply_signing_key", s.reply_signing_key))
            changes["reply_public_key"] = claims.public_text(claims.load_private(signing))
        box_key = s.notifier_box_key
        if not box_key and not s.notifier_box_public_key:
            changes["notifier_box_key"] = box_key = _box_key(data / "notifier-box-key")
        if not s.notifier_box_public_key and box_key:
            changes["notifier_box_public_key"] = sealing.public_of(box_key)
        if not embedded.port_free(s.http_host, s.http_port):
            raise SystemExit(f"port {s.http_port} (API) is taken; set CONVOY_HTTP_PORT")
        if s.inbound_smtp_port and not embedded.port_free(s.inbound_smtp_host, s.inbound_smtp_port):
            raise SystemExit(f"port {s.inbound_smtp_port} (email replies) is taken; set CONVOY_INBOUND_SMTP_PORT")
        return s.with_(**changes)

    def _lock_data_folder(self, data: Path) -> None:
        """One supervisor per data folder: a second one would share (and stop) the first's servers."""
        self._lock_file = open(data / ".supervisor.lock", "a+")  # noqa: SIM115 — held for our lifetime
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(
                f"another `convoy up` is running on {data}; stop it first, or set CONVOY_DATA_DIR"
            ) from None

    def _env(self, s: Settings) -> dict[str, str]:
        env = dict(os.environ)
        for name in Settings.__struct_fields__:
            env["CONVOY_" + name.upper()] = str(getattr(s, name))
        return env

    async def run(self) -> int:
        s = await self.prepare()
        env = self._env(s)
        for child in self.infra:
            child.env.update(
                {k: v for k, v in env.items() if k.startswith("CONVOY_") and not k.startswith("CONVOY_NATS_")}
            )
            await child.start()
        if not self.settings.nats_url:
            await asyncio.to_thread(embedded.wait_for_port, "127.0.0.1", s.embedded_nats_port, 30)
        for name in BACKEND_MODULES:
            module = backend(name)
            await db.migrate(s.database_url, module.NAME, module.MIGRATIONS)
        await nats_auth.declare_jetstream(s)
        for name in PROCESSES:
            child_env = dict(env)
            if name != "api":
                child_env.pop("CONVOY_ADMIN_TOKEN", None)  # only the edge needs it
            if self.nats_passwords:  # embedded NATS: each process connects as its own role
                child_env["CONVOY_NATS_USER"] = name
                child_env["CONVOY_NATS_PASSWORD"] = self.nats_passwords[name]
            if name != "api":
                child_env.pop("CONVOY_ACTOR_SIGNING_KEY", None)  # services check claims with the public key
            if name != "notifier":
                child_env.pop("CONVOY_REPLY_SIGNING_KEY", None)  # only the notifier files emailed replies
                child_env.pop("CONVOY_NOTIFIER_BOX_KEY", None)  # the others seal with the public key only
            self.services.append(Child(name, [sys.executable, "-m", "services.cli", "run", name], child_env))
        for child in self.services:
            await child.start()
        self._banner(s)
        watchers = [asyncio.create_task(self._watch(c)) for c in self.infra + self.services]
        if self.settings.demo and demo.due(s.data_path):
            watchers.append(asyncio.create_task(self._load_demo(s)))
        await self.stopping.wait()
        for w in watchers:
            w.cancel()
        await self.shutdown()
        return 0

    def _banner(self, s: Settings) -> None:
        own = self.settings  # what the operator configured: empty means embedded
        pg = f"embedded, data in {s.data_path / 'pg'}" if self.postgres else "external"
        nats = s.nats_url + ("" if own.nats_url else f"  (embedded JetStream, store in {s.data_path / 'nats'})")
        smtp = s.smtp_url + ("" if own.smtp_url else "  (mail sink: `convoy mail` lists what it kept)")
        token = "from CONVOY_ADMIN_TOKEN" if own.admin_token else f"in {s.data_path / 'admin-token'}"
        lines = [
            "",
            "Convoy is starting; all of it is supervised by this process (Ctrl-C stops everything).",
            f"  API         http://{s.http_host}:{s.http_port}   health: /health   OpenAPI: /schema",
            f"  PostgreSQL  {pg}",
            f"  NATS        {nats}",
            f"  SMTP        {smtp}",
            f"  Replies     smtp://{s.inbound_smtp_host}:{s.inbound_smtp_port} (replies to prompts and notifications;"
            f" sender check: {s.inbound_sender_auth})"
            if s.inbound_smtp_port
            else "  Replies     off (CONVOY_INBOUND_SMTP_PORT=0)",
            f"  Admin token {token}",
            f"  Services    {', '.join(PROCESSES)}",
        ]
        if (s.data_path / demo.LOADED).exists() and not demo.due(s.data_path):
            lines.append(f"  Demo        how to sign in as its people: {s.data_path / demo.LOADED}")
        lines.append("")
        print("\n".join(lines), file=sys.stderr, flush=True)

    async def _load_demo(self, s: Settings) -> None:
        """Load the demo once the services answer; a failure is logged, never fatal (the next start retries)."""
        print("Loading the demo (a convoy with a few weeks of history) ...", file=sys.stderr, flush=True)
        try:
            nc = await bus.connect(s, "convoy-demo", attempts_for_s=30, role="admin")
            try:
                signer = claims.Signer.from_settings(s)  # the demo's people act as the API would sign them
                rpc = RpcClient(nc, s.nats_request_timeout, Subjects(s.namespace), signer=signer)
                await demo.load_into(rpc, Subjects(s.namespace), s.data_path, s.public_url)
            finally:
                await nc.close()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("demo not loaded; Convoy runs without it", error=repr(exc))
            print(
                f"\nThe demo could not be loaded ({exc}); Convoy runs without it."
                " The next `convoy up` tries again, or run `convoy demo`.\n",
                file=sys.stderr,
                flush=True,
            )
            return
        print("\n" + demo.instructions(s.public_url) + "\n", file=sys.stderr, flush=True)

    async def _watch(self, child: Child) -> None:
        while not self.stopping.is_set():
            assert child.proc is not None
            code = await child.proc.wait()
            if self.stopping.is_set():
                return
            lived = time.monotonic() - child.started_at
            child.failures = 1 if lived > HEALTHY_AFTER_S else child.failures + 1
            delay = min(0.5 * 2 ** (child.failures - 1), MAX_BACKOFF_S)
            log.warning("process exited; restarting", process=child.name, code=code, restart_in_s=delay)
            if await wait_or_stop(self.stopping, delay):
                return
            child.restarts += 1
            await child.start()

    async def shutdown(self) -> None:
        log.info("stopping services")
        timeout = self.settings.shutdown_timeout + 2
        await asyncio.gather(*(c.stop(timeout) for c in self.services))
        await asyncio.gather(*(c.stop(5) for c in self.infra))
        if self.postgres is not None:
            await asyncio.to_thread(self.postgres.stop)
        log.info("stopped")


async def _ensure_database(admin_uri: str, name: str) -> None:
    conn = await asyncpg.connect(admin_uri, timeout=30)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def _admin_token(path: Path, prefix: str = "adm_") -> str:
    """A secret kept in the data folder (generated once, readable only by its owner)."""
    if path.exists():
        return path.read_text().strip()
    token = prefix + secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token


def _box_key(path: Path) -> str:
    """The notifier's private key (services/runtime/sealing.py), kept in the data folder like the admin token."""
    if path.exists():
        return path.read_text().strip()
    private, _public = sealing.generate()
    path.touch(mode=0o600)
    path.write_text(private + "\n")
    return private


def up(settings: Settings) -> int:
    async def main() -> int:
        sup = Supervisor(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, sup.stopping.set)
        try:
            return await sup.run()
        except BaseException:
            await sup.shutdown()  # stops only what this supervisor started
            raise

    return asyncio.run(main())
