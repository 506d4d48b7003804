"""Issue #10, item 10: schemathesis over the whole OpenAPI document, against the real running API (uvicorn and
every service), as each role: no 5xx, no response that violates the document, every 4xx with a readable `detail`.

Each operation is fuzzed as admin, facilitator, representative and anonymous, with generated data that fits the
document and data that does not (negative mode), half the time pointed at real objects of the caller's convoy so the
bodies get past authorization into the services. The CI-sized run is bounded (a few examples per operation and role,
fixed seed); the long run is marked ``chaos``.
"""

from __future__ import annotations

import asyncio
import collections
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import pytest
import requests
from hypothesis import HealthCheck, Phase, given, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from services.runtime.settings import Settings
from tests.conftest import SmtpSink
from tests.hostile_world import build_rich_world
from tests.world import ADMIN

pytestmark = [
    pytest.mark.heavy,  # API fuzzing: make test, not make test-fast
    pytest.mark.filterwarnings(
        # schemathesis's own strategies draw from `random` (third-party, not ours)
        "ignore:Do not use the `random` module inside strategies:hypothesis.errors.HypothesisDeprecationWarning"
    ),
]

CI_EXAMPLES = 10
CHAOS_EXAMPLES = 60
SEED = 20_260_110

ENDS_THE_CALLER = {("POST", "/api/v1/auth/sign-out"), ("DELETE", "/api/v1/me")}
"""Operations that end the caller's session or account: fuzzed last, so the other operations run signed in."""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Per-client limits up, so generated bodies reach the services rather than a 429."""
    return msgspec.structs.replace(
        settings,
        client_requests_per_minute=100_000,
        sign_in_requests_per_hour=1000,
        invitations_per_day=1000,
        anonymous_requests_per_client_per_day=100_000,
    )


@dataclass
class Tally:
    requests: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    problems: dict[str, str] = field(default_factory=dict)
    """First example (as curl) of each distinct problem."""

    def problem(self, key: str, example: str) -> None:
        self.problems.setdefault(key, example)


def readable_refusal(status: int, content_type: str, content: bytes) -> str | None:
    """None when a 4xx says what was wrong in a way a person reads; otherwise what is missing."""
    if content_type.startswith("text/html"):
        return None if content.strip() else "empty HTML refusal"
    try:
        body = json.loads(content)
    except ValueError:
        return f"4xx without a JSON body ({content_type or 'no content type'})"
    if not isinstance(body, dict) or not isinstance(body.get("detail"), str) or not body["detail"].strip():
        return "4xx JSON without a `detail` message"
    if body.get("status_code") != status:
        return "4xx `status_code` differs from the HTTP status"
    return None


def fuzz(
    document: dict[str, Any], base_url: str, roles: dict[str, dict[str, str]], ids: dict[str, str], n: int
) -> Tally:
    """Run in a worker thread: schemathesis speaks `requests` (blocking) to the API in the test's event loop."""
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import FailureGroup
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: (op.method.upper(), op.path) in ENDS_THE_CALLER)
    checks = [not_a_server_error, response_schema_conformance, content_type_conformance]
    tally = Tally()
    session = requests.Session()

    def refusal_problem(response: Any) -> str | None:
        content_type = (response.headers.get("content-type") or [""])[0]
        return readable_refusal(response.status_code, content_type, response.content)

    def one_role(strategy: Any, role: str, headers: dict[str, str]) -> Any:
        @seed(SEED)
        @hsettings(
            max_examples=n,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @given(case=strategy)
        def run(case: Any) -> None:
            label = f"{case.operation.label} as {role}"
            try:
                response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
            except requests.RequestException as exc:
                tally.problem(f"{label}: no answer ({type(exc).__name__})", case.as_curl_command(headers))
                return
            tally.requests += 1
            tally.statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=checks, headers=headers)
            except FailureGroup as group:
                for failure in group.exceptions:
                    tally.problem(
                        f"{label}: {failure.title} ({response.status_code})",
                        f"{case.as_curl_command(headers)}\n  -> {response.content[:300]!r}",
                    )
            if 400 <= response.status_code < 500 and (why := refusal_problem(response)):
                tally.problem(
                    f"{label}: {why} ({response.status_code})",
                    f"{case.as_curl_command(headers)}\n  -> {response.content[:300]!r}",
                )

        return run

    for operation in operations:
        real = {p.name: ids[p.name] for p in operation.path_parameters if p.name in ids}
        strategy = st.one_of(
            operation.as_strategy(schemathesis.GenerationMode.POSITIVE, path_parameters=real),
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE, path_parameters=real),
            operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
        )
        for role, headers in roles.items():
            one_role(strategy, role, headers)()
    session.close()
    return tally


async def run_fuzz(client: httpx.AsyncClient, smtp_sink: SmtpSink, examples: int) -> Tally:
    rich = await build_rich_world(client, smtp_sink)
    roles = {"admin": ADMIN, "facilitator": rich.facilitator, "representative": rich.rep, "anonymous": {}}
    document = (await client.get("/schema/openapi.json")).json()
    tally = await asyncio.to_thread(fuzz, document, str(client.base_url), roles, rich.ids, examples)
    operations = sum(len(item) for item in document["paths"].values())
    print(
        f"\nschemathesis: {operations} operations x {len(roles)} roles, {tally.requests} requests;"
        f" statuses {dict(sorted(tally.statuses.items()))}; {len(tally.problems)} problems"
    )
    return tally


def report(tally: Tally) -> str:
    return json.dumps(tally.problems, indent=1, ensure_ascii=False)


@pytest.mark.timeout(600)
async def test_the_api_survives_its_own_openapi_document_as_every_role(
    client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    tally = await run_fuzz(client, smtp_sink, CI_EXAMPLES)
    assert tally.requests > 0
    assert tally.problems == {}, report(tally)


@pytest.mark.chaos
@pytest.mark.timeout(3600)
async def test_the_api_survives_a_long_fuzzing_run(
    client: httpx.AsyncClient, smtp_sink: SmtpSink, request: pytest.FixtureRequest
) -> None:
    if "chaos" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("long run: `make chaos` (pytest -m chaos)")
    tally = await run_fuzz(client, smtp_sink, CHAOS_EXAMPLES)
    assert tally.problems == {}, report(tally)
