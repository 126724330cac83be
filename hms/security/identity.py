"""Who is calling: a verified token for a hospital that exists.

Two kinds of token. With OIDC configured (:class:`OidcAuthenticator`), a provider's token
names the user and a hospital, and the hospital's memberships in the database say whether
that user may act there and with which roles: a token can narrow its roles but never grant a
hospital or a role the database does not. Without it (development, and deployments whose own
token service holds ``HMS_JWT_SECRET``), :class:`Authenticator` takes the roles as signed.

A correctly signed token can still name a hospital that does not exist (deleted, mistyped in a
token service, another environment's id). It is refused at the door with 401 instead of
failing later with internal errors. Whether a hospital exists is looked up under that
hospital's own tenant binding (row-level security shows a transaction only its own hospital)
and remembered briefly, so the lookup costs nothing on the hot path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

from hms.context import Principal
from hms.persistence import hospitals, memberships
from hms.persistence.database import Database
from hms.security.oidc import OidcVerifier
from hms.security.tokens import ROLES, AuthError, bearer, principal, verify


class Denied(Exception):
    """The caller is who the token says, but may not act in that hospital (answered 403)."""


class Tenants:
    """Which hospitals exist; answers are cached (found: minutes, missing: seconds)."""

    def __init__(
        self,
        database: Database,
        *,
        found_ttl: float = 300.0,
        missing_ttl: float = 30.0,
        size: int = 10_000,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database = database
        self.clock = clock
        self.found_ttl = found_ttl
        self.missing_ttl = missing_ttl
        self.size = size
        self.timeout = timeout
        self._known: OrderedDict[uuid.UUID, tuple[bool, float]] = OrderedDict()

    async def exists(self, hospital_id: uuid.UUID) -> bool:
        now = self.clock()
        known = self._known.get(hospital_id)
        if known is not None and known[1] > now:
            return known[0]
        # The primary: a hospital created a moment ago may not have reached a replica yet.
        db = self.database.request(hospital_id, readonly=True, timeout=self.timeout, replica=False)
        try:
            found = await hospitals.visible(db)
        finally:
            await db.close()
        self._known[hospital_id] = (found, now + (self.found_ttl if found else self.missing_ttl))
        self._known.move_to_end(hospital_id)
        if len(self._known) > self.size:
            self._known.popitem(last=False)
        return found


class Authenticator:
    """``Authorization`` header → :class:`Principal`, or :class:`AuthError` (answered 401)."""

    def __init__(self, secret: str, tenants: Tenants, *, max_lifetime: dt.timedelta) -> None:
        self.secret = secret
        self.tenants = tenants
        self.max_lifetime = max_lifetime

    async def __call__(self, authorization: str | None) -> Principal:
        principal = verify(self.secret, bearer(authorization), max_lifetime=self.max_lifetime)
        if not await self.tenants.exists(principal.hospital_id):
            raise AuthError("token names a hospital that does not exist")
        return principal


class Memberships:
    """Who holds which roles in which hospital; answers are cached briefly per worker."""

    def __init__(
        self,
        database: Database,
        *,
        ttl: float = 30.0,
        missing_ttl: float = 5.0,
        size: int = 100_000,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database = database
        self.ttl = ttl
        self.missing_ttl = missing_ttl
        self.size = size
        self.timeout = timeout
        self.clock = clock
        self._known: OrderedDict[tuple[uuid.UUID, str], tuple[frozenset[str] | None, float]]
        self._known = OrderedDict()

    async def roles(self, hospital_id: uuid.UUID, subject: str) -> frozenset[str] | None:
        """The roles ``subject`` holds in ``hospital_id``, or None if not a member."""
        key = (hospital_id, subject)
        now = self.clock()
        known = self._known.get(key)
        if known is not None and known[1] > now:
            return known[0]
        db = self.database.request(hospital_id, readonly=True, timeout=self.timeout, replica=False)
        try:
            held = await memberships.roles_of(db, subject)
        finally:
            await db.close()
        self._known[key] = (held, now + (self.ttl if held is not None else self.missing_ttl))
        self._known.move_to_end(key)
        if len(self._known) > self.size:
            self._known.popitem(last=False)
        return held

    def forget(self, hospital_id: uuid.UUID, subject: str) -> None:
        self._known.pop((hospital_id, subject), None)


class OidcAuthenticator:
    """``Authorization`` header -> :class:`Principal`, for tokens of an OIDC provider."""

    def __init__(
        self, verifier: OidcVerifier, members: Memberships, *, max_lifetime: dt.timedelta
    ) -> None:
        self.verifier = verifier
        self.members = members
        self.max_lifetime = max_lifetime

    async def __call__(self, authorization: str | None) -> Principal:
        claims = await self.verifier.claims(bearer(authorization))
        named = principal(claims, max_lifetime=self.max_lifetime)
        held = await self.members.roles(named.hospital_id, named.subject)
        if held is None:
            raise Denied("You are not a member of the hospital this token names")
        # A token may carry roles to act with fewer than the user holds, never more.
        roles = held & named.roles if "roles" in claims else held
        return dataclasses.replace(named, roles=frozenset(roles) & ROLES)
