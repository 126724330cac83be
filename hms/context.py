"""The per-request Context handed to every resolver: who asks, through which transaction."""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import uuid

from hms.cache.backend import Cache
from hms.loaders import Loaders
from hms.persistence.database import RequestDb
from hms.settings import Settings

#: The patients whose data the running request has read or written (their ids), for its audit
#: event; None outside a request. DataLoader batches are tasks that share the set.
TOUCHED: contextvars.ContextVar[set[uuid.UUID] | None] = contextvars.ContextVar(
    "hms_touched", default=None
)


def touch(patient_id: uuid.UUID) -> None:
    touched = TOUCHED.get()
    if touched is not None:
        touched.add(patient_id)


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

    @property
    def hospital_id(self) -> uuid.UUID:
        return self.principal.hospital_id
