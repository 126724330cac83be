"""What cost limits cost, and what the worst admitted document costs: ``python -m bench.cost``.

Three parts, on the bench's scratch database and the real server (``HMS_ENV=prod``, Redis):

1. **Worst admitted documents.** Documents written to be as expensive as the default limits
   allow (cost 1000, depth 12, 30 aliases, 10 root fields) in different ways — many rows, many
   full-table counts, filtered scans, deep chains. Each is costed with the server's own model
   (and must be admitted), then run ``--runs`` times by one client: server CPU and PostgreSQL
   CPU per request (every ``postgres`` process of the machine, so background work counts
   too), wall time, the server's peak RSS growth, and the answer's size.
2. **The attack.** The issue's five-level document: refused before any SQL, and how long the
   refusal takes.
3. **Overhead.** The cost step's own time, in process: a cold formula (first sight of a
   document), a cached formula evaluated for new variables, counting the answer's actual cost
   from its text, and a Redis reservation plus refund — next to what a whole request costs.
   With ``--checkout DIR`` (a worktree of the commit before cost limits) the two servers also
   run the dashboard and the one-patient lookup with ``hey``, 16 clients, rows interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import redis.asyncio as redis
from graphql import OperationDefinitionNode, parse
from graphql.execution.values import get_variable_values

from bench import report, scratch
from bench.paths import hey_for
from bench.run import (
    DEFAULT_SERVER,
    NESTED,
    NESTED_N,
    PATIENT,
    ROOT,
    _free_port,
    _wait_healthy,
    server_command,
)
from bench.scratch import child_env, say
from hms.limits.budget import Rate, RedisBudgets
from hms.limits.cost import CostModel, rules_from_sdl
from hms.resolvers.relay import to_global_id
from hms.schema import schema
from hms.settings import Settings

REDIS = "redis://127.0.0.1:6379/0"
MIB = 1024 * 1024
SHIPPED = Settings()


def worst_documents() -> dict[str, str]:
    """Documents at the limits, each expensive in its own way."""
    roots = SHIPPED.max_root_fields
    page = SHIPPED.max_cost // roots - 2  # each root: the connection, its count, its nodes
    stats = [f"s{i}: patientStats {{ total active newLast30Days }}" for i in range(roots - 1)]
    return {
        # 1 + 100 * (1 + 1 + 7) = 901 rows, then nine aggregates: 991.
        "most rows": "{ patients(first: 100) { edges { node { mrn appointments(first: 7) {"
        " edges { node { startAt reason } } } } } } " + " ".join(stats) + " }",
        # Every root a count of the biggest table's filtered rows: 10 * 2.
        f"{roots} full counts": "{ "
        + " ".join(
            f"c{i}: appointments(filter: {{status: [BOOKED, FULFILLED, NOSHOW]}}) {{ totalCount }}"
            for i in range(roots)
        )
        + " }",
        # Filtered, re-ordered pages no index serves, with their counts: 10 * (1 + 1 + 98).
        f"{roots} filtered patient scans": "{ "
        + " ".join(
            f'p{i}: patients(first: {page}, filter: {{namePrefix: "%{i}"}},'
            " orderBy: {field: CREATED_AT, direction: DESC})"
            " { totalCount edges { node { mrn familyName } } }"
            for i in range(roots)
        )
        + " }",
        # The same on appointments (five times the rows): a rare status, newest first.
        f"{roots} filtered appointment scans": "{ "
        + " ".join(
            f"a{i}: appointments(first: {page}, filter: {{status: [ENTERED_IN_ERROR]}},"
            " orderBy: {direction: DESC}) { totalCount edges { node { startAt } } }"
            for i in range(roots)
        )
        + " }",
        # Aggregates over every patient: 10 * 10.
        f"{roots} stats": "{ "
        + " ".join(f"s{i}: patientStats {{ total active newLast30Days }}" for i in range(roots))
        + " }",
        # Appointments with both of their people: 3 * (1 + 100 * 3) = 903.
        "3 x 100 appointments": "{ "
        + " ".join(
            f"a{i}: appointments(first: 100, orderBy: {{direction: DESC}}) {{ edges {{ node {{"
            " startAt patient { mrn familyName } practitioner { familyName } } } }"
            for i in range(3)
        )
        + " }",
        # Depth 11: 9 patients, 9 appointments each, their patient, 8 appointments, a count: 991.
        "deep chain": "{ patients(first: 9) { edges { node { appointments(first: 9) { edges {"
        " node { patient { appointments(first: 8) { totalCount edges { node { id } } } } } } }"
        " } } } }",
    }


ATTACK_LEVELS = 5


def attack() -> str:
    inner = "id"
    for _ in range(ATTACK_LEVELS):
        inner = f"appointments(first: 100) {{ edges {{ node {{ patient {{ {inner} }} }} }} }}"
    return f"{{ patients(first: 100) {{ edges {{ node {{ {inner} }} }} }} }}"


def model() -> CostModel:
    return CostModel(
        schema._schema, rules_from_sdl(schema.as_str()), max_page_size=SHIPPED.max_page_size
    )


def shape(costs: CostModel, query: str, variables: dict[str, Any] | None = None) -> dict[str, int]:
    document = parse(query)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    coerced = get_variable_values(
        schema._schema, operation.variable_definitions or (), variables or {}
    )
    assert not isinstance(coerced, list), coerced
    formula = costs.formula(document, operation, coerced)
    return {
        "cost": formula.cost(coerced.coerced),
        "depth": formula.depth,
        "aliases": formula.aliases,
        "root fields": formula.root_fields,
    }


def admitted(figures: dict[str, int]) -> bool:
    return (
        figures["cost"] <= SHIPPED.max_cost
        and figures["depth"] <= SHIPPED.max_depth
        and figures["aliases"] <= SHIPPED.max_aliases
        and figures["root fields"] <= SHIPPED.max_root_fields
    )


def postgres_cpu() -> float:
    total = 0.0
    for process in psutil.process_iter(["name"]):
        if process.info["name"] and process.info["name"].startswith("postgres"):
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                continue
    return total


class PeakRss:
    """The highest RSS of a process while the block runs (sampled every 5 ms)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRss:
        self.start = self.process.memory_info().rss
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()


def run_worst(base: str, pid: int, token: str, runs: int) -> list[dict[str, Any]]:
    costs = model()
    process = psutil.Process(pid)
    headers = {"authorization": f"Bearer {token}"}
    rows = []
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        for name, query in worst_documents().items():
            figures = shape(costs, query)
            if not admitted(figures):
                raise SystemExit(f"{name} is not admitted by the shipped limits: {figures}")
            first = http.post("/graphql", json={"query": query})  # warm: plans, documents
            body = first.json()
            if first.status_code != 200 or "errors" in body:
                raise SystemExit(f"{name} failed: {first.status_code} {first.text[:300]}")
            server_before, pg_before = sum(process.cpu_times()[:2]), postgres_cpu()
            walls = []
            with PeakRss(pid) as rss:
                for _ in range(runs):
                    started = time.perf_counter()
                    answer = http.post("/graphql", json={"query": query})
                    walls.append(time.perf_counter() - started)
                    assert answer.status_code == 200
            server = sum(process.cpu_times()[:2]) - server_before
            pg = postgres_cpu() - pg_before
            rows.append(
                {
                    "name": name,
                    **figures,
                    "actual": body["extensions"]["cost"]["actualQueryCost"],
                    "server_cpu_ms": server * 1000 / runs,
                    "pg_cpu_ms": pg * 1000 / runs,
                    "wall_ms": sorted(walls)[len(walls) // 2] * 1000,
                    "peak_rss_growth_mib": (rss.peak - rss.start) / MIB,
                    "kib": len(answer.content) / 1024,
                }
            )
    return rows


def run_attack(base: str, token: str) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        walls = []
        for _ in range(20):
            started = time.perf_counter()
            answer = http.post("/graphql", json={"query": attack()})
            walls.append(time.perf_counter() - started)
    error = answer.json()["errors"][0]
    return {
        "status": answer.status_code,
        "code": error["extensions"]["code"],
        "cost": error["extensions"]["cost"],
        "bytes": len(attack()),
        "wall_ms": sorted(walls)[len(walls) // 2] * 1000,
    }


def timed(work: Callable[[], object], repeat: int) -> float:
    """Microseconds per call (the best of three batches)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeat):
            work()
        best = min(best, (time.perf_counter() - started) / repeat)
    return best * 1e6


def micro(answer: bytes) -> dict[str, float]:
    document = parse(NESTED)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    coerced = get_variable_values(
        schema._schema, operation.variable_definitions or (), {"n": NESTED_N}
    )
    assert not isinstance(coerced, list)
    warm = model()
    formula = warm.formula(document, operation, coerced)
    rules = warm.rules

    def cold() -> None:
        CostModel(schema._schema, rules, max_page_size=100).formula(
            document, operation, coerced
        ).cost(coerced.coerced)

    def cached() -> None:
        values = get_variable_values(
            schema._schema, operation.variable_definitions or (), {"n": 50}
        )
        assert not isinstance(values, list)
        warm.formula(document, operation, values).cost(values.coerced)

    data = orjson.dumps(orjson.loads(answer)["data"])
    figures = {
        "cold formula + cost": timed(cold, 200),
        "cached formula + cost (with variable coercion)": timed(cached, 5000),
        "actual cost from the answer's text": timed(
            lambda: formula.actual_text(data, coerced.coerced), 5000
        ),
        "decoding the answer instead (orjson)": timed(lambda: orjson.loads(data), 2000),
    }
    figures["Redis reserve + refund (one round trip each)"] = asyncio.run(_redis_round_trips())
    return figures


async def _redis_round_trips() -> float:
    client = redis.Redis.from_url(REDIS)
    budgets = RedisBudgets(client, prefix=f"bench-{secrets.token_hex(4)}:")
    rates = (Rate(1e9, 1e9), Rate(1e9, 1e9))
    try:
        for _ in range(100):
            await budgets.reserve("caller", "hospital", 801, rates, force=False)
        started = time.perf_counter()
        for _ in range(2000):
            await budgets.reserve("caller", "hospital", 801, rates, force=False)
            await budgets.refund("caller", "hospital", 300, rates)
        return (time.perf_counter() - started) / 2000 * 1e6
    finally:
        await client.aclose()


def ab(
    checkout: Path, url: str, secret: str, token: str, one: str, rounds: int, seconds: float
) -> list[tuple[str, str, dict[str, float]]]:
    bodies = {
        f"nested n={NESTED_N}": orjson.dumps({"query": NESTED, "variables": {"n": NESTED_N}}),
        "patient(id)": orjson.dumps({"query": PATIENT, "variables": {"id": one}}),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, body in bodies.items():
            path = Path(tmp) / "body.json"
            path.write_bytes(body)
            for round_ in range(rounds):
                for label, tree in (("with cost limits", ROOT), ("before", checkout)):
                    say(f"{name}, {label}, round {round_ + 1}")
                    rows.append(
                        (name, label, _serve_and_load(tree, url, secret, token, path, seconds))
                    )
    return rows


def _serve_and_load(
    tree: Path, url: str, secret: str, token: str, body: Path, seconds: float
) -> dict[str, float]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = child_env(url, secret, **server_env(), PYTHONPATH=str(tree))
    server = subprocess.Popen(server_command(port), env=env, cwd=tree)
    try:
        _wait_healthy(base, server)
        process = psutil.Process(server.pid)
        hey_for(f"{base}/graphql", token, body, 16, 2.0)
        before = sum(process.cpu_times()[:2])
        result = hey_for(f"{base}/graphql", token, body, 16, seconds)
        result["cpu_ms"] = (
            (sum(process.cpu_times()[:2]) - before) * 1000 / max(result["requests"], 1)
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return result


def server_env() -> dict[str, str]:
    # Budgets the load cannot exhaust: this measures the step, not the throttling.
    return {
        "HMS_ENV": "prod",
        "HMS_REDIS_URL": REDIS,
        "HMS_COST_BUDGETS": "default=1000000000/1000000000",
        "HMS_HOSPITAL_COST_BUDGET": "1000000000/1000000000",
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    cli = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.splitlines()[0])
    cli.add_argument("--profile", choices=sorted(scratch.PROFILES), default="medium")
    cli.add_argument("--runs", type=int, default=5, help="runs of each worst document")
    cli.add_argument("--checkout", type=Path, help="a worktree of the commit before cost limits")
    cli.add_argument("--rounds", type=int, default=2)
    cli.add_argument("--duration", type=float, default=10.0)
    cli.add_argument("--database-url", default=DEFAULT_SERVER)
    return cli.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ready = scratch.setup(args.database_url, args.profile)
    secret, seed, target, token = ready.secret, ready.seed, ready.target, ready.token
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = child_env(seed.url, secret, **server_env())
    server = subprocess.Popen(server_command(port), env=env, cwd=ROOT)
    try:
        _wait_healthy(base, server)
        worst = run_worst(base, server.pid, token, args.runs)
        refused = run_attack(base, token)
        answer = httpx.post(
            f"{base}/graphql",
            json={"query": NESTED, "variables": {"n": NESTED_N}},
            headers={"authorization": f"Bearer {token}"},
        ).content
    finally:
        server.terminate()
        server.wait(timeout=30)
    timings = micro(answer)
    one = to_global_id("Patient", target.patient_ids[0])
    compared = (
        ab(args.checkout, seed.url, secret, token, one, args.rounds, args.duration)
        if args.checkout
        else []
    )

    print(f"\nprofile {args.profile}, commit {report.git_commit(ROOT)}\n")
    print("| document | cost | actual | depth | aliases | roots | server CPU ms | PG CPU ms"
          " | wall ms | peak RSS +MiB | KiB |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in worst:
        print(
            f"| {r['name']} | {r['cost']} | {r['actual']} | {r['depth']} | {r['aliases']}"
            f" | {r['root fields']} | {r['server_cpu_ms']:.1f} | {r['pg_cpu_ms']:.1f}"
            f" | {r['wall_ms']:.1f} | {r['peak_rss_growth_mib']:.1f} | {r['kib']:.0f} |"
        )
    print(
        f"\nthe {ATTACK_LEVELS}-level attack ({refused['bytes']} bytes): {refused['status']}"
        f" {refused['code']}, estimated cost {refused['cost']:.3g}, answered in"
        f" {refused['wall_ms']:.2f} ms (median of 20), no SQL\n"
    )
    print("| step | µs |\n| --- | ---: |")
    for name, value in timings.items():
        print(f"| {name} | {value:.1f} |")
    if compared:
        print("\n| workload | server | req/s | p95 ms | server CPU ms/req |")
        print("| --- | --- | ---: | ---: | ---: |")
        for name, label, r in compared:
            print(f"| {name} | {label} | {r['rps']:.0f} | {r['p95_ms']:.1f} | {r['cpu_ms']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
