"""What a bench run leaves behind: a Markdown table on stdout and the same numbers as JSON.

The JSON carries the machine and the settings too, because a timing means nothing without the
machine it came from; ``bench/README.md`` explains every column.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from bench.load import Cell


def git_commit(repo: Path) -> str | None:
    """The short commit, or None outside a checkout (a tarball, no git installed)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def machine(repo: Path, postgres_version: str) -> dict[str, Any]:
    cpu_model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgres": postgres_version,
        "git_commit": git_commit(repo),
    }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


HEADER = (
    "| workload | clients | req/s | p50 ms | p95 ms | p99 ms | errors | SQL stmts/req "
    "| PG xacts/req | PG conns/req | server CPU ms/req | PG CPU ms/req | generator CPU "
    "| other CPU |"
)
ALIGN = "| --- |" + " ---: |" * 13


def _row(cell: Cell) -> str:
    lat, cpu, pg = cell.latency_ms, cell.cpu_ms_per_request, cell.pg_per_request
    share = cell.cpu_percent
    return (
        f"| {cell.workload} | {cell.clients} | {_fmt(cell.rps)} | {_fmt(lat['p50'], 2)} "
        f"| {_fmt(lat['p95'], 2)} | {_fmt(lat['p99'], 2)} | {cell.errors} "
        f"| {_fmt(cell.statements_per_request, 2)} | {_fmt(pg['xacts'], 2)} "
        f"| {_fmt(pg['sessions'], 3)} | {_fmt(cpu['server'], 2)} | {_fmt(cpu['postgres'], 2)} "
        f"| {_fmt(share['generator'], 0)}% | {_fmt(share['other'], 0)}% |"
    )


def markdown(cells: Sequence[Cell], meta: dict[str, Any]) -> str:
    m, s = meta["machine"], meta["settings"]
    lines = [
        f"### HMS read benchmark: profile `{s['profile']}` "
        f"({s['hospitals']} hospitals x {s['patients']:,} patients), "
        f"{s['duration']:g}s per row after {s['warmup']:g}s warm-up",
        "",
        f"{m['nproc']} cores ({m['cpu']}), Python {m['python']}, PostgreSQL {m['postgres']}, "
        f"commit {m['git_commit'] or 'unknown'}. The load generator runs on the same cores as the "
        'server and PostgreSQL; "generator" and "other" CPU are % of one core used by it and '
        "by everything else during the row (other > ~10% means a busy machine: rerun). Timings "
        "compare only between runs on the same idle machine; statements per request anywhere.",
        "",
        HEADER,
        ALIGN,
        *(_row(cell) for cell in cells),
    ]
    errors = [f"- {c.workload} x {c.clients}: {e}" for c in cells for e in c.error_samples]
    if errors:
        lines += ["", "Errors (first distinct ones per row):", *errors]
    return "\n".join(lines)


def write_json(directory: Path, profile: str, meta: dict[str, Any], cells: Sequence[Cell]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{profile}-{stamp}.json"
    document = {**meta, "results": [dataclasses.asdict(cell) for cell in cells]}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path
