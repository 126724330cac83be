"""FHIR appointment workflow: which status may follow which (DESIGN §4, issue 3).

A plain table so the rule has one home: resolvers use it to explain a refused transition, and the
write SQL uses :func:`allowed_from` in its ``WHERE`` so the check and the change are one atomic
statement (no read-modify-write race between two clerks).
"""

from __future__ import annotations

from hms.models.tables import APPOINTMENT_STATUSES

_NEXT: dict[str, tuple[str, ...]] = {
    "proposed": ("pending", "booked", "cancelled", "waitlist"),
    "pending": ("booked", "cancelled"),
    "waitlist": ("booked", "cancelled"),
    "booked": ("arrived", "checked-in", "cancelled", "noshow"),
    "arrived": ("checked-in", "fulfilled", "cancelled"),
    "checked-in": ("fulfilled", "cancelled"),
    "fulfilled": (),
    "cancelled": (),
    "noshow": (),
    "entered-in-error": (),
}

#: Any record but an already voided one may be marked as entered in error (FHIR: a data-entry fix,
#: not a workflow step).
APPOINTMENT_TRANSITIONS: dict[str, tuple[str, ...]] = {
    status: nexts if status == "entered-in-error" else (*nexts, "entered-in-error")
    for status, nexts in _NEXT.items()
}
assert set(APPOINTMENT_TRANSITIONS) == set(APPOINTMENT_STATUSES)

#: States a new appointment may be created in.
INITIAL_APPOINTMENT_STATUSES = ("proposed", "pending", "booked", "waitlist")
#: States whose time may still move (before the patient shows up).
RESCHEDULABLE_STATUSES = ("proposed", "pending", "booked", "waitlist")


def next_statuses(status: str) -> tuple[str, ...]:
    return APPOINTMENT_TRANSITIONS[status]


def allowed_from(target: str) -> tuple[str, ...]:
    """Every status from which ``target`` may be reached."""
    return tuple(s for s, nexts in APPOINTMENT_TRANSITIONS.items() if target in nexts)
