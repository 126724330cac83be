"""A real ``hms serve`` with two workers, as operators run it (issue 11): ``/metrics`` adds up
every worker's samples whichever worker answers the scrape, and every line the server writes is
a JSON object, one per GraphQL request, with no variable in it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import fixtures
from tests.conftest import SECRET, token
from tests.interop.servers import clean_env, free_port, running

REDIS = "redis://127.0.0.1:6379/0"
QUERY = (
    "query Roster($name: String) { patients(first: 2, filter: {namePrefix: $name}) { totalCount } }"
)
SECRET_NAME = "Zebediah"  # a variable's value: in no log line


def requests_counted(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "hms_graphql_request_duration_seconds_count"
        and sample.labels.get("operation_name") == "Roster"
    )


@pytest.mark.interop
def test_two_workers_one_view_of_metrics_and_json_lines(
    tmp_path: Path, database_url: str, dataset: fixtures.Dataset
) -> None:
    port = free_port()
    env = clean_env(
        HMS_DATABASE_URL=database_url,
        HMS_JWT_SECRET=SECRET,
        HMS_REDIS_URL=REDIS,
        HMS_PORT=str(port),
        HMS_WORKERS="2",
        HMS_ENV="prod",
    )
    log = tmp_path / "serve.log"
    sent = 20
    with running([sys.executable, "-m", "hms.cli", "serve"], env, port, log) as base:
        headers = {"Authorization": f"Bearer {token(dataset.alpha)}"}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as http:
            for _ in range(sent):
                response = http.post(
                    "/graphql", json={"query": QUERY, "variables": {"name": SECRET_NAME}}
                )
                assert response.status_code == 200, response.text
            for _ in range(6):  # new connections: the kernel spreads them over the workers
                with httpx.Client(base_url=base, timeout=10) as scraper:
                    scrape = scraper.get("/metrics")
                assert scrape.status_code == 200
                assert requests_counted(scrape.text) == sent
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert lines, "the server wrote nothing"
    requests = [line for line in lines if line.get("msg") == "request"]
    assert len(requests) == sent
    assert {r["operation"] for r in requests} == {"Roster"}
    assert all(r["status"] == 200 and r["type"] == "query" for r in requests)
    assert SECRET_NAME not in log.read_text()
