"""Compiled vs interpreted vs the floor, in one run: ``python -m bench.paths``.

Three servers over the same scratch database, driven by ``hey`` (a compiled load generator,
so the client takes little of the two cores the server and PostgreSQL share):

- ``compiled``: the platform as shipped (``HMS_EXECUTION=compiled``);
- ``interpreted``: the same with ``HMS_EXECUTION=interpreted`` (graphql-core + DataLoaders);
- ``floor``: ``bench/floor.py``, the nested document written by hand as one SQL statement
  behind a bare route with the same token check and transaction: the limit of this stack.

Rows alternate between the servers (A, B, C, A, B, C …) so that a busy moment of the machine
does not land on one of them only. For each row: req/s, p95, server CPU ms per request (user +
system of the server process), and data statements per request (counted in-process for the two
platform modes, as the tests count them; each request also costs BEGIN, the tenant bind and the
transaction's end, i.e. three more round trips).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import orjson
import psutil
import uvloop

from bench import load, report, scratch
from bench.memory import hey
from bench.run import (
    DEFAULT_SERVER,
    NESTED,
    NESTED_N,
    PATIENT,
    ROOT,
    _free_port,
    _wait_healthy,
    count_statements,
)
from bench.scratch import child_env, say
from hms.resolvers.relay import to_global_id

MODES = ("compiled", "interpreted", "floor")
JSON = "application/json"


def command(mode: str, port: int) -> list[str]:
    app = "bench.floor:app" if mode == "floor" else "hms.cli:app_factory"
    return [
        sys.executable, "-m", "uvicorn", "--factory", app, "--host", "127.0.0.1",
        "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
        "--log-level", "warning",
    ]  # fmt: skip


def measure(
    mode: str, url: str, secret: str, token: str, body: bytes, clients: int, seconds: float
) -> dict[str, float]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = child_env(url, secret, HMS_ENV="prod", HMS_EXECUTION=mode if mode != "floor" else "")
    server = subprocess.Popen(command(mode, port), env=env, cwd=ROOT)
    try:
        _wait_healthy_or_floor(base, server, mode)
        process = psutil.Process(server.pid)
        with tempfile.NamedTemporaryFile(suffix=".json") as file:
            file.write(body)
            file.flush()
            hey(f"{base}/graphql", token, Path(file.name), max(200, clients * 20), clients)
            cpu_before = sum(process.cpu_times()[:2])
            result = hey_for(f"{base}/graphql", token, Path(file.name), clients, seconds)
            cpu = sum(process.cpu_times()[:2]) - cpu_before
    finally:
        server.terminate()
        server.wait(timeout=30)
    result["cpu_ms"] = cpu * 1000 / max(result["requests"], 1)
    return result


def _wait_healthy_or_floor(base: str, server: subprocess.Popen[bytes], mode: str) -> None:
    if mode != "floor":
        _wait_healthy(base, server)
        return
    import time

    import httpx

    for _ in range(300):
        try:
            httpx.post(f"{base}/graphql", content=b"{}", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the floor server did not start")


def hey_for(
    url: str,
    token: str,
    body: Path | None,
    clients: int,
    seconds: float,
    headers: Sequence[str] = (),
) -> dict[str, float]:
    """``hey -z``: as many requests as fit in ``seconds``; a POST of ``body``, or a GET."""
    import re

    request = ["-m", "GET"] if body is None else ["-m", "POST", "-T", JSON, "-D", str(body)]
    extra = [flag for header in headers for flag in ("-H", header)]
    output = subprocess.run(
        [
            "hey", "-z", f"{seconds}s", "-c", str(clients), *request,
            "-H", f"Authorization: Bearer {token}", *extra, url,
        ],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p95 = re.search(r"95% in ([\d.]+) secs", output)
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", output))
    if rate is None or p95 is None:
        raise SystemExit(f"cannot read hey's report:\n{output}")
    total = sum(int(n) for n in codes.values())
    return {
        "rps": float(rate.group(1)),
        "p95_ms": float(p95.group(1)) * 1000,
        "requests": total,
        "non_200": total - int(codes.get("200", 0)),
    }


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    cli = argparse.ArgumentParser(prog="python -m bench.paths", description=__doc__.splitlines()[0])
    cli.add_argument("--profile", choices=sorted(scratch.PROFILES), default="small")
    cli.add_argument("--duration", type=float, default=10.0, help="seconds per row")
    cli.add_argument("--rounds", type=int, default=2, help="rounds of A, B, C")
    cli.add_argument("--database-url", default=DEFAULT_SERVER)
    return cli.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    ready = scratch.setup(args.database_url, args.profile, needs_hey=True)
    secret, seed, target, token = ready.secret, ready.seed, ready.target, ready.token
    nested = orjson.dumps({"query": NESTED, "variables": {"n": NESTED_N}})
    one = orjson.dumps(
        {"query": PATIENT, "variables": {"id": to_global_id("Patient", target.patient_ids[0])}}
    )
    work = [load.Workload(name="nested", bodies=[nested], check=lambda _data: True)]
    statements = {
        mode: uvloop.run(count_statements(seed.url, secret, token, work, execution=mode))
        for mode in ("compiled", "interpreted")
    }
    rows: list[tuple[str, str, int, dict[str, float]]] = []
    for name, body, modes in (
        (f"nested n={NESTED_N}", nested, MODES),
        ("patient(id)", one, MODES[:2]),
    ):
        for clients in (1, 16):
            for round_ in range(args.rounds):
                for mode in modes:
                    say(f"{name} x {clients} clients, {mode}, round {round_ + 1}")
                    result = measure(mode, seed.url, secret, token, body, clients, args.duration)
                    rows.append((name, mode, clients, result))
    print(
        f"\nprofile {args.profile}, {args.duration:g} s per row, {args.rounds} rounds, hey, "
        f"commit {report.git_commit(ROOT)}; nested statements per request: "
        f"compiled {statements['compiled']['nested']:.0f}, "
        f"interpreted {statements['interpreted']['nested']:.0f}, floor 1\n"
    )
    print("| workload | clients | path | req/s | p95 ms | server CPU ms/req | non-200 |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for name, mode, clients, r in rows:
        print(
            f"| {name} | {clients} | {mode} | {r['rps']:.1f} | {r['p95_ms']:.1f} "
            f"| {r['cpu_ms']:.2f} | {r['non_200']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
