"""LISTEN on a PostgreSQL channel, on a connection of its own, for as long as it lasts.

PostgreSQL hands a notification to the sessions listening on its channel when the sending
transaction commits; a session that is not listening at that moment never sees it. So
:func:`listen` says when LISTEN has taken effect (from then on nothing is missed) and never
returns: it raises as soon as the connection is lost, cannot be opened, or stops answering, and
whoever called it must assume that notifications were missed since.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, NoReturn

from sqlalchemy.ext.asyncio import AsyncEngine


class ListenerLost(ConnectionError):
    """The listening connection ended; notifications sent since then were not received."""


async def listen(
    engine: AsyncEngine,
    channel: str,
    deliver: Callable[[str], None],
    *,
    listening: Callable[[], None],
    ping_every: float = 10.0,
    answer_within: float = 5.0,
) -> NoReturn:
    """Call ``deliver(payload)`` for each notification on ``channel`` until the connection fails.

    ``listening()`` is called once LISTEN is in effect. The connection is pinged every
    ``ping_every`` seconds, so one that went away silently (a network partition) is noticed;
    connecting, LISTEN and each ping must answer within ``answer_within`` seconds. Raises
    :class:`ListenerLost` or the driver's error; the connection is closed, never pooled again.
    """
    async with asyncio.timeout(answer_within):
        conn = await engine.connect()
    try:
        raw: Any = (await conn.get_raw_connection()).driver_connection
        lost = asyncio.Event()
        raw.add_termination_listener(lambda _conn: lost.set())

        def notified(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            deliver(payload)

        async with asyncio.timeout(answer_within):
            await raw.add_listener(channel, notified)
        listening()
        while not lost.is_set():
            try:
                await asyncio.wait_for(lost.wait(), ping_every)
            except TimeoutError:
                await asyncio.wait_for(raw.fetchval("SELECT 1"), answer_within)
        raise ListenerLost("the listening connection was closed")
    finally:
        # Its listener stays registered on the driver's connection: close it, do not pool it.
        await conn.invalidate()
        await conn.close()
