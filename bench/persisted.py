"""Persisted (hash-only) vs full-text requests, and the hit ratio of a replayed mix:
``python -m bench.persisted``.

One server (``HMS_ENV=prod``, the default ``apq`` mode, real Redis) over the bench's scratch
database, with the team's manifest (``documents/manifest.json``) pushed into the registry.

1. **Throughput.** For the nested dashboard and the one-patient lookup, three ways to send the
   same document, in interleaved rows (full, hash, GET, full, hash, GET …) driven by ``hey``:
   the full text by POST, the APQ hash by POST, and ``documentId`` by GET. Columns: req/s, p95,
   server CPU ms per request, and the bytes the client uploads per request.
2. **Hit ratio.** A replayed mix of many distinct documents (Zipf-distributed popularity, as
   real traffic is: a few screens are most of it) sent the way Apollo Client sends them: the
   hash alone, and the full text only after PersistedQueryNotFound. A warm-up, then a server
   restart (an empty in-process tier, as for a new worker or a deploy), then the measured part.
   The hit ratio is hash-only requests answered without the text / all hash-only requests;
   misses are split into first sightings (a document no client had sent before: unavoidable)
   and repeats (a document the platform had been given and lost: the figure to keep at 0).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import random
import re
import secrets
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import uvloop

from bench import report, scratch
from bench.paths import hey_for
from bench.run import (
    DEFAULT_SERVER,
    NESTED,
    NESTED_N,
    PATIENT,
    ROOT,
    _free_port,
    server_command,
    serving,
)
from bench.scratch import child_env, say
from hms.resolvers.relay import to_global_id
from hms.security.tokens import issue

REDIS = "redis://127.0.0.1:6379/0"
WAYS = ("full text, POST", "APQ hash, POST", "documentId, GET")
#: Patient fields the replayed mix draws its selections from.
FIELDS = ("id", "mrn", "givenName", "familyName", "birthDate", "gender", "active")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def requests_for(text: str, variables: dict[str, Any]) -> dict[str, tuple[bytes | None, str]]:
    """way -> (POST body, or None for a GET; the query string of the URL)."""
    apq = {"persistedQuery": {"version": 1, "sha256Hash": sha(text)}}
    query = urllib.parse.urlencode(
        {"documentId": f"sha256:{sha(text)}", "variables": orjson.dumps(variables).decode()}
    )
    return {
        WAYS[0]: (orjson.dumps({"query": text, "variables": variables}), ""),
        WAYS[1]: (orjson.dumps({"extensions": apq, "variables": variables}), ""),
        WAYS[2]: (None, query),
    }


def check(base: str, token: str, body: bytes | None, query: str) -> None:
    """One request of the row, by httpx: 200, data, no errors (hey sees status codes only)."""
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    if body is None:
        response = httpx.get(f"{base}/graphql?{query}", headers=headers)
    else:
        response = httpx.post(f"{base}/graphql", content=body, headers=headers)
    answer = response.json()
    if response.status_code != 200 or "errors" in answer or not answer.get("data"):
        raise SystemExit(f"the row's request fails: {response.status_code} {answer}")


def throughput(
    base: str, pid: int, token: str, clients: Sequence[int], rounds: int, seconds: float, one: str
) -> list[tuple[str, str, int, int, dict[str, float]]]:
    process = psutil.Process(pid)
    workloads = {
        f"nested n={NESTED_N}": requests_for(NESTED, {"n": NESTED_N}),
        "patient(id)": requests_for(PATIENT, {"id": one}),
    }
    rows = []
    with tempfile.TemporaryDirectory() as scratch_dir:
        for name, ways in workloads.items():
            files: dict[str, Path | None] = {}
            for way, (body, query) in ways.items():
                check(base, token, body, query)
                if body is None:
                    files[way] = None
                else:
                    path = Path(scratch_dir) / f"{len(files)}-{sha(name)[:8]}.json"
                    path.write_bytes(body)
                    files[way] = path
            for count in clients:
                for way in WAYS:  # each way once, unmeasured: connections, tiers, plans
                    body, query = ways[way]
                    url = f"{base}/graphql" + (f"?{query}" if body is None else "")
                    hey_for(url, token, files[way], count, 2.0)
                for round_ in range(rounds):
                    for way in WAYS:
                        body, query = ways[way]
                        url = f"{base}/graphql" + (f"?{query}" if body is None else "")
                        say(f"{name} x {count} clients, {way}, round {round_ + 1}")
                        before = sum(process.cpu_times()[:2])
                        result = hey_for(url, token, files[way], count, seconds)
                        cpu = sum(process.cpu_times()[:2]) - before
                        result["cpu_ms"] = cpu * 1000 / max(result["requests"], 1)
                        sent = len(body) if body is not None else len(f"/graphql?{query}")
                        rows.append((name, way, count, sent, result))
    return rows


# --- the replayed mix -----------------------------------------------------------------------


def mix(documents: int, seed: int, run: str) -> list[str]:
    """``documents`` distinct small documents: a different selection of patient fields each.

    ``run`` goes into every operation name, so what earlier runs registered in the same Redis
    is not a hit in this one.
    """
    chooser = random.Random(seed)
    texts: list[str] = []
    while len(texts) < documents:
        fields = chooser.sample(FIELDS, chooser.randint(1, len(FIELDS)))
        first = chooser.randint(1, 20)
        text = f"query Screen{len(texts)}_{run} {{ patients(first: {first}) {{ edges {{ node {{ "
        texts.append(text + " ".join(fields) + " } } } }")
    return texts


def zipf_sequence(count: int, population: int, exponent: float, seed: int) -> list[int]:
    weights = [1 / (rank**exponent) for rank in range(1, population + 1)]
    return random.Random(seed).choices(range(population), weights=weights, k=count)


class Replay:
    """Apollo-like clients: the hash first, the text only after PersistedQueryNotFound.

    Request ``i`` acts as user ``i % len(tokens)``: registrations are rate-limited per user
    (``HMS_APQ_REGISTRATIONS_PER_MINUTE``), and real traffic comes from many users.
    """

    def __init__(self, base: str, tokens: list[str], texts: list[str]) -> None:
        self.base = base
        self.tokens = tokens
        self.texts = texts
        self.sent: set[int] = set()  # documents some client has sent the text of
        self.counts: collections.Counter[str] = collections.Counter()

    async def one(self, http: httpx.AsyncClient, position: int, index: int) -> None:
        text = self.texts[index]
        apq = {"persistedQuery": {"version": 1, "sha256Hash": sha(text)}}
        user = {"authorization": f"Bearer {self.tokens[position % len(self.tokens)]}"}
        answer = (await http.post("/graphql", json={"extensions": apq}, headers=user)).json()
        self.counts["hash-only"] += 1
        codes = [e.get("extensions", {}).get("code") for e in answer.get("errors", ())]
        if "PERSISTED_QUERY_NOT_FOUND" not in codes:
            if "data" not in answer or codes:
                raise SystemExit(f"a replayed request failed: {answer}")
            self.counts["hit"] += 1
            return
        self.counts["miss, first sighting" if index not in self.sent else "miss, repeat"] += 1
        self.sent.add(index)
        registering = {"query": text, "extensions": apq}
        answer = (await http.post("/graphql", json=registering, headers=user)).json()
        if "data" not in answer or "errors" in answer:
            raise SystemExit(f"a registration failed: {answer}")

    async def run(self, sequence: list[int], concurrency: int) -> None:
        queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        for position, index in enumerate(sequence):
            queue.put_nowait((position, index))

        async def worker() -> None:
            async with httpx.AsyncClient(base_url=self.base) as http:
                while not queue.empty():
                    await self.one(http, *queue.get_nowait())

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def tiers(base: str) -> dict[str, float]:
    """hms_documents_total by tier and outcome, from the server's /metrics."""
    text = httpx.get(f"{base}/metrics").text
    found = re.findall(r'hms_documents_total\{outcome="(\w+)",tier="(\w+)"\} ([\d.e+]+)', text)
    return {f"{tier} {outcome}": float(value) for outcome, tier, value in found}


# --- main -----------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    cli = argparse.ArgumentParser(
        prog="python -m bench.persisted", description=__doc__.splitlines()[0]
    )
    cli.add_argument("--profile", choices=sorted(scratch.PROFILES), default="small")
    cli.add_argument("--duration", type=float, default=10.0, help="seconds per row")
    cli.add_argument("--rounds", type=int, default=2, help="rounds of the three ways")
    cli.add_argument("--clients", default="16", help="comma-separated client counts")
    cli.add_argument("--documents", type=int, default=300, help="distinct documents in the mix")
    cli.add_argument("--warmup", type=int, default=5000, help="replayed requests before restart")
    cli.add_argument("--replay", type=int, default=10000, help="measured replayed requests")
    cli.add_argument("--users", type=int, default=50, help="users the mix is spread over")
    cli.add_argument("--zipf", type=float, default=1.0, help="popularity exponent of the mix")
    cli.add_argument("--database-url", default=DEFAULT_SERVER)
    cli.add_argument("--redis-url", default=REDIS)
    return cli.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    ready = scratch.setup(args.database_url, args.profile, needs_hey=True)
    secret, seed, target, token = ready.secret, ready.seed, ready.target, ready.token
    env = child_env(seed.url, secret, HMS_ENV="prod", HMS_REDIS_URL=args.redis_url)
    manifest = ROOT / "documents" / "manifest.json"
    subprocess.run(
        [sys.executable, "-m", "hms.cli", "documents", "push", str(manifest)],
        env=env, check=True,
    )  # fmt: skip
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    clients = [int(c) for c in args.clients.split(",")]
    one = to_global_id("Patient", target.patient_ids[0])
    with serving(server_command(port), env, base) as pid:
        rows = throughput(base, pid, token, clients, args.rounds, args.duration, one)

    texts = mix(args.documents, seed=7, run=secrets.token_hex(4))
    sequence = zipf_sequence(args.warmup + args.replay, len(texts), args.zipf, seed=11)
    users = [
        issue(secret, subject=f"user-{n}", hospital_id=target.hospital_id, roles=["clinician"])
        for n in range(args.users)
    ]
    replay = Replay(base, users, texts)
    with serving(server_command(port), env, base):
        uvloop.run(replay.run(sequence[: args.warmup], concurrency=8))
    warm = collections.Counter(replay.counts)
    replay.counts.clear()
    with serving(server_command(port), env, base):  # a new process: its own tier is empty
        uvloop.run(replay.run(sequence[args.warmup :], concurrency=8))
        by_tier = tiers(base)

    print(
        f"\nprofile {args.profile}, {args.duration:g} s per row, {args.rounds} rounds, hey, "
        f"commit {report.git_commit(ROOT)}\n"
    )
    print("| workload | clients | sent as | bytes up | req/s | p95 ms | server CPU ms/req |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for name, way, count, sent, r in rows:
        print(
            f"| {name} | {count} | {way} | {sent} | {r['rps']:.1f} | {r['p95_ms']:.1f} "
            f"| {r['cpu_ms']:.2f} |" + (f" {r['non_200']:.0f} non-200" if r["non_200"] else "")
        )
    counts = replay.counts
    ratio = counts["hit"] / max(counts["hash-only"], 1)
    print(
        f"\nreplayed mix: {len(texts)} distinct documents, Zipf {args.zipf:g}, "
        f"{args.users} users; warm-up "
        f"{args.warmup} requests ({warm['hit']} hits), then a restarted server:\n"
        f"  {counts['hash-only']} hash-only requests, {counts['hit']} hits ({ratio:.2%}), "
        f"{counts['miss, first sighting']} misses on first sighting, "
        f"{counts['miss, repeat']} repeat misses"
    )
    print("  lookups by tier: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(by_tier.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
