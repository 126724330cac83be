"""The reference-data cache: hit ratio on a replayed mix, and what a hit saves.

1. **Hit ratio.** A replayed mix of the reference reads a front end makes (practitioner pages
   of 10, 20 and 50, the caller's hospital; both hospitals of the scratch database; 40 users,
   as admins, clinicians or the front desk), in a fixed random order, against one server with
   Redis; the ratio comes from the server's own ``hms_cache_requests_total{name="reference"}``
   after a warm-up of one pass.
2. **Request rate.** ``hey`` on the 50-practitioner page with the cache on and off
   (``HMS_RESPONSE_CACHE``), rounds interleaved.

    .venv/bin/python -m bench.cache --profile medium --requests 3000 --rounds 2
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx
import orjson

from bench import scratch
from bench.cost import server_env
from bench.paths import hey_for
from bench.run import DEFAULT_SERVER, ROOT, _free_port, _wait_healthy, server_command
from bench.scratch import child_env
from hms.security.tokens import issue

STAFF = (
    "query Staff($n: Int!) { practitioners(first: $n)"
    " { edges { node { id familyName specialty } } } }"
)
HOSPITAL = "query Home { viewer { hospital { slug name timezone } } }"
ROLES = ("admin", "clinician", "front_desk")


def _serve(url: str, secret: str, cache: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = child_env(url, secret, **server_env(), HMS_RESPONSE_CACHE="on" if cache else "off")
    server = subprocess.Popen(server_command(port), env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    _wait_healthy(base, server)
    return server, base


def _reference_counts(base: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith("hms_cache_requests_total{") and 'name="reference"' in line:
            result = line.split('result="', 1)[1].split('"', 1)[0]
            counts[result] = counts.get(result, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def hit_ratio(
    url: str, secret: str, hospitals: Sequence[uuid.UUID], requests: int
) -> dict[str, float]:
    rng = random.Random(7)
    callers = [
        issue(secret, subject=f"user-{i}", hospital_id=h, roles=[ROLES[i % len(ROLES)]])
        for i in range(40)
        for h in hospitals
    ]
    mix = [(STAFF, {"n": n}) for n in (10, 20, 50)] + [(HOSPITAL, {})]
    server, base = _serve(url, secret, cache=True)
    try:
        with httpx.Client(base_url=base, timeout=30) as http:

            def replay(count: int) -> None:
                for _ in range(count):
                    query, variables = rng.choice(mix)
                    bearer = rng.choice(callers)
                    response = http.post(
                        "/graphql",
                        json={"query": query, "variables": variables},
                        headers={"Authorization": f"Bearer {bearer}"},
                    )
                    if response.status_code != 200 or "errors" in response.json():
                        raise SystemExit(f"unexpected answer: {response.text[:300]}")

            replay(len(mix) * len(hospitals) * len(ROLES))  # warm-up: one pass of the variants
            before = _reference_counts(base)
            replay(requests)
            after = _reference_counts(base)
    finally:
        server.terminate()
        server.wait(timeout=30)
    gained = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    hits = gained.get("hit_l1", 0.0) + gained.get("hit_l2", 0.0)
    looked = hits + gained.get("miss", 0.0) + gained.get("fallback", 0.0)
    return {"requests": requests, "hits": hits, "ratio": hits / looked if looked else 0.0}


def throughput(url: str, secret: str, token: str, cache: bool, seconds: float) -> dict[str, float]:
    server, base = _serve(url, secret, cache)
    try:
        with tempfile.NamedTemporaryFile(suffix=".json") as body:
            body.write(orjson.dumps({"query": STAFF, "variables": {"n": 50}}))
            body.flush()
            hey_for(f"{base}/graphql", token, Path(body.name), 16, 2.0)
            return hey_for(f"{base}/graphql", token, Path(body.name), 16, seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv: Sequence[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m bench.cache", description=__doc__.splitlines()[0])
    cli.add_argument("--profile", choices=sorted(scratch.PROFILES), default="small")
    cli.add_argument("--requests", type=int, default=3000)
    cli.add_argument("--rounds", type=int, default=2)
    cli.add_argument("--duration", type=float, default=10.0)
    cli.add_argument("--database-url", default=DEFAULT_SERVER)
    args = cli.parse_args(argv)
    setup = scratch.setup(args.database_url, args.profile, needs_hey=True)
    import asyncio

    import asyncpg

    async def hospital_ids() -> list[uuid.UUID]:
        conn = await asyncpg.connect(setup.seed.url)
        try:
            return [r["id"] for r in await conn.fetch("SELECT id FROM hospital ORDER BY slug")]
        finally:
            await conn.close()

    ratio = hit_ratio(setup.seed.url, setup.secret, asyncio.run(hospital_ids()), args.requests)
    print(
        f"hit ratio after warm-up: {ratio['ratio']:.4f}"
        f" ({ratio['hits']:.0f} hits in {ratio['requests']} requests)",
        flush=True,
    )
    print("| round | cache | req/s | p95 ms | non-200 |\n| ---: | --- | ---: | ---: | ---: |")
    for round_ in range(1, args.rounds + 1):
        for cache in (False, True):
            r = throughput(setup.seed.url, setup.secret, setup.token, cache, args.duration)
            state = "on" if cache else "off"
            print(
                f"| {round_} | {state} | {r['rps']:.1f} | {r['p95_ms']:.1f} | {r['non_200']:.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
