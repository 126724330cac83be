"""What ``client_connection_check_interval`` costs a statement: ``python -m bench.conncheck``.

The app's direct connections set it (hms.persistence.database.connect_args), so PostgreSQL arms
a timer for every statement. One connection runs a prepared ``SELECT 1`` as fast as it can,
with and without the setting, the two alternating round by round; statements/s per round, the
medians, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg

from bench.run import DEFAULT_SERVER
from bench.scratch import dsn


async def _rate(url: str, check: bool, statements: int) -> float:
    settings = {"client_connection_check_interval": "1000"} if check else {}
    conn = await asyncpg.connect(url, server_settings=settings)
    try:
        select = await conn.prepare("SELECT 1")
        for _ in range(500):  # warm: plan cached, buffers hot
            await select.fetchval()
        started = time.perf_counter()
        for _ in range(statements):
            await select.fetchval()
        return statements / (time.perf_counter() - started)
    finally:
        await conn.close()


async def main(url: str, rounds: int, statements: int) -> None:
    rates: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(rounds):
        for check in (True, False) if round_ % 2 == 0 else (False, True):
            rates[check].append(await _rate(url, check, statements))
    for check, label in ((False, "without"), (True, "with")):
        each = ", ".join(f"{r:,.0f}" for r in rates[check])
        print(f"{label}: {each} statements/s, median {statistics.median(rates[check]):,.0f}")
    ratio = statistics.median(rates[True]) / statistics.median(rates[False])
    print(f"with / without: {ratio:.3f}")


if __name__ == "__main__":
    cli = argparse.ArgumentParser(prog="python -m bench.conncheck", description=__doc__)
    cli.add_argument("--database-url", default=DEFAULT_SERVER)
    cli.add_argument("--rounds", type=int, default=4)
    cli.add_argument("--statements", type=int, default=20_000)
    args = cli.parse_args()
    asyncio.run(main(dsn(args.database_url, "postgres"), args.rounds, args.statements))
