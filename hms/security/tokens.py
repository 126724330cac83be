"""Bearer tokens: HS256 JWTs signed with ``HMS_JWT_SECRET`` (dev/demo; OIDC comes later).

Claims: ``sub`` (the user), ``hospital_id`` (the one tenant the token acts in), ``roles``, ``iat``
and ``exp``; optionally ``azp``, the client application it was issued to (OIDC's "authorized
party"), which decides that client's document mode. A token must say when it was issued and
must not live longer than the server allows (``exp - iat``), so a leaked token cannot be minted
to last for years. Every failure is an :class:`AuthError` with a message safe to show the
caller.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import jwt

from hms.context import Principal
from hms.security import policy

ROLES = frozenset(policy.ROLES)
ALGORITHM = "HS256"
# Clock skew tolerated between the token issuer and this server.
LEEWAY = dt.timedelta(seconds=30)
#: What :func:`issue` gives when asked for nothing else.
DEFAULT_TTL = dt.timedelta(hours=12)
#: What :func:`verify` accepts when asked for nothing else.
MAX_LIFETIME = dt.timedelta(hours=24)
MAX_CLIENT_NAME = 100


class AuthError(Exception):
    """The request is not authenticated; ``str(error)`` is safe to return to the client."""


def issue(
    secret: str,
    *,
    subject: str,
    hospital_id: uuid.UUID,
    roles: Iterable[str],
    ttl: dt.timedelta = DEFAULT_TTL,
    now: dt.datetime | None = None,
    client: str | None = None,
) -> str:
    roles = sorted(set(roles))
    unknown = set(roles) - ROLES
    if unknown:
        raise ValueError(f"unknown role(s) {sorted(unknown)}; known: {sorted(ROLES)}")
    issued = now or dt.datetime.now(dt.UTC)
    claims = {
        "sub": subject,
        "hospital_id": str(hospital_id),
        "roles": roles,
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
    }
    if client is not None:
        claims["azp"] = client
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str, *, max_lifetime: dt.timedelta = MAX_LIFETIME) -> Principal:
    claims = decoded(
        lambda: jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "iat", "sub"]},
            leeway=LEEWAY,
        )
    )
    return principal(claims, max_lifetime=max_lifetime)


def decoded(decode: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The claims ``decode`` (a ``jwt.decode`` call) returns; its failures as :class:`AuthError`
    with a reason safe to show the client. One mapping for shared-secret and OIDC tokens."""
    try:
        return decode()
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidAudienceError:
        raise AuthError("token is for another audience") from None
    except jwt.InvalidIssuerError:
        raise AuthError("token is from another issuer") from None
    except jwt.ImmatureSignatureError:
        raise AuthError("token is not valid yet (iat or nbf in the future)") from None
    except jwt.InvalidSignatureError:
        raise AuthError("token signature is invalid") from None
    except jwt.PyJWTError:
        raise AuthError("token is malformed") from None


def principal(claims: dict[str, Any], *, max_lifetime: dt.timedelta) -> Principal:
    """The caller a verified token's claims name (signature, ``exp`` and ``iat`` checked)."""
    lifetime = int(claims["exp"]) - int(claims["iat"])  # PyJWT checked both convert
    if lifetime > max_lifetime.total_seconds():
        raise AuthError(
            f"token lifetime (exp - iat) exceeds {int(max_lifetime.total_seconds())} seconds"
        )
    try:
        hospital_id = uuid.UUID(str(claims["hospital_id"]))
    except (KeyError, ValueError):
        raise AuthError("token has no valid hospital_id claim") from None
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise AuthError("token roles claim must be a list of strings")
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise AuthError("token sub claim must be a non-empty string")
    client = claims.get("azp")
    if client is not None and (
        not isinstance(client, str) or not 0 < len(client) <= MAX_CLIENT_NAME
    ):
        raise AuthError(f"token azp claim must be a string of 1 to {MAX_CLIENT_NAME} characters")
    return Principal(
        subject=claims["sub"],
        hospital_id=hospital_id,
        roles=frozenset(roles) & ROLES,
        client=client,
    )


def bearer(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if not authorization:
        raise AuthError("missing Authorization: Bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization header must be 'Bearer <token>'")
    return token.strip()
