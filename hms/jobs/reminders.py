"""Appointment reminders: one signed webhook per booked appointment, ``HMS_REMINDER_LEAD_HOURS``
before it starts (enqueued by the booking, moved or cancelled by later writes to it).

The job reads the appointment again when it runs: one cancelled, moved or no longer booked since
(a write racing the worker) is not reminded of. The message id is the appointment and its start
time, so every try of one reminder, also after a worker died mid-delivery, carries the same
``webhook-id`` and the receiver keeps one.
"""

from __future__ import annotations

import datetime as dt
import uuid

import orjson

from hms.jobs import notify
from hms.jobs.base import JobInput, Services, tenant
from hms.persistence import jobs
from hms.resolvers.relay import to_global_id

EVENT = "appointment.reminder"


def message_id(appointment_id: uuid.UUID, start_at: dt.datetime) -> str:
    return f"reminder_{appointment_id}_{int(start_at.timestamp())}"


async def run(services: Services, job: JobInput) -> None:
    appointment_id = uuid.UUID(job.body["appointment"])
    async with tenant(services, job.hospital_id, readonly=True) as db:
        row = await jobs.reminder_facts(db, appointment_id)
    if (
        row is None
        or row.status != jobs.REMINDED_STATUS
        or row.start_at.isoformat() != job.body["startAt"]
    ):
        return  # changed since it was enqueued; its current reminder (if any) is another job
    hook = await jobs.webhook_of(services.owner, job.hospital_id)
    if hook is None:
        return  # the hospital has not configured delivery
    body = orjson.dumps(
        {
            "type": EVENT,
            "timestamp": dt.datetime.now(dt.UTC).isoformat(),
            "data": {
                "hospital": str(job.hospital_id),
                "appointment": {
                    "id": to_global_id("Appointment", row.id),
                    "startAt": row.start_at.isoformat(),
                    "endAt": row.end_at.isoformat(),
                },
                "patient": {
                    "id": to_global_id("Patient", row.patient_id),
                    "givenName": row.given_name,
                    "phone": row.phone,
                    "email": row.email,
                },
                "practitioner": {
                    "id": to_global_id("Practitioner", row.practitioner_id),
                    "name": f"{row.practitioner_given_name} {row.practitioner_family_name}",
                },
            },
        }
    )
    await notify.deliver(
        services.http, hook.url, hook.secret, message_id(row.id, row.start_at), body
    )
