"""Reads with a streaming replica: read-your-writes misses, and reads per second with and without.

Builds a dedicated primary and hot standby (tests/replication.py: ``pg_basebackup`` of a fresh
primary, the test dataset loaded) and runs the real server, two workers with Redis:

1. **Read-your-writes.** A booking-then-read loop: each round books an appointment
   (``scheduleAppointment``) and at once reads it back by id as the same user; a miss is a read
   that does not find it. Run with replay running, then with replay paused (the worst lag).
   Where the reads went comes from the server's ``hms_db_reads_total``.
2. **Reads per second.** ``hey`` on the patient list with the replica configured and without it,
   rounds interleaved.

    .venv/bin/python -m bench.replicas --bookings 200 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx
import orjson

from bench.paths import hey_for
from bench.run import ROOT, _free_port, _wait_healthy
from hms.resolvers.relay import to_global_id
from hms.security.tokens import issue
from tests.replication import ReplicaPair, streaming_pair

REDIS = "redis://127.0.0.1:6379/0"
BOOK = """
mutation Book($input: ScheduleAppointmentInput!) {
  scheduleAppointment(input: $input) { appointment { id } userErrors { code } }
}
"""
READ = "query Read($id: ID!) { node(id: $id) { ... on Appointment { id status } } }"
LIST = "{ patients(first: 20) { edges { node { id mrn familyName } } } }"


def _serve(pair: ReplicaPair, secret: str, replica: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HMS_")}
    env |= {
        "HMS_ENV": "prod",
        "HMS_DATABASE_URL": pair.primary_url,
        "HMS_JWT_SECRET": secret,
        "HMS_REDIS_URL": REDIS,
        "HMS_PORT": str(port),
        "HMS_WORKERS": "2",
        "HMS_LOG_LEVEL": "warning",
        "HMS_COST_BUDGETS": "default=1000000000/1000000000",
        "HMS_HOSPITAL_COST_BUDGET": "1000000000/1000000000",
    }
    if replica:
        env["HMS_DATABASE_REPLICA_URLS"] = pair.standby_url
    server = subprocess.Popen([sys.executable, "-m", "hms.cli", "serve"], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    _wait_healthy(base, server, timeout=60)
    return server, base


def _reads(base: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith("hms_db_reads_total{"):
            target = line.split('target="', 1)[1].split('"', 1)[0]
            found[target] = found.get(target, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def bookings(pair: ReplicaPair, secret: str, rounds: int, start: dt.datetime) -> dict[str, float]:
    hospital = pair.dataset.alpha
    token = issue(secret, subject="booker", hospital_id=hospital.id, roles=["front_desk"])
    headers = {"Authorization": f"Bearer {token}"}
    server, base = _serve(pair, secret, replica=True)
    misses = 0
    try:
        before = _reads(base)
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            for n in range(rounds):
                begin = start + dt.timedelta(minutes=30 * n)
                variables = {
                    "input": {
                        "patientId": to_global_id("Patient", hospital.patients[n % 20]),
                        "practitionerId": to_global_id(
                            "Practitioner", hospital.practitioners[n % len(hospital.practitioners)]
                        ),
                        "startAt": begin.isoformat(),
                        "endAt": (begin + dt.timedelta(minutes=20)).isoformat(),
                    }
                }
                made = http.post("/graphql", json={"query": BOOK, "variables": variables}).json()
                payload = made["data"]["scheduleAppointment"]
                if payload["userErrors"]:
                    raise SystemExit(f"booking refused: {payload['userErrors']}")
                pk = payload["appointment"]["id"]
                read = http.post("/graphql", json={"query": READ, "variables": {"id": pk}}).json()
                if read["data"]["node"] is None:
                    misses += 1
        after = _reads(base)
    finally:
        server.terminate()
        server.wait(timeout=30)
    moved = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    return {"bookings": rounds, "misses": misses, **{f"reads_{k}": v for k, v in moved.items()}}


def throughput(pair: ReplicaPair, secret: str, replica: bool, seconds: float) -> dict[str, float]:
    token = issue(secret, subject="reader", hospital_id=pair.dataset.alpha.id, roles=["clinician"])
    server, base = _serve(pair, secret, replica)
    try:
        with tempfile.NamedTemporaryFile(suffix=".json") as body:
            body.write(orjson.dumps({"query": LIST}))
            body.flush()
            hey_for(f"{base}/graphql", token, Path(body.name), 16, 2.0)
            result = hey_for(f"{base}/graphql", token, Path(body.name), 16, seconds)
            result |= {f"reads_{k}": v for k, v in _reads(base).items()}
            return result
    finally:
        server.terminate()
        server.wait(timeout=30)


async def run(args: argparse.Namespace) -> None:
    secret = secrets.token_urlsafe(32)
    async with streaming_pair() as pair:
        start = dt.datetime(2030, 1, 7, 8, tzinfo=dt.UTC)
        flowing = await asyncio.to_thread(bookings, pair, secret, args.bookings, start)
        print(f"replay running: {flowing}", flush=True)
        await pair.pause_replay()
        later = start + dt.timedelta(days=365)
        paused = await asyncio.to_thread(bookings, pair, secret, args.bookings, later)
        print(f"replay paused:  {paused}", flush=True)
        await pair.resume_replay()
        await pair.wait_replayed()
        print("| round | replica | req/s | p95 ms | reads on replica |")
        print("| ---: | --- | ---: | ---: | ---: |")
        for round_ in range(1, args.rounds + 1):
            for replica in (False, True):
                r = await asyncio.to_thread(throughput, pair, secret, replica, args.duration)
                print(
                    f"| {round_} | {'yes' if replica else 'no'} | {r['rps']:.1f}"
                    f" | {r['p95_ms']:.1f} | {r.get('reads_replica', 0):.0f} |",
                    flush=True,
                )


def main(argv: Sequence[str] | None = None) -> int:
    cli = argparse.ArgumentParser(
        prog="python -m bench.replicas", description=__doc__.splitlines()[0]
    )
    cli.add_argument("--bookings", type=int, default=200)
    cli.add_argument("--rounds", type=int, default=2)
    cli.add_argument("--duration", type=float, default=10.0)
    asyncio.run(run(cli.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
