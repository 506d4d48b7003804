"""NATS least privilege: one user per process role, with permissions read from the contracts.

Every process connects as its role (``api``, ``convoys``, ``milestones``, ``reminders``, ``notifier``,
``admin``; ``schemas.contract.PROCESSES``). What a role may do follows from the declarations in
``schemas/<service>.py`` (``Op.callers``, ``Contract.PUBLISHES``, ``Contract.CONSUMES``) and the names
in ``schemas/subjects.py``:

- a service **serves** (subscribes to) its own operations, ``health`` and ``metrics``, and the
  ``$SRV`` discovery subjects of its own nats.micro service; it answers a request it received
  (``allow_responses``) and nothing else on someone's inbox;
- a role **asks** (publishes to) an operation's subject only if it is among the operation's
  ``callers``; the API and the admin also ask every service's ``health`` and ``metrics``;
- a service **publishes** only the event and message types its contract ``PUBLISHES`` (its outbox),
  and dead letters of its own consumers;
- a service **reads** only through its own durable consumers (``Contract.CONSUMERS``): info, next
  and acks on exactly those names. It may not create consumers (a push consumer's deliver subject
  would let it inject a stream's messages into any subject): the admin declares them, except on the
  messages stream, whose only reader, the notifier, declares its own. So only the notifier reads the
  messages stream (one-time links), by JetStream or by a core subscription;
- replies arrive under a per-role inbox prefix (``Subjects.inbox_prefix``) that only that role
  may subscribe to;
- streams: a service may create a missing stream of its namespace; only the admin updates them,
  reads dead letters and replays them. The notifier may purge and delete messages (erasure).

``convoy nats-authorization`` prints the block for production (``deploy/nats/authorization.conf``,
passwords as ``$NATS_<ROLE>_PASSWORD`` variables); the embedded nats-server of ``convoy up`` gets the
same block with generated passwords (kept in the data folder, one file per role, 0600).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from schemas.contract import PROCESSES, Contract
from schemas.convoys import Convoys
from schemas.milestones import Milestones
from schemas.notifier import Notifier
from schemas.reminders import Reminders
from schemas.subjects import SERVICES, Subjects
from services.runtime.settings import Settings

CONTRACTS: tuple[type[Contract], ...] = (Convoys, Milestones, Reminders, Notifier)
ROLES: tuple[str, ...] = ("api", "convoys", "milestones", "reminders", "notifier", "admin")
assert set(ROLES) == PROCESSES

_SENTINEL = "nsplaceholder"
"""A namespace written as ``*`` (one server for many namespaces, as in the tests) is generated with this
one and then replaced: the first token of every subject and each stream name becomes a wildcard."""


def _contract(role: str) -> type[Contract] | None:
    return next((c for c in CONTRACTS if role == c.SERVICE), None)


def permissions(role: str, namespace: str = "convoy") -> dict[str, object]:
    """The nats-server permissions of ``role`` in ``namespace`` (``*``: any namespace)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    wildcard = namespace == "*"
    sub = Subjects(_SENTINEL if wildcard else namespace)
    streams = {
        sub.events_stream: sub.events_wildcard,
        sub.messages_stream: sub.messages_wildcard,
        sub.dead_letter_stream: sub.dead_letter_wildcard,
    }
    publish: list[str] = []
    subscribe: list[str] = [sub.inbox_prefix(role) + ".>"]

    # asking: an operation's subject only for its callers
    for asked in CONTRACTS:
        publish += [sub.operation(op) for op in asked.OPS if role in op.callers]
    if role in ("api", "admin"):
        publish += [s for service in SERVICES for s in (sub.health(service), sub.metrics(service))]

    # JetStream: the services and the admin may look at (and create) its namespace's streams
    contract = _contract(role)
    if contract is not None or role == "admin":
        publish += [f"$JS.API.STREAM.INFO.{name}" for name in streams]
    if contract is not None:
        publish += [f"$JS.API.STREAM.CREATE.{name}" for name in streams]
        # serving
        subscribe += [sub.operation(op) for op in contract.OPS]
        subscribe += [sub.health(role), sub.metrics(role)]
        micro = sub.micro_name(role)
        if wildcard:
            subscribe.append("$SRV.>")
        else:
            for verb in ("PING", "INFO", "STATS"):
                subscribe += [f"$SRV.{verb}", f"$SRV.{verb}.{micro}", f"$SRV.{verb}.{micro}.*"]
        # publishing its outbox
        publish += sorted({f for t in contract.PUBLISHES for f in sub.filters(t)})  # a message: per recipient
        # reading: bind to its own durable consumers (declared by the admin; on the messages stream,
        # whose only reader is the notifier, by the notifier itself)
        read: set[str] = set()
        for purpose, types in contract.CONSUMERS.items():
            stream = sub.stream_of(types[0])
            durable = sub.consumer(role, purpose)
            read.add(stream)
            if stream == sub.messages_stream:
                publish += [
                    f"$JS.API.CONSUMER.CREATE.{stream}.{durable}",
                    f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.>",
                    f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
                ]
            publish += [
                f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
                f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
                f"$JS.ACK.{stream}.{durable}.>",
            ]
        if read:
            publish.append(sub.dead_letter_wildcard)
        if sub.messages_stream in read:
            subscribe.append(sub.messages_wildcard)
            # erasure (notifier/privacy.py): find a person's messages and their dead letters, delete, purge
            publish += [
                f"$JS.API.STREAM.{verb}.{name}"
                for name in (sub.messages_stream, sub.dead_letter_stream)
                for verb in ("MSG.GET", "MSG.DELETE", "PURGE")
            ]
    # conditional GETs (issue #21): milestones announces convoy versions on core NATS, the API keeps them
    if role == "milestones":
        publish.append(sub.convoy_versions)
    if role == "api":
        subscribe.append(sub.convoy_versions)
    # the notifier's recipients (issue #21): convoys announces its recipients versions, the notifier keeps them
    if role == "convoys":
        publish.append(sub.recipient_versions)
    if role == "notifier":
        subscribe.append(sub.recipient_versions)
    if role == "admin":
        publish += [f"$JS.API.STREAM.{verb}.{name}" for name in streams for verb in ("CREATE", "UPDATE")]
        # the durable consumers of the events stream (services may only bind to theirs)
        events = sub.events_stream
        publish += [f"$JS.API.CONSUMER.{verb}.{events}.>" for verb in ("CREATE", "DURABLE.CREATE", "INFO")]
        # dead letters: look at them, replay one to its original subject (an event or a message)
        dead = sub.dead_letter_stream
        publish += [f"$JS.API.STREAM.MSG.GET.{dead}", f"$JS.API.DIRECT.GET.{dead}"]
        publish += [sub.events_wildcard, sub.messages_wildcard]
        publish += ["$SRV.>"]

    perms: dict[str, object] = {
        "publish": {"allow": _dedupe(publish)},
        "subscribe": {"allow": _dedupe(subscribe)},
    }
    if contract is not None:
        perms["allow_responses"] = True
    if wildcard:
        widened: dict[str, Any] = json.loads(_widen(json.dumps(perms), sub))
        for direction in ("publish", "subscribe"):
            widened[direction]["allow"] = _dedupe(widened[direction]["allow"])
        perms = widened
    return perms


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _widen(text: str, sub: Subjects) -> str:
    for stream in (sub.events_stream, sub.messages_stream, sub.dead_letter_stream):
        text = text.replace(stream, "*")
    text = re.sub(rf"{_SENTINEL}_[a-z0-9_]+", "*", text)  # durable consumer names
    return text.replace(f"{_SENTINEL}.", "*.")


def authorization_block(
    passwords: Mapping[str, str], namespace: str = "convoy", *, superuser: tuple[str, str] | None = None
) -> str:
    """The nats-server ``authorization { users = [...] }`` block: one user per role.

    ``passwords[role]`` is written as given; a value starting with ``$`` stays a bare variable
    (nats-server reads it from the environment). ``superuser``: (user, password) allowed
    everything (only the tests' own server has one).
    """
    lines = [
        "# generated by `convoy nats-authorization` from the contracts (schemas/*.py); do not edit by hand.",
        '# One user per process role; see docs/architecture.md "NATS permissions".',
        "authorization {",
        "  users = [",
    ]
    for role in ROLES:
        lines.append(f"    {{user: {role}, password: {_value(passwords[role])}, permissions: {{")
        perms = permissions(role, namespace)
        for direction in ("publish", "subscribe"):
            allow = perms[direction]["allow"]  # type: ignore[index]
            lines.append(f"      {direction}: {{allow: [")
            lines += [f"        {json.dumps(s)}" for s in allow]
            lines.append("      ]}")
        if perms.get("allow_responses"):
            lines.append("      allow_responses: true")
        lines.append("    }}")
    if superuser is not None:
        lines.append(f"    {{user: {json.dumps(superuser[0])}, password: {_value(superuser[1])}}}")
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def _value(password: str) -> str:
    return password if password.startswith("$") else json.dumps(password)


def production_block(namespace: str = "convoy") -> str:
    """The block for deploy/: passwords from the environment of nats-server (``$NATS_API_PASSWORD``, ...)."""
    return authorization_block({role: f"$NATS_{role.upper()}_PASSWORD" for role in ROLES}, namespace)


DECLARE_TIMEOUT_S = 30.0
"""How long one stream or consumer declaration may take: on a cluster it waits for the meta leader (a
node just restarted, a loaded machine), far longer than a request to a service."""


async def declare_jetstream(settings: Settings) -> None:
    """As admin: create or update the streams and declare the services' durable consumers
    (`convoy up` before it starts the services, `convoy migrate`). Without the admin's rights
    (an external NATS, other credentials) streams are only created, not updated."""
    from services.runtime import bus, consumer

    nc = await bus.connect(settings, "convoy-admin", attempts_for_s=30, role="admin")
    try:
        js = nc.jetstream(timeout=max(settings.nats_request_timeout, DECLARE_TIMEOUT_S))
        subjects = Subjects(settings.namespace)
        manages = bus.manages_streams(settings)
        await bus.ensure_streams(
            js,
            subjects,
            settings.stream_replicas,
            dead_letter_max_age_s=settings.dead_letter_days * 86400,
            update=manages,
        )
        if manages:
            await consumer.ensure_consumers(js, subjects, CONTRACTS)
    finally:
        await nc.close()


# --- credentials of the embedded default --------------------------------------------------------
CREDENTIALS_FOLDER = "nats-credentials"
"""In the data folder: one file per role with its password (the embedded nats-server's users)."""


def as_admin(settings: Settings) -> Settings:
    """Settings for a command-line tool: the admin's credentials of the embedded NATS of `convoy up`
    when none are configured (an operator's CONVOY_NATS_USER/PASSWORD win)."""
    path = settings.data_path / CREDENTIALS_FOLDER / "admin"
    if settings.nats_user or not path.exists():
        return settings
    return settings.with_(nats_user="admin", nats_password=path.read_text().strip())


def credentials(folder: Path) -> dict[str, str]:
    """Every role's password, kept in ``folder`` (one file per role, 0600; generated once)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    found: dict[str, str] = {}
    for role in ROLES:
        path = folder / role
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(f"nats_{secrets.token_urlsafe(32)}\n")
        found[role] = path.read_text().strip()
    return found
