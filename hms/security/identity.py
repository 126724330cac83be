"""Who is calling: a verified token for a hospital that exists.

A correctly signed token can still name a hospital that does not exist (deleted, mistyped in a
token service, another environment's id). It is refused at the door with 401 instead of
failing later with internal errors. Whether a hospital exists is looked up under that
hospital's own tenant binding (row-level security shows a transaction only its own hospital)
and remembered briefly, so the lookup costs nothing on the hot path.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

from hms.context import Principal
from hms.persistence import hospitals
from hms.persistence.database import Database
from hms.security.tokens import AuthError, bearer, verify


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
