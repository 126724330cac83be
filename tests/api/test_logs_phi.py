"""No log line holds PHI, on any error path (issue 6, defect 4).

The request inputs below carry recognisable patient data. A trigger (installed for this module
only) makes PostgreSQL fail an insert with a message that quotes the row, the way a real
constraint or driver error does, and another makes a write outlive its deadline. Every path is
driven through the whole app with every logger at DEBUG, and the captured output, tracebacks
included, must not contain any of the patient's data — while the unexpected error itself must
still be logged, by class and SQLSTATE.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from hms.app import create_app
from hms.settings import Settings
from tests import fixtures
from tests.api.writes import CREATE_PATIENT
from tests.conftest import token

GIVEN, FAMILY = "Zelphira", "Quandt-Oyelaran"
EMAIL, PHONE = "zelphira.q@example.org", "+44 20 7946 0958"
PHI = (GIVEN, FAMILY, EMAIL, PHONE, "PHI-BOOM-7731", "PHI-SLOW-7731", "PHI-OK-7731", "W0")

TRIGGER = """
CREATE FUNCTION test_phi_trap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.mrn LIKE 'PHI-BOOM%' THEN
    RAISE EXCEPTION 'cannot store % % (%)', NEW.given_name, NEW.family_name, NEW.mrn
      USING DETAIL = 'contact ' || coalesce(NEW.email, '') || ' ' || coalesce(NEW.phone, '');
  END IF;
  IF NEW.mrn LIKE 'PHI-SLOW%' THEN
    PERFORM pg_sleep(10);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER test_phi_trap BEFORE INSERT ON patient
  FOR EACH ROW EXECUTE FUNCTION test_phi_trap();
"""


@pytest.fixture(scope="module")
async def trap(database_url: str) -> AsyncIterator[None]:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(TRIGGER)
        yield
    finally:
        await conn.execute("DROP TRIGGER test_phi_trap ON patient; DROP FUNCTION test_phi_trap();")
        await conn.close()


@pytest.fixture(scope="module")
async def short_app(settings: Settings, trap: None) -> AsyncIterator[Starlette]:
    """The app with a one-second write deadline, so the slow trigger times out."""
    app = create_app(settings.with_(write_timeout=1.0, read_timeout=1.0))
    async with app.router.lifespan_context(app):
        yield app


def patient(mrn: str, **extra: Any) -> dict[str, Any]:
    return {
        "input": {
            "mrn": mrn,
            "givenName": GIVEN,
            "familyName": FAMILY,
            "email": EMAIL,
            "phone": PHONE,
            **extra,
        }
    }


CASES: list[tuple[str, dict[str, Any], str]] = [
    ("internal error quoting the row", patient("PHI-BOOM-7731"), "INTERNAL_SERVER_ERROR"),
    ("deadline", patient("PHI-SLOW-7731"), "TIMEOUT"),
    ("taken MRN", patient("W0"), "userErrors"),
    ("bad email", patient("PHI-OK-7731", email=f"{GIVEN} at home"), "userErrors"),
    ("NUL", patient("PHI-OK-7731", givenName=f"{GIVEN}\x00"), "BAD_USER_INPUT"),
    ("bad enum", patient("PHI-OK-7731", gender=GIVEN.upper()), "BAD_USER_INPUT"),
    ("too long", patient("PHI-OK-7731", familyName=FAMILY * 2000), "BAD_USER_INPUT"),
]


@pytest.mark.parametrize(("case", "variables", "outcome"), CASES, ids=[c[0] for c in CASES])
async def test_error_paths_log_no_phi(
    short_app: Starlette,
    ward: fixtures.HospitalData,
    caplog: pytest.LogCaptureFixture,
    case: str,
    variables: dict[str, Any],
    outcome: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    transport = httpx.ASGITransport(app=short_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as client:
        response = await client.post(
            "/graphql",
            json={"query": CREATE_PATIENT, "variables": variables},
            headers={"Authorization": f"Bearer {token(ward)}"},
        )
    body = response.json()
    if outcome == "userErrors":
        assert body["data"]["createPatient"]["userErrors"], body
    else:
        assert body["errors"][0]["extensions"]["code"] == outcome, body
    logged = caplog.text + "".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records
    )
    for value in PHI:
        assert value not in logged, (case, value)
    if outcome == "INTERNAL_SERVER_ERROR":
        # The failure is still visible to operators: by class, SQLSTATE and frames.
        assert "SQLSTATE P0001" in caplog.text
        assert "hms/persistence" in caplog.text
    # The client sees no internals either, and a masked error does not echo the row.
    for leak in ("SELECT", "INSERT", "asyncpg", "Traceback"):
        assert leak not in response.text, (case, leak)
    if outcome in ("INTERNAL_SERVER_ERROR", "TIMEOUT"):
        assert GIVEN not in response.text
