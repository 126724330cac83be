"""The edges of token verification, each pinned by a token built by hand (issue 6 defect 7,
issue 15's survivors in security/tokens.py)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import jwt
import pytest

from hms.security.tokens import (
    DEFAULT_TTL,
    LEEWAY,
    MAX_CLIENT_NAME,
    MAX_LIFETIME,
    AuthError,
    issue,
    verify,
)

SECRET = "test-secret-not-for-production-0123456789"


def signed(**claims: Any) -> str:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "u1",
        "hospital_id": str(uuid.uuid4()),
        "roles": ["admin"],
        "iat": now,
        "exp": now + 600,
    }
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not ...}, SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"roles": "admin"}, "roles claim must be a list of strings"),
        ({"roles": 5}, "roles claim must be a list of strings"),
        ({"roles": ["admin", 7]}, "roles claim must be a list of strings"),
        ({"sub": ""}, "sub claim must be a non-empty string"),
        ({"sub": 123}, "malformed"),
        ({"sub": ...}, "malformed"),
        ({"hospital_id": ...}, "no valid hospital_id"),
        ({"hospital_id": "not-a-uuid"}, "no valid hospital_id"),
        ({"iat": ...}, "malformed"),
        ({"exp": ...}, "malformed"),
        ({"azp": ""}, "azp claim must be a string of 1 to 100 characters"),
        ({"azp": 7}, "azp claim must be a string of 1 to 100 characters"),
        ({"azp": "x" * 101}, "azp claim must be a string of 1 to 100 characters"),
    ],
)
def test_malformed_claims_are_refused_with_a_reason(claims: dict[str, Any], message: str) -> None:
    with pytest.raises(AuthError, match=message):
        verify(SECRET, signed(**claims))


def test_unknown_roles_are_dropped_known_ones_kept() -> None:
    principal = verify(SECRET, signed(roles=["admin", "wizard"]))
    assert principal.roles == frozenset({"admin"})


def test_the_clock_skew_bound_is_thirty_seconds() -> None:
    assert dt.timedelta(seconds=30) == LEEWAY
    now = int(time.time())
    verify(SECRET, signed(iat=now - 600, exp=now - 28))  # expired 28 s ago: within the skew
    with pytest.raises(AuthError, match="expired"):
        verify(SECRET, signed(iat=now - 600, exp=now - 33))
    verify(SECRET, signed(iat=now + 28, exp=now + 600))  # issued 28 s "in the future"
    with pytest.raises(AuthError, match="not valid yet"):
        verify(SECRET, signed(iat=now + 33, exp=now + 600))


def test_issued_tokens_live_twelve_hours_by_default() -> None:
    assert dt.timedelta(hours=12) == DEFAULT_TTL
    claims = jwt.decode(
        issue(SECRET, subject="u", hospital_id=uuid.uuid4(), roles=["admin"]),
        SECRET,
        algorithms=["HS256"],
    )
    assert claims["exp"] - claims["iat"] == 12 * 3600


def test_lifetimes_past_the_maximum_are_refused() -> None:
    assert dt.timedelta(hours=24) == MAX_LIFETIME
    now = int(time.time())
    day = 24 * 3600
    verify(SECRET, signed(iat=now, exp=now + day))
    with pytest.raises(AuthError, match="lifetime"):
        verify(SECRET, signed(iat=now, exp=now + day + 1))
    with pytest.raises(AuthError, match="lifetime"):
        verify(SECRET, signed(iat=now, exp=now + 3600), max_lifetime=dt.timedelta(minutes=30))
    # A token for ten years, the thing the bound exists for.
    with pytest.raises(AuthError, match="lifetime"):
        verify(SECRET, signed(iat=now, exp=now + 3650 * day))


def test_issued_roles_are_deduplicated_and_sorted() -> None:
    token = issue(
        SECRET, subject="u", hospital_id=uuid.uuid4(), roles=iter(["front_desk", "admin", "admin"])
    )
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["roles"] == ["admin", "front_desk"]


def test_the_client_application_comes_from_azp() -> None:
    assert verify(SECRET, signed()).client is None
    assert verify(SECRET, signed(azp="ios")).client == "ios"
    assert verify(SECRET, signed(azp="x" * MAX_CLIENT_NAME)).client == "x" * MAX_CLIENT_NAME
    made = issue(SECRET, subject="u", hospital_id=uuid.uuid4(), roles=["admin"], client="web")
    assert jwt.decode(made, options={"verify_signature": False})["azp"] == "web"
    assert verify(SECRET, made).client == "web"
    plain = issue(SECRET, subject="u", hospital_id=uuid.uuid4(), roles=["admin"])
    assert "azp" not in jwt.decode(plain, options={"verify_signature": False})
