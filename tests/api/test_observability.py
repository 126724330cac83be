"""What operators see (issue 11): /metrics after real traffic, one access-log line per request,
and the span tree of a nested query; none of it holds patient data or variables."""

from __future__ import annotations

import gc
import json
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from hms.observability import access
from hms.observability.logs import JsonLines
from hms.resolvers.relay import to_global_id
from tests import fixtures
from tests.conftest import token

NESTED = """
query Ward($name: String) {
  patients(first: 3, filter: {namePrefix: $name}) {
    edges { node { id mrn appointments(first: 2) { edges { node { id status } } } } }
  }
}
"""


async def post(
    http: httpx.AsyncClient,
    hospital: fixtures.HospitalData,
    query: str,
    variables: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await http.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {token(hospital)}", **(headers or {})},
    )


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)], parsed with prometheus-client's own parser."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def total(
    found: dict[str, list[tuple[dict[str, str], float]]], metric: str, **labels: str
) -> float:
    return sum(
        value
        for got, value in found.get(metric, [])
        if all(got.get(k) == v for k, v in labels.items())
    )


async def scrape(http: httpx.AsyncClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = await http.get("/metrics")
    assert response.status_code == 200
    return samples(response.text)


async def test_metrics_move_with_traffic(
    client: httpx.AsyncClient, interpreted_client: httpx.AsyncClient, dataset: fixtures.Dataset
) -> None:
    before = await scrape(client)
    interpreted_before = await scrape(interpreted_client)
    for _ in range(3):
        assert (await post(client, dataset.alpha, NESTED)).status_code == 200
    assert (await post(interpreted_client, dataset.alpha, NESTED)).status_code == 200
    bad = await post(client, dataset.alpha, "{ patients { nope } }")
    assert bad.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    gc.collect()
    after = await scrape(client)
    interpreted = await scrape(interpreted_client)

    def moved(metric: str, by: float = 1, **labels: str) -> None:
        gained = total(after, metric, **labels) - total(before, metric, **labels)
        assert gained >= by, (metric, labels, gained)

    requests = "hms_graphql_request_duration_seconds_count"
    moved(requests, 3, operation_type="query", operation_name="Ward", outcome="ok")
    moved(requests, 1, operation_type="-", operation_name="-", outcome="GRAPHQL_VALIDATION_FAILED")
    moved("hms_graphql_errors_total", 1, code="GRAPHQL_VALIDATION_FAILED")
    moved("hms_sql_statements_per_request_count", 3, path="compiled")
    moved("hms_sql_statements_per_request_sum", 3, path="compiled")  # one statement each
    moved("hms_graphql_cost_count", 3, kind="estimated")
    moved("hms_graphql_cost_count", 3, kind="actual")
    moved("hms_cache_requests_total", 2, **{"name": "documents", "result": "hit"})
    moved("hms_cache_requests_total", 2, **{"name": "plans", "result": "hit"})
    moved("hms_audit_events_written_total", 3, path="batch")
    moved("hms_db_pool_wait_seconds_count", 3)
    moved("hms_gc_pause_seconds_count", 1)
    assert total(after, "hms_graphql_requests_in_flight") == 0
    assert total(after, "hms_db_pool_connections", engine="primary", state="size") >= 1
    assert total(after, "process_resident_memory_bytes") > 0

    # The interpreted path batches its nested page through a DataLoader.
    batches = "hms_loader_batch_size_count"
    loader = "appointments.pages_by_patient"
    gained = total(interpreted, batches, loader=loader) - total(
        interpreted_before, batches, loader=loader
    )
    assert gained == 1
    assert total(interpreted, "hms_sql_statements_per_request_count", path="interpreted") >= 1


async def test_operation_names_cannot_grow_the_label_set(
    client: httpx.AsyncClient, dataset: fixtures.Dataset
) -> None:
    for _ in range(access.MAX_NAMES + 20):
        name = "Op" + uuid.uuid4().hex[:12]
        response = await post(client, dataset.alpha, f"query {name} {{ viewer {{ userId }} }}")
        assert response.status_code == 200
    names = {
        labels["operation_name"]
        for labels, _ in (await scrape(client))["hms_graphql_request_duration_seconds_count"]
    }
    assert "other" in names
    assert len(names) <= access.MAX_NAMES + 2  # and "-" for anonymous operations


async def test_one_access_line_per_request_without_values(
    client: httpx.AsyncClient,
    dataset: fixtures.Dataset,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hms.access")
    secret = "Quixotic"  # a variable's value: never logged
    refused = await post(client, dataset.alpha, NESTED, {"name": secret})
    assert refused.status_code == 200
    assert secret not in caplog.text
    caplog.clear()
    response = await post(client, dataset.alpha, NESTED)
    assert response.status_code == 200
    assert response.json()["data"]["patients"]["edges"]
    lines = [r for r in caplog.records if r.name == "hms.access"]
    assert len(lines) == 1
    fields: dict[str, Any] = lines[0].fields  # type: ignore[attr-defined]
    assert fields["operation"] == "Ward"
    assert (fields["type"], fields["status"], fields["outcome"]) == ("query", 200, "ok")
    assert (fields["path"], fields["sql"]) == ("compiled", 1)
    assert fields["hospital"] == str(dataset.alpha.id)
    assert fields["user"] == "tester"
    assert fields["trace_id"] == response.headers["traceresponse"].split("-")[1]
    assert fields["duration_ms"] > 0
    rendered = JsonLines().format(lines[0])
    line = json.loads(rendered)
    assert line["msg"] == "request"
    assert line["operation"] == "Ward"
    body = response.text
    for edge in response.json()["data"]["patients"]["edges"]:
        assert edge["node"]["mrn"] not in rendered
    assert '"mrn"' not in rendered
    assert body not in caplog.text


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """The SDK with an in-memory exporter, as a collector would get the spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    exporter.shutdown()  # later tests' spans go nowhere


def tree(finished: tuple[ReadableSpan, ...], root: ReadableSpan) -> dict[str, Any]:
    children = [
        s for s in finished if s.parent is not None and s.parent.span_id == root.context.span_id
    ]
    return {
        "name": root.name,
        "children": sorted((tree(finished, c) for c in children), key=lambda t: t["name"]),
    }


@pytest.mark.parametrize("path", ["compiled", "interpreted"])
async def test_the_span_tree_of_a_nested_query(
    path: str,
    spans: InMemorySpanExporter,
    client: httpx.AsyncClient,
    interpreted_client: httpx.AsyncClient,
    dataset: fixtures.Dataset,
) -> None:
    http = client if path == "compiled" else interpreted_client
    caller_trace, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    spans.clear()
    response = await post(
        http,
        dataset.alpha,
        NESTED,
        None,
        headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"},
    )
    assert response.status_code == 200
    finished = spans.get_finished_spans()
    (root,) = [s for s in finished if s.name == "query Ward"]
    assert root.kind is trace.SpanKind.SERVER
    assert format(root.context.trace_id, "032x") == caller_trace  # the caller's trace goes on
    assert root.parent is not None
    assert format(root.parent.span_id, "016x") == caller_span
    assert response.headers["traceresponse"] == (
        f"00-{caller_trace}-{format(root.context.span_id, '016x')}-01"
    )
    attributes = dict(root.attributes or {})
    assert attributes["graphql.operation.type"] == "query"
    assert attributes["graphql.operation.name"] == "Ward"
    assert attributes["hms.execution"] == path
    assert "graphql.document" not in attributes  # only when opted in
    shape = tree(finished, root)
    steps = [child["name"] for child in shape["children"]]
    assert steps == ["graphql.cost", "graphql.execute", "graphql.validate"]
    (execute,) = [c for c in shape["children"] if c["name"] == "graphql.execute"]
    below = [s for s in finished if s.context.trace_id == root.context.trace_id]
    statements = [s for s in below if (s.attributes or {}).get("db.system") == "postgresql"]
    if path == "compiled":
        assert [c["name"] for c in execute["children"]] == ["SELECT"]
    else:
        loaders = [s for s in below if s.name.startswith("dataloader ")]
        assert [s.name for s in loaders] == ["dataloader appointments.pages_by_patient"]
        assert dict(loaders[0].attributes or {})["hms.loader.keys"] == 3
        assert len(statements) >= 2
    shown = [e["node"]["mrn"] for e in response.json()["data"]["patients"]["edges"]]
    assert shown
    for span in below:  # no variable, value or patient data in any attribute
        for value in (span.attributes or {}).values():
            assert not any(mrn in str(value) for mrn in shown), (span.name, value)
    for span in statements:
        statement = str((span.attributes or {})["db.statement"])
        assert not any(mrn in statement for mrn in shown)  # parameters are never inlined


async def test_a_patient_id_is_never_a_span_attribute(
    spans: InMemorySpanExporter, client: httpx.AsyncClient, dataset: fixtures.Dataset
) -> None:
    pk = dataset.alpha.patients[0]
    spans.clear()
    response = await post(
        client, dataset.alpha, "query One($id: ID!) { patient(id: $id) { id mrn } }",
        {"id": to_global_id("Patient", pk)},
    )  # fmt: skip
    assert response.status_code == 200
    for span in spans.get_finished_spans():
        for value in (span.attributes or {}).values():
            assert str(pk) not in str(value)


DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "hms-dashboard.json"
#: PromQL words that are not metric names.
PROMQL = {"sum", "by", "rate", "histogram_quantile", "min", "max", "le", "result", "without"}


async def test_the_dashboard_queries_only_metrics_the_app_exports(
    client: httpx.AsyncClient,
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported: set[str] = set()
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith("# TYPE "):  # declared, with or without samples yet
            _, _, name, kind = line.split()
            suffixes = ("_bucket", "_sum", "_count") if kind == "histogram" else ("",)
            exported |= {name + suffix for suffix in suffixes}
    queried = set()
    # The app's panels: those above the first row. The "Background jobs" row charts what
    # `hms worker` exports (tests/unit/test_deploy.py checks it against WorkerMetrics).
    rows = [i for i, panel in enumerate(dashboard["panels"]) if panel["type"] == "row"]
    for panel in dashboard["panels"][: rows[0] if rows else None]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            for word in re.findall(r"\b[a-z_][a-z0-9_]*\b(?![\"=(])", target["expr"]):
                if word.startswith(("hms_", "process_")):
                    queried.add(word)
    assert queried
    assert queried <= exported, queried - exported
    # Every family the app exports for operators is on the dashboard.
    assert {
        "hms_graphql_request_duration_seconds_bucket",
        "hms_graphql_errors_total",
        "hms_graphql_cost_bucket",
        "hms_cache_requests_total",
        "hms_db_pool_connections",
    } <= queried
