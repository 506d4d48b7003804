"""Contracts and conventions that need no servers: envelope codec, subjects, settings, registry."""

from __future__ import annotations

import ast
import gc
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from schemas import api
from schemas import envelope as env
from schemas import events as ev
from schemas.contract import EDGE, Contract, Op
from schemas.subjects import SERVICES, Subjects
from services.registry import BACKEND_MODULES
from services.runtime import settings as settings_mod
from services.runtime.service import Runtime

ROOT = Path(__file__).resolve().parent.parent


def test_envelope_round_trip() -> None:
    ids = [uuid.uuid4() for _ in range(4)]
    report = ev.ReportSnapshot(
        id=ids[2],
        convoy_id=ids[0],
        company_id=ids[1],
        company_name="Laden Schmidt",
        author_id=ids[3],
        cycle_index=2,
        late=False,
        submitted_at=datetime.now(UTC),
        done="Kalender angebunden",
        next="",
        blockers="",
        help_wanted=False,
        help_topic="",
        help_milestone_id=None,
        mood=4,
        milestones=[ev.MilestoneMoved(milestone_id=uuid.uuid4(), title="Kalender", status="done")],
    )
    event = ev.ReportSubmitted(convoy_id=ids[0], company_id=ids[1], report_id=ids[2], author_id=ids[3], report=report)
    cause = uuid.uuid4()
    envelope = env.new_envelope(event, producer="milestones", correlation_id=cause, causation_id=cause)
    decoded, payload = env.decode(env.encode(envelope))
    assert decoded.id == envelope.id and decoded.type == "report.submitted" and decoded.schema_version == 1
    assert decoded.correlation_id == cause and decoded.producer == "milestones"
    assert payload == event


def test_events_carry_structs_of_their_own_and_every_type_has_a_consumer() -> None:
    """No event embeds a type of schemas/api.py (the HTTP contract), and every event type is read by
    some consumer (named in a consumer's event types or an ``isinstance``, not only constructed)."""

    def types_in(t: msgspec.inspect.Type) -> list[type]:
        found: list[type] = []
        if isinstance(t, msgspec.inspect.StructType):
            found.append(t.cls)
            for f in t.fields:
                found += types_in(f.type)
        for attr in ("item_type", "key_type", "value_type"):
            if hasattr(t, attr):
                found += types_in(getattr(t, attr))
        for sub in getattr(t, "types", ()):
            found += types_in(sub)
        return found

    for cls in ev.EVENT_TYPES:
        embedded = {t.__module__ for t in types_in(msgspec.inspect.type_info(cls))}
        assert embedded <= {"schemas.events", "schemas.values"}, (cls.__name__, embedded)

    consumed: set[str] = set()  # named other than in a constructor call: a consumer's tuple, an isinstance
    for folder in ("services", "notifier", "convoy_api"):
        for path in (ROOT / folder).rglob("*.py"):
            consumed |= set(re.findall(r"\bev\.([A-Z]\w+)\b(?!\()", path.read_text()))
    assert sorted(c.__name__ for c in ev.EVENT_TYPES if c.__name__ not in consumed) == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\x00", "invalid envelope"),
        (b'{"id": "x"}', "invalid envelope"),
        (
            msgspec.json.encode(
                {
                    "id": str(uuid.uuid4()),
                    "type": "nope.happened",
                    "schema_version": 1,
                    "occurred_at": "2026-01-01T00:00:00Z",
                    "producer": "x",
                    "correlation_id": str(uuid.uuid4()),
                    "payload": {},
                }
            ),
            "unknown event type",
        ),
        (
            msgspec.json.encode(
                {
                    "id": str(uuid.uuid4()),
                    "type": "report.submitted",
                    "schema_version": 1,
                    "occurred_at": "2026-01-01T00:00:00Z",
                    "producer": "x",
                    "correlation_id": str(uuid.uuid4()),
                    "payload": {"convoy_id": 3},
                }
            ),
            "invalid report.submitted payload",
        ),
    ],
)
def test_malformed_events_are_named(data: bytes, reason: str) -> None:
    with pytest.raises(env.MalformedEvent, match=reason):
        env.decode(data)


def test_subjects_hang_off_the_namespace() -> None:
    s = Subjects("convoy")
    assert s.event("report.submitted") == "convoy.events.report.submitted"
    assert s.events_stream == "CONVOY_EVENTS" and s.events_wildcard == "convoy.events.>"
    assert s.dead_letter("convoy_notifier_reports") == "convoy.dlq.convoy_notifier_reports"
    assert s.health("notifier") == "convoy.rpc.notifier.health"
    with pytest.raises(ValueError, match="namespace"):
        Subjects("Bad.Name")


def test_every_service_the_api_asks_is_in_the_registry() -> None:
    assert set(SERVICES) == set(BACKEND_MODULES)


def test_settings_from_the_environment() -> None:
    s = settings_mod.load({"CONVOY_HTTP_PORT": "9000", "CONVOY_LOG_FORMAT": "console", "OTHER": "x"})
    assert s.http_port == 9000 and s.log_format == "console" and s.namespace == "convoy"
    with pytest.raises(settings_mod.SettingsError, match="CONVOY_HTTP_PORT"):
        settings_mod.load({"CONVOY_HTTP_PORT": "eighty"})
    with pytest.raises(settings_mod.SettingsError, match="CONVOY_LOG_FORMAT"):
        settings_mod.load({"CONVOY_LOG_FORMAT": "xml"})


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    described = settings_mod.describe()
    assert described, "no settings found"
    for variable, _default, doc in described:
        assert doc, f"{variable} has no docstring in Settings"
        assert f"`{variable}`" in readme, f"README.md does not document {variable}"


def test_no_subject_literals_outside_schemas() -> None:
    """Subjects are defined once (schemas/subjects.py); code elsewhere asks a Subjects object."""
    pattern = re.compile(r"""["'][a-z_{}]*\.(events|rpc|dlq)\.""")
    offenders = []
    for folder in ("services", "convoy_api", "notifier"):
        for path in (ROOT / folder).rglob("*.py"):
            if pattern.search(path.read_text()):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


CONTEXTS = ("convoys", "milestones", "reminders")
"""The service contexts under services/: each owns its data; none imports another."""


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_boundaries_hold() -> None:
    """schemas/ imports nothing of ours; a context never imports another; convoy_api/ and notifier/
    import no context (shared helpers live in services.runtime; a context's data is asked for over NATS)."""
    ours = ("schemas", "services", "convoy_api", "notifier")
    offenders = []
    for path in ROOT.glob("schemas/**/*.py"):
        bad = {m for m in _imports(path) if m.split(".")[0] in ours and m.split(".")[0] != "schemas"}
        offenders += [f"{path.relative_to(ROOT)} imports {m}" for m in sorted(bad)]
    for folder in ("convoy_api", "notifier", *(f"services/{c}" for c in CONTEXTS)):
        own = folder.split("/")[-1]
        for path in ROOT.glob(f"{folder}/**/*.py"):
            for m in sorted(_imports(path)):
                parts = m.split(".")
                if len(parts) > 1 and parts[0] == "services" and parts[1] in CONTEXTS and parts[1] != own:
                    offenders.append(f"{path.relative_to(ROOT)} imports {m}")
    assert offenders == []


def test_sql_lives_in_repositories_and_migrations() -> None:
    """Services keep their SQL in repository.py or a repository/ package (the runtime's own tables excepted)."""
    sql = re.compile(r"""["'](SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b""")
    offenders = []
    for folder in ("services", "notifier"):
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT)
            if (
                path.name == "repository.py"
                or "repository" in rel.parts[:-1]
                or rel.parts[:2] == ("services", "runtime")
            ):
                continue
            if path.name in ("supervisor.py",):  # creates the embedded database, owns no tables
                continue
            if sql.search(path.read_text()):
                offenders.append(str(rel))
    assert offenders == []


def test_session_state_stays_off_pooled_connections() -> None:
    """Pooled connections go back without a reset (services/runtime/db.py, PoolConnection), so
    session-level advisory locks, LISTEN, session SET and cursors live only where a connection of
    its own is opened for them: the outbox relay, migrations, and the scheduler's leader lock."""
    session = re.compile(
        r"""pg_(try_)?advisory_lock\(|add_listener\(|\bLISTEN\b|set_config\(|\.cursor\(|["']SET (?!LOCAL)"""
    )
    found = {}
    for folder in ("services", "convoy_api", "notifier"):
        for path in (ROOT / folder).rglob("*.py"):
            hits = session.findall(path.read_text())
            if hits:
                found[str(path.relative_to(ROOT))] = len(hits)
    assert found == {
        "services/runtime/outbox.py": 1,  # LISTEN, on the relay's own connection (the one holding its lock)
        "services/runtime/db.py": 1,  # migrations, on a connection of their own
        "services/runtime/lifecycle.py": 1,  # lead(): the leader lock, on a connection lead() opens itself
        # LISTEN for convoy versions (milestones → API) and recipients versions (convoys → notifier), on the
        # forwarder's own connection
        "services/runtime/versions.py": 1,
    }
    callers = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "services").rglob("*.py") if "lifecycle.lead(" in p.read_text()
    )
    assert callers == ["services/reminders/service.py", "services/runtime/outbox.py"]
    for caller in callers:  # each gives lead() a connection of its own, never a pooled one
        assert "return await asyncpg.connect(" in (ROOT / caller).read_text(), caller


def test_client_limiter_counts_per_client_and_stays_bounded() -> None:
    from convoy_api.deps import ClientLimiter
    from services.runtime.errors import TooManyRequests

    limiter = ClientLimiter(per_minute=3, max_clients=100)
    for _ in range(3):
        limiter.check("10.0.0.1")
    with pytest.raises(TooManyRequests):
        limiter.check("10.0.0.1")
    limiter.check("10.0.0.2")  # another client is not affected
    for i in range(500):
        limiter.check(f"192.0.2.{i}")
    assert len(limiter.hits) == 100


class Tiny(Contract, service="tiny"):
    PING = Op(api.Empty, api.Accepted, callers=EDGE)
    ECHO = Op(api.Ask, api.Accepted, callers={"api", "notifier"})


class PingOnly:
    @Tiny.PING
    async def ping(self, _: api.Empty) -> api.Accepted:
        return api.Accepted(message="pong")


class Mistyped(PingOnly):
    @Tiny.ECHO
    async def echo(self, _: api.Empty) -> api.Accepted:
        return api.Accepted(message="echo")


class Complete(PingOnly):
    @Tiny.ECHO
    async def echo(self, ask: api.Ask) -> api.Accepted:
        return api.Accepted(message="echo")


def test_a_service_starts_only_with_one_well_typed_handler_per_operation() -> None:
    assert (Tiny.PING.service, Tiny.PING.name, Tiny.OPS) == ("tiny", "ping", (Tiny.PING, Tiny.ECHO))
    assert Subjects("ns").operation(Tiny.ECHO) == "ns.rpc.tiny.echo"
    rt = Runtime(settings_mod.load({}), "tiny")
    with pytest.raises(RuntimeError, match="no handler for echo"):
        rt.serve(Tiny, PingOnly())
    with pytest.raises(RuntimeError, match="but echo sends Ask"):
        rt.serve(Tiny, Mistyped())
    with pytest.raises(RuntimeError, match="two handlers for ping"):
        rt.serve(Tiny, PingOnly(), Complete())
    rt.serve(Tiny, Complete())
    assert sorted(e.name for e in rt._endpoints) == ["echo", "ping"]
    with pytest.raises(ValueError, match="unknown callers"):
        Op(api.Empty, api.Accepted, callers={"anyone"})


def test_every_operation_of_every_service_has_its_handler() -> None:
    """Each contract is served whole (rt.serve checks it when the services start in every stack);
    here, without servers: every declared operation's handler is marked somewhere in its package."""
    from schemas.convoys import Convoys
    from schemas.milestones import Milestones
    from schemas.notifier import Notifier
    from schemas.reminders import Reminders

    for contract, folder in ((Convoys, "services/convoys"), (Milestones, "services/milestones"),
                             (Reminders, "services/reminders"), (Notifier, "notifier")):  # fmt: skip
        text = "\n".join(p.read_text() for p in Path(folder).rglob("*.py"))
        marked = set(re.findall(rf"@{contract.__name__}\.([A-Z_]+)\n", text))
        assert marked == {op.name.upper() for op in contract.OPS}, contract.__name__


def _structs_under(base: type) -> list[type]:
    out, todo = [], [base]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo += cls.__subclasses__()
    return out


def test_messages_are_plain_data_the_garbage_collector_skips() -> None:
    """Requests, answers, events and envelopes are trees of data (decoded from JSON, never referring back to
    themselves), declared ``gc=False``: the caches that hold tens of thousands of answers (recipients, tokens)
    add nothing to a full collection's pause (issue #21: 100 to 200 ms in the notifier and the API)."""
    bases = [api.Body, api.Reply, api.Actor, env.Envelope, ev.Event, ev.ReportSnapshot, ev.Absence]
    tracked = [c.__name__ for base in bases for c in _structs_under(base) if c.__struct_config__.gc]
    assert tracked == []
    recipients = msgspec.json.decode(
        msgspec.json.encode(
            api.Recipients(
                convoy_id=uuid.uuid4(),
                convoy_name="Konvoi Nord",
                language="de",
                members=[
                    api.Recipient(
                        person_id=uuid.uuid4(),
                        company_id=uuid.uuid4(),
                        company_name="Bäckerei",
                        name="Anna",
                        email="anna@example.de",
                        language="de",
                    )
                ],
            )
        ),
        type=api.Recipients,
    )
    assert not gc.is_tracked(recipients) and not gc.is_tracked(recipients.members[0])
