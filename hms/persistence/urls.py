"""Database URL forms: users give libpq-style URLs; SQLAlchemy wants a driver name in the scheme."""

from __future__ import annotations

from sqlalchemy.engine import make_url


def async_url(url: str) -> str:
    """``postgresql://…`` (or ``postgres://``) → ``postgresql+asyncpg://…``; other drivers kept."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername in ("postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def asyncpg_dsn(url: str) -> str:
    """The same URL for asyncpg itself, which takes no SQLAlchemy driver suffix in the scheme."""
    return async_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)
