"""Fixtures for the mutation tests."""

from __future__ import annotations

import pytest

from tests import fixtures
from tests.api.writes import make_hospital


@pytest.fixture(scope="module")
async def ward(database_url: str, dataset: fixtures.Dataset) -> fixtures.HospitalData:
    """A hospital of this test module's own, so writes never disturb the read tests' counts."""
    return await make_hospital(database_url)
