"""Filter values handed down from the API, as plain frozen (hashable) dataclasses.

They are loader cache keys too: two nested connections with equal filters share one batch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid


@dataclasses.dataclass(frozen=True)
class PatientFilter:
    active: bool | None = None
    name_prefix: str | None = None
    created_from: dt.datetime | None = None
    created_to: dt.datetime | None = None
    gender: str | None = None


@dataclasses.dataclass(frozen=True)
class AppointmentFilter:
    start_from: dt.datetime | None = None
    start_to: dt.datetime | None = None
    statuses: tuple[str, ...] | None = None
    practitioner_id: uuid.UUID | None = None
    patient_id: uuid.UUID | None = None


@dataclasses.dataclass(frozen=True)
class EncounterFilter:
    period_from: dt.datetime | None = None
    period_to: dt.datetime | None = None
    classes: tuple[str, ...] | None = None
    statuses: tuple[str, ...] | None = None
    patient_id: uuid.UUID | None = None
    practitioner_id: uuid.UUID | None = None


@dataclasses.dataclass(frozen=True)
class PractitionerFilter:
    active: bool | None = None
    specialty: str | None = None
    name_prefix: str | None = None
