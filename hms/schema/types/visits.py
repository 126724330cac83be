"""``VisitSummary``: a patient's finished encounters summed up by the clinical job.

Not a Node: it has no id of its own and is only reached through ``Patient.visitSummary``, which
classes it (the whole object is clinical, so its fields need no class of their own).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry

#: On ``Patient.visitSummary``: where the numbers come from, and how fresh they are.
VISIT_SUMMARY = (
    "The patient's finished encounters summed up. Computed in the background after each"
    " encounter recorded as FINISHED, so it may trail the latest encounter by a few seconds;"
    " null until the first finished encounter has been processed."
)


@strawberry.type(description="A patient's finished encounters, counted and timed.")
class VisitSummary:
    finished_encounters: int = strawberry.field(description="Encounters with status FINISHED.")
    first_visit_at: dt.datetime | None = strawberry.field(
        description="Start of the earliest finished encounter."
    )
    last_visit_at: dt.datetime | None = strawberry.field(
        description="Start of the latest finished encounter."
    )
    total_minutes: int = strawberry.field(
        description=(
            "Their length summed (end minus start), rounded to whole minutes; an encounter"
            " without an end counts nothing."
        )
    )
    updated_at: dt.datetime = strawberry.field(description="When it was last computed.")

    @classmethod
    def from_row(cls, row: Any) -> VisitSummary:
        return cls(
            finished_encounters=row.finished_encounters,
            first_visit_at=row.first_visit_at,
            last_visit_at=row.last_visit_at,
            total_minutes=row.total_minutes,
            updated_at=row.updated_at,
        )
