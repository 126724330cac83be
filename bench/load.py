"""A closed-loop HTTP load generator (N clients, each on its own keep-alive connection), and the
counters read around a measured run.

Closed loop means a client sends its next request only when the previous one has answered, so the
offered load adapts to the server (throughput = clients / latency). That is how real GraphQL
clients behave (a page waits for its data) and, unlike an open-loop generator, it cannot bury an
overloaded server under a queue that measures the generator instead of the server.

Each client is its own ``httpx.AsyncClient`` limited to one HTTP/1.1 connection, so "16 clients"
really means 16 TCP connections, as 16 browsers would open.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import httpx
import orjson
import psutil

#: A response body check beyond "200 and no errors", e.g. "the page has 50 patients".
Check = Callable[[dict[str, Any]], bool]
#: How many distinct failure descriptions a run keeps (the count is always exact).
ERROR_SAMPLES = 5
#: An idle PostgreSQL 15 backend publishes its pending statistics within PGSTAT_IDLE_INTERVAL
#: (10 s); waiting longer before reading pg_stat_database makes it cover exactly the measured run.
STATS_SETTLE = 11.0
#: How often the backends' CPU is sampled during a run.
SAMPLE_INTERVAL = 0.2


@dataclasses.dataclass(frozen=True, kw_only=True)
class Workload:
    """One kind of request: a pool of ready-encoded JSON bodies, one picked at random per request.

    Bodies are encoded up front so the generator spends its (shared) CPU on HTTP, not on JSON.
    """

    name: str
    bodies: Sequence[bytes]
    check: Check


@dataclasses.dataclass
class Tally:
    """What one run observed: every latency (seconds) and every failure."""

    latencies: list[float] = dataclasses.field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = dataclasses.field(default_factory=list)

    def fail(self, reason: str) -> None:
        self.errors += 1
        if len(self.error_samples) < ERROR_SAMPLES and reason not in self.error_samples:
            self.error_samples.append(reason)


@dataclasses.dataclass(frozen=True)
class RunResult:
    requests: int
    errors: int
    error_samples: list[str]
    seconds: float
    latencies: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (no interpolation: a real sample)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def failure(response: httpx.Response, workload: Workload) -> str | None:
    """Why a response does not count as a success, or None when it does."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return f"not JSON: {response.text[:200]}"
    if not isinstance(body, dict):
        return f"not a JSON object: {response.text[:200]}"
    if body.get("errors"):
        return f"GraphQL errors: {orjson.dumps(body['errors']).decode()[:200]}"
    try:
        ok = body.get("data") is not None and workload.check(body["data"])
    except (KeyError, TypeError, IndexError):
        ok = False
    return None if ok else f"unexpected data: {response.text[:200]}"


class Clients:
    """``n`` single-connection clients; an async context manager so connections always close."""

    def __init__(self, base_url: str, token: str, n: int) -> None:
        headers = {
            "authorization": f"Bearer {token}",
            "content-type": "application/json",
            # The spec's own media type: request errors then get 4xx, so they cannot pass as 200.
            "accept": "application/graphql-response+json",
        }
        self.clients = [
            httpx.AsyncClient(
                base_url=base_url,
                headers=headers,
                http1=True,
                http2=False,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                timeout=httpx.Timeout(30.0),
            )
            for _ in range(n)
        ]

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(client.aclose() for client in self.clients))


async def _client_loop(
    client: httpx.AsyncClient,
    workload: Workload,
    deadline: float,
    rng: random.Random,
    tally: Tally,
) -> None:
    """Send requests back to back until ``deadline``; the one in flight at the deadline counts."""
    bodies = workload.bodies
    while time.perf_counter() < deadline:
        body = bodies[rng.randrange(len(bodies))]
        started = time.perf_counter()
        try:
            response = await client.post("/graphql", content=body)
        except httpx.HTTPError as error:
            tally.latencies.append(time.perf_counter() - started)
            tally.fail(f"{type(error).__name__}: {error}")
            continue
        tally.latencies.append(time.perf_counter() - started)
        reason = failure(response, workload)
        if reason is not None:
            tally.fail(reason)


async def run(clients: Clients, workload: Workload, seconds: float, seed: int = 0) -> RunResult:
    """Drive every client in a closed loop for ``seconds``; failed requests are counted too.

    Each client draws its bodies from its own seeded RNG, so a rerun sends the same sequence.
    """
    tally = Tally()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(
            _client_loop(client, workload, deadline, random.Random(seed * 1000 + i), tally)
            for i, client in enumerate(clients.clients)
        )
    )
    elapsed = time.perf_counter() - started
    return RunResult(
        requests=len(tally.latencies),
        errors=tally.errors,
        error_samples=tally.error_samples,
        seconds=elapsed,
        latencies=sorted(tally.latencies),
    )


# --- counters around a run ------------------------------------------------------------------


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _machine_busy() -> float:
    """CPU seconds all cores spent on anything but idling, as psutil's cpu_percent counts them."""
    times = psutil.cpu_times()
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    return float(total - times.idle - getattr(times, "iowait", 0.0))


class Backends:
    """CPU of the PostgreSQL backends serving one database, followed while a run goes on.

    Only this database's backends: the cluster is shared with whatever else the machine runs.
    A backend that exits is no longer visible, so its last sample counts; one that lives less than
    a sampling interval (pool overflow churn, see "PG conns/req") is missed: then a lower bound.
    """

    def __init__(self, postmaster: psutil.Process, database: str) -> None:
        self.postmaster = postmaster
        self.database = database
        self.baseline: dict[int, float] = {}
        self.last: dict[int, float] = {}

    def _sample(self) -> dict[int, float]:
        seen = {}
        for child in self.postmaster.children():
            with contextlib.suppress(psutil.Error):
                # The title: "postgres: [<cluster_name>:] <user> <database> <client> <state>".
                if self.database in " ".join(child.cmdline()).split()[1:5]:
                    seen[child.pid] = _cpu(child)
        return seen

    def start(self) -> None:
        self.baseline = self._sample()
        self.last = dict(self.baseline)

    async def follow(self, done: asyncio.Event) -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), SAMPLE_INTERVAL)
            self.last.update(self._sample())

    def seconds(self) -> float:
        return sum(cpu - self.baseline.get(pid, 0.0) for pid, cpu in self.last.items())


class Probe:
    """Counters read around each measured run: CPU of every party, and pg_stat_database.

    ``admin`` should sit in another database than ``database`` (e.g. ``postgres``) so that its
    own reads never count in the statistics it reads.
    """

    def __init__(
        self, admin: asyncpg.Connection, database: str, server_pid: int, *, local: bool
    ) -> None:
        self.admin = admin
        self.database = database
        self.server = psutil.Process(server_pid)
        self.generator = psutil.Process()
        postmaster = self._postmaster(admin) if local else None
        self.backends = None if postmaster is None else Backends(postmaster, database)

    @staticmethod
    def _postmaster(admin: asyncpg.Connection) -> psutil.Process | None:
        """The parent of our backend, if it is PostgreSQL's postmaster on this machine."""
        try:
            parent = psutil.Process(admin.get_server_pid()).parent()
        except psutil.Error:
            return None
        return parent if parent is not None and "postgres" in parent.name() else None

    def cpu(self) -> dict[str, float]:
        """Cumulative CPU seconds of the server, of this process and of the whole machine."""
        return {
            "server": _cpu(self.server),
            "generator": _cpu(self.generator),
            "machine": _machine_busy(),
        }

    async def stats(self) -> dict[str, int]:
        """Cumulative transactions, sessions (connections opened) and buffer reads of the db."""
        row = await self.admin.fetchrow(
            "SELECT xact_commit + xact_rollback AS xacts, sessions,"
            " blks_hit + blks_read AS blocks FROM pg_stat_database WHERE datname = $1",
            self.database,
        )
        return {"xacts": row["xacts"], "sessions": row["sessions"], "blocks": row["blocks"]}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cell:
    """One (workload, clients) row of the report; ``dataclasses.asdict`` is its JSON."""

    workload: str
    clients: int
    requests: int
    seconds: float
    rps: float
    latency_ms: dict[str, float]
    errors: int
    error_samples: list[str]
    cpu_ms_per_request: dict[str, float | None]
    cpu_percent: dict[str, float | None]
    pg_per_request: dict[str, float]
    statements_per_request: float | None = None


async def _measured(
    probe: Probe, clients: Clients, workload: Workload, duration: float
) -> tuple[RunResult, dict[str, float | None]]:
    """One run with the CPU counters read at its very edges."""
    done = asyncio.Event()
    backends = probe.backends
    if backends is not None:
        backends.start()
        follower = asyncio.create_task(backends.follow(done))
    before = probe.cpu()
    result = await run(clients, workload, duration, seed=2)
    after = probe.cpu()
    done.set()
    used: dict[str, float | None] = {k: after[k] - before[k] for k in after}
    used["postgres"] = None
    if backends is not None:
        await follower
        used["postgres"] = backends.seconds()
    machine = used.pop("machine") or 0.0
    used["other"] = machine - sum(v or 0.0 for v in used.values())
    return result, used


async def measure(
    probe: Probe,
    clients: Clients,
    workload: Workload,
    *,
    warmup: float,
    duration: float,
) -> Cell:
    """Warm up, then one measured run. pg_stat_database is read ``STATS_SETTLE`` after the
    warm-up and after the run, since idle backends publish their counters only then."""
    await run(clients, workload, warmup, seed=1)
    await asyncio.sleep(STATS_SETTLE)
    stats_before = await probe.stats()
    result, used = await _measured(probe, clients, workload, duration)
    await asyncio.sleep(STATS_SETTLE)
    stats_after = await probe.stats()
    n, lat = result.requests, result.latencies
    return Cell(
        workload=workload.name,
        clients=len(clients.clients),
        requests=n,
        seconds=result.seconds,
        rps=result.rps,
        latency_ms={
            "mean": 1000 * sum(lat) / n if n else math.nan,
            **{f"p{p}": 1000 * percentile(lat, p) for p in (50, 90, 95, 99, 100)},
        },
        errors=result.errors,
        error_samples=result.error_samples,
        cpu_ms_per_request={k: None if v is None else 1000 * v / n for k, v in used.items()},
        cpu_percent={k: None if v is None else 100 * v / result.seconds for k, v in used.items()},
        pg_per_request={k: (stats_after[k] - stats_before[k]) / n for k in stats_after},
    )
