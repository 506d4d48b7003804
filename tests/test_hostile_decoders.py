"""Issue #10, item 13: the event decoders fuzzed with hypothesis.

``schemas.envelope.decode`` gets arbitrary bytes, malformed JSON, unknown types and versions, wrong field types and
absurd nesting: it answers with an event or with ``MalformedEvent``, never anything else (anything else would make
a consumer retry a poison message forever instead of dead-lettering it). Then a real consumer (JetStream, PostgreSQL)
is fed a batch of such messages and a good event: every malformed one lands on the dead-letter subject with the
reason, and the good one is handled.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from schemas import envelope as env
from schemas import events as ev
from services.runtime.settings import Settings
from tests.conftest import eventually
from tests.test_runtime import Running, _contains, _dead_letters, start_probe

SEED = 20_260_113
FUZZ = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=False
)
KNOWN = {(cls.TYPE, cls.SCHEMA_VERSION) for cls in ev.EVENT_TYPES}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


def envelope_of(type_: str, version: Any, payload: Any, **overrides: Any) -> bytes:
    data = {
        "id": str(uuid.uuid4()),
        "type": type_,
        "schema_version": version,
        "occurred_at": "2026-11-27T08:00:00Z",
        "producer": "fuzz",
        "correlation_id": str(uuid.uuid4()),
        "payload": payload,
        **overrides,
    }
    return json.dumps(data).encode()


def a_valid_payload(cls: type[ev.Event]) -> dict[str, Any]:
    """A payload that decodes: only the required fields, filled by their annotation."""
    fields = msgspec.structs.fields(cls)
    values: dict[str, Any] = {}
    for f in fields:
        if f.required:
            values[f.name] = _value_for(f.type)
    return values


def _value_for(tp: Any) -> Any:
    info = msgspec.inspect.type_info(tp)
    if isinstance(info, msgspec.inspect.UnionType):
        info = next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType))
    return {
        msgspec.inspect.UUIDType: str(uuid.uuid4()),
        msgspec.inspect.StrType: "x",
        msgspec.inspect.IntType: 1,
        msgspec.inspect.BoolType: True,
        msgspec.inspect.FloatType: 1.0,
        msgspec.inspect.DateTimeType: "2026-11-27T08:00:00Z",
        msgspec.inspect.DateType: "2026-11-27",
    }.get(type(info))


def _decodes(cls: type[ev.Event]) -> bool:
    try:
        env.decode(envelope_of(cls.TYPE, cls.SCHEMA_VERSION, a_valid_payload(cls)))
    except env.MalformedEvent:
        return False
    return True


def outcome(data: bytes) -> str:
    """'ok' or 'malformed'; any other exception fails the test that calls it."""
    try:
        env.decode(data)
    except env.MalformedEvent:
        return "malformed"
    return "ok"


@seed(SEED)
@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_decode_or_are_malformed(data: bytes) -> None:
    assert outcome(data) == "malformed" or data.lstrip().startswith(b"{")


@seed(SEED)
@FUZZ
@given(json_values)
def test_arbitrary_json_decodes_or_is_malformed(value: Any) -> None:
    outcome(json.dumps(value).encode())


@seed(SEED)
@FUZZ
@given(
    type_=st.sampled_from(sorted({t for t, _ in KNOWN})) | st.text(max_size=30),
    version=st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=3) | st.none(),
    payload=json_values,
)
def test_unknown_types_versions_and_payloads_are_malformed(type_: str, version: Any, payload: Any) -> None:
    result = outcome(envelope_of(type_, version, payload))
    if (type_, version) not in KNOWN:
        assert result == "malformed"


FILLABLE = tuple(cls for cls in ev.EVENT_TYPES if _decodes(cls))
"""Events whose required fields this file can fill (plain ids, text, numbers, dates)."""


def test_most_events_are_fillable() -> None:
    assert len(FILLABLE) >= len(ev.EVENT_TYPES) // 2, [c.TYPE for c in ev.EVENT_TYPES if c not in FILLABLE]


@seed(SEED)
@FUZZ
@given(cls=st.sampled_from(FILLABLE), data=st.data())
def test_a_wrong_field_type_is_malformed(cls: type[ev.Event], data: st.DataObject) -> None:
    payload = a_valid_payload(cls)
    if not payload:
        return
    name = data.draw(st.sampled_from(sorted(payload)))
    wrong = data.draw(json_values.filter(lambda v: not isinstance(v, str) or name.endswith("_id")))
    payload[name] = wrong
    outcome(envelope_of(cls.TYPE, cls.SCHEMA_VERSION, payload))  # ok (a coincidence) or malformed


def test_absurd_nesting_and_sizes_are_malformed() -> None:
    for depth in (100, 1_000, 100_000):
        nested = "[" * depth + "]" * depth
        assert outcome(nested.encode()) == "malformed"
        assert outcome(envelope_of("convoy.created", 1, None).replace(b"null", nested.encode())) == "malformed"
    assert outcome(envelope_of("convoy.created", 1, {"name": "x" * 1_000_000})) == "malformed"
    assert outcome(b"") == "malformed"
    assert outcome(b"\x00" * 100) == "malformed"


def corpus() -> list[bytes]:
    """Malformed messages: hand-picked ones, and a few hundred from hypothesis."""
    picked = [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[" * 5000 + b"]" * 5000,
        envelope_of("convoy.created", 99, a_valid_payload(ev.ConvoyCreated)),
        envelope_of("convoy.exploded", 1, {}),
        envelope_of("convoy.created", "1", a_valid_payload(ev.ConvoyCreated)),
        envelope_of("convoy.created", 1, {**a_valid_payload(ev.ConvoyCreated), "convoy_id": 42}),
        envelope_of("convoy.created", 1, {**a_valid_payload(ev.ConvoyCreated), "name": ["x"]}),
        envelope_of("convoy.created", 1, a_valid_payload(ev.ConvoyCreated), id="not-a-uuid"),
        envelope_of("convoy.created", 1, a_valid_payload(ev.ConvoyCreated), occurred_at=17),
    ]
    generated: list[bytes] = []

    @seed(SEED)
    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
    def collect(data: bytes) -> None:
        if outcome(data) == "malformed":
            generated.append(data)

    collect()
    return picked + sorted(set(generated) - set(picked))


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[Running]:
    """The runtime tests' probe service: one real consumer of convoy.created, recording what it handled."""
    async with start_probe(settings) as r:
        yield r


async def test_a_real_consumer_dead_letters_malformed_events_and_carries_on(running: Running) -> None:
    bad = corpus()
    assert all(outcome(data) == "malformed" for data in bad)
    await running.emit("before")
    for data in bad:
        await running.publish_raw(data)
    await running.emit("after")
    await eventually(lambda: _contains(running, ["after", "before"]), timeout=30)

    dead = await _dead_letters(running, len(bad))
    assert len(dead) == len(bad)
    assert sorted(m.data for m in dead) == sorted(bad)
    for message in dead:
        assert message.headers is not None and message.headers["Convoy-Error"].startswith("malformed")
        assert message.headers["Convoy-Subject"] == running.subjects.event(ev.ConvoyCreated.TYPE)
    print(f"\ndecoders: {len(bad)} malformed messages dead-lettered, the good events after them handled")
