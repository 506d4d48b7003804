"""The receiving end, in a process of its own: an SMTP sink (aiosmtpd) and a Slack stand-in (aiohttp).

Both only count and time what arrives (``time.monotonic()``, which is the same clock in every
process on Linux), so the benchmark runner can tell when the last message of a scenario landed.
A small control server answers ``GET /stats``, ``GET /arrivals?since=N`` and ``GET /samples``
(a few raw messages, for the raw-SMTP baseline) and ``POST /reset``.

    python -m bench.sinks SMTP_PORT SLACK_PORT CONTROL_PORT
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import sys
import time
from typing import Any

import uvloop
from aiohttp import web
from aiosmtpd.smtp import SMTP

LIST_ID = re.compile(rb"^List-Id:[^<\r\n]*<([0-9a-f-]{36})\.convoys\.convoy>", re.MULTILINE | re.IGNORECASE)
MAX_SAMPLES = 400


class Sink:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.mails: list[tuple[float, str, int, str]] = []  # (arrived, convoy id from List-Id, size, first RCPT)
        self.slack: list[tuple[float, str]] = []  # (arrived, webhook path)
        self.samples: list[bytes] = []
        self.last_post: dict[str, float] = {}
        self.pace_violations = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content or b""
        head = data[: data.find(b"\r\n\r\n")] if b"\r\n\r\n" in data else data[:4000]
        match = LIST_ID.search(head)
        rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        self.mails.append((time.monotonic(), match.group(1).decode() if match else "", len(data), rcpt))
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(data)
        return "250 OK"


def main(argv: list[str]) -> None:
    smtp_port, slack_port, control_port = (int(a) for a in argv[:3])
    sink = Sink()

    async def webhook(request: web.Request) -> web.Response:
        await request.read()
        now = time.monotonic()
        path = request.path
        last = sink.last_post.get(path)
        if last is not None and now - last < 0.95:  # Slack's limit: one message per second per webhook
            sink.pace_violations += 1
        sink.last_post[path] = now
        sink.slack.append((now, path))
        return web.Response(text="ok")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "mails": len(sink.mails),
                "slack": len(sink.slack),
                "last_mail": sink.mails[-1][0] if sink.mails else None,
                "last_slack": sink.slack[-1][0] if sink.slack else None,
                "mail_bytes": sum(m[2] for m in sink.mails),
                "pace_violations": sink.pace_violations,
            }
        )

    async def arrivals(request: web.Request) -> web.Response:
        since_mail = int(request.query.get("mail", 0))
        since_slack = int(request.query.get("slack", 0))
        return web.json_response({"mails": sink.mails[since_mail:], "slack": sink.slack[since_slack:]})

    async def samples(_: web.Request) -> web.Response:
        return web.json_response([base64.b64encode(s).decode() for s in sink.samples])

    async def reset(_: web.Request) -> web.Response:
        sink.reset()
        return web.json_response({"ok": True})

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        smtp = await loop.create_server(
            lambda: SMTP(sink, hostname="bench-sink", data_size_limit=0), "127.0.0.1", smtp_port, backlog=512
        )
        slack_app = web.Application()
        slack_app.router.add_post("/services/{rest:.*}", webhook)
        control = web.Application()
        control.router.add_get("/stats", stats)
        control.router.add_get("/arrivals", arrivals)
        control.router.add_get("/samples", samples)
        control.router.add_post("/reset", reset)
        runners = []
        for app, port in ((slack_app, slack_port), (control, control_port)):
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port, backlog=512).start()
            runners.append(runner)
        print("sinks ready", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            smtp.close()
            for runner in runners:
                await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve())


if __name__ == "__main__":
    main(sys.argv[1:])
