"""Which database serves a read: a replica that is up and has replayed what the reader wrote.

Each worker checks its replicas every ``HMS_REPLICA_CHECK_SECONDS`` (one cheap query each, on a
connection of its own, never per request): whether it answers, is a standby, and how far its
replay (``pg_last_wal_replay_lsn()``) trails the primary's WAL (``pg_current_wal_lsn()``). A
replica that does not answer, or trails by more than ``HMS_REPLICA_MAX_LAG_BYTES``, is out of
rotation until a check finds it well again; a read that fails on a replica is answered by the
primary (and the replica is out at once). With no replica fit, reads go to the primary.

Read-your-writes: a write's request records the primary's WAL position after its commit for
its user and hospital (:class:`Written`); that user's reads go to a replica only if the last
check saw it replayed past that position, otherwise to the primary. The check is at most an
interval old, so a replica that has just caught up is skipped a moment longer than needed; a
replica that has not is never used.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("hms")

#: Where the primary's WAL is now, as a byte position.
PRIMARY_LSN = text("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
#: What a standby has replayed (NULL on a primary, which is no replica).
REPLAYED = text("SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint")
#: After a commit, on the same connection: a position at or past the commit's record.
AFTER_COMMIT = text("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint")


@dataclasses.dataclass
class Replica:
    name: str
    engine: AsyncEngine  # the requests' pool
    probe: AsyncEngine  # one connection for the checks
    #: In rotation. False until the first check says otherwise.
    healthy: bool = False
    #: The WAL position the last check saw replayed.
    replayed: int = 0
    #: How far it trailed the primary at the last check, in bytes.
    lag: int | None = None


class Replicas:
    def __init__(
        self,
        replicas: Sequence[Replica],
        probe: AsyncEngine,
        *,
        max_lag: int,
        timeout: float = 1.0,
    ) -> None:
        self.replicas = tuple(replicas)
        self.probe = probe  # one connection to the primary for its WAL position
        self.max_lag = max_lag
        self.timeout = timeout
        self._turn = itertools.count()

    def pick(self, written: int) -> Replica | None:
        """A replica in rotation that has replayed position ``written``, round robin; None: use
        the primary."""
        fit = [r for r in self.replicas if r.healthy and r.replayed >= written]
        if not fit:
            return None
        return fit[next(self._turn) % len(fit)]

    def failed(self, engine: AsyncEngine) -> None:
        """A read failed on ``engine``'s replica: out of rotation until a check finds it well."""
        for replica in self.replicas:
            if replica.engine is engine and replica.healthy:
                replica.healthy = False
                log.warning("replica %s out of rotation: a read failed on it", replica.name)

    async def check(self) -> None:
        """One round: the primary's position, then each replica's."""
        try:
            async with asyncio.timeout(self.timeout):
                async with self.probe.connect() as conn:
                    primary: int | None = (await conn.execute(PRIMARY_LSN)).scalar_one()
        except Exception as error:  # the primary down: judge replicas by themselves
            log.warning("replica check: primary position unknown (%s)", type(error).__name__)
            await self.probe.dispose()  # a stale connection is not kept for the next round
            primary = None
        for replica in self.replicas:
            await self._check(replica, primary)

    async def _check(self, replica: Replica, primary: int | None) -> None:
        was = replica.healthy
        try:
            standby, replayed = await self._ask(replica.probe)
        except Exception as error:
            replica.healthy, replica.lag = False, None
            if was:
                log.warning("replica %s out of rotation (%s)", replica.name, type(error).__name__)
            return
        if not standby or replayed is None:
            # Promoted, or a primary configured as a replica: reads would see writes that
            # other replicas do not have, and its position is no replay position.
            replica.healthy, replica.lag = False, None
            if was:
                log.warning("replica %s out of rotation: it is not a standby", replica.name)
            return
        replica.replayed = int(replayed)
        replica.lag = None if primary is None else max(0, primary - replica.replayed)
        replica.healthy = replica.lag is None or replica.lag <= self.max_lag
        if replica.healthy != was:
            if replica.healthy:
                log.info("replica %s in rotation", replica.name)
            else:
                log.warning("replica %s out of rotation: lagging", replica.name)

    async def _ask(self, probe: AsyncEngine) -> tuple[bool, int | None]:
        """The standby's state; a connection a restart left stale is replaced and asked again."""
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(self.timeout):
                    async with probe.connect() as conn:
                        standby, replayed = (await conn.execute(REPLAYED)).one()
                        return bool(standby), replayed
            except Exception:
                await probe.dispose()  # no stale connection survives a failed check
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def run(self, interval: float) -> None:
        """Check every ``interval`` seconds until cancelled."""
        while True:
            await self.check()
            await asyncio.sleep(interval)

    async def dispose(self) -> None:
        for engine in (self.probe, *(r.probe for r in self.replicas)):
            await engine.dispose()
