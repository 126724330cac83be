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
from collections.abc import Callable, Hashable, Iterator
from typing import Any

from hms.context import Principal
from hms.persistence import hospitals, memberships
from hms.persistence.database import Database
from hms.security.oidc import OidcVerifier
from hms.security.tokens import ROLES, AuthError, bearer, principal, verify


class Denied(Exception):
    """The caller is who the token says, but may not act in that hospital (answered 403)."""


class Expiring:
    """A bounded map whose answers expire (least recently used dropped first)."""

    def __init__(self, size: int, clock: Callable[[], float]) -> None:
        self.size = size
        self.clock = clock
        self._items: OrderedDict[Hashable, tuple[Any, float]] = OrderedDict()

    def get(self, key: Hashable) -> tuple[bool, Any]:
        """(True, value) while ``key``'s answer is fresh, else (False, None)."""
        item = self._items.get(key)
        if item is None or item[1] <= self.clock():
            return False, None
        self._items.move_to_end(key)
        return True, item[0]

    def put(self, key: Hashable, value: Any, ttl: float) -> None:
        self._items[key] = (value, self.clock() + ttl)
        self._items.move_to_end(key)
        if len(self._items) > self.size:
            self._items.popitem(last=False)

    def forget(self, key: Hashable) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Hashable]:
        """The keys, least recently used first."""
        return iter(self._items)

    def __reversed__(self) -> Iterator[Hashable]:
        keys: Iterator[Hashable] = reversed(self._items)
        return keys


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
        self.found_ttl = found_ttl
        self.missing_ttl = missing_ttl
        self.timeout = timeout
        self._known = Expiring(size, clock)

    async def exists(self, hospital_id: uuid.UUID) -> bool:
        fresh, known = self._known.get(hospital_id)
        if fresh:
            return bool(known)
        # The primary: a hospital created a moment ago may not have reached a replica yet.
        db = self.database.request(hospital_id, readonly=True, timeout=self.timeout, replica=False)
        try:
            found = await hospitals.visible(db)
        finally:
            await db.close()
        self._known.put(hospital_id, found, self.found_ttl if found else self.missing_ttl)
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
    """Who holds which roles in which hospital; answers are cached briefly per worker.

    A change is forgotten as soon as it is announced (:meth:`forget`, :meth:`forget_all`, called
    by hms.security.membership_events); ``ttl`` bounds how long an answer is trusted when no
    announcement arrives. A lookup that overlaps an announcement answers with what it read but
    does not keep it: it may have read the membership just before the change committed.
    """

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
        self.timeout = timeout
        self._known = Expiring(size, clock)
        self._changes = 0  # announcements so far: a lookup keeps its answer only if none came

    async def roles(self, hospital_id: uuid.UUID, subject: str) -> frozenset[str] | None:
        """The roles ``subject`` holds in ``hospital_id``, or None if not a member."""
        key = (hospital_id, subject)
        fresh, known = self._known.get(key)
        if fresh:
            held: frozenset[str] | None = known
            return held
        changes = self._changes
        db = self.database.request(hospital_id, readonly=True, timeout=self.timeout, replica=False)
        try:
            held = await memberships.roles_of(db, subject)
        finally:
            await db.close()
        if changes == self._changes:
            self._known.put(key, held, self.ttl if held is not None else self.missing_ttl)
        return held

    def forget(self, hospital_id: uuid.UUID, subject: str) -> None:
        """Ask the database next time: ``subject``'s membership of ``hospital_id`` changed."""
        self._changes += 1
        self._known.forget((hospital_id, subject))

    def forget_all(self) -> None:
        """Ask the database next time, for everyone: changes may have gone unannounced."""
        self._changes += 1
        self._known.clear()


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
