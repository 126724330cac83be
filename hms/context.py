"""The per-request Context handed to every resolver: who asks, through which transaction."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import datetime as dt
import uuid

from hms.cache.backend import Cache
from hms.loaders import Loaders
from hms.persistence import grants
from hms.persistence.cipher import Cipher
from hms.persistence.database import RequestDb
from hms.settings import Settings


@dataclasses.dataclass
class Trail:
    """What the running request's audit event says beyond who asked and through which
    document: the patients whose data it read or wrote (their ids), the user's reason where an
    operation asks for one, and whether it read a confidential record under an emergency grant.
    """

    patients: set[uuid.UUID] = dataclasses.field(default_factory=set)
    reason: str | None = None
    emergency: bool = False
    #: The caller's W3C trace id, if it sent one.
    trace_id: str | None = None


#: The running request's trail; None outside a request. DataLoader batches are tasks that share
#: it.
TRAIL: contextvars.ContextVar[Trail | None] = contextvars.ContextVar("hms_trail", default=None)


def touch(patient_id: uuid.UUID) -> None:
    trail = TRAIL.get()
    if trail is not None:
        trail.patients.add(patient_id)


def note_reason(reason: str) -> None:
    trail = TRAIL.get()
    if trail is not None:
        trail.reason = reason


def note_emergency() -> None:
    trail = TRAIL.get()
    if trail is not None:
        trail.emergency = True


@dataclasses.dataclass(frozen=True)
class Principal:
    """An authenticated caller: a subject acting in exactly one hospital with some roles."""

    subject: str
    hospital_id: uuid.UUID
    roles: frozenset[str]
    #: The client application the token was issued to (its ``azp`` claim), if it names one.
    client: str | None = None


@dataclasses.dataclass
class Context:
    principal: Principal
    db: RequestDb
    loaders: Loaders
    settings: Settings
    cache: Cache
    now: dt.datetime = dataclasses.field(default_factory=lambda: dt.datetime.now(dt.UTC))
    #: Encrypts and decrypts national ids (keys from ``HMS_PHI_KEY``).
    cipher: Cipher = dataclasses.field(default_factory=lambda: Cipher(()))
    _grants: asyncio.Future[frozenset[uuid.UUID]] | None = None

    async def emergency_grants(self) -> frozenset[uuid.UUID]:
        """The patients the caller holds an open emergency grant for; read once per request,
        when a confidential record first needs it."""
        if self._grants is None:
            pending = self._grants = asyncio.get_running_loop().create_future()
            try:
                pending.set_result(await grants.open_for(self.db, self.principal.subject))
            except BaseException as error:
                self._grants = None  # the next field asks again
                if isinstance(error, Exception):
                    pending.set_exception(error)
                    pending.exception()  # retrieved here; raised to this caller below
                else:
                    pending.cancel()
                raise
        return await asyncio.shield(self._grants)

    def granted(self) -> None:
        """The caller opened a grant in this request: read them again when next needed (the
        transaction sees its own insert)."""
        self._grants = None

    @property
    def hospital_id(self) -> uuid.UUID:
        return self.principal.hospital_id
