"""Requests leave nothing of theirs in reference cycles: refcounting frees it, not the collector.

With the collector off a server grew by ~0.75 MB per nested request: graphql-core's executor
refers to itself, and through it every request's Context, loader caches, rows and errors (with
their tracebacks) waited for a collection. This runs nested, failing and mutation requests with
the collector off and looks at what ``gc.collect()`` then finds.
"""

from __future__ import annotations

import collections
import gc
import itertools
import types

from tests import fixtures
from tests.api.writes import CREATE_PATIENT
from tests.conftest import GraphQL

NESTED = """{ patients(first: 50) { edges { cursor node { id mrn givenName familyName
  appointments(first: 5) { edges { node { id startAt status practitioner { id familyName } } } }
  encounters(first: 3) { edges { node { id periodStart class } } } } }
  pageInfo { hasNextPage endCursor } } }"""
FAILING = [
    '{ node(id: "garbage") { id } }',
    "{ patients(first: 500) { edges { node { id } } } }",
    # one error per patient in a non-null field: the first nulls the list, the rest are dropped
    "{ patients(first: 20) { edges { node { appointments(first: 500) { edges { cursor } } } } } }",
]

#: What a request creates and must not leave in cycles: everything of the server's stack. (The
#: httpx test client leaves a small cycle of its own per request; it is not the server's.)
REQUEST_MODULES = (
    "hms.",
    "graphql.",
    "strawberry.",
    "aiodataloader",
    "asyncio",
    "_asyncio",
    "sqlalchemy.",
    "asyncpg",
    "starlette.",
)
REQUEST_TYPES = (types.FrameType, types.TracebackType, types.CoroutineType, BaseException)
_mrn = itertools.count()


def _from_request(obj: object) -> bool:
    kind = type(obj)
    return (
        isinstance(obj, REQUEST_TYPES)
        or kind.__module__.startswith(REQUEST_MODULES)
        or kind.__name__ in ("Row", "Record")
    )


async def _requests(gql: GraphQL, ward: fixtures.HospitalData) -> None:
    body = await gql(NESTED)
    assert "errors" not in body, body
    for query in FAILING:
        assert (await gql(query))["errors"]
    variables = {"input": {"mrn": f"GC-{next(_mrn)}", "givenName": "Ada", "familyName": "L"}}
    body = await gql(CREATE_PATIENT, variables, hospital=ward)
    assert body["data"]["createPatient"]["userErrors"] == [], body
    taken = await gql(CREATE_PATIENT, variables, hospital=ward)  # a userError, from a DB error
    assert taken["data"]["createPatient"]["userErrors"], taken


async def test_requests_leave_no_cyclic_garbage(
    gql: GraphQL, dataset: fixtures.Dataset, ward: fixtures.HospitalData
) -> None:
    await _requests(gql, ward)  # warm the caches (documents, compiled statements)
    gc.collect()
    gc.disable()
    try:
        for _ in range(5):
            await _requests(gql, ward)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        garbage = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    left = collections.Counter(
        f"{type(o).__module__}.{type(o).__qualname__}" for o in garbage if _from_request(o)
    )
    del garbage
    assert not left, left.most_common(20)
