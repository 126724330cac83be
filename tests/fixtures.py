"""A small, exact dataset for API tests: two hospitals with known patients and schedules.

Built with plain INSERTs (as the owner, who bypasses RLS here) so every expected value in a test
can be derived from this file, independent of the synthetic seed generator.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import asyncpg

from hms.models.ids import uuid7

BASE = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
FAMILY = ["Adams", "Baker", "Clark", "Davis", "Evans", "Fisher", "Garcia", "Hughes", "Ito", "Jones"]
GIVEN = ["Ana", "Ben", "Cara", "Dev", "Eli", "Fay"]


@dataclasses.dataclass
class HospitalData:
    id: uuid.UUID
    slug: str
    patients: list[uuid.UUID] = dataclasses.field(default_factory=list)
    practitioners: list[uuid.UUID] = dataclasses.field(default_factory=list)
    appointments: dict[uuid.UUID, list[uuid.UUID]] = dataclasses.field(default_factory=dict)
    encounters: dict[uuid.UUID, list[uuid.UUID]] = dataclasses.field(default_factory=dict)
    active: int = 0
    new_last_30_days: int = 0


@dataclasses.dataclass
class Dataset:
    alpha: HospitalData
    beta: HospitalData


def appointments_for(index: int) -> int:
    """Patient ``index`` has this many appointments (0..7), so per-parent limits are exercised."""
    return (index + 1) % 8


def encounters_for(index: int) -> int:
    return (index + 1) % 5


async def _hospital(
    conn: asyncpg.Connection, slug: str, patients: int, now: dt.datetime, mrn_prefix: str
) -> HospitalData:
    data = HospitalData(id=uuid7(), slug=slug)
    await conn.execute(
        "INSERT INTO hospital (id, slug, name) VALUES ($1, $2, $3)", data.id, slug, slug.title()
    )
    for i in range(3):
        pid = uuid7()
        data.practitioners.append(pid)
        await conn.execute(
            "INSERT INTO practitioner (hospital_id, id, given_name, family_name, specialty, active)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            data.id,
            pid,
            GIVEN[i],
            f"Doctor{i}",
            ["Cardiology", "Pediatrics"][i % 2],
            i != 2,
        )
    patient_rows = []
    appointment_rows = []
    encounter_rows = []
    slot = [0, 0, 0]
    for i in range(patients):
        patient_id = uuid7()
        data.patients.append(patient_id)
        active = i % 4 != 0
        # one per day going back, an hour off the day boundary: i < 30 are "new"
        created = now - dt.timedelta(days=i, hours=1)
        data.active += active
        data.new_last_30_days += i < 30
        patient_rows.append(
            (
                data.id,
                patient_id,
                f"{mrn_prefix}{i:05d}",
                GIVEN[i % len(GIVEN)],
                FAMILY[i % len(FAMILY)],
                dt.date(1950 + i % 60, 1 + i % 12, 1 + i % 28),
                ["male", "female", "other", "unknown"][i % 4],
                active,
                created,
                created,
            )
        )
        data.appointments[patient_id] = []
        data.encounters[patient_id] = []
        for j in range(appointments_for(i)):
            practitioner = j % 3
            start = BASE + dt.timedelta(minutes=30 * slot[practitioner])
            slot[practitioner] += 1
            appointment_id = uuid7()
            data.appointments[patient_id].append(appointment_id)
            appointment_rows.append(
                (
                    data.id,
                    appointment_id,
                    patient_id,
                    data.practitioners[practitioner],
                    "fulfilled" if j % 2 else "booked",
                    start,
                    start + dt.timedelta(minutes=30),
                    f"visit {j}",
                )
            )
        for j in range(encounters_for(i)):
            encounter_id = uuid7()
            data.encounters[patient_id].append(encounter_id)
            start = BASE + dt.timedelta(days=j, hours=i % 9)
            encounter_rows.append(
                (
                    data.id,
                    encounter_id,
                    patient_id,
                    data.practitioners[j % 3] if j % 2 else None,
                    "finished",
                    ["AMB", "EMER", "IMP", "VR"][j % 4],
                    start,
                    start + dt.timedelta(hours=1),
                )
            )
    await conn.copy_records_to_table(
        "patient",
        records=patient_rows,
        columns=[
            "hospital_id",
            "id",
            "mrn",
            "given_name",
            "family_name",
            "birth_date",
            "gender",
            "active",
            "created_at",
            "updated_at",
        ],
    )
    await conn.copy_records_to_table(
        "appointment",
        records=appointment_rows,
        columns=[
            "hospital_id",
            "id",
            "patient_id",
            "practitioner_id",
            "status",
            "start_at",
            "end_at",
            "reason",
        ],
    )
    await conn.copy_records_to_table(
        "encounter",
        records=encounter_rows,
        columns=[
            "hospital_id",
            "id",
            "patient_id",
            "practitioner_id",
            "status",
            "class",
            "period_start",
            "period_end",
        ],
    )
    return data


async def load(dsn: str, now: dt.datetime) -> Dataset:
    conn = await asyncpg.connect(dsn)
    try:
        alpha = await _hospital(conn, "alpha", 120, now, "A")
        beta = await _hospital(conn, "beta", 12, now, "B")
    finally:
        await conn.close()
    return Dataset(alpha=alpha, beta=beta)
