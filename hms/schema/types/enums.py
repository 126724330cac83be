"""GraphQL enums: FHIR codes in SCREAMING_CASE; the Python value is the stored FHIR code."""

from __future__ import annotations

import enum

import strawberry


@strawberry.enum(description="Administrative gender (FHIR AdministrativeGender).")
class Gender(enum.Enum):
    MALE = "male"
    FEMALE = "female"
    OTHER = "other"
    UNKNOWN = "unknown"


@strawberry.enum(description="FHIR R4 AppointmentStatus.")
class AppointmentStatus(enum.Enum):
    PROPOSED = "proposed"
    PENDING = "pending"
    BOOKED = "booked"
    ARRIVED = "arrived"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    NOSHOW = "noshow"
    ENTERED_IN_ERROR = "entered-in-error"
    CHECKED_IN = "checked-in"
    WAITLIST = "waitlist"


@strawberry.enum(description="FHIR R4 EncounterStatus.")
class EncounterStatus(enum.Enum):
    PLANNED = "planned"
    ARRIVED = "arrived"
    TRIAGED = "triaged"
    IN_PROGRESS = "in-progress"
    ONLEAVE = "onleave"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    ENTERED_IN_ERROR = "entered-in-error"
    UNKNOWN = "unknown"


@strawberry.enum(description="Encounter class (FHIR v3 ActCode subset).")
class EncounterClass(enum.Enum):
    AMB = "AMB"
    EMER = "EMER"
    IMP = "IMP"
    OBSENC = "OBSENC"
    HH = "HH"
    VR = "VR"


@strawberry.enum
class OrderDirection(enum.Enum):
    ASC = "asc"
    DESC = "desc"


@strawberry.enum
class PatientOrderField(enum.Enum):
    NAME = "name"
    CREATED_AT = "created_at"


@strawberry.enum
class AppointmentOrderField(enum.Enum):
    START_AT = "start_at"


@strawberry.enum(description="What a report lists.")
class ReportKind(enum.Enum):
    APPOINTMENTS = "appointments"
    ENCOUNTERS = "encounters"


@strawberry.enum(description="Where a report is: QUEUED, RUNNING, then READY or FAILED.")
class ReportStatus(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"
