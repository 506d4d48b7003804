"""`convoy up` as a newcomer runs it: the embedded stack, every service as its own process,
restart after a crash, clean stop on SIGTERM, data kept across restarts."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import nats.aio.client
import psutil
import pytest

from schemas.subjects import SERVICES, Subjects
from services import embedded, nats_auth
from services.registry import PROCESSES
from tests.conftest import eventually

pytestmark = pytest.mark.slow
README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


class Up:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.http_port = embedded.free_port()
        self.env = {
            **os.environ,
            "CONVOY_DATA_DIR": str(data),
            "CONVOY_HTTP_PORT": str(self.http_port),
            "CONVOY_EMBEDDED_NATS_PORT": str(embedded.free_port()),
            "CONVOY_EMBEDDED_SMTP_PORT": str(embedded.free_port()),
            "CONVOY_INBOUND_SMTP_PORT": str(embedded.free_port()),
            "CONVOY_PUBLIC_URL": "http://convoy.test",
        }
        for var in ("CONVOY_DATABASE_URL", "CONVOY_NATS_URL", "CONVOY_SMTP_URL", "CONVOY_ADMIN_TOKEN"):
            self.env.pop(var, None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up"], env=self.env, stdout=subprocess.DEVNULL
        )

    def service_pid(self, name: str) -> int | None:
        assert self.proc is not None
        for child in psutil.Process(self.proc.pid).children():
            try:
                if child.cmdline()[-2:] == ["run", name]:
                    return child.pid
            except psutil.Error:  # exited (a zombie until the supervisor reaps it)
                continue
        return None

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    u = Up(tmp_path / "data")
    yield u
    if u.proc is not None and u.proc.poll() is None:
        u.proc.kill()
        u.proc.wait(10)
        pg = embedded.EmbeddedPostgres(pgdata=u.data / "pg", base_uri="", system_user="pgserver")
        pg.stop()


async def _healthy(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/health")).status_code == 200
    except httpx.TransportError:
        return False


async def _nats_requires_each_roles_credentials(up: Up) -> None:
    """The embedded nats-server takes no anonymous connection; each process is connected as its role."""
    url = f"nats://127.0.0.1:{up.env['CONVOY_EMBEDDED_NATS_PORT']}"
    anonymous = nats.aio.client.Client()
    with pytest.raises(Exception):  # noqa: B017, PT011 — refused at the handshake (authorization violation)
        await anonymous.connect(url, allow_reconnect=False, connect_timeout=2)
    await anonymous.close()
    folder = up.data / nats_auth.CREDENTIALS_FOLDER
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {p.name for p in folder.iterdir()} == set(nats_auth.ROLES)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in folder.iterdir())
    passwords = {role: (folder / role).read_text().strip() for role in nats_auth.ROLES}
    for name in PROCESSES:  # each child was given its own role's credentials, and no other's
        pid = up.service_pid(name)
        assert pid is not None
        environ = psutil.Process(pid).environ()
        assert (environ["CONVOY_NATS_USER"], environ["CONVOY_NATS_PASSWORD"]) == (name, passwords[name])
        assert not set(passwords.values()) - {passwords[name]} & set(environ.values())
    admin = await nats.connect(
        url, user="admin", password=passwords["admin"], inbox_prefix=Subjects("convoy").inbox_prefix("admin")
    )
    try:  # ...and connected with them: the services answer
        for service in SERVICES:
            reply = await admin.request(Subjects("convoy").health(service), b"{}", timeout=5)
            assert b'"ready":true' in reply.data
    finally:
        await admin.close()


async def test_convoy_up_runs_restarts_and_stops(up: Up) -> None:
    up.start()
    async with httpx.AsyncClient(base_url=up.url, timeout=10) as client:
        await eventually(lambda: _healthy(client), timeout=120, interval=0.5)
        admin = {"Authorization": f"Bearer {(up.data / 'admin-token').read_text().strip()}"}
        await _nats_requires_each_roles_credentials(up)

        # README's curl tour works as written (pointed at this instance's port and folder):
        # facilitator, sign-in link, convoy, invitations, report, email in the mail sink.
        tour = README.split("## Try it with curl")[1].split("```sh")[1].split("```")[0]
        tour = tour.replace("http://127.0.0.1:8000", up.url).replace(".convoy-data/", f"{up.data}/")
        tour = tour.replace(".venv/bin/convoy", f"{sys.executable} -m services.cli")
        result = await asyncio.to_thread(
            subprocess.run,
            ["bash", "-euo", "pipefail", "-c", tour],
            env=up.env,
            capture_output=True,
            timeout=180,
            check=False,
        )
        out = result.stdout.decode()
        assert result.returncode == 0, result.stderr.decode() + out
        assert '"body":"Great! Which tool?"' in out and '"kudos":1' in out
        assert '"streak":' in out and "«calendar»" in out
        assert '"subject": "Sanitär Müller: new progress report in \\"Online-Terminvergabe Nord\\""' in out
        assert '"detail":"`mood`: Expected `int` <= 5"' in out
        convoy_id = re.findall(r'"convoy_id":"([0-9a-f-]{36})"', out)[0]

        # kill -9 one service: the supervisor starts a new one and /health recovers.
        victim = up.service_pid("notifier")
        assert victim is not None
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> bool:
            pid = up.service_pid("notifier")
            return pid is not None and pid != victim

        await eventually(replaced, timeout=30)
        await eventually(lambda: _healthy(client), timeout=60, interval=0.3)

    assert up.proc is not None
    children = psutil.Process(up.proc.pid).children(recursive=True)
    assert up.stop() == 0
    await asyncio.sleep(0.5)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not (up.data / "pg" / "postmaster.pid").exists(), "PostgreSQL still running"

    # Data survives a restart.
    up.start()
    async with httpx.AsyncClient(base_url=up.url, timeout=10) as client:
        await eventually(lambda: _healthy(client), timeout=120, interval=0.5)
        r = await client.get(f"/api/v1/convoys/{convoy_id}", headers=admin)
        assert r.status_code == 200 and len(r.json()["companies"]) == 2
    assert up.stop() == 0


async def test_a_second_supervisor_on_the_same_data_refuses(up: Up) -> None:
    up.start()
    async with httpx.AsyncClient(base_url=up.url, timeout=10) as client:
        await eventually(lambda: _healthy(client), timeout=120, interval=0.5)
        second = subprocess.run(
            [sys.executable, "-m", "services.cli", "up"],
            env=up.env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert second.returncode != 0
        assert b"another `convoy up` is running" in second.stderr
        assert await _healthy(client), "the first one must be unharmed"
    assert up.stop() == 0
