"""How a service declares its contract: typed request/reply operations and the events it publishes.

A service's contract is one class in ``schemas/<service>.py``::

    class Convoys(Contract, service="convoys"):
        CONVOY_GET = Op(api.GetConvoy, api.Convoy, callers=EDGE)
        ...

Each ``Op`` knows its name (the attribute, lower-cased), its service, its request and reply types and
which processes may call it. The runtime serves a contract (every operation needs a handler or the
service does not start), callers ask an operation (``await rpc.call(Convoys.CONVOY_GET, request)``:
the reply type follows from the operation, so mypy checks every call site), and the NATS permissions,
the OpenAPI examples and the documentation are read from the same declarations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Generic, TypeVar

import msgspec

Req = TypeVar("Req", bound=msgspec.Struct)
Rep = TypeVar("Rep", bound=msgspec.Struct)
H = TypeVar("H", bound=Callable[..., Awaitable[Any]])

PROCESSES: frozenset[str] = frozenset({"api", "convoys", "milestones", "reminders", "notifier", "admin"})
"""Who can be named as a caller: the processes (``admin`` is the operator's CLI: demo data, imports)."""

EDGE = frozenset({"api"})
"""Operations the HTTP API asks on a person's behalf."""

HANDLER_ATTRIBUTE = "__convoy_op__"


class Op(Generic[Req, Rep]):
    """One request/reply operation of a service."""

    __slots__ = ("callers", "doc", "name", "reply", "request", "service")

    def __init__(
        self, request: type[Req], reply: type[Rep], *, callers: frozenset[str] | set[str], doc: str = ""
    ) -> None:
        unknown = set(callers) - PROCESSES
        if unknown:
            raise ValueError(f"unknown callers {sorted(unknown)}; known: {sorted(PROCESSES)}")
        self.request = request
        self.reply = reply
        self.callers = frozenset(callers)
        self.doc = doc
        self.name = ""
        self.service = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name.lower()

    def __repr__(self) -> str:
        return f"Op({self.service}.{self.name}: {self.request.__name__} -> {self.reply.__name__})"

    def __call__(self, handler: H) -> H:
        """Mark ``handler`` as the one that answers this operation (``@Convoys.CONVOY_GET``)."""
        setattr(handler, HANDLER_ATTRIBUTE, self)
        return handler


class Contract:
    """Base of a service's contract class; subclasses name their service: ``class X(Contract, service=...)``."""

    SERVICE: ClassVar[str]
    OPS: ClassVar[tuple[Op[Any, Any], ...]]
    PUBLISHES: ClassVar[tuple[type, ...]] = ()
    """The event types this service publishes (its outbox's subjects)."""
    CONSUMERS: ClassVar[dict[str, tuple[type, ...]]] = {}
    """The service's durable consumers: purpose -> the event (or message) types it reads. The admin
    declares them on JetStream (a service only binds to its own: creating a consumer could point it
    at any subject), the NATS permissions let a process read only these, and the runtime refuses a
    consumer that differs from this."""
    CONSUMES: ClassVar[tuple[type, ...]] = ()
    """Every type the consumers read (from ``CONSUMERS``)."""

    def __init_subclass__(cls, *, service: str, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.SERVICE = service
        ops = []
        for value in vars(cls).values():
            if isinstance(value, Op):
                value.service = service
                ops.append(value)
        cls.OPS = tuple(ops)
        cls.CONSUMES = tuple(dict.fromkeys(t for types in cls.CONSUMERS.values() for t in types))

    @classmethod
    def op(cls, name: str) -> Op[Any, Any]:
        for op in cls.OPS:
            if op.name == name:
                return op
        raise KeyError(f"{cls.SERVICE} has no operation {name!r}")
