"""Response compression through the whole app: brotli or gzip for large answers, as asked."""

from __future__ import annotations

import gzip
from typing import Any

import brotli
import httpx
import orjson
import pytest

from tests import fixtures
from tests.conftest import token, without_cost

#: 50 patients: ~6 KB of JSON.
LARGE = "{ patients(first: 50) { edges { node { id mrn givenName familyName birthDate } } } }"
#: A few hundred bytes.
SMALL = "{ patientStats { total } }"

DECODE = {"br": brotli.decompress, "gzip": gzip.decompress}


async def raw(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    accept_encoding: str | None,
    **kwargs: Any,
) -> tuple[httpx.Response, bytes]:
    """The answer and its body as sent (httpx would decode it): no ``Accept-Encoding`` at all
    when ``accept_encoding`` is None."""
    request = client.build_request(method, url, **kwargs)
    if accept_encoding is None:
        del request.headers["accept-encoding"]
    else:
        request.headers["accept-encoding"] = accept_encoding
    response = await client.send(request, stream=True)
    try:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()
    return response, body


async def graphql(
    client: httpx.AsyncClient, dataset: fixtures.Dataset, query: str, accept_encoding: str | None
) -> tuple[httpx.Response, bytes]:
    return await raw(
        client,
        "POST",
        "/graphql",
        accept_encoding,
        json={"query": query},
        headers={"Authorization": f"Bearer {token(dataset.alpha)}"},
    )


def answer(body: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(body)
    return without_cost(parsed)


def vary(response: httpx.Response) -> set[str]:
    return {token.strip().lower() for token in response.headers.get("vary", "").split(",")}


@pytest.mark.parametrize(
    ("accept_encoding", "coding"),
    [
        ("br", "br"),
        ("gzip, deflate, br, zstd", "br"),  # what httpx and browsers send
        ("gzip, deflate", "gzip"),
        ("br;q=0, gzip", "gzip"),
        ("gzip;q=1, br;q=0.5", "gzip"),
        ("*", "br"),
    ],
)
async def test_a_large_answer_is_compressed_as_the_client_asks(
    client: httpx.AsyncClient, dataset: fixtures.Dataset, accept_encoding: str, coding: str
) -> None:
    plain, identity = await graphql(client, dataset, LARGE, None)
    assert "content-encoding" not in plain.headers
    assert len(identity) > 4096
    response, body = await graphql(client, dataset, LARGE, accept_encoding)
    assert response.status_code == 200
    assert response.headers["content-encoding"] == coding
    assert "accept-encoding" in vary(response)
    assert int(response.headers["content-length"]) == len(body) < len(identity) / 3
    assert response.headers["content-type"] == plain.headers["content-type"]
    assert answer(DECODE[coding](body)) == answer(identity)
    assert len(answer(identity)["data"]["patients"]["edges"]) == 50


@pytest.mark.parametrize("accept_encoding", [None, "identity", "deflate", "br;q=0, gzip;q=0"])
async def test_without_an_accepted_coding_the_answer_is_plain(
    client: httpx.AsyncClient, dataset: fixtures.Dataset, accept_encoding: str | None
) -> None:
    response, body = await graphql(client, dataset, LARGE, accept_encoding)
    assert "content-encoding" not in response.headers
    assert "accept-encoding" in vary(response)  # a cache must not serve it to a br client
    assert len(answer(body)["data"]["patients"]["edges"]) == 50


async def test_a_small_answer_is_not_compressed(
    client: httpx.AsyncClient, dataset: fixtures.Dataset
) -> None:
    response, body = await graphql(client, dataset, SMALL, "gzip, br")
    assert len(body) < 1024
    assert "content-encoding" not in response.headers
    assert "accept-encoding" in vary(response)
    assert answer(body) == {"data": {"patientStats": {"total": 120}}}


async def test_graphql_response_media_type_is_compressed(
    client: httpx.AsyncClient, dataset: fixtures.Dataset
) -> None:
    response, body = await raw(
        client,
        "POST",
        "/graphql",
        "br",
        json={"query": LARGE},
        headers={
            "Authorization": f"Bearer {token(dataset.alpha)}",
            "Accept": "application/graphql-response+json",
        },
    )
    assert response.headers["content-type"].startswith("application/graphql-response+json")
    assert response.headers["content-encoding"] == "br"
    assert len(answer(brotli.decompress(body))["data"]["patients"]["edges"]) == 50


async def test_a_compressed_get_answer_has_a_weak_etag_that_still_validates(
    client: httpx.AsyncClient, dataset: fixtures.Dataset
) -> None:
    """The compressed bytes are not what the tag was computed on: the tag turns weak, and the
    client's If-None-Match with it still gets 304."""
    headers = {"Authorization": f"Bearer {token(dataset.alpha)}"}
    plain, _ = await raw(client, "GET", "/graphql", None, params={"query": LARGE}, headers=headers)
    response, _ = await raw(
        client, "GET", "/graphql", "br", params={"query": LARGE}, headers=headers
    )
    assert response.headers["content-encoding"] == "br"
    assert response.headers["etag"] == "W/" + plain.headers["etag"]
    again, body = await raw(
        client,
        "GET",
        "/graphql",
        "br",
        params={"query": LARGE},
        headers={**headers, "If-None-Match": response.headers["etag"]},
    )
    assert (again.status_code, body) == (304, b"")


async def test_metrics_are_compressed_for_a_scraper_that_asks(client: httpx.AsyncClient) -> None:
    plain, text = await raw(client, "GET", "/metrics", None)
    assert "content-encoding" not in plain.headers
    assert len(text) > 1024
    response, body = await raw(client, "GET", "/metrics", "gzip")
    assert response.headers["content-encoding"] == "gzip"
    assert b"hms_dependency_up" in gzip.decompress(body)


async def test_security_headers_stay_on_compressed_answers(
    client: httpx.AsyncClient, dataset: fixtures.Dataset
) -> None:
    response, _ = await graphql(client, dataset, LARGE, "br")
    assert response.headers["content-encoding"] == "br"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


async def test_compression_can_be_left_to_an_ingress(
    settings: Any, dataset: fixtures.Dataset
) -> None:
    """``HMS_COMPRESSION=off``: the same large answer goes out as it is, whatever is accepted."""
    from hms.app import create_app

    app = create_app(settings.with_(compression=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as http:
            response = await http.post(
                "/graphql",
                json={"query": "{ patients(first: 50) { edges { node { id mrn familyName } } } }"},
                headers={
                    "Authorization": f"Bearer {token(dataset.alpha)}",
                    "Accept-Encoding": "br, gzip",
                },
            )
    assert response.status_code == 200
    assert len(response.content) > 1024
    assert "content-encoding" not in response.headers
