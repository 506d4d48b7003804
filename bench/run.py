"""``make bench``: start the stack, run the scenarios, print the table, write the results.

    python -m bench [SCENARIO ...] [--scale S] [--no-docs] [--keep] [--convoys N]

``BENCH_SCALE`` (or ``--scale``) sizes every scenario: 1, the default, is the size issue #9 names
(1,000 convoys fan-out, 100,000 convoys in the scheduler, 60 s of latency load, …) and takes about
8 minutes on 2 cores; 0.1 is a quick look (about 2 minutes). Results go to
bench/results/<scenario>.json; docs/performance.md gets the table between its markers.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import uvloop

from bench import stack as stack_mod
from bench.measure import Result, Row
from bench.scenarios import ORDER

DEFAULT_SCALE = 1.0
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit == "ratio":
        return f"{value:.2f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(rows: list[Row]) -> str:
    lines = [
        "| scenario | measure | Convoy | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        convoy = f"{fmt(r.convoy)} {r.unit}".strip()
        base = f"{fmt(r.baseline)} {r.unit if r.unit not in ('', 'ratio') else ''}".strip() if r.baseline else "—"
        note = f" ({r.note})" if r.note else ""
        lines.append(
            f"| {r.scenario} | {r.measure}{note} | {convoy} | {base} | {fmt(r.ratio, 'ratio')} | {r.target} | {met} |"
        )
    return "\n".join(lines)


def write_doc(results: list[Result], info: dict[str, Any], elapsed: float) -> None:
    rows = [row for res in results for row in res.rows]
    cpu_lines = []
    for res in results:
        cpu = res.cpu_seconds
        top = ", ".join(f"{k} {v:.0f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v >= 0.5)
        runner = cpu.get("runner", 0.0)
        share = runner / res.wall_seconds * 100 if res.wall_seconds else 0
        cpu_lines.append(
            f"| {res.scenario} | {res.wall_seconds:.0f} s | {runner:.0f} s ({share:.0f} % of one core) | {top} |"
        )
    block = "\n".join(
        [
            BEGIN,
            f"Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `BENCH_SCALE={results[0].scale if results else ''}`,"
            f" {elapsed / 60:.1f} minutes in all.",
            "",
            f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB RAM, Linux {info['kernel']},"
            f" Python {info['python']}; load average before the run {info['load_before']}.",
            "",
            table(rows),
            "",
            "CPU seconds per process during each scenario (the runner is the load generator, with the setup):",
            "",
            "| scenario | wall | runner (load generator) | every process (s of CPU) |",
            "|---|---|---|---|",
            *cpu_lines,
            END,
        ]
    )
    text = DOC.read_text() if DOC.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)


async def main_async(names: list[str], scale: float, docs: bool, keep: bool, convoys: int | None = None) -> int:
    info = machine()
    print(f"convoy bench: scale {scale}, scenarios {', '.join(names)}; starting the stack ...", flush=True)
    begin = time.perf_counter()
    stack = await stack_mod.start()
    results: list[Result] = []
    try:
        for name in names:
            module = importlib.import_module(f"bench.scenarios.{name}")
            print(f"-- {name} ...", flush=True)
            sized = convoys is not None and "convoys" in inspect.signature(module.run).parameters
            result: Result = await (module.run(stack, scale, convoys=convoys) if sized else module.run(stack, scale))
            results.append(result)
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / f"{name}.json").write_text(
                json.dumps(result.as_dict() | {"machine": info}, indent=2, default=str) + "\n"
            )
            print(table(result.rows), flush=True)
    finally:
        await stack_mod.stop(stack, keep=keep)
        if keep:
            print(f"kept {stack.folder}", flush=True)
    elapsed = time.perf_counter() - begin
    print("\n" + table([r for res in results for r in res.rows]), flush=True)
    print(f"\n{elapsed / 60:.1f} minutes; results in {RESULTS}", flush=True)
    if docs and results:
        write_doc(results, info, elapsed)
        print(f"updated {DOC}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", choices=[*ORDER, []], help="default: all, in order")
    parser.add_argument("--scale", type=float, default=float(os.environ.get("BENCH_SCALE", DEFAULT_SCALE)))
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/performance.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data)")
    parser.add_argument(
        "--convoys", type=int, default=None, help="scheduler: this many convoys (a fifth due at the slot), any scale"
    )
    args = parser.parse_args(argv)
    names = [n for n in ORDER if n in args.scenarios] if args.scenarios else list(ORDER)
    return uvloop.run(main_async(names, args.scale, not args.no_docs, args.keep, args.convoys))


if __name__ == "__main__":
    sys.exit(main())
