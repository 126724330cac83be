"""The floor of this stack: the nested dashboard query written by hand, behind a bare route.

``uvicorn --factory bench.floor:app`` serves ``POST /graphql`` the way the platform does —
bearer token verified, one REPEATABLE READ READ ONLY transaction with the tenant and role bound
in one statement, deadline set — and then runs one hand-written SQL statement for the
benchmark's nested document (``bench.run.NESTED``, n from the variables), returning PostgreSQL's
JSON text as the body. No GraphQL, no compiler, no SQLAlchemy: what is left is uvicorn,
Starlette, PyJWT and asyncpg, the least this stack can do for the same answer.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hms.persistence.urls import asyncpg_dsn
from hms.security.tokens import AuthError, bearer, verify

BIND = (
    "SELECT set_config('role', 'hms_app', true), set_config('app.hospital_id', $1, true),"
    " set_config('statement_timeout', '10000', true)"
)

#: patients(first: $n) { edges { node { mrn appointments(first: 5) { edges { node { startAt
#: practitioner { familyName } } } } encounters(first: 3) { edges { node { class } } } } } }
NESTED = """
SELECT json_build_object('patients', json_build_object('edges', coalesce((
  SELECT array_to_json(array_agg(row_to_json(e) ORDER BY e.family_name, e.given_name, e.id))
  FROM (
    SELECT p.family_name, p.given_name, p.id, (SELECT row_to_json(n) FROM (SELECT
      p.mrn AS "mrn",
      (SELECT json_build_object('edges', coalesce(array_to_json(array_agg(
          json_build_object('node', json_build_object(
            'startAt',
            to_char(a.start_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') || '+00:00',
            'practitioner', (SELECT json_build_object('familyName', pr.family_name)
                             FROM practitioner pr
                             WHERE pr.hospital_id = $1::uuid AND pr.id = a.practitioner_id)))
          ORDER BY a.start_at DESC, a.id DESC)), '[]'))
       FROM (SELECT * FROM appointment a WHERE a.hospital_id = $1::uuid AND a.patient_id = p.id
             ORDER BY a.start_at DESC, a.id DESC LIMIT 5) a) AS "appointments",
      (SELECT json_build_object('edges', coalesce(array_to_json(array_agg(
          json_build_object('node', json_build_object('class', upper(x.class)))
          ORDER BY x.period_start DESC, x.id DESC)), '[]'))
       FROM (SELECT * FROM encounter x WHERE x.hospital_id = $1::uuid AND x.patient_id = p.id
             ORDER BY x.period_start DESC, x.id DESC LIMIT 3) x) AS "encounters"
    ) n) AS node
    FROM patient p WHERE p.hospital_id = $1::uuid
    ORDER BY p.family_name, p.given_name, p.id LIMIT $2
  ) e), '[]')))::text
"""


def app() -> Starlette:
    secret = os.environ["HMS_JWT_SECRET"]
    dsn = asyncpg_dsn(os.environ["HMS_DATABASE_URL"])
    pool: asyncpg.Pool | None = None

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        nonlocal pool
        pool = await asyncpg.create_pool(dsn, min_size=20, max_size=30)
        try:
            yield
        finally:
            await pool.close()

    async def graphql(request: Request) -> Response:
        try:
            principal = verify(secret, bearer(request.headers.get("authorization")))
        except AuthError as error:
            return Response(str(error), status_code=401)
        n = orjson.loads(await request.body())["variables"]["n"]
        assert pool is not None
        async with (
            pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            await conn.execute(BIND, str(principal.hospital_id))
            data = await conn.fetchval(NESTED, str(principal.hospital_id), n)
        return Response(
            b'{"data":' + data.encode() + b"}", media_type="application/json; charset=utf-8"
        )

    return Starlette(routes=[Route("/graphql", graphql, methods=["POST"])], lifespan=lifespan)
