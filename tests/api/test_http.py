"""GraphQL over HTTP: media types, methods, status codes, and bad input that must not leak."""

from __future__ import annotations

import datetime as dt
import uuid

import httpx
import jwt
import pytest

from hms.app import create_app
from hms.security.tokens import issue
from hms.settings import Settings
from tests import fixtures
from tests.conftest import SECRET, token, without_cost

GRAPHQL_RESPONSE = "application/graphql-response+json"


@pytest.fixture
def auth(dataset: fixtures.Dataset) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(dataset.alpha)}"}


def assert_clean(text: str) -> None:
    """No SQL, no Python internals in anything a client sees."""
    for leak in ("Traceback", "SELECT", "sqlalchemy", "asyncpg", 'File "', "hms/"):
        assert leak not in text, text


async def test_post_json_answers_application_json_by_default(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post("/graphql", json={"query": "{ viewer { userId } }"}, headers=auth)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert without_cost(response.json()) == {"data": {"viewer": {"userId": "tester"}}}


async def test_graphql_response_json_when_accepted(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "{ viewer { userId } }"},
        headers={**auth, "Accept": f"{GRAPHQL_RESPONSE}, application/json;q=0.9"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{GRAPHQL_RESPONSE}; charset=utf-8"


async def test_get_runs_queries(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await client.get(
        "/graphql",
        params={
            "query": "query Me($n: Int) { viewer { userId } patients(first: $n) { totalCount } }",
            "variables": '{"n": 1}',
        },
        headers=auth,
    )
    assert response.status_code == 200
    assert response.json()["data"]["viewer"]["userId"] == "tester"


async def test_mutation_over_get_is_405_with_allow_post(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.get(
        "/graphql", params={"query": "mutation { __typename }"}, headers=auth
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert "data" not in response.json()


async def test_unsupported_media_type_is_415(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/graphql",
        content=b"query=%7Bviewer%7BuserId%7D%7D",
        headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415
    assert response.json()["errors"][0]["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_body_over_the_limit_is_413(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    padding = " " * 1_100_000
    response = await client.post(
        "/graphql",
        content=b'{"query": "{ viewer { userId } }' + padding.encode() + b'"}',
        headers={**auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert "data" not in response.json()


async def test_body_over_the_limit_without_content_length_is_413(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    async def chunks() -> object:
        yield b'{"query": "'
        for _ in range(20):
            yield b" " * 100_000
        yield b'"}'

    response = await client.post(
        "/graphql",
        content=chunks(),  # type: ignore[arg-type]
        headers={**auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"query"', "must be a JSON object"),
        (b"{}", "non-empty 'query'"),
        (b'{"query": 42}', "non-empty 'query'"),
        (b'{"query": "{ viewer { userId } }", "variables": [1]}', "'variables'"),
        (b'{"query": "{ viewer { userId } }", "operationName": 3}', "'operationName'"),
        (b'{"query": "{ viewer { userId } }", "extensions": [1]}', "'extensions'"),
    ],
)
async def test_malformed_requests_are_400_without_data(
    client: httpx.AsyncClient, auth: dict[str, str], content: bytes, message: str
) -> None:
    response = await client.post(
        "/graphql",
        content=content,
        headers={**auth, "Content-Type": "application/json", "Accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    assert message in body["errors"][0]["message"]


async def test_syntax_error_status_depends_on_media_type(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    strict = await client.post(
        "/graphql", json={"query": "{ viewer {"}, headers={**auth, "Accept": GRAPHQL_RESPONSE}
    )
    legacy = await client.post(
        "/graphql", json={"query": "{ viewer {"}, headers={**auth, "Accept": "application/json"}
    )
    assert strict.status_code == 400
    assert legacy.status_code == 200
    for response in (strict, legacy):
        body = response.json()
        assert "data" not in body
        assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


async def test_unknown_field_is_a_validation_error(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "{ patients { edges { node { ssn } } } }"},
        headers={**auth, "Accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert "Cannot query field 'ssn'" in error["message"]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_invalid_variables_are_a_request_error(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/graphql",
        json={
            "query": "query($n: Int!) { patients(first: $n) { totalCount } }",
            "variables": {"n": "many"},
        },
        headers={**auth, "Accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    assert "$n" in body["errors"][0]["message"]


async def test_unknown_operation_name_is_a_request_error(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "query A { viewer { userId } } query B { viewer { roles } }"},
        headers={**auth, "Accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 400
    assert "operationName" in response.json()["errors"][0]["message"]
    named = await client.post(
        "/graphql",
        json={
            "query": "query A { viewer { userId } } query B { viewer { roles } }",
            "operationName": "B",
        },
        headers=auth,
    )
    assert without_cost(named.json()) == {"data": {"viewer": {"roles": ["clinician"]}}}


async def test_unacceptable_accept_is_406(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ viewer { userId } }"}, headers={**auth, "Accept": "text/csv"}
    )
    assert response.status_code == 406


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Basic dXNlcjpwYXNz",
        "Bearer ",
        "Bearer not-a-jwt",
        "Bearer " + jwt.encode({"sub": "x", "exp": 9999999999}, "some-other-secret-of-32-bytes-xx"),
        "Bearer "
        + issue(
            SECRET,
            subject="x",
            hospital_id=uuid.uuid4(),
            roles=["admin"],
            now=dt.datetime.now(dt.UTC) - dt.timedelta(days=2),
            ttl=dt.timedelta(hours=1),
        ),
        "Bearer " + jwt.encode({"sub": "x", "exp": 9999999999}, SECRET, algorithm="HS256"),
        "Bearer " + jwt.encode({"sub": "x", "exp": 9999999999, "hospital_id": "x"}, SECRET),
    ],
    ids=[
        "missing",
        "basic",
        "empty",
        "garbage",
        "wrong-key",
        "expired",
        "no-hospital",
        "bad-hospital",
    ],
)
async def test_bad_tokens_are_401_json(client: httpx.AsyncClient, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = await client.post(
        "/graphql", json={"query": "{ viewer { userId } }"}, headers=headers
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert_clean(response.text)


async def test_none_algorithm_is_refused(client: httpx.AsyncClient) -> None:
    forged = jwt.encode(
        {"sub": "x", "exp": 9999999999, "hospital_id": str(uuid.uuid4())}, "", algorithm="none"
    )
    response = await client.post(
        "/graphql",
        json={"query": "{ viewer { userId } }"},
        headers={"Authorization": f"Bearer {forged}"},
    )
    assert response.status_code == 401


@pytest.mark.parametrize("first", [-1, 101, 1000])
async def test_page_size_outside_bounds_is_an_error_not_a_cap(
    client: httpx.AsyncClient, auth: dict[str, str], first: int
) -> None:
    response = await client.post(
        "/graphql",
        json={
            "query": "query($n: Int) { patients(first: $n) { edges { cursor } } }",
            "variables": {"n": first},
        },
        headers=auth,
    )
    body = response.json()
    assert body["data"] is None
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "between 0 and 100" in error["message"]


async def test_nested_page_size_is_bounded_too(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/graphql",
        json={
            "query": "{ patients(first: 1) { edges { node {"
            " appointments(first: 500) { totalCount } } } } }"
        },
        headers=auth,
    )
    assert "between 0 and 100" in response.json()["errors"][0]["message"]


async def test_tampered_cursor_is_a_clear_error(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    first = await client.post(
        "/graphql",
        json={"query": "{ patients(first: 2) { pageInfo { endCursor } } }"},
        headers=auth,
    )
    cursor = first.json()["data"]["patients"]["pageInfo"]["endCursor"]
    tampered = [
        cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB"),  # another (or no) id
        cursor[6:],  # the scope cut
        cursor + "x",
        "garbage",
        "",
        "a.b.c",
    ]
    for bad in tampered:
        response = await client.post(
            "/graphql",
            json={
                "query": "query($c: String) { patients(first: 2, after: $c) { totalCount } }",
                "variables": {"c": bad},
            },
            headers=auth,
        )
        error = response.json()["errors"][0]
        assert "Invalid cursor" in error["message"], bad
        assert_clean(response.text)


async def test_cursor_from_another_order_is_refused(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    first = await client.post(
        "/graphql",
        json={"query": "{ patients(first: 2) { pageInfo { endCursor } } }"},
        headers=auth,
    )
    cursor = first.json()["data"]["patients"]["pageInfo"]["endCursor"]
    response = await client.post(
        "/graphql",
        json={
            "query": "query($c: String) { patients(first: 2, after: $c, "
            "orderBy: {field: CREATED_AT}) { totalCount } }",
            "variables": {"c": cursor},
        },
        headers=auth,
    )
    assert "Invalid cursor" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize("bad_id", ["", "!!!", "UGF0aWVudDpub3QtYS11dWlk", "V2hhdGV2ZXI6MTIz"])
async def test_malformed_global_ids_are_errors(
    client: httpx.AsyncClient, auth: dict[str, str], bad_id: str
) -> None:
    response = await client.post(
        "/graphql",
        json={
            "query": "query($id: ID!) { node(id: $id) { id } patient(id: $id) { id } }",
            "variables": {"id": bad_id},
        },
        headers=auth,
    )
    body = response.json()
    assert body["data"] == {"node": None, "patient": None}
    assert all("Invalid ID" in e["message"] for e in body["errors"])
    assert_clean(response.text)


async def test_server_keeps_serving_after_bad_requests(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for content in (b"{", b"[]", b'{"query": "{"}'):
        await client.post(
            "/graphql", content=content, headers={**auth, "Content-Type": "application/json"}
        )
    response = await client.post(
        "/graphql", json={"query": "{ patientStats { total } }"}, headers=auth
    )
    assert without_cost(response.json()) == {"data": {"patientStats": {"total": 120}}}


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "cache": "ok"}


async def test_documents_past_the_token_limit_are_refused(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    aliases = " ".join(f"a{i}: __typename" for i in range(3000))  # 9,000 tokens
    response = await client.post(
        "/graphql",
        json={"query": f"{{ {aliases} }}"},
        headers={**auth, "Accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "more than 5000 tokens" in error["message"]


async def test_empty_selection_sets_are_syntax_errors(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ viewer { } }"}, headers={**auth, "Accept": GRAPHQL_RESPONSE}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


async def test_a_cache_outage_degrades_readiness_without_failing_it(settings: Settings) -> None:
    """Nothing on the request path needs Redis: /readyz stays 200, says "degraded" and names
    the cache, and the metric shows it (issue 6, defect 6; it used to answer 503)."""
    app = create_app(settings.with_(redis_url="redis://127.0.0.1:1/0"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as client:
            ready = await client.get("/readyz")
            health = await client.get("/healthz")
            metrics = await client.get("/metrics")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["cache"].startswith("unavailable")
    assert health.status_code == 200
    assert 'hms_dependency_up{dependency="cache"} 0.0' in metrics.text
    assert 'hms_dependency_up{dependency="database"} 1.0' in metrics.text
