"""The job benchmark: ``python -m bench.jobs [--profile small] [--duration 10] [--rounds 3]``.

1. **Enqueue overhead on a booking.** The write mix of :mod:`bench.writes` (book, sometimes
   reschedule, sometimes cancel: every one of them enqueues, moves or cancels a reminder) against
   the real server with reminders on and off (``HMS_REMINDERS``), the two alternating round by
   round in one run; mutations/s and latency per mode, and the ratio of the medians.
2. **Jobs/s.** ``--jobs`` due reminders (of booked appointments of the seed) and as many clinical
   jobs, enqueued at once; one ``hms worker`` process drains each backlog while the time is
   taken. Reminders go to a local receiver (uvicorn, answers 204) through the whole path: the
   tenant-bound read, the webhook secret, the signed POST.

Same scratch database as :mod:`bench.run`. The machine's two cores are shared by server, worker,
PostgreSQL and load generator: compare figures of one run, not across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import asyncpg
import uvloop
from pgqueuer.adapters.persistence.queries import Queries

from bench import scratch, writes
from bench.run import DEFAULT_SERVER, _free_port, _seconds, _terminate, server_command, serving
from bench.scratch import child_env, say
from hms.jobs import notify
from hms.persistence import jobs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_mix(
    url: str,
    secret: str,
    token: str,
    the_desk: writes.Desk,
    *,
    reminders: bool,
    seconds: float,
    clients: int,
) -> writes.Tally:
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = child_env(url, secret, HMS_ENV="prod", HMS_REMINDERS="on" if reminders else "off")
    with serving(server_command(port), env, base_url):
        uvloop.run(writes.drive(base_url, token, the_desk, clients, 1.0))  # warm-up
        return uvloop.run(writes.drive(base_url, token, the_desk, clients, seconds))


def _rate(tally: writes.Tally, seconds: float) -> float:
    return sum(len(v) for v in tally.latencies.values()) / seconds


def _p95(tally: writes.Tally) -> float:
    from bench import load

    everything = sorted(v for values in tally.latencies.values() for v in values)
    return 1000 * load.percentile(everything, 95)


@contextmanager
def receiver() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.receiver:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
        ],
        cwd=ROOT,
    )
    try:
        time.sleep(1.5)
        yield f"http://127.0.0.1:{port}/hooks"
    finally:
        process.terminate()
        process.wait(10)


async def _backlog(url: str, hospital_id: uuid.UUID, n: int, webhook: str) -> int:
    """Empty the queue, then enqueue up to ``n`` due reminders (of booked appointments) and as
    many clinical jobs of ``hospital_id``; returns how many of each."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO hospital_webhook (hospital_id, url, secret) VALUES ($1, $2, $3)"
            " ON CONFLICT (hospital_id) DO UPDATE SET url = excluded.url",
            hospital_id,
            webhook,
            notify.new_secret(),
        )
        await conn.execute("DELETE FROM pgqueuer")
        rows = await conn.fetch(
            "SELECT id, patient_id, start_at FROM appointment WHERE hospital_id = $1"
            " AND status = 'booked' ORDER BY id LIMIT $2",
            hospital_id,
            n,
        )
        queries = Queries.from_asyncpg_connection(conn)
        reminders = [
            jobs.payload(hospital_id, appointment=str(r["id"]), startAt=r["start_at"].isoformat())
            for r in rows
        ]
        clinical = [jobs.payload(hospital_id, patient=str(r["patient_id"])) for r in rows]
        for queue, bodies in ((jobs.REMINDERS, reminders), (jobs.CLINICAL, clinical)):
            await queries.enqueue(
                [queue.name] * len(bodies), list(bodies), [queue.priority] * len(bodies)
            )
        return len(rows)
    finally:
        await conn.close()


async def _left(url: str, queue: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = $1", queue)
        )
    finally:
        await conn.close()


def drain(url: str, secret: str, queue: str, enqueued: int, concurrency: str) -> float:
    """Start one worker and time it from its start to ``queue`` being empty (the start-up,
    about a second, is counted: a conservative figure)."""
    env = child_env(
        url,
        secret,
        HMS_ENV="prod",
        HMS_WORKER_METRICS_PORT="0",
        HMS_JOB_CONCURRENCY=concurrency,
        HMS_JOB_POLL_SECONDS="0.2",
    )
    log = open(os.devnull, "wb")  # noqa: SIM115
    started = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, "-m", "hms.cli", "worker"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    try:
        while asyncio.run(_left(url, queue)) > 0:
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited with {worker.returncode}")
            time.sleep(0.05)
        return enqueued / (time.perf_counter() - started)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        log.close()


def main(argv: Sequence[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m bench.jobs", description=__doc__.splitlines()[0])
    cli.add_argument("--profile", choices=sorted(scratch.PROFILES), default="small")
    cli.add_argument("--duration", type=_seconds, default=10.0)
    cli.add_argument("--rounds", type=int, default=3)
    cli.add_argument("--clients", type=int, default=16)
    cli.add_argument("--jobs", type=int, default=2000)
    cli.add_argument("--database-url", default=DEFAULT_SERVER)
    args = cli.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    ready = scratch.setup(args.database_url, args.profile)
    url, secret = ready.seed.url, ready.secret

    rates: dict[bool, list[float]] = {True: [], False: []}
    p95s: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(args.rounds):
        for reminders in (True, False) if round_ % 2 == 0 else (False, True):
            the_desk = asyncio.run(writes.desk(url, ready.target.hospital_id))
            say(f"round {round_ + 1}: write mix, reminders {'on' if reminders else 'off'}")
            tally = write_mix(
                url,
                secret,
                ready.token,
                the_desk,
                reminders=reminders,
                seconds=args.duration,
                clients=args.clients,
            )
            if tally.failures:
                say(f"failures: {tally.failures[:3]}")
            rates[reminders].append(_rate(tally, args.duration))
            p95s[reminders].append(_p95(tally))
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    print(f"write mix, {args.clients} clients, {args.rounds} rounds of {args.duration:g}s")
    print("| reminders | mutations/s (each round) | median | p95 ms (median) |")
    print("| --- | --- | ---: | ---: |")
    for mode, label in ((True, "on"), (False, "off")):
        each = ", ".join(f"{r:,.0f}" for r in rates[mode])
        print(
            f"| {label} | {each} | {statistics.median(rates[mode]):,.0f} |"
            f" {statistics.median(p95s[mode]):,.1f} |"
        )
    print(f"with reminders / without: {on / off:.3f}")

    with receiver() as webhook:
        for queue, concurrency in (
            ("reminders", "reminders=8,clinical=1,reports=1"),
            ("clinical", "reminders=1,clinical=8,reports=1"),
        ):
            n = asyncio.run(_backlog(url, ready.target.hospital_id, args.jobs, webhook))
            other = "clinical" if queue == "reminders" else "reminders"
            asyncio.run(_park(url, other))
            rate = drain(url, secret, queue, n, concurrency)
            print(f"{queue}: {n} jobs, one worker ({concurrency}): {rate:,.0f} jobs/s")
    asyncio.run(_clear(url))
    return 0


async def _park(url: str, queue: str) -> None:
    """Take ``queue``'s jobs out of the measured drain (they are deleted, not run)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DELETE FROM pgqueuer WHERE entrypoint = $1", queue)
    finally:
        await conn.close()


async def _clear(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DELETE FROM pgqueuer")
        await conn.execute("DELETE FROM hospital_webhook")
    finally:
        await conn.close()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("interrupted")
        sys.exit(130)
