"""Fixtures for integration tests that need more than the machine's PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.replication import ReplicaPair, streaming_pair


@pytest.fixture(scope="session")
async def replica_pair() -> AsyncIterator[ReplicaPair]:
    """One real primary + streaming hot standby for the whole session (tests/replication.py).

    Built on first use only, so runs without replica tests pay nothing for it.
    """
    async with streaming_pair() as pair:
        yield pair


@pytest.fixture
async def replica(replica_pair: ReplicaPair) -> AsyncIterator[ReplicaPair]:
    """The session's pair, running, replaying and caught up before and after the test, whatever
    the test (or one before it) did to the standby."""
    await replica_pair.restore()
    yield replica_pair
    await replica_pair.restore()
