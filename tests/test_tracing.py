"""Tracing and service metrics: one report followed as one trace, and the metrics each service exports.

The services and the API run in this process (tests/conftest.py) with ``CONVOY_OTEL_EXPORTER=memory``,
so every span of every process lands in one in-memory exporter, as it would in one collector.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from services.runtime import tracing
from services.runtime.settings import Settings
from tests.conftest import SmtpSink, eventually
from tests.world import ADMIN, build_world


@pytest.fixture
def settings(settings: Settings) -> Iterator[Settings]:
    yield settings.with_(otel_exporter="memory", metrics_sample_seconds=0.2)
    tracing.shutdown()  # later tests run untraced again


def _spans(trace_id: int) -> list[ReadableSpan]:
    return [s for s in tracing.memory_exporter().get_finished_spans() if s.context and s.context.trace_id == trace_id]


def _one(spans: list[ReadableSpan], name: str, kind: SpanKind, service: str) -> ReadableSpan:
    found = [
        s for s in spans if s.name == name and s.kind == kind and (s.attributes or {}).get("convoy.service") == service
    ]
    assert found, f"no {kind.name} span {name!r} of {service}; have {[(s.name, s.kind.name) for s in spans]}"
    return found[0]


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


async def test_a_report_is_one_trace_from_the_http_request_to_the_email(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink)
    smtp_sink.messages.clear()
    tracing.memory_exporter().clear()
    anna, ben = world.reps["a"], world.reps["b"]
    trace_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736
    caller = f"00-{trace_id:032x}-00f067aa0ba902b7-01"  # a traced client: the API continues its trace

    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/reports",
        json={"done": "Booking page is live", "next": "Connect the calendar", "mood": 4},
        headers={**anna.auth, "traceparent": caller},
    )
    assert r.status_code == 201, r.text
    await smtp_sink.wait_for_mail_to(ben.email)

    async def email_span() -> ReadableSpan | None:
        spans = _spans(trace_id)
        if not any(s.name == "report.submitted process" for s in spans):
            return None  # the consumer's span ends after its handler, the email in it included
        return next((s for s in spans if s.name == "email send"), None)

    sent = await eventually(email_span)
    spans = _spans(trace_id)
    http = next(s for s in spans if s.kind == SpanKind.SERVER and s.name.startswith("POST /api/v1/convoys/"))
    assert (http.attributes or {})["http.response.status_code"] == 201
    assert "{" in http.name and world.convoy_id not in http.name  # the route template, never the ids
    assert http.parent is not None and http.parent.span_id == 0x00F067AA0BA902B7

    [client_call] = [
        s for s in _children(spans, http) if s.kind == SpanKind.CLIENT and s.name.startswith("milestones.")
    ]
    [server] = [s for s in _children(spans, client_call) if s.kind == SpanKind.SERVER]
    assert server.name == client_call.name and (server.attributes or {})["convoy.service"] == "milestones"
    publish = _one(spans, "report.submitted publish", SpanKind.PRODUCER, "milestones")
    consume = _one(spans, "report.submitted process", SpanKind.CONSUMER, "notifier")
    assert consume in _children(spans, publish) and publish in _children(spans, server)  # via the outbox row
    assert sent.kind == SpanKind.CLIENT and (sent.attributes or {})["convoy.delivery_key"].startswith("report:")
    # The email was sent while handling the event: its span descends from the consumer's.
    by_id = {s.context.span_id: s for s in spans}
    ancestors, at = [], sent
    while at.parent is not None and at.parent.span_id in by_id:
        at = by_id[at.parent.span_id]
        ancestors.append(at.name)
    assert consume.name in ancestors and http.name in ancestors
    assert ben.email not in str([dict(s.attributes or {}) for s in spans])  # no addresses in spans


async def test_services_export_event_lag_outbox_and_leader_metrics(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    world = await build_world(client, smtp_sink)
    r = await client.post(
        f"/api/v1/convoys/{world.convoy_id}/reports",
        json={"done": "Shop is live", "next": "Newsletter", "mood": 3},
        headers=world.reps["a"].auth,
    )
    assert r.status_code == 201, r.text
    await smtp_sink.wait_for_mail_to(world.reps["b"].email)

    async def samples(service: str) -> dict[str, list[dict[str, str]]]:
        r = await client.get(f"/metrics/{service}", headers=ADMIN)
        found: dict[str, list[dict[str, str]]] = {}
        if r.status_code == 503:  # the service did not answer in time on a loaded machine: ask again
            return found
        assert r.status_code == 200, r.text
        for family in text_string_to_metric_families(r.text):
            for sample in family.samples:
                found.setdefault(sample.name, []).append({**sample.labels, "value": str(sample.value)})
        return found

    async def settled() -> dict[str, list[dict[str, str]]] | None:
        found = await samples("milestones")
        pending = [s for s in found.get("convoy_consumer_pending", []) if s["service"] == "notifier"]
        return found if pending and all(s["value"] == "0.0" for s in pending) else None

    found = await eventually(settled)  # the notifier's consumers caught up
    published = found["convoy_events_published_total"]
    assert {"service": "milestones", "type": "report.submitted"}.items() <= next(
        s for s in published if s["type"] == "report.submitted"
    ).items()
    assert {s["role"] for s in found["convoy_leader"] if s["value"] == "1.0"} >= {"outbox_relay", "scheduler"}
    backlog = {s["service"]: float(s["value"]) for s in found["convoy_outbox_backlog"]}
    assert set(backlog) >= {"convoys", "milestones", "reminders", "notifier"}
    assert "convoy_outbox_oldest_seconds" in found and "convoy_consumer_ack_pending" in found
    assert {s["consumer"] for s in found["convoy_consumer_pending"] if s["service"] == "notifier"} >= {
        "reports",
        "messages",
    }
    sends = [s for s in found["convoy_notifier_messages_total"] if s["channel"] == "email" and s["outcome"] == "sent"]
    assert sends and float(sends[0]["value"]) >= 1
    # Labels stay bounded: no id of any kind in any label value of these metrics.
    uuid_like = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-")
    for name in ("convoy_events_published_total", "convoy_consumer_pending", "convoy_leader"):
        assert not any(uuid_like.search(v) for s in found[name] for v in s.values()), found[name]


def test_tracing_is_off_by_default_and_costs_nothing() -> None:
    tracing.configure(Settings(), "milestones")
    assert not tracing.enabled()
    with tracing.span("anything", kind=tracing.SpanKind.SERVER, carrier={"traceparent": "00-1-2-01"}) as current:
        assert current is None
        assert tracing.headers() == {}  # nothing travels in NATS headers or envelopes
    assert tracing.start("publish", kind=tracing.SpanKind.PRODUCER) is None and tracing.headers_of(None) == {}
    with pytest.raises(RuntimeError, match="memory exporter"):
        tracing.memory_exporter()
