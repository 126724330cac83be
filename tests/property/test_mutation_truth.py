"""What a mutation response reports as done is exactly what is committed (issue 6, defect 2).

Hypothesis writes random mutation documents — several ``createPatient`` and
``scheduleAppointment`` fields, some bound to fail as domain errors (a taken MRN, a taken slot),
some with a nested selection that fails at execution, and a fault injected at a random point
(before a field's write, or after it while its payload is completed) through graphql-core
middleware. Each runs through the real pipeline on the real PostgreSQL. Afterwards the rows the
example could have written, read as the owner, must be exactly the objects the response
reports, and a response with any error must report nothing and say it rolled back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from typing import Any

import hypothesis
import orjson
from hypothesis import strategies as st

from hms.pipeline import GraphQLRequest, Pipeline
from hms.settings import Settings
from tests.api.writes import DAY0, gid, make_hospital
from tests.conftest import token
from tests.property.driver import driver

KINDS = ("create", "create_taken_mrn", "schedule", "schedule_taken_slot", "create_bad_nested")
FAULTS = (None, "before", "after")


class Faults:
    """graphql-core middleware raising an unexpected error at one response path."""

    def __init__(self) -> None:
        self.at: tuple[str, ...] | None = None

    def resolve(self, next_: Any, root: Any, info: Any, **args: Any) -> Any:
        if self.at is not None and tuple(info.path.as_list()) == self.at:
            raise RuntimeError("injected fault")
        return next_(root, info, **args)


@dataclasses.dataclass
class Step:
    kind: str
    alias: str
    variable: str
    value: dict[str, Any]
    field: str  # the payload's object field


counter = itertools.count()


def build(kinds: list[str], ward: Any, tag: str) -> tuple[str, dict[str, Any], list[Step]]:
    steps: list[Step] = []
    slot = 0
    for i, kind in enumerate(kinds):
        alias, variable = f"m{i}", f"i{i}"
        if kind.startswith("create"):
            mrn = "W0" if kind == "create_taken_mrn" else f"T{tag}-{i}"
            value = {"mrn": mrn, "givenName": "Tru", "familyName": "Thful"}
            steps.append(Step(kind, alias, variable, value, "patient"))
        else:
            start = DAY0 + dt.timedelta(days=400 + next(counter), hours=slot)
            if kind == "schedule":
                slot += 1
            else:  # the slot the ward's standing booking holds
                start = DAY0 + dt.timedelta(days=399)
            value = {
                "patientId": gid("Patient", ward.patients[0]),
                "practitionerId": gid("Practitioner", ward.practitioners[0]),
                "startAt": start.isoformat(),
                "endAt": (start + dt.timedelta(minutes=30)).isoformat(),
                "reason": tag,
            }
            steps.append(Step(kind, alias, variable, value, "appointment"))
    fields = []
    for step in steps:
        if step.field == "patient":
            nested = "appointments(first: 500) { totalCount }" if "bad" in step.kind else ""
            selection = f"patient {{ id mrn {nested} }}"
            name = "createPatient"
        else:
            selection = "appointment { id reason }"
            name = "scheduleAppointment"
        fields.append(
            f"{step.alias}: {name}(input: ${step.variable}) {{ {selection} userErrors {{ code }} }}"
        )
    input_types = {"patient": "CreatePatientInput", "appointment": "ScheduleAppointmentInput"}
    definitions = ", ".join(f"${s.variable}: {input_types[s.field]}!" for s in steps)
    query = f"mutation({definitions}) {{ {' '.join(fields)} }}"
    return query, {s.variable: s.value for s in steps}, steps


def test_the_database_holds_exactly_what_the_response_reports(
    settings: Settings, database_url: str
) -> None:
    with driver(settings, database_url) as app:
        ward = app.run(make_hospital(database_url, practitioners=1))
        standing = DAY0 + dt.timedelta(days=399)
        app.execute(
            "INSERT INTO appointment (hospital_id, id, patient_id, practitioner_id, status,"
            " start_at, end_at) VALUES ($1, gen_random_uuid(), $2, $3, 'booked', $4, $5)",
            ward.id,
            ward.patients[1],
            ward.practitioners[0],
            standing,
            standing + dt.timedelta(minutes=30),
        )
        faults = Faults()
        live: Pipeline = app.app.state.pipeline
        pipeline = Pipeline(
            schema=live.schema,
            settings=live.settings,
            database=live.database,
            cache=live.cache,
            authenticator=live.authenticator,
            middleware=[faults],
        )
        authorization = f"Bearer {token(ward)}"
        seen = {"committed": 0, "rolled_back": 0}

        @hypothesis.settings(max_examples=60, deadline=None, derandomize=True)
        @hypothesis.given(
            kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=4),
            fault=st.sampled_from(FAULTS),
            where=st.integers(min_value=0, max_value=3),
        )
        def example(kinds: list[str], fault: str | None, where: int) -> None:
            tag = f"x{next(counter)}"
            query, variables, steps = build(kinds, ward, tag)
            target = steps[where % len(steps)]
            faults.at = {
                None: None,
                "before": (target.alias,),
                "after": (target.alias, target.field),
            }[fault]
            reply = app.run(
                pipeline.run(
                    GraphQLRequest(query=query, variables=variables, authorization=authorization)
                )
            )
            body = orjson.loads(reply.body)
            reported: set[str] = set()
            for payload in (body.get("data") or {}).values():
                if payload is None:
                    continue
                obj = payload["patient"] if "patient" in payload else payload["appointment"]
                if obj is not None:
                    reported.add(obj["id"])
            committed = {
                gid("Patient", row["id"])
                for row in app.fetch(
                    "SELECT id FROM patient WHERE hospital_id = $1 AND mrn LIKE $2",
                    ward.id,
                    f"T{tag}-%",
                )
            } | {
                gid("Appointment", row["id"])
                for row in app.fetch(
                    "SELECT id FROM appointment WHERE hospital_id = $1 AND reason = $2",
                    ward.id,
                    tag,
                )
            }
            assert reported == committed, body
            if "errors" in body:
                assert body["data"] is None
                assert body["extensions"]["rolledBack"] is True
                assert committed == set()
                seen["rolled_back"] += 1
            else:
                # No error: every step that cannot fail as a domain error was written.
                expected = sum(k in ("create", "schedule") for k in kinds)
                assert len(committed) == expected, body
                seen["committed"] += len(committed)

        example()
        # The examples exercised both outcomes, not only one of them.
        assert seen["committed"] > 0
        assert seen["rolled_back"] > 0
