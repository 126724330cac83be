"""Per-request DataLoaders, named ``XByYLoader``; build a fresh :class:`Loaders` per request."""

from __future__ import annotations

import uuid
from typing import Any

from hms.loaders.base import (
    CountByParentLoader,
    Outstanding,
    PageByParentLoader,
    RowByKeyLoader,
    TrackedLoader,
)
from hms.persistence import (
    appointments,
    encounters,
    hospitals,
    patients,
    practitioners,
    reports,
    visits,
)
from hms.persistence.database import RequestDb
from hms.persistence.filters import AppointmentFilter, EncounterFilter


class Loaders:
    """Every loader of one request, all reading through that request's one transaction."""

    def __init__(self, db: RequestDb) -> None:
        self.outstanding = out = Outstanding()
        self.hospital_by_id = RowByKeyLoader[uuid.UUID](db, out, hospitals.by_ids)
        self.patient_by_id = RowByKeyLoader[uuid.UUID](db, out, patients.by_ids)
        self.patient_by_mrn = RowByKeyLoader[str](db, out, patients.by_mrns, attribute="mrn")
        self.practitioner_by_id = RowByKeyLoader[uuid.UUID](db, out, practitioners.by_ids)
        self.appointment_by_id = RowByKeyLoader[uuid.UUID](db, out, appointments.by_ids)
        self.encounter_by_id = RowByKeyLoader[uuid.UUID](db, out, encounters.by_ids)
        self.report_by_id = RowByKeyLoader[uuid.UUID](db, out, reports.by_ids)
        self.visit_summary_by_patient = RowByKeyLoader[uuid.UUID](
            db, out, visits.by_patient_ids, attribute="patient_id"
        )
        self.appointments_by_patient = PageByParentLoader[AppointmentFilter | None](
            db, out, appointments.pages_by_patient
        )
        self.appointments_by_practitioner = PageByParentLoader[AppointmentFilter | None](
            db, out, appointments.pages_by_practitioner
        )
        self.encounters_by_patient = PageByParentLoader[EncounterFilter | None](
            db, out, encounters.pages_by_patient
        )
        self.appointment_count_by_patient = CountByParentLoader[AppointmentFilter | None](
            db, out, appointments.counts_by_patient
        )
        self.appointment_count_by_practitioner = CountByParentLoader[AppointmentFilter | None](
            db, out, appointments.counts_by_practitioner
        )
        self.encounter_count_by_patient = CountByParentLoader[EncounterFilter | None](
            db, out, encounters.counts_by_patient
        )

    def close(self) -> None:
        """Forget every cached future, and the rows in them, when the request ends.

        Anything that outlives a request by mistake (a task, an error's traceback) reaches the
        loaders; emptied, they keep no rows alive.
        """
        for loader in vars(self).values():
            if isinstance(loader, TrackedLoader):
                loader.clear_all()

    # After a write: the same response must never show the row as it was before. The row itself
    # is primed (no re-read); cached pages and counts that may contain it are dropped.

    def patient_written(self, row: Any) -> None:
        self.patient_by_id.clear(row.id).prime(row.id, row)
        self.patient_by_mrn.clear_all().prime(row.mrn, row)  # the MRN may have changed

    def appointment_written(self, row: Any) -> None:
        self.appointment_by_id.clear(row.id).prime(row.id, row)
        for loader in (
            self.appointments_by_patient,
            self.appointments_by_practitioner,
            self.appointment_count_by_patient,
            self.appointment_count_by_practitioner,
        ):
            loader.clear_all()

    def encounter_written(self, row: Any) -> None:
        self.encounter_by_id.clear(row.id).prime(row.id, row)
        self.encounters_by_patient.clear_all()
        self.encounter_count_by_patient.clear_all()
