"""The notifier's send path alone, against raw SMTP: ``python -m bench.sendpath [EMAILS] [ROUNDS]``.

Not a scenario of ``make bench``: a quick A/B for changes to ``Mailer.send_email`` (the delivery
log's claim and record, the footer, the wire bytes, the SMTP exchange). A real PostgreSQL (pgserver,
default durability) with the notifier's tables and the bench's SMTP sink in its own process; this
process is the notifier: ``Mailer.fan_out`` of 16 digests (the gallery's, de and en) per fan-out, 8
fan-outs at once as the digest consumer runs them, then raw aiosmtplib sends of as many messages
over as many connections to the same sink. Prints emails/s for both and this process's CPU per email.
Rendering the digests and the consumer's own work are not in it (``python -m bench fanout`` has them).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosmtplib
import asyncpg
import uvloop

from notifier import gallery
from notifier.delivery import Mailer
from notifier.email import wire_message
from schemas import api
from services import embedded
from services.registry import backend
from services.runtime import db
from services.runtime import logging as runtime_logging
from services.runtime.settings import Settings

FAN_OUT, AT_ONCE = 16, 8


async def main(emails: int, rounds: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="convoy-sendpath-"))
    postgres = await asyncio.to_thread(embedded.start_postgres, folder / "pg")
    smtp_port, slack_port, control_port = (embedded.free_port() for _ in range(3))
    sinks = subprocess.Popen(  # noqa: S603, ASYNC220 — started once, before anything is measured
        [sys.executable, "-m", "bench.sinks", str(smtp_port), str(slack_port), str(control_port)]
    )
    try:
        conn = await asyncpg.connect(postgres.uri("postgres"))
        try:
            await conn.execute("CREATE DATABASE convoy")
        finally:
            await conn.close()
        module = backend("notifier")
        await db.migrate(postgres.uri("convoy"), module.NAME, module.MIGRATIONS)
        await asyncio.to_thread(embedded.wait_for_port, "127.0.0.1", control_port, 30, sinks)
        settings = Settings(
            database_url=postgres.uri("convoy"),
            smtp_url=f"smtp://127.0.0.1:{smtp_port}",
            secret_key="key_bench-" + uuid.uuid4().hex,
            log_level="WARNING",
        )
        runtime_logging.configure(settings, "notifier")  # as the bench's notifier runs: WARNING, JSON
        database = await db.connect(settings, "notifier")
        mailer = Mailer(settings, database)
        try:
            for r in range(rounds):
                await one_round(settings, mailer, smtp_port, emails, r)
        finally:
            await mailer.close()
            await database.close(5)
    finally:
        sinks.terminate()
        await asyncio.to_thread(sinks.wait, 10)
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def one_round(settings: Settings, mailer: Mailer, smtp_port: int, emails: int, r: int) -> None:
    rendered = {lang: gallery.SAMPLES["digest"].render(lang) for lang in ("de", "en")}
    prefs = api.NotificationPrefs()
    convoy = uuid.uuid4()

    def send(i: int) -> Callable[[], Awaitable[None]]:
        return lambda: mailer.send_email(
            f"digest:{convoy}:{r}:{uuid.uuid4()}",
            uuid.uuid4(),
            to_name=f"Person {i}",
            to_email=f"rep-{i}@bench.example",
            rendered=rendered["de" if i % 2 else "en"],
            list_id=f"Bench <{convoy}.convoys.convoy>",
            prefs=prefs,
        )

    slots = asyncio.Semaphore(AT_ONCE)

    async def fan_out(first: int) -> None:
        async with slots:
            await mailer.fan_out(send(i) for i in range(first, min(first + FAN_OUT, emails)))

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(fan_out(i) for i in range(0, emails, FAN_OUT)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0

    sample = rendered["de"]
    data = wire_message(
        key=f"digest:{convoy}:{r}:sample",
        sender=settings.mail_from,
        to_name="Person 1",
        to_email="rep-1@bench.example",
        subject=sample.subject,
        text=sample.text,
        html=sample.html,
        list_id=f"Bench <{convoy}.convoys.convoy>",
    ).data
    left = [emails]

    async def raw_sender() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port, timeout=30)
        await client.connect()
        try:
            while left[0] > 0:
                left[0] -= 1
                await client.sendmail("convoy@localhost", ["peer@bench.example"], data)
        finally:
            await client.quit()

    cpu1, t1 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(raw_sender() for _ in range(settings.smtp_pool_size)))
    raw_wall, raw_cpu = time.perf_counter() - t1, time.process_time() - cpu1
    print(
        f"round {r}: Convoy {emails / wall:.0f} emails/s, {1000 * cpu / emails:.2f} ms CPU each | raw SMTP "
        f"{emails / raw_wall:.0f}/s, {1000 * raw_cpu / emails:.2f} ms | ratio {raw_wall / wall:.2f} "
        f"| load {os.getloadavg()[0]:.1f}",
        flush=True,
    )


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 800, int(sys.argv[2]) if len(sys.argv) > 2 else 3))
