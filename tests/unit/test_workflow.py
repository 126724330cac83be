"""The FHIR appointment workflow table the status mutations enforce."""

from __future__ import annotations

from hms.models.tables import APPOINTMENT_STATUSES
from hms.models.workflow import allowed_from, next_statuses


def test_final_statuses_only_lead_to_entered_in_error() -> None:
    for status in ("fulfilled", "cancelled", "noshow"):
        assert next_statuses(status) == ("entered-in-error",)
    assert next_statuses("entered-in-error") == ()


def test_allowed_from_is_the_inverse_of_next_statuses() -> None:
    for target in APPOINTMENT_STATUSES:
        for source in APPOINTMENT_STATUSES:
            assert (source in allowed_from(target)) == (target in next_statuses(source))
    assert set(allowed_from("cancelled")) == {
        "proposed",
        "pending",
        "waitlist",
        "booked",
        "arrived",
        "checked-in",
    }
