"""The write benchmark: ``python -m bench.writes [--profile small] [--duration 10] [--clients 16]``.

A booking desk under load: each client books a random slot of one of a few practitioners,
then sometimes reschedules it (with the version the booking returned) and sometimes cancels it.
Few practitioners and a narrow window make clients collide on purpose, so the exclusion
constraint decides and SLOT_TAKEN is part of the mix. Reports mutations/s, latency percentiles
per mutation and overall, and the conflict rate. Same scratch database and server as
:mod:`bench.run`; bookings go to a window far in the future, new for every run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import datetime as dt
import random
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import httpx
import orjson
import uvloop

from bench import load, scratch
from bench.run import DEFAULT_SERVER, _free_port, _seconds, _terminate, server_command, serving
from bench.scratch import child_env, say
from hms.resolvers.relay import to_global_id

PRACTITIONERS = 4
SLOTS_PER_DAY = 16  # 30-minute slots, 08:00-16:00
DAYS = 5
USER_ERRORS = "userErrors { code }"
SCHEDULE = (
    "mutation($input: ScheduleAppointmentInput!) { scheduleAppointment(input: $input) {"
    f" appointment {{ id version }} {USER_ERRORS} }} }}"
)
RESCHEDULE = (
    "mutation($input: RescheduleAppointmentInput!) { rescheduleAppointment(input: $input) {"
    f" appointment {{ id version }} {USER_ERRORS} }} }}"
)
CANCEL = (
    "mutation($input: CancelAppointmentInput!) { cancelAppointment(input: $input) {"
    f" appointment {{ id version }} {USER_ERRORS} }} }}"
)


@dataclasses.dataclass
class Tally:
    latencies: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )
    outcomes: collections.Counter[tuple[str, str]] = dataclasses.field(
        default_factory=collections.Counter
    )
    failures: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Desk:
    """What the clients book with: the hospital's first practitioners and patients, a window."""

    practitioner_ids: list[str]
    patient_ids: list[str]
    window_start: dt.datetime

    def slot(self, rng: random.Random) -> tuple[str, str, str]:
        day, slot = rng.randrange(DAYS), rng.randrange(SLOTS_PER_DAY)
        start = self.window_start + dt.timedelta(days=day, hours=8, minutes=30 * slot)
        end = start + dt.timedelta(minutes=30)
        return rng.choice(self.practitioner_ids), start.isoformat(), end.isoformat()


async def desk(url: str, hospital_id: uuid.UUID) -> Desk:
    conn = await asyncpg.connect(url)
    try:
        practitioners = await conn.fetch(
            "SELECT id FROM practitioner WHERE hospital_id = $1 ORDER BY id LIMIT $2",
            hospital_id,
            PRACTITIONERS,
        )
        patients = await conn.fetch(
            "SELECT id FROM patient WHERE hospital_id = $1 ORDER BY id LIMIT 200", hospital_id
        )
        # A fresh window per run: after every earlier run's bookings and the seed's schedule.
        latest = await conn.fetchval("SELECT max(end_at) FROM appointment") or dt.datetime.now(
            dt.UTC
        )
    finally:
        await conn.close()
    start = (latest + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return Desk(
        [to_global_id("Practitioner", r["id"]) for r in practitioners],
        [to_global_id("Patient", r["id"]) for r in patients],
        start,
    )


async def _mutate(
    client: httpx.AsyncClient, tally: Tally, name: str, query: str, input_: dict[str, Any]
) -> dict[str, Any] | None:
    """Run one mutation; record its latency and outcome; return the payload."""
    started = time.perf_counter()
    try:
        response = await client.post(
            "/graphql", content=orjson.dumps({"query": query, "variables": {"input": input_}})
        )
    except httpx.HTTPError as error:
        tally.failures.append(f"{name}: {type(error).__name__}")
        return None
    tally.latencies[name].append(time.perf_counter() - started)
    body = response.json() if response.status_code == 200 else {}
    if "errors" in body or "data" not in body:
        tally.failures.append(f"{name}: HTTP {response.status_code} {response.text[:160]}")
        return None
    payload: dict[str, Any] = next(iter(body["data"].values()))
    codes = [e["code"] for e in payload["userErrors"]]
    tally.outcomes[(name, codes[0] if codes else "OK")] += 1
    return payload


async def _client(
    client: httpx.AsyncClient, the_desk: Desk, deadline: float, rng: random.Random, tally: Tally
) -> None:
    while time.perf_counter() < deadline:
        practitioner, start, end = the_desk.slot(rng)
        booked = await _mutate(
            client,
            tally,
            "schedule",
            SCHEDULE,
            {
                "patientId": rng.choice(the_desk.patient_ids),
                "practitionerId": practitioner,
                "startAt": start,
                "endAt": end,
            },
        )
        if booked is None or booked["appointment"] is None:
            continue
        appointment = booked["appointment"]
        if rng.random() < 0.5:
            _, new_start, new_end = the_desk.slot(rng)
            moved = await _mutate(
                client,
                tally,
                "reschedule",
                RESCHEDULE,
                {
                    "id": appointment["id"],
                    "expectedVersion": appointment["version"],
                    "startAt": new_start,
                    "endAt": new_end,
                },
            )
            if moved is not None and moved["appointment"] is not None:
                appointment = moved["appointment"]
        if rng.random() < 0.5:
            await _mutate(
                client,
                tally,
                "cancel",
                CANCEL,
                {
                    "id": appointment["id"],
                    "reason": "bench",
                    "expectedVersion": appointment["version"],
                },
            )


async def drive(base_url: str, token: str, the_desk: Desk, clients: int, seconds: float) -> Tally:
    tally = Tally()
    async with load.Clients(base_url, token, clients) as pool:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(
            *(
                _client(client, the_desk, deadline, random.Random(i), tally)
                for i, client in enumerate(pool.clients)
            )
        )
    return tally


def _ms(values: Sequence[float], p: float) -> str:
    return f"{1000 * load.percentile(sorted(values), p):,.1f}" if values else "-"


def report(tally: Tally, seconds: float, clients: int) -> str:
    everything = [v for values in tally.latencies.values() for v in values]
    total = len(everything)
    taken = sum(n for (_, code), n in tally.outcomes.items() if code == "SLOT_TAKEN")
    lines = [
        f"write mix, {clients} clients, {seconds:g}s: {total / seconds:,.1f} mutations/s, "
        f"p50 {_ms(everything, 50)} ms, p95 {_ms(everything, 95)} ms, "
        f"p99 {_ms(everything, 99)} ms, conflict rate {taken / max(total, 1):.1%}, "
        f"failures {len(tally.failures)}",
        "",
        "| mutation | count | p50 ms | p95 ms | outcomes |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, values in tally.latencies.items():
        outcomes = ", ".join(
            f"{code} {n}" for (kind, code), n in sorted(tally.outcomes.items()) if kind == name
        )
        lines.append(
            f"| {name} | {len(values):,} | {_ms(values, 50)} | {_ms(values, 95)} | {outcomes} |"
        )
    lines.extend(f"failure: {f}" for f in tally.failures[:5])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    cli = argparse.ArgumentParser(
        prog="python -m bench.writes", description=__doc__.splitlines()[0]
    )
    cli.add_argument("--profile", choices=sorted(scratch.PROFILES), default="small")
    cli.add_argument("--duration", type=_seconds, default=10.0)
    cli.add_argument("--clients", type=int, default=16)
    cli.add_argument("--database-url", default=DEFAULT_SERVER)
    args = cli.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    ready = scratch.setup(args.database_url, args.profile)
    secret, seed, target, token = ready.secret, ready.seed, ready.target, ready.token
    the_desk = asyncio.run(desk(seed.url, target.hospital_id))
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    with serving(server_command(port), child_env(seed.url, secret, HMS_ENV="prod"), base_url):
        say(f"write mix: {args.clients} clients for {args.duration:g}s")
        tally = uvloop.run(drive(base_url, token, the_desk, args.clients, args.duration))
    print(report(tally, args.duration, args.clients))
    return 1 if tally.failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("interrupted")
        sys.exit(130)
