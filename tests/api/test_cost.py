"""Cost limits over HTTP with the shipped caps and real Redis budgets (issue 9).

Every caller here is a fresh subject, so each test starts with a full bucket of its own; the
hospital's bucket is large unless a test says otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from hms.app import create_app
from hms.security.tokens import issue
from hms.settings import Settings
from tests import fixtures
from tests.api.test_batching import NESTED as DASHBOARD
from tests.conftest import SECRET
from tests.statements import recorded

REDIS = "redis://127.0.0.1:6379/0"
BUDGET = (1000.0, 50.0)

#: 10 root fields (the cap) of weight 10, no lists: its actual cost is always its estimate, 100.
ONE_HUNDRED = "{ " + " ".join(f"s{i}: patientStats {{ total }}" for i in range(10)) + " }"


def shipped(settings: Settings, **changes: Any) -> Settings:
    """The test settings with the shipped caps and a 1000-point, 50/s budget, in Redis."""
    shipped_caps = Settings()
    values: dict[str, Any] = {
        "redis_url": REDIS,
        "max_cost": shipped_caps.max_cost,
        "cost_budgets": {"default": BUDGET},
        "hospital_cost_budget": (1e9, 1e9),
    }
    return settings.with_(**{**values, **changes})


@pytest.fixture(scope="module")
async def limited(settings: Settings, dataset: fixtures.Dataset) -> AsyncIterator[Starlette]:
    app = create_app(shipped(settings, cost_modes={"calibration": "measure"}))
    async with app.router.lifespan_context(app):
        await post(app, caller(dataset.alpha), "{ __typename }")  # the hospital is known now
        yield app


def caller(hospital: fixtures.HospitalData, *roles: str, client: str | None = None) -> str:
    return issue(
        SECRET,
        subject=f"cost-{uuid.uuid4().hex[:12]}",
        hospital_id=hospital.id,
        roles=roles or ["admin"],
        client=client,
    )


async def post(
    app: Starlette,
    token: str,
    query: str,
    variables: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as http:
        return await http.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {token}", **(headers or {})},
        )


def cost_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    if "data" in body:
        found: dict[str, Any] = body["extensions"]["cost"]
        return found
    errors: dict[str, Any] = body["errors"][0]["extensions"]["cost"]
    return errors


def dashboard_actual(data: dict[str, Any]) -> int:
    """The dashboard's cost counted by hand from what came back."""
    total = 1  # patients
    for edge in data["patients"]["edges"]:
        node = edge["node"]
        appointments = len(node["appointments"]["edges"])
        encounters = len(node["encounters"]["edges"])
        total += 1 + (1 + 2 * appointments) + (1 + encounters)
    return total


async def test_every_answer_says_what_it_cost_and_refunds_the_rest(
    limited: Starlette, dataset: fixtures.Dataset
) -> None:
    token = caller(dataset.alpha)
    response = await post(limited, token, DASHBOARD, {"n": 50})
    assert response.status_code == 200
    data = response.json()["data"]
    actual = dashboard_actual(data)
    assert actual < 801
    assert cost_of(response) == {
        "requestedQueryCost": 801,
        "actualQueryCost": actual,
        "throttleStatus": {
            "maximumAvailable": 1000,
            "currentlyAvailable": 1000 - actual,  # 801 reserved, 801 - actual given back
            "restoreRate": 50,
        },
    }
    assert response.headers["ratelimit-limit"] == "1000"
    assert response.headers["ratelimit-remaining"] == str(1000 - actual)
    assert response.headers["ratelimit-reset"] == str(math.ceil(actual / 50))
    # The refund reached the bucket: the next request starts from it (plus some refill).
    again = await post(limited, token, "{ patientStats { total } }")
    level = cost_of(again)["throttleStatus"]["currentlyAvailable"]
    assert 1000 - actual - 10 <= level <= 1000 - 10


async def test_both_paths_count_the_same_actual_cost(
    client: httpx.AsyncClient, interpreted_client: httpx.AsyncClient, dataset: fixtures.Dataset
) -> None:
    costs = []
    for http in (client, interpreted_client):
        response = await http.post(
            "/graphql",
            json={"query": DASHBOARD, "variables": {"n": 30}},
            headers={"Authorization": f"Bearer {caller(dataset.alpha)}"},
        )
        body = response.json()
        cost = body["extensions"]["cost"]
        assert cost["actualQueryCost"] == dashboard_actual(body["data"])
        costs.append((cost["requestedQueryCost"], cost["actualQueryCost"]))
    assert costs[0] == costs[1]


def chain(levels: int) -> str:
    """A valid document exactly ``levels`` fields deep: patient, appointments, edges, node,
    patient, … and a leaf that fits the last of them."""
    cycle = ["appointments(first: 1)", "edges", "node", "patient"]
    leaves = {"appointments(first: 1)": "totalCount", "edges": "cursor", "node": "id"}
    path = ['patient(id: "x")'] + [cycle[i % 4] for i in range(levels - 2)]
    inner = leaves.get(path[-1], "mrn")
    for field in reversed(path):
        inner = f"{field} {{ {inner} }}"
    return f"{{ {inner} }}"


def over_and_under() -> list[tuple[str, str, str]]:
    aliases = " ".join(f"a{i}: userId" for i in range(30))
    roots = " ".join(f"r{i}: viewer {{ userId }}" for i in range(10))
    costly = (
        "{ patients(first: 27) { edges { node { appointments(first: 35) { edges { node { id }"
        " } } } } } }"
    )  # 1 + 27 * (1 + 1 + 35) = 1000
    return [
        ("MAX_DEPTH_EXCEEDED", chain(12), chain(13)),
        ("MAX_ALIASES_EXCEEDED", f"{{ viewer {{ {aliases} }} }}",
         f"{{ viewer {{ {aliases} x: userId }} }}"),
        ("MAX_ROOT_FIELDS_EXCEEDED", f"{{ {roots} }}", f"{{ {roots} r10: viewer {{ userId }} }}"),
        ("COST_ESTIMATED_TOO_EXPENSIVE", costly, costly[:-1] + " viewer { userId } }"),
    ]  # fmt: skip


@pytest.mark.parametrize(("code", "under", "over"), over_and_under())
async def test_each_cap_just_under_and_just_over(
    limited: Starlette, dataset: fixtures.Dataset, code: str, under: str, over: str
) -> None:
    token = caller(dataset.alpha)
    ran = await post(limited, token, under)
    assert ran.status_code == 200, ran.text
    assert "errors" not in ran.json() or code == "MAX_DEPTH_EXCEEDED"  # patient "x": an error
    with recorded(limited.state.database.primary) as statements:
        refused = await post(limited, token, over)
    assert refused.status_code == 400
    error = refused.json()["errors"][0]
    assert error["extensions"]["code"] == code
    assert error["extensions"]["value"] == error["extensions"]["limit"] + 1
    assert statements == []  # refused before any SQL


async def test_the_five_level_attack_is_refused_before_any_sql(
    limited: Starlette, dataset: fixtures.Dataset
) -> None:
    inner = "id"
    for _ in range(5):
        inner = f"appointments(first: 100) {{ edges {{ node {{ patient {{ {inner} }} }} }} }}"
    attack = f"{{ patients(first: 100) {{ edges {{ node {{ {inner} }} }} }} }}"
    assert len(attack) < 400  # 0.3 KB
    with recorded(limited.state.database.primary) as statements:
        refused = await post(limited, caller(dataset.alpha), attack)
    assert refused.status_code == 400
    error = refused.json()["errors"][0]
    assert error["extensions"]["code"] == "COST_ESTIMATED_TOO_EXPENSIVE"
    # 1 + 100 * (1 + 1 + 100 * (1 + 1 + …)): over 10^12.
    assert error["extensions"]["cost"] > 10**12
    assert error["extensions"]["paths"][0]["path"].startswith("patients.edges.node.appointments")
    assert statements == []


async def test_over_budget_is_429_with_the_exact_wait_and_runs_nothing(
    limited: Starlette, dataset: fixtures.Dataset
) -> None:
    token = caller(dataset.alpha)
    for _ in range(10):  # 10 * 100 = the whole bucket (refill adds a few points meanwhile)
        assert (await post(limited, token, ONE_HUNDRED)).status_code == 200
    with recorded(limited.state.database.primary) as statements:
        throttled = await post(limited, token, ONE_HUNDRED)
    assert throttled.status_code == 429
    assert statements == []
    error = throttled.json()["errors"][0]
    assert error["extensions"]["code"] == "THROTTLED"
    available = error["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"]
    assert available < 100
    assert throttled.headers["retry-after"] == str(max(1, math.ceil((100 - available) / 50)))
    await asyncio.sleep(int(throttled.headers["retry-after"]))
    assert (await post(limited, token, ONE_HUNDRED)).status_code == 200


async def test_fifty_concurrent_requests_never_overspend_a_bucket(
    settings: Settings, dataset: fixtures.Dataset
) -> None:
    """Two workers (two apps on one Redis), 25 concurrent requests each, of 100 points."""
    rate = 1.0
    config = shipped(settings, cost_budgets={"default": (1000.0, rate)})
    apps = [create_app(config), create_app(config)]
    token = caller(dataset.alpha)
    loop = asyncio.get_running_loop()
    async with (
        apps[0].router.lifespan_context(apps[0]),
        apps[1].router.lifespan_context(apps[1]),
    ):
        started = loop.time()
        answers = await asyncio.gather(*(post(apps[i % 2], token, ONE_HUNDRED) for i in range(50)))
        elapsed = loop.time() - started
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 429}
    admitted = statuses.count(200)
    assert admitted * 100 <= 1000 + rate * elapsed
    assert admitted == 10  # the window is far too short to refill another 100 points


async def test_a_cheap_answer_to_an_expensive_question_is_refunded(
    limited: Starlette, ward: fixtures.HospitalData
) -> None:
    """The ward has two patients: 101 points reserved, 3 spent."""
    response = await post(
        limited, caller(ward), "{ patients(first: 100) { edges { node { id } } } }"
    )
    cost = cost_of(response)
    assert (cost["requestedQueryCost"], cost["actualQueryCost"]) == (101, 3)
    assert cost["throttleStatus"]["currentlyAvailable"] == 997


async def test_measure_mode_reports_but_never_refuses(
    limited: Starlette, dataset: fixtures.Dataset
) -> None:
    over = over_and_under()[-1][2]
    calibrating = caller(dataset.alpha, client="calibration")
    ran = await post(limited, calibrating, over)
    assert ran.status_code == 200
    assert cost_of(ran)["requestedQueryCost"] == 1001
    for _ in range(3):  # far past the budget: still answered
        assert (await post(limited, calibrating, over)).status_code == 200
    metrics = (await httpx.AsyncClient(
        transport=httpx.ASGITransport(app=limited), base_url="http://hms.test"
    ).get("/metrics")).text  # fmt: skip
    assert 'hms_cost_limited_total{code="COST_ESTIMATED_TOO_EXPENSIVE",outcome="measured"}' in (
        metrics
    )
    assert 'hms_cost_limited_total{code="THROTTLED",outcome="measured"}' in metrics
    # The client-name header is the caller's say-so: it cannot switch enforcement off.
    named = await post(
        limited, caller(dataset.alpha), over, headers={"apollographql-client-name": "calibration"}
    )
    assert named.status_code == 400


async def test_budget_store_outage_admits_clinicians_and_throttles_the_rest(
    settings: Settings, dataset: fixtures.Dataset
) -> None:
    app = create_app(shipped(settings, redis_url="redis://127.0.0.1:1/0"))
    async with app.router.lifespan_context(app):
        clinician = await post(app, caller(dataset.alpha, "clinician"), ONE_HUNDRED)
        admin = await post(app, caller(dataset.alpha, "admin"), ONE_HUNDRED)
        metrics = (await httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://hms.test"
        ).get("/metrics")).text  # fmt: skip
    assert clinician.status_code == 200
    assert clinician.json()["data"]["s0"]["total"] == 120
    assert admin.status_code == 429
    assert admin.headers["retry-after"] == "2"
    assert admin.json()["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert 'code="BUDGET_UNAVAILABLE",outcome="admitted"' in metrics
    assert 'code="BUDGET_UNAVAILABLE",outcome="refused"' in metrics


async def test_a_dry_run_costs_the_operation_and_runs_and_charges_nothing(
    limited: Starlette, dataset: fixtures.Dataset
) -> None:
    token = caller(dataset.alpha)
    dry = {"HMS-Dry-Run": "cost"}
    with recorded(limited.state.database.primary) as statements:
        first = await post(limited, token, DASHBOARD, {"n": 50}, headers=dry)
        second = await post(limited, token, DASHBOARD, {"n": 50}, headers=dry)
    assert statements == []
    assert first.status_code == 200
    body = first.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "DRY_RUN"
    assert body["extensions"]["cost"] == {
        "requestedQueryCost": 801,
        "actualQueryCost": None,
        "throttleStatus": {"maximumAvailable": 1000, "currentlyAvailable": 1000, "restoreRate": 50},
    }
    assert second.json() == body  # nothing was charged
    over = over_and_under()[-1][2]
    assert (await post(limited, token, over, headers=dry)).status_code == 400
    bad = await post(limited, token, DASHBOARD, {"n": 1}, headers={"HMS-Dry-Run": "yes"})
    assert bad.status_code == 400


async def test_a_mutation_is_charged_its_weight(
    limited: Starlette, dataset: fixtures.Dataset
) -> None:
    """A taken MRN: nothing is written (the shared data stays as the other tests expect)."""
    response = await post(
        limited,
        caller(dataset.alpha),
        'mutation { createPatient(input: {mrn: "A00003", givenName: "Ada", familyName: "Cost"})'
        " { patient { id } userErrors { code } } }",
    )
    payload = response.json()["data"]["createPatient"]
    assert payload["patient"] is None
    assert [e["code"] for e in payload["userErrors"]] == ["VALIDATION"]
    cost = cost_of(response)
    # createPatient 10 + patient 1 + userErrors 1 (a list of one assumed item); the patient
    # came back null (its lookup is still counted) and one error came back: 12 and 12.
    assert (cost["requestedQueryCost"], cost["actualQueryCost"]) == (12, 12)


async def test_a_document_over_the_limits_is_not_registered(
    limited: Starlette, dataset: fixtures.Dataset
) -> None:
    """Automatic persisted queries keep only documents that may run (issue 8, with 9)."""
    over = over_and_under()[-1][2].replace("viewer", f"v{uuid.uuid4().hex[:6]}: viewer")
    digest = hashlib.sha256(over.encode()).hexdigest()
    apq = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    token = caller(dataset.alpha)
    transport = httpx.ASGITransport(app=limited)
    async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as http:
        headers = {"Authorization": f"Bearer {token}"}
        sent = await http.post("/graphql", json={"query": over, "extensions": apq}, headers=headers)
        again = await http.post("/graphql", json={"extensions": apq}, headers=headers)
    assert sent.json()["errors"][0]["extensions"]["code"] == "COST_ESTIMATED_TOO_EXPENSIVE"
    assert again.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
