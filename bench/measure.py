"""Small helpers shared by the scenarios: percentiles, rows of the results table, HTTP load."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class Row:
    scenario: str
    measure: str
    convoy: float
    baseline: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.convoy / self.baseline

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ratio": self.ratio}


@dataclass
class Result:
    scenario: str
    scale: float
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "scale": self.scale,
            "wall_seconds": round(self.wall_seconds, 1),
            "rows": [r.as_dict() for r in self.rows],
            "cpu_seconds": {k: round(v, 2) for k, v in self.cpu_seconds.items()},
            "details": self.details,
        }


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


async def closed_loop(
    concurrency: int, jobs: Sequence[Any], do: Callable[[Any], Awaitable[None]], seconds: float | None = None
) -> tuple[list[float], float]:
    """Run ``do(job)`` for every job with ``concurrency`` workers; (latencies in s, elapsed s).

    With ``seconds``, workers take no new job after that long (the jobs are then an upper bound):
    a level is measured for a fixed time whatever the rate, so a run's length is predictable.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    latencies: list[float] = []
    deadline = None if seconds is None else time.perf_counter() + seconds

    async def worker() -> None:
        while deadline is None or time.perf_counter() < deadline:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            t0 = time.perf_counter()
            await do(job)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - start


async def open_loop(
    rate: float, jobs: Sequence[Any], do: Callable[[Any], Awaitable[None]]
) -> tuple[list[float], float, list[float]]:
    """Start ``do(job)`` at a steady ``rate`` per second, whatever the answers take.

    Returns (latencies in s, elapsed s, monotonic start time of each job).
    """
    latencies: list[float] = []
    starts: list[float] = []

    async def one(job: Any) -> None:
        t0 = time.perf_counter()
        await do(job)
        latencies.append(time.perf_counter() - t0)

    tasks = []
    begin = time.perf_counter()
    for i, job in enumerate(jobs):
        delay = begin + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        starts.append(time.monotonic())
        tasks.append(asyncio.create_task(one(job)))
    await asyncio.gather(*tasks)
    return latencies, time.perf_counter() - begin, starts


KEEPALIVE_S = 4.0
"""How long the load generator keeps an idle connection: less than uvicorn's ``timeout_keep_alive`` (5 s)."""


def http_session(limit: int) -> aiohttp.ClientSession:
    # A connection idle for longer than uvicorn's keep-alive (5 s) is closed by the server; aiohttp's own
    # default (15 s) would reuse one that is closing and fail the run ("Can not write request body").
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, force_close=False, keepalive_timeout=KEEPALIVE_S),
        timeout=aiohttp.ClientTimeout(total=60),
    )


class Failures(Exception):
    pass


async def expect(response: aiohttp.ClientResponse, status: int) -> bytes:
    body = await response.read()
    if response.status != status:
        raise Failures(f"{response.method} {response.url.path}: {response.status} {body[:300]!r}")
    return body
