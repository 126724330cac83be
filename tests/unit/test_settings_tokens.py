from __future__ import annotations

import datetime as dt
import uuid

import pytest

from hms.security.tokens import AuthError, bearer, issue, verify
from hms.settings import Settings, SettingsError

SECRET = "s" * 32


def test_defaults_are_the_embedded_dev_setup() -> None:
    settings = Settings.from_env({})
    assert settings.env == "dev"
    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.graphiql
    assert settings.introspection
    assert settings.max_page_size == 100


def test_prod_requires_a_secret_and_turns_off_dev_surfaces() -> None:
    with pytest.raises(SettingsError, match="HMS_JWT_SECRET is required"):
        Settings.from_env({"HMS_ENV": "prod"})
    prod = Settings.from_env({"HMS_ENV": "prod", "HMS_JWT_SECRET": SECRET})
    assert not prod.graphiql
    assert not prod.introspection
    opted_in = Settings.from_env(
        {"HMS_ENV": "prod", "HMS_JWT_SECRET": SECRET, "HMS_GRAPHIQL": "true"}
    )
    assert opted_in.graphiql


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HMS_ENV": "staging"}, "HMS_ENV"),
        ({"HMS_PORT": "eighty"}, "HMS_PORT must be an integer"),
        ({"HMS_WORKERS": "0"}, "HMS_WORKERS must be at least 1"),
        ({"HMS_GRAPHIQL": "maybe"}, "HMS_GRAPHIQL must be a boolean"),
        ({"HMS_JWT_SECRET": "short"}, "at least 32 bytes"),
        ({"HMS_MAX_BODY_BYTES": "10"}, "at least 1024"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_replica_urls_are_a_comma_list() -> None:
    settings = Settings.from_env(
        {"HMS_DATABASE_REPLICA_URLS": "postgresql://a/x, postgresql://b/x,"}
    )
    assert settings.database_replica_urls == ("postgresql://a/x", "postgresql://b/x")


def test_token_round_trip() -> None:
    hospital = uuid.uuid4()
    principal = verify(
        SECRET, issue(SECRET, subject="u1", hospital_id=hospital, roles=["clinician"])
    )
    assert principal.subject == "u1"
    assert principal.hospital_id == hospital
    assert principal.roles == frozenset({"clinician"})


def test_unknown_roles_are_refused_when_issuing() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        issue(SECRET, subject="u", hospital_id=uuid.uuid4(), roles=["root"])


def test_expired_token_within_leeway_is_accepted_beyond_it_refused() -> None:
    now = dt.datetime.now(dt.UTC)
    just = issue(
        SECRET,
        subject="u",
        hospital_id=uuid.uuid4(),
        roles=[],
        ttl=dt.timedelta(0),
        now=now - dt.timedelta(seconds=5),
    )
    verify(SECRET, just)
    old = issue(
        SECRET,
        subject="u",
        hospital_id=uuid.uuid4(),
        roles=[],
        ttl=dt.timedelta(0),
        now=now - dt.timedelta(minutes=5),
    )
    with pytest.raises(AuthError, match="expired"):
        verify(SECRET, old)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Token abc", "bearer"])
def test_bearer_header_shapes(header: str | None) -> None:
    with pytest.raises(AuthError):
        bearer(header)


def test_bearer_is_case_insensitive_on_the_scheme() -> None:
    assert bearer("bearer abc") == "abc"
