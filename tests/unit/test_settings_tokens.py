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
    with pytest.raises(SettingsError, match=r"HMS_JWT_SECRET .* is required"):
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
        ({"HMS_COST_MODE": "warn"}, "HMS_COST_MODE must be measure or enforce"),
        ({"HMS_COST_MODES": "web=off"}, "HMS_COST_MODES must be name=value pairs"),
        ({"HMS_COST_BUDGETS": "admin=lots"}, "a budget is capacity/per-second"),
        ({"HMS_COST_BUDGETS": "admin=2000/0"}, "must be positive"),
        ({"HMS_COST_BUDGETS": "admin=500/50"}, "below HMS_MAX_COST"),
        ({"HMS_MAX_COST": "5000"}, "the default cost budget"),
        ({"HMS_HOSPITAL_COST_BUDGET": "999/10"}, "HMS_HOSPITAL_COST_BUDGET: a capacity of 999"),
        ({"HMS_MAX_DEPTH": "0"}, "HMS_MAX_DEPTH must be at least 1"),
        ({"HMS_CORS_ORIGINS": "*"}, "HMS_CORS_ORIGINS: '\\*' is not an origin"),
        ({"HMS_OIDC_ISSUER": "https://id.example.org"}, "go together"),
        ({"HMS_OIDC_AUDIENCE": "hms"}, "go together"),
        ({"HMS_OIDC_ALGORITHMS": "RS256,HS256"}, "asymmetric algorithms only"),
        ({"HMS_OIDC_ALGORITHMS": "none"}, "asymmetric algorithms only"),
        ({"HMS_OIDC_LEEWAY": "61"}, "at most 60 seconds"),
        ({"HMS_CORS_ORIGINS": "https://a.org/app"}, "not an origin"),
        ({"HMS_CORS_ORIGINS": "ftp://a.org"}, "not an origin"),
        ({"HMS_CORS_ORIGINS": "https://user@a.org"}, "not an origin"),
        ({"HMS_SHUTDOWN_TIMEOUT": "0"}, "HMS_SHUTDOWN_TIMEOUT must be at least 1"),
        ({"HMS_SHUTDOWN_TIMEOUT": "2.5"}, "HMS_SHUTDOWN_TIMEOUT must be an integer"),
        ({"HMS_SHUTDOWN_DELAY": "-1"}, "HMS_SHUTDOWN_DELAY must be at least 0 seconds"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_oidc_replaces_the_shared_secret_in_production() -> None:
    settings = Settings.from_env(
        {
            "HMS_ENV": "prod",
            "HMS_OIDC_ISSUER": "https://id.example.org/realms/h",
            "HMS_OIDC_AUDIENCE": "hms-api",
            "HMS_OIDC_ALGORITHMS": "ES256, PS256",
            "HMS_OIDC_LEEWAY": "60",
        }
    )
    assert settings.jwt_secret is None
    assert settings.oidc_algorithms == ("ES256", "PS256")
    assert settings.oidc_leeway == 60


def test_cors_origins_are_listed_explicitly() -> None:
    assert Settings.from_env({}).cors_origins == ("http://localhost:5173", "http://127.0.0.1:5173")
    prod = {"HMS_ENV": "prod", "HMS_JWT_SECRET": SECRET}
    assert Settings.from_env(prod).cors_origins == ()
    listed = Settings.from_env(
        {**prod, "HMS_CORS_ORIGINS": " https://app.example.org/, http://localhost:3000 ,"}
    )
    assert listed.cors_origins == ("https://app.example.org", "http://localhost:3000")
    assert Settings.from_env({"HMS_CORS_ORIGINS": ""}).cors_origins == ()


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


def test_cost_settings_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "HMS_MAX_COST": "2000",
            "HMS_MAX_DEPTH": "9",
            "HMS_MAX_ALIASES": "0",
            "HMS_MAX_ROOT_FIELDS": "3",
            "HMS_COST_MODE": "measure",
            "HMS_COST_MODES": "ios=enforce, web=measure",
            "HMS_COST_BUDGETS": "default=2000/100,admin=5000/250",
            "HMS_HOSPITAL_COST_BUDGET": "50000/2000",
            "HMS_COST_FAIL_OPEN_ROLES": "clinician, front_desk",
        }
    )
    assert (settings.max_cost, settings.max_depth, settings.max_aliases) == (2000, 9, 0)
    assert settings.max_root_fields == 3
    assert settings.cost_mode == "measure"
    assert settings.cost_modes == {"ios": "enforce", "web": "measure"}
    assert settings.cost_budgets == {"default": (2000.0, 100.0), "admin": (5000.0, 250.0)}
    assert settings.hospital_cost_budget == (50000.0, 2000.0)
    assert settings.cost_fail_open_roles == {"clinician", "front_desk"}
    defaults = Settings.from_env({})
    assert (defaults.max_cost, defaults.max_depth, defaults.max_aliases) == (1000, 12, 30)
    assert defaults.cost_budgets == {"default": (1000.0, 50.0)}
    assert defaults.cost_fail_open_roles == {"clinician"}
    assert Settings.from_env({"HMS_COST_FAIL_OPEN_ROLES": ""}).cost_fail_open_roles == set()
