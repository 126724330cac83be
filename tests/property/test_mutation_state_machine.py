"""Random sequences of mutations across two hospitals keep every write invariant (issue 3).

A hypothesis state machine registers and edits patients, books, moves, cancels and progresses
appointments and records encounters through the whole ASGI app on the real PostgreSQL. Before each
call a small in-memory model predicts the answer (success, SLOT_TAKEN, VERSION_CONFLICT,
VALIDATION or NOT_FOUND, and on which input field); the API must give exactly that. After every
step the database, read as the owner around row-level security, must equal the model row for row,
no practitioner may hold two overlapping active appointments, and ``patientStats`` must count what
the table holds.

The model takes the FHIR transition table from :mod:`hms.models.workflow` (the rules under test
are its enforcement: the guarded UPDATEs, the exclusion constraint, the version guards), but
decides on its own which statuses occupy a slot. Each example starts with two fresh hospitals of
its own; a small time grid (30-minute slots on two days, two practitioners each) makes clashes
frequent.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import uuid
from typing import Any, ClassVar

import hypothesis
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from hms.models.ids import uuid7
from hms.models.workflow import APPOINTMENT_TRANSITIONS, RESCHEDULABLE_STATUSES
from hms.security.tokens import issue
from hms.settings import Settings
from tests.api.writes import (
    CANCEL,
    CREATE_PATIENT,
    RECORD_ENCOUNTER,
    RESCHEDULE,
    SCHEDULE,
    SET_STATUS,
    UPDATE_PATIENT,
    gid,
)
from tests.conftest import SECRET
from tests.property.driver import Driver, driver

#: Statuses that hold a slot (the issue's list, independent of the migration that encodes it).
ACTIVE = frozenset({"pending", "booked", "arrived", "checked-in", "fulfilled"})
STATUSES = [
    "PROPOSED",
    "PENDING",
    "BOOKED",
    "ARRIVED",
    "FULFILLED",
    "CANCELLED",
    "NOSHOW",
    "ENTERED_IN_ERROR",
    "CHECKED_IN",
    "WAITLIST",
]
PRACTITIONERS = 2
#: Far from every other test's dates (they book in 2026-2027).
BASE = dt.datetime(2031, 6, 2, 8, 0, tzinfo=dt.UTC)
#: Minutes after BASE: four half-hour starts on each of two days, so bookings clash often.
STARTS = [day * 24 * 60 + 30 * k for day in range(2) for k in range(4)]
#: A window no rule ever books: probes with foreign ids must not fail for a taken slot.
PROBE = (10 * 24 * 60, 10 * 24 * 60 + 30)
MRNS = ["SM-1", "SM-2", "SM-3", "SM-4"]  # "SM-": no other test looks for these
FAMILY = ["Nguyen", "Okafor", "Silva"]
STATS = "{ patientStats { total active newLast30Days } }"
NODE = "query($id: ID!) { node(id: $id) { id } }"

windows = st.tuples(st.sampled_from(STARTS), st.integers(1, 3)).map(
    lambda w: (w[0], w[0] + 30 * w[1])
)
#: The statuses a booking may start in, BOOKED the most common as at a real front desk.
new_statuses = st.sampled_from(["BOOKED", "BOOKED", "BOOKED", "PENDING", "PROPOSED", "WAITLIST"])
patient_changes = st.one_of(
    st.booleans().map(lambda v: {"active": v}),
    st.sampled_from(FAMILY).map(lambda f: {"familyName": f}),
    st.sampled_from(MRNS).map(lambda m: {"mrn": m}),
)


def iso(minutes: int) -> str:
    return (BASE + dt.timedelta(minutes=minutes)).isoformat()


def fhir(status: str) -> str:
    return status.lower().replace("_", "-")


def graphql_status(code: str) -> str:
    return code.upper().replace("-", "_")


def stale(version: int, offset: int) -> int:
    """A version other than ``version``: an older one when there is one, else a future one."""
    return version - offset if version > offset else version + offset


@dataclasses.dataclass(frozen=True)
class Ref:
    """A patient or appointment as the test knows it: its hospital (0 or 1) and global id."""

    hospital: int
    id: str


@dataclasses.dataclass
class PatientModel:
    mrn: str
    family_name: str
    active: bool
    version: int = 1


@dataclasses.dataclass
class AppointmentModel:
    patient: str
    practitioner: int
    start: int  # minutes after BASE
    end: int
    status: str  # FHIR code
    version: int = 1


@dataclasses.dataclass
class HospitalModel:
    id: uuid.UUID
    token: str
    practitioners: list[uuid.UUID]
    patients: dict[str, PatientModel] = dataclasses.field(default_factory=dict)
    appointments: dict[str, AppointmentModel] = dataclasses.field(default_factory=dict)
    #: (patient id, appointment id or None) of each recorded encounter
    encounters: collections.Counter[tuple[str, str | None]] = dataclasses.field(
        default_factory=collections.Counter
    )

    def clash(self, practitioner: int, start: int, end: int, ignore: str | None = None) -> bool:
        """Whether an active appointment of ``practitioner`` overlaps [start, end)."""
        return any(
            a.practitioner == practitioner
            and a.status in ACTIVE
            and a.start < end
            and start < a.end
            for key, a in self.appointments.items()
            if key != ignore
        )


def found(*refs: Ref | None) -> MultipleResults[Ref]:
    """What a creating rule adds to its bundle: the objects that were created."""
    return multiple(*(ref for ref in refs if ref is not None))


Expected = list[tuple[str, str]]  # (input field, code) of each user error; [] is success


class MutationMachine(RuleBasedStateMachine):
    patients = Bundle[Ref]("patients")
    appointments = Bundle[Ref]("appointments")

    #: The running app and owner connection; bound per test by :func:`machine_on`.
    live: ClassVar[Driver]

    def __init__(self) -> None:
        super().__init__()
        self.hospitals = [self._new_hospital(), self._new_hospital()]
        #: The patientStats of both hospitals as the API last confirmed them.
        self.confirmed_stats: list[dict[str, int]] | None = None

    def _new_hospital(self) -> HospitalModel:
        """Inserted as the owner, like the fixtures: the API has no createHospital."""
        hospital = HospitalModel(
            id=uuid7(),
            token="",
            practitioners=[uuid7() for _ in range(PRACTITIONERS)],
        )
        hospital.token = issue(
            SECRET, subject="state-machine", hospital_id=hospital.id, roles=["clinician"]
        )
        self.live.execute(
            "INSERT INTO hospital (id, slug, name) VALUES ($1, $2, 'State machine')",
            hospital.id,
            f"sm-{hospital.id.hex[-12:]}",
        )
        for i, practitioner in enumerate(hospital.practitioners):
            self.live.execute(
                "INSERT INTO practitioner (hospital_id, id, given_name, family_name, specialty)"
                " VALUES ($1, $2, 'Doc', $3, 'General')",
                hospital.id,
                practitioner,
                f"Machine{i}",
            )
        return hospital

    # -- calling the API ---------------------------------------------------------------------

    def call(self, hospital: int, query: str, input_: dict[str, Any]) -> dict[str, Any]:
        """Run a one-field mutation as hospital ``hospital``; its payload."""
        data = self.live.graphql(self.hospitals[hospital].token, query, {"input": input_})
        (payload,) = data.values()
        result: dict[str, Any] = payload
        return result

    @staticmethod
    def outcome(payload: dict[str, Any], key: str, expected: Expected) -> dict[str, Any] | None:
        """Assert the payload is the predicted one; the changed object on success."""
        got = [(e["field"][-1], e["code"]) for e in payload["userErrors"]]
        assert got == expected, f"predicted {expected or 'success'}, got {payload}"
        if expected:
            assert payload[key] is None, payload
            return None
        changed: dict[str, Any] = payload[key]
        assert changed is not None, payload
        return changed

    def patient(self, ref: Ref) -> PatientModel:
        return self.hospitals[ref.hospital].patients[ref.id]

    def appointment(self, ref: Ref) -> AppointmentModel:
        return self.hospitals[ref.hospital].appointments[ref.id]

    # -- patients ----------------------------------------------------------------------------

    def _create(self, hospital: int, mrn: str, family: str, active: bool) -> Ref | None:
        model = self.hospitals[hospital]
        taken = any(p.mrn == mrn for p in model.patients.values())
        payload = self.call(
            hospital,
            CREATE_PATIENT,
            {"mrn": mrn, "givenName": "Sam", "familyName": family, "active": active},
        )
        created = self.outcome(payload, "patient", [("mrn", "VALIDATION")] if taken else [])
        if created is None:
            return None
        assert (created["mrn"], created["active"], created["version"]) == (mrn, active, 1)
        model.patients[created["id"]] = PatientModel(mrn, family, active)
        return Ref(hospital, created["id"])

    @initialize(target=patients, mrn=st.sampled_from(MRNS), active=st.booleans())
    def a_patient_in_each_hospital(self, mrn: str, active: bool) -> MultipleResults[Ref]:
        """Bookings need patients: start with one per hospital, under the same MRN."""
        return found(*(self._create(h, mrn, "First", active) for h in (0, 1)))

    @rule(
        target=patients,
        hospital=st.integers(0, 1),
        mrn=st.sampled_from(MRNS),
        family=st.sampled_from(FAMILY),
        active=st.booleans(),
    )
    def create_patient(
        self, hospital: int, mrn: str, family: str, active: bool
    ) -> MultipleResults[Ref]:
        return found(self._create(hospital, mrn, family, active))

    @rule(target=patients, patient=patients, same_hospital=st.booleans())
    def reuse_mrn(self, patient: Ref, same_hospital: bool) -> MultipleResults[Ref]:
        """An MRN in use: VALIDATION on mrn in its hospital; in the other one only if used there."""
        hospital = patient.hospital if same_hospital else 1 - patient.hospital
        return found(self._create(hospital, self.patient(patient).mrn, "Again", True))

    @rule(patient=patients, change=patient_changes)
    def update_patient(self, patient: Ref, change: dict[str, Any]) -> None:
        model = self.patient(patient)
        others = self.hospitals[patient.hospital].patients
        clash = "mrn" in change and any(
            p.mrn == change["mrn"] for key, p in others.items() if key != patient.id
        )
        payload = self.call(
            patient.hospital,
            UPDATE_PATIENT,
            {"id": patient.id, "expectedVersion": model.version, **change},
        )
        updated = self.outcome(payload, "patient", [("mrn", "VALIDATION")] if clash else [])
        if updated is None:
            return
        assert updated["version"] == model.version + 1
        model.version += 1
        model.mrn = change.get("mrn", model.mrn)
        model.family_name = change.get("familyName", model.family_name)
        model.active = change.get("active", model.active)
        assert (updated["mrn"], updated["familyName"], updated["active"]) == (
            model.mrn,
            model.family_name,
            model.active,
        )

    @rule(patient=patients, offset=st.integers(1, 3), active=st.booleans())
    def update_patient_at_stale_version(self, patient: Ref, offset: int, active: bool) -> None:
        model = self.patient(patient)
        payload = self.call(
            patient.hospital,
            UPDATE_PATIENT,
            {"id": patient.id, "expectedVersion": stale(model.version, offset), "active": active},
        )
        self.outcome(payload, "patient", [("expectedVersion", "VERSION_CONFLICT")])
        assert payload["userErrors"][0]["currentVersion"] == model.version

    # -- appointments ------------------------------------------------------------------------

    def _schedule(
        self, patient: Ref, practitioner: int, window: tuple[int, int], status: str
    ) -> Ref | None:
        hospital = self.hospitals[patient.hospital]
        start, end = window
        taken = fhir(status) in ACTIVE and hospital.clash(practitioner, start, end)
        payload = self.call(
            patient.hospital,
            SCHEDULE,
            {
                "patientId": patient.id,
                "practitionerId": gid("Practitioner", hospital.practitioners[practitioner]),
                "startAt": iso(start),
                "endAt": iso(end),
                "status": status,
            },
        )
        booked = self.outcome(payload, "appointment", [("startAt", "SLOT_TAKEN")] if taken else [])
        if booked is None:
            return None
        assert (booked["status"], booked["startAt"], booked["endAt"], booked["version"]) == (
            status,
            iso(start),
            iso(end),
            1,
        )
        hospital.appointments[booked["id"]] = AppointmentModel(
            patient.id, practitioner, start, end, fhir(status)
        )
        return Ref(patient.hospital, booked["id"])

    @rule(
        target=appointments,
        patient=patients,
        practitioner=st.integers(0, PRACTITIONERS - 1),
        window=windows,
        status=new_statuses,
    )
    def schedule(
        self, patient: Ref, practitioner: int, window: tuple[int, int], status: str
    ) -> MultipleResults[Ref]:
        return found(self._schedule(patient, practitioner, window, status))

    @rule(
        target=appointments,
        appointment=appointments,
        shift=st.integers(-2, 2),
        slots=st.integers(1, 3),
        status=new_statuses,
    )
    def schedule_near(
        self, appointment: Ref, shift: int, slots: int, status: str
    ) -> MultipleResults[Ref]:
        """Book the same practitioner around an existing booking: clashes unless it freed the slot.

        Random windows alone rarely collide once patients are spread over two hospitals.
        """
        model = self.appointment(appointment)
        start = model.start + 30 * shift
        patient = Ref(appointment.hospital, model.patient)
        return found(
            self._schedule(patient, model.practitioner, (start, start + 30 * slots), status)
        )

    def _reschedule(self, appointment: Ref, window: tuple[int, int]) -> None:
        model = self.appointment(appointment)
        hospital = self.hospitals[appointment.hospital]
        start, end = window
        expected: Expected = []
        if model.status not in RESCHEDULABLE_STATUSES:
            expected = [("id", "VALIDATION")]
        elif model.status in ACTIVE and hospital.clash(
            model.practitioner, start, end, ignore=appointment.id
        ):
            expected = [("startAt", "SLOT_TAKEN")]
        payload = self.call(
            appointment.hospital,
            RESCHEDULE,
            {
                "id": appointment.id,
                "expectedVersion": model.version,
                "startAt": iso(start),
                "endAt": iso(end),
            },
        )
        moved = self.outcome(payload, "appointment", expected)
        if moved is None:
            return
        assert (moved["startAt"], moved["endAt"], moved["version"]) == (
            iso(start),
            iso(end),
            model.version + 1,
        )
        model.start, model.end, model.version = start, end, model.version + 1

    @rule(appointment=appointments, window=windows)
    def reschedule(self, appointment: Ref, window: tuple[int, int]) -> None:
        self._reschedule(appointment, window)

    @rule(appointment=appointments, onto=appointments)
    def reschedule_onto(self, appointment: Ref, onto: Ref) -> None:
        """Move into another booking's window (a clash when both are active with one doctor)."""
        other = self.appointment(onto)
        self._reschedule(appointment, (other.start, other.end))

    def _cancel(self, appointment: Ref, with_version: bool) -> None:
        model = self.appointment(appointment)
        allowed = "cancelled" in APPOINTMENT_TRANSITIONS[model.status]
        input_: dict[str, Any] = {"id": appointment.id, "reason": "patient called"}
        if with_version:
            input_["expectedVersion"] = model.version
        payload = self.call(appointment.hospital, CANCEL, input_)
        cancelled = self.outcome(payload, "appointment", [] if allowed else [("id", "VALIDATION")])
        if cancelled is None:
            self._explains_refusal(payload, model.status)
            return
        assert (cancelled["status"], cancelled["cancellationReason"], cancelled["version"]) == (
            "CANCELLED",
            "patient called",
            model.version + 1,
        )
        model.status, model.version = "cancelled", model.version + 1

    @rule(appointment=appointments, with_version=st.booleans())
    def cancel(self, appointment: Ref, with_version: bool) -> None:
        self._cancel(appointment, with_version)

    def _set_status(self, appointment: Ref, target: str) -> None:
        model = self.appointment(appointment)
        expected: Expected = []
        if target == "cancelled" or target not in APPOINTMENT_TRANSITIONS[model.status]:
            expected = [("status", "VALIDATION")]
        elif target in ACTIVE and self.hospitals[appointment.hospital].clash(
            model.practitioner, model.start, model.end, ignore=appointment.id
        ):
            expected = [("startAt", "SLOT_TAKEN")]  # proposed/waitlist → booked into a taken slot
        payload = self.call(
            appointment.hospital,
            SET_STATUS,
            {
                "id": appointment.id,
                "status": graphql_status(target),
                "expectedVersion": model.version,
            },
        )
        moved = self.outcome(payload, "appointment", expected)
        if moved is None:
            if expected[0][1] == "VALIDATION" and target != "cancelled":
                self._explains_refusal(payload, model.status)
            return
        assert (moved["status"], moved["version"]) == (graphql_status(target), model.version + 1)
        model.status, model.version = target, model.version + 1

    @rule(appointment=appointments, legal=st.booleans(), pick=st.integers(0, len(STATUSES) - 1))
    def set_status(self, appointment: Ref, legal: bool, pick: int) -> None:
        """Half the time a legal next status (the workflow is narrow), else any status."""
        model = self.appointment(appointment)
        nexts = [s for s in APPOINTMENT_TRANSITIONS[model.status] if s != "cancelled"]
        self._set_status(
            appointment, nexts[pick % len(nexts)] if legal and nexts else fhir(STATUSES[pick])
        )

    @rule(
        target=appointments,
        appointment=appointments,
        how=st.sampled_from(["cancel", "NOSHOW", "ENTERED_IN_ERROR"]),
    )
    def release_and_rebook(self, appointment: Ref, how: str) -> MultipleResults[Ref]:
        """Cancel, no-show or void a booking, then book its window again in one step.

        The three ways to free a slot (issue 3); the model predicts both halves, so a slot that
        stays taken (or is wrongly freed) shows. Left to chance, the sequence is rare enough
        that a run can miss it.
        """
        if how == "cancel":
            self._cancel(appointment, with_version=True)
        else:
            self._set_status(appointment, fhir(how))
        model = self.appointment(appointment)
        patient = Ref(appointment.hospital, model.patient)
        window = (model.start, model.end)
        return found(self._schedule(patient, model.practitioner, window, "BOOKED"))

    @staticmethod
    def _explains_refusal(payload: dict[str, Any], status: str) -> None:
        allowed = ", ".join(graphql_status(s) for s in APPOINTMENT_TRANSITIONS[status]) or "none"
        message = payload["userErrors"][0]["message"]
        assert f"allowed next statuses: {allowed}" in message, message

    @rule(
        appointment=appointments,
        offset=st.integers(1, 3),
        how=st.sampled_from(["reschedule", "set_status", "cancel"]),
    )
    def stale_appointment_version(self, appointment: Ref, offset: int, how: str) -> None:
        """The version guard wins over every other reason to refuse."""
        model = self.appointment(appointment)
        version = stale(model.version, offset)
        query, input_ = {
            "reschedule": (
                RESCHEDULE,
                {"startAt": iso(PROBE[0]), "endAt": iso(PROBE[1]), "expectedVersion": version},
            ),
            "set_status": (SET_STATUS, {"status": "ARRIVED", "expectedVersion": version}),
            "cancel": (CANCEL, {"reason": "late", "expectedVersion": version}),
        }[how]
        payload = self.call(appointment.hospital, query, {"id": appointment.id, **input_})
        self.outcome(payload, "appointment", [("expectedVersion", "VERSION_CONFLICT")])
        assert payload["userErrors"][0]["currentVersion"] == model.version

    # -- encounters --------------------------------------------------------------------------

    def _record(self, patient: Ref, appointment: Ref | None, expected: Expected) -> None:
        input_: dict[str, Any] = {
            "patientId": patient.id,
            "class": "AMB",
            "status": "FINISHED",
            "periodStart": iso(0),
            "periodEnd": iso(30),
        }
        if appointment is not None:
            input_["appointmentId"] = appointment.id
        payload = self.call(patient.hospital, RECORD_ENCOUNTER, input_)
        encounter = self.outcome(payload, "encounter", expected)
        if encounter is None:
            return
        assert encounter["patient"] == {"id": patient.id}
        assert encounter["appointment"] == (appointment and {"id": appointment.id})
        key = (patient.id, None if appointment is None else appointment.id)
        self.hospitals[patient.hospital].encounters[key] += 1

    @rule(patient=patients)
    def record_encounter(self, patient: Ref) -> None:
        self._record(patient, None, [])

    @rule(patient=patients, appointment=appointments)
    def record_encounter_for_appointment(self, patient: Ref, appointment: Ref) -> None:
        """Only the patient's own appointment; another hospital's is NOT_FOUND, not VALIDATION."""
        expected: Expected = []
        if appointment.hospital != patient.hospital:
            expected = [("appointmentId", "NOT_FOUND")]
        elif self.appointment(appointment).patient != patient.id:
            expected = [("appointmentId", "VALIDATION")]
        self._record(patient, appointment, expected)

    # -- tenant isolation --------------------------------------------------------------------

    def _invisible(self, ref: Ref) -> None:
        """``node`` finds the object in its own hospital and null in the other one."""
        own = self.live.graphql(self.hospitals[ref.hospital].token, NODE, {"id": ref.id})
        assert own["node"] == {"id": ref.id}
        other = self.live.graphql(self.hospitals[1 - ref.hospital].token, NODE, {"id": ref.id})
        assert other["node"] is None

    @rule(
        patient=patients,
        how=st.sampled_from(["update", "schedule", "practitioner", "encounter", "node"]),
    )
    def foreign_patient(self, patient: Ref, how: str) -> None:
        """Another hospital's patient (or practitioner) id: NOT_FOUND, worded as for a missing id.

        The writes would succeed in the owning hospital; that they change nothing there is
        checked by :meth:`database_equals_model` after the step.
        """
        if how == "node":
            self._invisible(patient)
            return
        model = self.patient(patient)
        actor = 1 - patient.hospital
        input_: dict[str, Any]
        if how == "update":
            query, key, field, what = UPDATE_PATIENT, "patient", "id", "patient"
            input_ = {
                "id": patient.id,
                "expectedVersion": model.version,
                "active": not model.active,
            }
        elif how in ("schedule", "practitioner"):
            # Either the other hospital books this patient with its own practitioner, or the
            # patient's hospital books them with the other hospital's practitioner.
            query, key = SCHEDULE, "appointment"
            field, what = ("patientId", "patient") if how == "schedule" else ("practitionerId", how)
            if how == "practitioner":
                actor = patient.hospital
            practitioner = self.hospitals[1 - patient.hospital].practitioners[0]
            input_ = {
                "patientId": patient.id,
                "practitionerId": gid("Practitioner", practitioner),
                "startAt": iso(PROBE[0]),
                "endAt": iso(PROBE[1]),
            }
        else:
            query, key, field, what = RECORD_ENCOUNTER, "encounter", "patientId", "patient"
            input_ = {
                "patientId": patient.id,
                "class": "AMB",
                "status": "PLANNED",
                "periodStart": iso(0),
            }
        payload = self.call(actor, query, input_)
        self.outcome(payload, key, [(field, "NOT_FOUND")])
        assert payload["userErrors"][0]["message"] == f"No {what} with this id"

    @rule(
        appointment=appointments,
        how=st.sampled_from(["reschedule", "cancel", "set_status", "node"]),
    )
    def foreign_appointment(self, appointment: Ref, how: str) -> None:
        """The other hospital's token with this appointment's id, at its true version."""
        if how == "node":
            self._invisible(appointment)
            return
        model = self.appointment(appointment)
        # At the true version, so a leak cannot hide behind VERSION_CONFLICT.
        nexts = [s for s in APPOINTMENT_TRANSITIONS[model.status] if s != "cancelled"]
        query, input_ = {
            "reschedule": (RESCHEDULE, {"startAt": iso(PROBE[0]), "endAt": iso(PROBE[1])}),
            "cancel": (CANCEL, {"reason": "not yours"}),
            "set_status": (SET_STATUS, {"status": graphql_status((nexts or ["booked"])[0])}),
        }[how]
        payload = self.call(
            1 - appointment.hospital,
            query,
            {"id": appointment.id, "expectedVersion": model.version, **input_},
        )
        self.outcome(payload, "appointment", [("id", "NOT_FOUND")])
        assert payload["userErrors"][0]["message"] == "No appointment with this id"

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def no_active_appointments_overlap(self) -> None:
        (row,) = self.live.fetch(
            "SELECT count(*) AS n FROM appointment a JOIN appointment b"
            " ON a.hospital_id = b.hospital_id AND a.practitioner_id = b.practitioner_id"
            " AND a.id < b.id"
            " AND tstzrange(a.start_at, a.end_at, '[)') && tstzrange(b.start_at, b.end_at, '[)')"
            " WHERE a.hospital_id = ANY($1::uuid[]) AND a.status = ANY($2::text[])"
            " AND b.status = ANY($2::text[])",
            [h.id for h in self.hospitals],
            sorted(ACTIVE),
        )
        assert row["n"] == 0
        for hospital in self.hospitals:  # the model's own schedule is consistent too
            for key, a in hospital.appointments.items():
                if a.status in ACTIVE:
                    assert not hospital.clash(a.practitioner, a.start, a.end, ignore=key)

    @invariant()
    def database_equals_model(self) -> None:
        """Every row, and nothing but them: refused and foreign writes changed nothing."""
        for hospital in self.hospitals:
            patients = self.live.fetch(
                "SELECT id, mrn, family_name, active, version FROM patient WHERE hospital_id = $1",
                hospital.id,
            )
            assert {
                gid("Patient", r["id"]): PatientModel(
                    r["mrn"], r["family_name"], r["active"], r["version"]
                )
                for r in patients
            } == hospital.patients
            appointments = self.live.fetch(
                "SELECT id, patient_id, practitioner_id, start_at, end_at, status, version"
                " FROM appointment WHERE hospital_id = $1",
                hospital.id,
            )
            assert {
                gid("Appointment", r["id"]): AppointmentModel(
                    gid("Patient", r["patient_id"]),
                    hospital.practitioners.index(r["practitioner_id"]),
                    (r["start_at"] - BASE) // dt.timedelta(minutes=1),
                    (r["end_at"] - BASE) // dt.timedelta(minutes=1),
                    r["status"],
                    r["version"],
                )
                for r in appointments
            } == hospital.appointments
            encounters = self.live.fetch(
                "SELECT patient_id, appointment_id FROM encounter WHERE hospital_id = $1",
                hospital.id,
            )
            assert (
                collections.Counter(
                    (
                        gid("Patient", r["patient_id"]),
                        r["appointment_id"] and gid("Appointment", r["appointment_id"]),
                    )
                    for r in encounters
                )
                == hospital.encounters
            )

    @invariant()
    def patient_stats_count_the_rows(self) -> None:
        """``patientStats`` of each hospital = its rows in the database = the model's counts."""
        modelled: list[dict[str, int]] = []
        for hospital in self.hospitals:
            (row,) = self.live.fetch(
                "SELECT count(*) AS total, count(*) FILTER (WHERE active) AS active,"
                " count(*) FILTER (WHERE created_at >= now() - interval '30 days') AS new"
                " FROM patient WHERE hospital_id = $1",
                hospital.id,
            )
            patients = hospital.patients.values()
            counts = {
                "total": len(patients),
                "active": sum(p.active for p in patients),
                "newLast30Days": len(patients),  # every patient here was created moments ago
            }
            in_database = {"total": row["total"], "active": row["active"]}
            assert {**in_database, "newLast30Days": row["new"]} == counts
            modelled.append(counts)
        # Asking the API costs two requests per step, half the test's run time; its answer can
        # only move when some hospital's counts do (either one's: a leak would show there).
        if modelled != self.confirmed_stats:
            for hospital, counts in zip(self.hospitals, modelled, strict=True):
                stats = self.live.graphql(hospital.token, STATS, {})["patientStats"]
                assert stats == counts
            self.confirmed_stats = modelled


def machine_on(running: Driver) -> type[MutationMachine]:
    class Machine(MutationMachine):
        live = running

    return Machine


def test_random_mutation_sequences_keep_the_invariants(
    database_url: str, settings: Settings
) -> None:
    with driver(settings, database_url) as live:
        run_state_machine_as_test(
            machine_on(live),
            settings=hypothesis.settings(
                max_examples=30,
                stateful_step_count=30,
                deadline=None,
                # Every step is an HTTP round trip and several queries, on a shared 2-core box.
                suppress_health_check=[hypothesis.HealthCheck.too_slow],
            ),
        )
