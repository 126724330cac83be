"""``HMS_DATABASE_POOLER``: what the request engines ask of asyncpg in each mode.

tests/integration/test_pgbouncer.py shows the effect through a real PgBouncer.
"""

from __future__ import annotations

import pytest

from hms.persistence.database import connect_args
from hms.settings import Settings, SettingsError


def test_the_pooler_setting_is_read_once_and_checked() -> None:
    assert Settings.from_env({}).database_pooler == "none"
    assert Settings.from_env({"HMS_DATABASE_POOLER": " PgBouncer "}).database_pooler == "pgbouncer"
    with pytest.raises(SettingsError, match="HMS_DATABASE_POOLER must be one of none, pgbouncer"):
        Settings.from_env({"HMS_DATABASE_POOLER": "pgpool"})


def test_behind_pgbouncer_nothing_outlives_a_transaction() -> None:
    direct = connect_args(Settings())
    assert direct["server_settings"] == {
        "application_name": "hms",
        "jit": "off",
        "client_connection_check_interval": "1000",
    }
    assert "statement_cache_size" not in direct  # asyncpg's and SQLAlchemy's caches stay on
    pooled = connect_args(Settings(database_pooler="pgbouncer"))
    # Only what PgBouncer tracks per client; JIT is turned off in each transaction instead.
    assert pooled["server_settings"] == {"application_name": "hms"}
    assert pooled["statement_cache_size"] == pooled["prepared_statement_cache_size"] == 0
