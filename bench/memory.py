"""Memory and garbage collection under load: ``python -m bench.memory``.

Drives the real server (``bench/gcwatch.py``: uvicorn, uvloop, httptools, ``HMS_ENV=prod``) with
``hey`` — a compiled load generator, so the client does not eat the server's CPU — and reports
the server's resident memory before and after N nested-dashboard requests, its CPU per request,
and the share of that CPU the cyclic garbage collector took (timed inside the server with
``gc.callbacks``) with its longest pause.

``--checkout DIR`` runs another checkout's ``hms`` (say, a ``git worktree`` of an older commit)
against the same database; run the two alternately (A, B, A, B) on an idle machine to compare.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
import psutil

from bench import report, scratch
from bench.run import DEFAULT_SERVER, NESTED, NESTED_N, ROOT, _free_port, _wait_healthy
from bench.scratch import child_env, say

MIB = 1024 * 1024


def hey(url: str, token: str, body: Path, requests: int, clients: int) -> dict[str, float]:
    """Run ``hey`` and read req/s, p95 and the count of non-200 answers from its report."""
    output = subprocess.run(
        [
            "hey",
            "-n",
            str(requests),
            "-c",
            str(clients),
            "-m",
            "POST",
            "-T",
            "application/json",
            "-H",
            f"Authorization: Bearer {token}",
            "-D",
            str(body),
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p95 = re.search(r"95% in ([\d.]+) secs", output)
    ok = re.search(r"\[200\]\s+(\d+) responses", output)
    if rate is None or p95 is None:
        raise SystemExit(f"cannot read hey's report:\n{output}")
    return {
        "rps": float(rate.group(1)),
        "p95_ms": float(p95.group(1)) * 1000,
        "non_200": requests - (int(ok.group(1)) if ok else 0),
    }


def measure(
    checkout: Path, url: str, secret: str, token: str, args: argparse.Namespace
) -> dict[str, float]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        stats_path, body = Path(tmp) / "gc.json", Path(tmp) / "body.json"
        body.write_bytes(orjson.dumps({"query": NESTED, "variables": {"n": NESTED_N}}))
        env = child_env(url, secret, HMS_ENV="prod", PYTHONPATH=str(checkout))
        command = [sys.executable, str(ROOT / "bench" / "gcwatch.py"), str(stats_path), str(port)]
        server = subprocess.Popen(command, env=env, cwd=checkout)
        try:
            _wait_healthy(base, server)
            process = psutil.Process(server.pid)
            hey(f"{base}/graphql", token, body, args.warmup, args.clients)
            rss_before = process.memory_info().rss
            cpu_before = sum(process.cpu_times()[:2])
            started = time.monotonic()
            load = hey(f"{base}/graphql", token, body, args.requests, args.clients)
            wall = time.monotonic() - started
            cpu = sum(process.cpu_times()[:2]) - cpu_before
            rss_after = process.memory_info().rss
        finally:
            server.terminate()
            server.wait(timeout=30)
        gc_stats = orjson.loads(stats_path.read_bytes())
    return {
        **load,
        "rss_before_mib": rss_before / MIB,
        "rss_after_mib": rss_after / MIB,
        "growth_kib_per_request": (rss_after - rss_before) / 1024 / args.requests,
        "server_cpu_ms_per_request": cpu * 1000 / args.requests,
        "server_cpu_share": cpu / wall,
        # Over the whole life of the server (warm-up included); the warm-up is short.
        "gc_seconds": gc_stats["seconds"],
        "gc_share_of_cpu": gc_stats["seconds"] / cpu if cpu else 0.0,
        "gc_longest_ms": gc_stats["longest"] * 1000,
        "gc_full_collections": gc_stats["collections"][2],
    }


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    cli = argparse.ArgumentParser(
        prog="python -m bench.memory", description=__doc__.splitlines()[0]
    )
    cli.add_argument("--profile", choices=sorted(scratch.PROFILES), default="small")
    cli.add_argument("--requests", type=int, default=10_000, help="measured requests")
    cli.add_argument("--warmup", type=int, default=500, help="unmeasured requests first")
    cli.add_argument("--clients", type=int, default=16)
    cli.add_argument("--rounds", type=int, default=1, help="A/B rounds with --checkout")
    cli.add_argument(
        "--checkout",
        type=Path,
        help="also measure this checkout's hms, alternating with this one",
    )
    cli.add_argument("--database-url", default=DEFAULT_SERVER)
    return cli.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    ready = scratch.setup(args.database_url, args.profile, needs_hey=True)
    secret, seed, token = ready.secret, ready.seed, ready.token
    checkouts = [("this", ROOT)]
    if args.checkout is not None:
        checkouts.append((args.checkout.name, args.checkout.resolve()))
    rows = []
    for round_ in range(args.rounds):
        for name, path in checkouts:
            say(f"round {round_ + 1}: {name}: {args.requests:,} requests, {args.clients} clients")
            rows.append((name, measure(path, seed.url, secret, token, args)))
    print(
        f"\nnested n={NESTED_N}, profile {args.profile}, {args.requests:,} requests after "
        f"{args.warmup:,} warm-up, {args.clients} clients (hey), commit "
        f"{report.git_commit(ROOT)}\n"
    )
    print(
        "| code | req/s | p95 ms | non-200 | RSS before MiB | RSS after MiB | growth KiB/req "
        "| server CPU ms/req | GC % of server CPU | longest GC pause ms | full collections |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows:
        print(
            f"| {name} | {r['rps']:.1f} | {r['p95_ms']:.0f} | {r['non_200']:.0f} "
            f"| {r['rss_before_mib']:.0f} | {r['rss_after_mib']:.0f} "
            f"| {r['growth_kib_per_request']:.2f} | {r['server_cpu_ms_per_request']:.1f} "
            f"| {100 * r['gc_share_of_cpu']:.1f} | {r['gc_longest_ms']:.1f} "
            f"| {r['gc_full_collections']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
