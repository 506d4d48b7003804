"""The ``convoy`` command: ``up``, ``run SERVICE``, ``health SERVICE``, ``migrate``, ``config``, ``mail``, ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from schemas.reminders import Reminders
from services.registry import BACKEND_MODULES, PROCESSES, backend
from services.runtime import settings as settings_mod
from services.runtime.logging import configure

if TYPE_CHECKING:
    from notifier.repository import Deliveries

T = TypeVar("T")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convoy", description="Convoy: peer progress for SME digital projects")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the whole system (embedded PostgreSQL/NATS/mail sink unless URLs are set)")
    run = sub.add_parser("run", help="run one service process")
    run.add_argument("service", choices=PROCESSES)
    health = sub.add_parser("health", help="probe the SERVICE process on this host (container health checks)")
    health.add_argument("service", choices=PROCESSES)
    health.add_argument("--live", action="store_true", help="only whether the process answers, not whether it is ready")
    sub.add_parser("migrate", help="apply every service's database migrations (and declare the NATS streams)")
    nats_authz = sub.add_parser(
        "nats-authorization", help="print nats-server's users and permissions, derived from the contracts"
    )
    nats_authz.add_argument("--namespace", default="convoy", help="subject prefix (CONVOY_NAMESPACE); '*': any")
    sub.add_parser("config", help="print every setting: variable, default, meaning (Markdown)")
    sub.add_parser("actor-key", help="print new actor and reply key pairs (for deploys; `convoy up` makes its own)")
    sub.add_parser(
        "notifier-keys", help="print a new key pair for CONVOY_NOTIFIER_BOX_KEY / _PUBLIC_KEY (email requests sealed)"
    )
    mail = sub.add_parser("mail", help="list the messages the local mail sink kept")
    mail.add_argument("--last", type=int, default=20, help="how many of the newest messages")
    mail.add_argument("--to", help="only messages to this address")
    mail.add_argument("--token", metavar="PREFIX", help="print only the newest one-time token, e.g. cvi_ or cvl_")
    sub.add_parser("mailsink", help="run the local mail sink (started by `convoy up`)")
    deliveries = sub.add_parser("deliveries", help="deliveries that need a person: refused for good, or uncertain")
    which = deliveries.add_mutually_exclusive_group()
    which.add_argument("--failed", action="store_const", dest="status", const="failed", default="failed")
    which.add_argument("--uncertain", action="store_const", dest="status", const="uncertain")
    deliveries.add_argument("--last", type=int, default=50)
    deliveries.add_argument("--retry", metavar="KEY", help="let KEY be sent again when its event is replayed")
    dead = sub.add_parser("dead-letters", help="events consumers gave up on; --replay SEQ hands one back to them")
    dead.add_argument("--replay", type=int, metavar="SEQ", help="republish dead letter SEQ to its original subject")
    sched = sub.add_parser("schedule", help="show a convoy's upcoming check-in cycles (asks the reminders service)")
    sched.add_argument("convoy_id")
    sched.add_argument("--upcoming", type=int, default=6)
    sub.add_parser("demo", help="load the demo convoy into the running system (its mail goes to the local mail sink)")
    args = parser.parse_args(argv)

    if args.command == "nats-authorization":
        from services.nats_auth import production_block

        print(production_block(args.namespace), end="")
        return 0
    if args.command == "actor-key":
        from services.runtime import claims

        for kind in ("ACTOR", "REPLY"):
            private = claims.load_private(claims.new_private_pem())
            print(f"CONVOY_{kind}_SIGNING_KEY={claims.private_text(private)}")
            print(f"CONVOY_{kind}_PUBLIC_KEY={claims.public_text(private)}")
        return 0
    if args.command == "config":
        print("| Variable | Default | Meaning |\n|---|---|---|")
        for var, default, doc in settings_mod.describe():
            print(f"| `{var}` | `{default}` | {doc} |")
        return 0

    if args.command == "notifier-keys":
        from services.runtime import sealing

        box_private, box_public = sealing.generate()
        print(f"CONVOY_NOTIFIER_BOX_KEY={box_private}\nCONVOY_NOTIFIER_BOX_PUBLIC_KEY={box_public}")
        return 0

    try:
        settings = settings_mod.load()
    except settings_mod.SettingsError as exc:
        print(f"convoy: {exc}", file=sys.stderr)
        return 2
    if args.command == "health":  # before logging is configured: a probe prints one line only
        return _probe(settings, args.service, live_only=args.live)
    configure(settings, args.command if args.command != "run" else args.service)

    if args.command == "up":
        from services.supervisor import up

        return up(settings)
    if args.command == "run":
        if args.service == "api":
            from convoy_api.app import serve

            serve(settings)
        else:
            from services.runtime.service import run as run_service

            run_service(backend(args.service), settings)
        return 0
    if args.command == "migrate":
        from services.runtime import db

        async def migrate_all() -> None:
            for name in BACKEND_MODULES:
                module = backend(name)
                await db.migrate(settings.database_url, module.NAME, module.MIGRATIONS)
            if settings.nats_url:  # the streams too: updating one is the admin's job (services only create)
                from services.nats_auth import declare_jetstream

                await declare_jetstream(settings)

        try:
            asyncio.run(migrate_all())
        except db.MigrationChanged as exc:
            print(f"convoy: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "mail":
        from services.mailsink import list_messages, newest_token

        folder = settings.data_path / "mail"
        if args.token:
            if not args.to:
                parser.error("--token needs --to")
            token = newest_token(folder, args.to, args.token)
            if token is None:
                print(f"convoy: no {args.token}… token in mail to {args.to}", file=sys.stderr)
                return 1
            print(token)
            return 0
        for item in list_messages(folder, args.last, args.to):
            print(json.dumps({k: v for k, v in item.items() if k != "text"}, ensure_ascii=False))
        return 0
    if args.command == "deliveries":
        if args.retry:
            return asyncio.run(_retry_delivery(settings, args.retry))
        return asyncio.run(_print_deliveries(settings, args.status, args.last))
    if args.command == "dead-letters":
        return asyncio.run(_dead_letters(settings, args.replay))
    if args.command == "schedule":
        return asyncio.run(_print_schedule(settings, args.convoy_id, args.upcoming))
    if args.command == "demo":
        return asyncio.run(_load_demo(settings))
    if args.command == "mailsink":
        from services.mailsink import run as run_sink

        run_sink("127.0.0.1", settings.embedded_smtp_port, settings.data_path / "mail")
        return 0
    return 1


def _probe(settings: settings_mod.Settings, service: str, *, live_only: bool) -> int:
    """Exit 0 if SERVICE on this host is live (``--live``) or ready; print why not otherwise.

    The API is ready when it is connected to NATS (its /health also names the back-end services;
    one of them being down must not take the API's pods out of rotation). A back-end service
    answers on CONVOY_OPS_PORT.
    """
    import urllib.error
    import urllib.request

    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host  # noqa: S104
    if service == "api":
        url = f"http://{host}:{settings.http_port}/health"
    elif settings.ops_port:
        url = f"http://{host}:{settings.ops_port}/{'live' if live_only else 'health'}"
    else:
        print(f"convoy: {service} serves no probes: set CONVOY_OPS_PORT", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(url, timeout=settings.nats_request_timeout) as answer:  # noqa: S310 - http to localhost
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except OSError as exc:
        print(f"{service}: not answering on {url}: {exc}", file=sys.stderr)
        return 1
    if live_only:
        print(f"{service}: live ({status})")
        return 0
    try:
        report = json.loads(body)
    except ValueError:
        report = {}
    ready = bool(report.get("services", {}).get("api", {}).get("ready")) if service == "api" else status == 200
    print(f"{service}: {'ready' if ready else 'not ready'} {json.dumps(report, ensure_ascii=False)[:500]}")
    return 0 if ready else 1


def _database_url(settings: settings_mod.Settings) -> str | None:
    from services import embedded

    return settings.database_url or embedded.running_postgres_uri(settings.data_path / "pg", "convoy")


async def _on_deliveries(settings: settings_mod.Settings, ask: Callable[[Deliveries], Awaitable[T]]) -> T | None:
    """``ask`` the notifier's delivery log over one connection; None (said on stderr) without a database."""
    from notifier.repository import Deliveries
    from services.runtime import db

    url = _database_url(settings)
    if not url:
        print("convoy: no database: start `convoy up` or set CONVOY_DATABASE_URL", file=sys.stderr)
        return None
    database = await db.connect(settings.with_(database_url=url, db_pool_min=0, db_pool_max=1), "notifier")
    try:
        return await ask(Deliveries(database))
    finally:
        await database.close(5)


async def _retry_delivery(settings: settings_mod.Settings, key: str) -> int:
    done = await _on_deliveries(settings, lambda deliveries: deliveries.allow_retry(key))
    if done is None:
        return 1
    print(f"{key}: will be sent when its event is processed again" if done else f"convoy: no failed or uncertain {key}")
    return 0 if done else 1


async def _dead_letters(settings: settings_mod.Settings, replay: int | None) -> int:
    import time

    from schemas.subjects import Subjects
    from services import nats_auth
    from services.runtime import bus

    if not settings.nats_url:
        settings = settings.with_(nats_url=f"nats://127.0.0.1:{settings.embedded_nats_port}")
    subjects = Subjects(settings.namespace)
    nc = await bus.connect(nats_auth.as_admin(settings), "convoy-cli", attempts_for_s=5, role="admin")
    try:
        js = nc.jetstream()
        if replay is not None:
            msg = await js.get_msg(subjects.dead_letter_stream, replay)
            headers = msg.headers or {}
            original = headers.get("Convoy-Subject")
            if not original:
                print(f"convoy: dead letter {replay} names no original subject", file=sys.stderr)
                return 1
            await js.publish(original, msg.data or b"", headers={"Nats-Msg-Id": f"replay:{replay}:{time.time_ns()}"})
            print(f"replayed dead letter {replay} to {original}")
            return 0
        info = await js.stream_info(subjects.dead_letter_stream)
        first, last = info.state.first_seq, info.state.last_seq
        for seq in range(max(first, last - 99), last + 1):
            try:
                msg = await js.get_msg(subjects.dead_letter_stream, seq)
            except Exception:  # noqa: S112 - a deleted sequence: nothing to show
                continue
            headers = msg.headers or {}
            print(
                json.dumps(
                    {
                        "seq": seq,
                        "subject": headers.get("Convoy-Subject"),
                        "consumer": headers.get("Convoy-Consumer"),
                        "error": headers.get("Convoy-Error"),
                    },
                    ensure_ascii=False,
                )
            )
        return 0
    finally:
        await nc.close()


async def _print_deliveries(settings: settings_mod.Settings, status: str, last: int) -> int:
    rows = await _on_deliveries(settings, lambda deliveries: deliveries.needing_attention(status, last))
    if rows is None:
        return 1
    for row in rows:
        print(json.dumps(row, default=str, ensure_ascii=False))
    if not rows:
        print(f"no {status} deliveries", file=sys.stderr)
    return 0


async def _print_schedule(settings: settings_mod.Settings, convoy_id: str, upcoming: int) -> int:
    import uuid
    from zoneinfo import ZoneInfo

    from schemas import api
    from schemas.subjects import Subjects
    from services import nats_auth
    from services.runtime import bus
    from services.runtime.errors import ConvoyError
    from services.runtime.rpc import RpcClient

    if not settings.nats_url:  # the embedded NATS of `convoy up`
        settings = settings.with_(nats_url=f"nats://127.0.0.1:{settings.embedded_nats_port}")
    try:
        wanted = uuid.UUID(convoy_id)
    except ValueError:
        print(f"convoy: {convoy_id!r} is not a convoy id", file=sys.stderr)
        return 2
    nc = await bus.connect(nats_auth.as_admin(settings), "convoy-cli", attempts_for_s=5, role="admin")
    try:
        schedule = await RpcClient(nc, settings.nats_request_timeout, Subjects(settings.namespace)).call(
            Reminders.SCHEDULE, api.AskSchedule(actor=api.SYSTEM, convoy_id=wanted, upcoming=upcoming)
        )
    except ConvoyError as exc:
        print(f"convoy: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await nc.close()
    tz = ZoneInfo(schedule.timezone)
    print(f"convoy {schedule.convoy_id} ({schedule.status}), times in {schedule.timezone}")
    for c in schedule.cycles:
        state = "skipped: " + c.skip_reason if c.skipped else ("closed" if c.closed else "open" if c.opened else "")
        print(
            f"  #{c.cycle_index:<4} opens {c.opens_at.astimezone(tz):%a %Y-%m-%d %H:%M}"
            f"  due {c.due_at.astimezone(tz):%a %Y-%m-%d %H:%M}"
            f"  closes {c.closes_at.astimezone(tz):%a %Y-%m-%d %H:%M}  {state}"
        )
    for a in schedule.absences:
        when = f"{a.from_date}..{a.until_date}" if a.kind == "away" else f"cycle {a.cycle_index}"
        print(f"  {a.kind}: company {a.company_id} {when} {a.reason}")
    return 0


async def _load_demo(settings: settings_mod.Settings) -> int:
    from schemas.subjects import Subjects
    from services import demo, nats_auth
    from services.runtime import bus, claims
    from services.runtime.errors import ConvoyError
    from services.runtime.rpc import RpcClient

    if settings.smtp_url:
        print(
            "convoy: the demo's people have made-up addresses; it needs the local mail sink (no CONVOY_SMTP_URL)",
            file=sys.stderr,
        )
        return 2
    if not settings.nats_url:  # the embedded NATS of `convoy up`
        settings = settings.with_(nats_url=f"nats://127.0.0.1:{settings.embedded_nats_port}")
    # The demo's people act through the services like the API's would: their claims are signed with the
    # key in the data folder (or CONVOY_ACTOR_SIGNING_KEY), which the operator's machine holds.
    signer = claims.Signer.from_settings(settings, data_folder=True)
    nc = await bus.connect(nats_auth.as_admin(settings), "convoy-cli", attempts_for_s=5, role="admin")
    try:
        rpc = RpcClient(nc, settings.nats_request_timeout, Subjects(settings.namespace), signer=signer)
        loaded = await demo.load_into(rpc, Subjects(settings.namespace), settings.data_path, settings.public_url)
    except ConvoyError as exc:
        print(f"convoy: the demo could not be loaded: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await nc.close()
    print(", ".join(loaded.steps) if loaded.steps else "the demo was loaded already; nothing added", file=sys.stderr)
    print(demo.instructions(settings.public_url))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
