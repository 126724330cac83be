"""The reference client (examples/react-dashboard) built and driven in headless Chromium against a
real ``hms serve``.

The build is the one CI ships: ``npm run build`` validates every operation against
``schema.graphql`` (GraphQL Code Generator), writes the persisted-query manifest and type-checks.
The manifest is pushed with ``hms documents push`` and the server runs the dashboard as a
``trusted`` client in production mode, so every request must be a registered hash. Then
``e2e/run.mjs`` drives the app as the front desk does (a day's schedule, a patient search paged
with "load more", a patient's page, a booking whose first answer is lost, a double booking, a
cancellation from another desk and a stale one) and reports what it saw and what it sent. Each
figure the page showed is compared with the database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from hms.persistence import migrate
from hms.security.tokens import issue
from tests import fixtures
from tests.conftest import NOW, SECRET
from tests.interop.servers import ROOT, clean_env, free_port, running

pytestmark = pytest.mark.interop

APP = ROOT / "examples" / "react-dashboard"
MANIFEST = APP / "src" / "__generated__" / "persisted-query-manifest.json"
CLIENT = "react-dashboard"
CHROMIUMS = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
NPM_SECONDS = 300.0
ZONE = "Europe/Berlin"  # alpha's, here
DAY = fixtures.BASE.date()  # the fixture's appointments start on this day
SEARCH = "a"
BOOK_DAY = (NOW + dt.timedelta(days=7)).date()
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

Dataset = tuple[str, fixtures.Dataset]


def _chromium() -> str | None:
    candidates = (os.environ.get("CHROMIUM", ""), *CHROMIUMS)
    return next((path for path in candidates if path and Path(path).exists()), None)


def _stale() -> list[str]:
    """Pinned packages of the app that node_modules does not hold at their pinned version."""
    package = json.loads((APP / "package.json").read_text())
    pinned: dict[str, str] = {**package["dependencies"], **package["devDependencies"]}
    stale = []
    for name, version in pinned.items():
        manifest = APP / "node_modules" / name / "package.json"
        if not manifest.exists() or json.loads(manifest.read_text())["version"] != version:
            stale.append(name)
    return stale


def _npm(*args: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not on PATH: cannot build examples/react-dashboard")
    done = subprocess.run(
        [npm, *args], cwd=APP, capture_output=True, text=True, timeout=NPM_SECONDS, check=False
    )
    assert done.returncode == 0, f"npm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def chromium() -> str:
    found = _chromium()
    if found is None:
        pytest.skip("no Chromium: apt-get install -y chromium (Debian's), or set CHROMIUM")
    return found


@pytest.fixture(scope="module")
def built(node: str) -> dict[str, str]:
    """Build the app as CI does (codegen check, manifest, tsc, vite); the manifest's ids by name."""
    if _stale():
        _npm("ci", "--ignore-scripts", "--no-audit", "--no-fund")
        assert _stale() == []
    _npm("run", "build")
    manifest = json.loads(MANIFEST.read_text())
    return {operation["name"]: operation["id"] for operation in manifest["operations"]}


@pytest.fixture(scope="module")
async def desk_data(empty_database: Callable[[], Awaitable[str]]) -> Dataset:
    """A database of the dashboard's own: its bookings must not change other tests' counts."""
    url = await empty_database()
    await asyncio.to_thread(migrate.upgrade, url)
    dataset = await fixtures.load(url, NOW)
    # Neither UTC nor the browser's zone: days and times on the page must be the hospital's.
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "UPDATE hospital SET timezone = $1 WHERE id = $2", ZONE, dataset.alpha.id
        )
    finally:
        await conn.close()
    return url, dataset


@pytest.fixture(scope="module")
def journey(
    node: str,
    chromium: str,
    built: dict[str, str],
    desk_data: Dataset,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    url, dataset = desk_data
    app_port, api_port = free_port(), free_port()
    env = clean_env(
        HMS_DATABASE_URL=url,
        HMS_JWT_SECRET=SECRET,
        HMS_ENV="prod",
        HMS_DOCUMENT_MODES=f"{CLIENT}=trusted",
        HMS_CORS_ORIGINS=f"http://127.0.0.1:{app_port}",
    )
    pushed = subprocess.run(
        [sys.executable, "-m", "hms.cli", "documents", "push", str(MANIFEST), "--client", CLIENT],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    token = issue(
        SECRET,
        subject="front-desk",
        hospital_id=dataset.alpha.id,
        roles=["front_desk"],
        client=CLIENT,
    )
    log = tmp_path_factory.mktemp("react-dashboard") / "serve.log"
    command = [sys.executable, "-m", "hms.cli", "serve"]
    with running(command, {**env, "HMS_PORT": str(api_port)}, api_port, log) as base:
        api = f"{base}/graphql"
        run = subprocess.run(
            [
                node, "e2e/run.mjs", "--api", api, "--token", token, "--port", str(app_port),
                "--day", DAY.isoformat(), "--search", SEARCH, "--book-day", BOOK_DAY.isoformat(),
            ],
            cwd=APP, env={**os.environ, "CHROMIUM": chromium},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert run.returncode == 0, _failed(run, log)
        result: dict[str, Any] = json.loads(run.stdout)
        result["dryRunCost"] = _dry_run_cost(api, token)
    return result


def _failed(run: subprocess.CompletedProcess[str], log: Path) -> str:
    """The step that did not happen first, then the details."""
    try:
        error = json.loads(run.stdout)["error"]
    except (ValueError, KeyError):
        error = "no result"
    server = log.read_text()[-4000:]
    return f"e2e/run.mjs: {error}\n{run.stderr}\n{run.stdout}\nserver log (end):\n{server}"


def _dry_run_cost(api: str, token: str) -> int:
    """What the server says the search's first page costs (HMS-Dry-Run: nothing runs)."""
    manifest = json.loads(MANIFEST.read_text())
    body = next(o["body"] for o in manifest["operations"] if o["name"] == "PatientSearch")
    answer = httpx.post(
        api,
        json={"query": body, "variables": {"prefix": SEARCH, "first": 10}},
        headers={"Authorization": f"Bearer {token}", "HMS-Dry-Run": "cost"},
        timeout=10.0,
    ).json()
    cost: int = answer["extensions"]["cost"]["requestedQueryCost"]
    return cost


async def _fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows
    finally:
        await conn.close()


async def test_the_day_is_grouped_by_practitioner(
    journey: dict[str, Any], desk_data: Dataset
) -> None:
    url, dataset = desk_data
    start = dt.datetime.combine(DAY, dt.time(), ZoneInfo(ZONE))
    rows = await _fetch(
        url,
        "SELECT practitioner_id, count(*) AS n FROM appointment WHERE hospital_id = $1"
        " AND start_at >= $2 AND start_at < $3 GROUP BY practitioner_id",
        dataset.alpha.id, start, start + dt.timedelta(days=1),
    )  # fmt: skip
    schedule = journey["schedule"]
    total = sum(row["n"] for row in rows)
    # 50 a page: the day's second page came with "Load more appointments".
    assert total > 50
    assert schedule["firstPage"] == 50
    assert schedule["pages"] == -(-total // 50)
    assert schedule["appointments"] == total
    # Two active practitioners, and the inactive one because they have appointments that day.
    assert len(rows) == 3
    assert schedule["columns"] == 3
    assert schedule["countText"] == f"{schedule['appointments']} appointments"
    assert schedule["title"].startswith("Monday, January 5, 2026")
    assert schedule["title"].endswith(f"Alpha · times in {ZONE}")


async def test_search_pages_with_load_more(journey: dict[str, Any], desk_data: Dataset) -> None:
    url, dataset = desk_data
    rows = await _fetch(
        url,
        "SELECT mrn FROM patient WHERE hospital_id = $1"
        " AND (lower(family_name) LIKE $2 OR lower(given_name) LIKE $2)",
        dataset.alpha.id, f"{SEARCH}%",
    )  # fmt: skip
    matching = len(rows)
    search = journey["search"]
    # Ten per page, each page the one after the last cursor: no row twice, none missing.
    assert search["rowsAfterEachPage"] == [*range(10, matching, 10), matching]
    assert len(search["rowsAfterEachPage"]) >= 3
    assert sorted(search["mrns"]) == sorted(row["mrn"] for row in rows)
    names = [tuple(name.split(", ")) for name in search["names"]]
    assert names == sorted(names)
    assert search["countText"] == f"{matching} shown, no more"


def test_a_patient_page_lists_appointments_and_encounters(journey: dict[str, Any]) -> None:
    patient = journey["patient"]
    mrn = journey["search"]["mrns"][0]  # the first row of the search was opened
    assert mrn in patient["title"]
    index = int(mrn.removeprefix("A"))  # the fixture's patient number behind the MRN
    assert patient["appointments"] == fixtures.appointments_for(index) > 0
    assert patient["encounters"] == fixtures.encounters_for(index) > 0


async def test_booking_and_the_double_booking(journey: dict[str, Any], desk_data: Dataset) -> None:
    url, dataset = desk_data
    booking, double = journey["booking"], journey["doubleBooking"]
    slot = f"{BOOK_DAY.isoformat()} 10:00\N{EN DASH}10:30"
    assert booking["message"] == f"Booked {slot} with Ana Doctor0."
    assert booking["status"] == "BOOKED"
    assert booking["appointments"] == journey["patient"]["appointments"] + 1
    assert double["code"] == "SLOT_TAKEN"
    assert "That slot is taken" in double["message"]
    assert double["appointments"] == booking["appointments"]
    start = dt.datetime.combine(BOOK_DAY, dt.time(10), ZoneInfo(ZONE))
    rows = await _fetch(
        url,
        "SELECT a.status, a.version, a.cancellation_reason FROM appointment a"
        " JOIN patient p ON p.hospital_id = a.hospital_id AND p.id = a.patient_id"
        " WHERE a.hospital_id = $1 AND p.mrn = $2 AND a.start_at = $3",
        dataset.alpha.id, journey["search"]["mrns"][0], start,
    )  # fmt: skip
    # One booking, although its request went twice (the first answer was lost): the retry was
    # replayed. Then the other desk cancelled it, and the stale cancel changed nothing.
    assert [tuple(row) for row in rows] == [("cancelled", 2, "Patient called")]


def test_a_stale_cancel_is_a_version_conflict(journey: dict[str, Any]) -> None:
    other = journey["otherDesk"]
    assert other["status"] == "CANCELLED"
    assert "token" not in other["addressBar"]  # the link's token left the address bar
    stale = journey["staleCancel"]
    assert stale["statusBefore"] == "BOOKED"
    assert stale["code"] == "VERSION_CONFLICT"
    assert "now version 2" in stale["message"]
    assert stale["statusAfterReload"] == "CANCELLED"


def test_reads_are_hashed_gets_and_writes_carry_idempotency_keys(
    journey: dict[str, Any], built: dict[str, str]
) -> None:
    requests = journey["requests"]
    mutations = {"BookAppointment", "CancelAppointment"}
    assert {r["operationName"] for r in requests} == set(built)  # every operation was used
    for r in requests:
        assert r["hash"] == built[r["operationName"]], r
        assert not r["withDocument"], r  # the trusted server never needs the text
        assert r["clientName"] == CLIENT
        if r["operationName"] in mutations:
            assert r["method"] == "POST"
            assert UUID.match(r["idempotencyKey"]), r
        else:
            assert r["method"] == "GET"
            assert r["idempotencyKey"] is None
    bookings = [r for r in requests if r["operationName"] == "BookAppointment"]
    lost, retried, again = bookings
    assert lost["status"] == "failed: net::ERR_CONNECTION_RESET"
    assert (retried["status"], again["status"]) == (200, 200)
    # The retry of a lost answer carries the same key and gets the stored answer.
    assert retried["idempotencyKey"] == lost["idempotencyKey"]
    assert retried["replayed"]
    assert not again["replayed"]
    keys = [r["idempotencyKey"] for r in requests if r["operationName"] in mutations]
    assert len(set(keys)) == len(keys) - 1  # one key per user action
    assert [r for r in requests if r is not lost and r["status"] != 200] == []


def test_the_dev_panel_shows_the_cost_extension(journey: dict[str, Any]) -> None:
    match = re.fullmatch(
        r"PatientSearch requested (\d+) · actual (\d+) · budget (\d+)/1000 \(\+50/s\)",
        journey["cost"],
    )
    assert match is not None, journey["cost"]
    requested, actual, available = map(int, match.groups())
    assert requested == journey["dryRunCost"]
    assert 0 < actual <= requested
    assert available < 1000


def test_nothing_else_went_wrong_in_the_browser(journey: dict[str, Any]) -> None:
    # The one expected failure is the booking answer the test cut off.
    errors = [e for e in journey["consoleErrors"] if "ERR_CONNECTION_RESET" not in e]
    assert errors == []
