"""Tokens from an OpenID Connect provider, and memberships in the database (issue 10).

A real identity provider stands in: an HTTP server on loopback with a discovery document and
a JWKS of generated RSA and EC keys, which the test can rotate or take down. The server under
test fetches from it over HTTP as it would from Keycloak or Entra ID.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hms.app import create_app
from hms.persistence import memberships
from hms.persistence.urls import async_url
from hms.settings import Settings
from tests import fixtures
from tests.api.writes import make_hospital
from tests.conftest import SECRET

AUDIENCE = "hms-api"


def base64url(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


class Provider:
    """An OIDC provider on loopback: its keys can be rotated and its endpoints taken down."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.published: list[dict[str, Any]] = [
            self.jwk(self.rsa, "rsa-1"),
            self.jwk(self.ec, "ec-1"),
        ]
        self.jwks_requests = 0
        self.down = False
        self.claims_issuer: str | None = None  # what the discovery document says, if not us
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.issuer = f"http://127.0.0.1:{self.port}/realms/hospital"

    @staticmethod
    def jwk(key: Any, kid: str) -> dict[str, Any]:
        if isinstance(key, rsa.RSAPrivateKey):
            public: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            return {**public, "kid": kid, "use": "sig", "alg": "RS256"}
        public = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        return {**public, "kid": kid, "use": "sig", "alg": "ES256"}

    def app(self) -> Starlette:
        async def discovery(request: Request) -> Response:
            issuer = self.claims_issuer or self.issuer
            return JSONResponse({"issuer": issuer, "jwks_uri": f"{self.issuer}/certs"})

        async def certs(request: Request) -> Response:
            self.jwks_requests += 1
            if self.down:  # the key set fails with a page that parses as an empty key set
                return JSONResponse({"keys": []}, status_code=503)
            return JSONResponse({"keys": self.published})

        return Starlette(
            routes=[
                Route("/realms/hospital/.well-known/openid-configuration", discovery),
                Route("/realms/hospital/certs", certs),
            ]
        )

    def token(
        self,
        hospital: fixtures.HospitalData,
        subject: str = "dr-who",
        *,
        key: Any = None,
        kid: str | None = "rsa-1",
        algorithm: str = "RS256",
        **claims: Any,
    ) -> str:
        now = int(time.time())
        body = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": subject,
            "hospital_id": str(hospital.id),
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        headers = {} if kid is None else {"kid": kid}
        return jwt.encode(body, key or self.rsa, algorithm=algorithm, headers=headers)


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    idp = Provider()
    server = uvicorn.Server(
        uvicorn.Config(idp.app(), host="127.0.0.1", port=idp.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield idp
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
async def oidc_app(settings: Settings, provider: Provider) -> AsyncIterator[Starlette]:
    provider.down = False
    provider.claims_issuer = None
    app = create_app(
        settings.with_(
            oidc_issuer=provider.issuer,
            oidc_audience=AUDIENCE,
            oidc_jwks_cooldown=1.0,
            membership_ttl=0.3,
        )
    )
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def ward(database_url: str, dataset: fixtures.Dataset) -> fixtures.HospitalData:
    return await make_hospital(database_url)


@pytest.fixture
async def member(database_url: str, ward: fixtures.HospitalData) -> AsyncIterator[str]:
    """A user who acts in the ward as front desk and clinician."""
    subject = f"user-{uuid.uuid4().hex[:8]}"
    engine = create_async_engine(async_url(database_url))
    try:
        await memberships.put_as_owner(engine, ward.id, subject, ["front_desk", "clinician"])
        yield subject
    finally:
        await memberships.remove_as_owner(engine, ward.id, subject)
        await engine.dispose()


async def ask(
    app: Starlette, bearer: str, query: str = "{ viewer { userId roles } }"
) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://hms.test"
    ) as client:
        return await client.post(
            "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {bearer}"}
        )


def refused(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    (error,) = response.json()["errors"]
    assert words in error["message"], error
    assert "data" not in response.json()


async def test_a_members_token_gets_the_roles_the_database_grants(
    oidc_app: Starlette, provider: Provider, ward: fixtures.HospitalData, member: str
) -> None:
    for key, kid, algorithm in ((provider.rsa, "rsa-1", "RS256"), (provider.ec, "ec-1", "ES256")):
        response = await ask(
            oidc_app, provider.token(ward, member, key=key, kid=kid, algorithm=algorithm)
        )
        assert response.status_code == 200, response.text
        viewer = response.json()["data"]["viewer"]
        assert viewer == {"userId": member, "roles": ["clinician", "front_desk"]}


async def test_a_token_can_narrow_its_roles_but_never_add_one(
    oidc_app: Starlette, provider: Provider, ward: fixtures.HospitalData, member: str
) -> None:
    narrowed = await ask(oidc_app, provider.token(ward, member, roles=["front_desk"]))
    assert narrowed.json()["data"]["viewer"]["roles"] == ["front_desk"]
    # "admin" is not granted in the database: the token ends up with no role at all.
    escalated = await ask(oidc_app, provider.token(ward, member, roles=["admin"]))
    refused(escalated, 403, "none of the roles")


async def test_a_token_for_a_hospital_the_user_is_not_a_member_of_is_refused(
    oidc_app: Starlette, provider: Provider, dataset: fixtures.Dataset, member: str
) -> None:
    response = await ask(oidc_app, provider.token(dataset.alpha, member))
    refused(response, 403, "not a member of the hospital")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"exp": int(time.time()) - 120, "iat": int(time.time()) - 400}, "expired"),
        ({"aud": "another-api"}, "another audience"),
        ({"iss": "http://127.0.0.1:1/realms/elsewhere"}, "another issuer"),
        ({"nbf": int(time.time()) + 600}, "not valid yet"),
    ],
)
async def test_claims_outside_the_rules_are_refused(
    oidc_app: Starlette,
    provider: Provider,
    ward: fixtures.HospitalData,
    member: str,
    change: dict[str, Any],
    words: str,
) -> None:
    refused(await ask(oidc_app, provider.token(ward, member, **change)), 401, words)


async def test_forged_algorithms_are_refused(
    oidc_app: Starlette, provider: Provider, ward: fixtures.HospitalData, member: str
) -> None:
    now = int(time.time())
    claims = {"iss": provider.issuer, "aud": AUDIENCE, "sub": member,
              "hospital_id": str(ward.id), "iat": now, "exp": now + 300}  # fmt: skip
    unsigned = jwt.encode(claims, "", algorithm="none", headers={"kid": "rsa-1"})
    refused(await ask(oidc_app, unsigned), 401, "'none' is not accepted")
    # The classic confusion: HS256 with the provider's public key as the HMAC secret.
    pem = provider.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = base64url(json.dumps({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}).encode())
    payload = base64url(json.dumps(claims).encode())
    signature = hmac.new(pem, header + b"." + payload, hashlib.sha256).digest()
    forged = b".".join([header, payload, base64url(signature)]).decode()
    refused(await ask(oidc_app, forged), 401, "'HS256' is not accepted")
    # The development secret's tokens do not pass either once OIDC is configured.
    dev = jwt.encode({**claims, "roles": ["admin"]}, SECRET, algorithm="HS256")
    refused(await ask(oidc_app, dev), 401, "'HS256' is not accepted")
    # A key of one kind under another's algorithm.
    mixed = provider.token(ward, member, key=provider.ec, kid="rsa-1", algorithm="ES256")
    refused(await ask(oidc_app, mixed), 401, "does not match its key")


async def test_rotation_fetches_once_and_unknown_key_ids_cannot_flood_the_provider(
    oidc_app: Starlette, provider: Provider, ward: fixtures.HospitalData, member: str
) -> None:
    assert (await ask(oidc_app, provider.token(ward, member))).status_code == 200
    fetched = provider.jwks_requests
    # Many requests with a known key: no fetch at all, also once the cooldown has passed.
    for _ in range(5):
        assert (await ask(oidc_app, provider.token(ward, member))).status_code == 200
    await asyncio.sleep(1.1)
    for _ in range(3):
        assert (await ask(oidc_app, provider.token(ward, member))).status_code == 200
    assert provider.jwks_requests == fetched
    # The provider rotates: rsa-2 replaces rsa-1. Once the cooldown since the last fetch has
    # passed, a token of the new key fetches once.
    await asyncio.sleep(1.1)
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    old = list(provider.published)
    provider.published = [provider.jwk(rotated, "rsa-2"), provider.jwk(provider.ec, "ec-1")]
    try:
        fresh = await ask(oidc_app, provider.token(ward, member, key=rotated, kid="rsa-2"))
        assert fresh.status_code == 200, fresh.text
        assert provider.jwks_requests == fetched + 1
        # The retired key is gone; made-up key ids, fifty at once, fetch nothing more.
        retired = await ask(oidc_app, provider.token(ward, member))
        refused(retired, 401, "does not publish")
        flood = await asyncio.gather(
            *(ask(oidc_app, provider.token(ward, member, kid=f"made-up-{i}")) for i in range(50))
        )
        assert {r.status_code for r in flood} == {401}
        assert provider.jwks_requests == fetched + 1  # within the cooldown
    finally:
        provider.published = old


async def test_keys_held_keep_working_while_the_provider_is_down(
    oidc_app: Starlette, provider: Provider, ward: fixtures.HospitalData, member: str
) -> None:
    assert (await ask(oidc_app, provider.token(ward, member))).status_code == 200
    provider.down = True
    try:
        assert (await ask(oidc_app, provider.token(ward, member))).status_code == 200
        await asyncio.sleep(1.1)  # past the cooldown: an unknown kid makes it try the provider
        fetched = provider.jwks_requests
        unknown = await ask(oidc_app, provider.token(ward, member, kid="rsa-9"))
        refused(unknown, 401, "does not publish")  # a clear 401, not a 5xx
        assert provider.jwks_requests == fetched + 1
        # Its error page parsed as an empty key set; the keys held are still the keys.
        assert (await ask(oidc_app, provider.token(ward, member))).status_code == 200
    finally:
        provider.down = False


async def test_an_ended_membership_is_refused_within_the_ttl(
    oidc_app: Starlette,
    provider: Provider,
    ward: fixtures.HospitalData,
    member: str,
    database_url: str,
) -> None:
    assert (await ask(oidc_app, provider.token(ward, member))).status_code == 200
    engine = create_async_engine(async_url(database_url))
    try:
        await memberships.put_as_owner(engine, ward.id, member, ["auditor"])
        await asyncio.sleep(0.4)  # membership_ttl is 0.3 s here
        changed = await ask(oidc_app, provider.token(ward, member))
        assert changed.json()["data"]["viewer"]["roles"] == ["auditor"]
        await memberships.remove_as_owner(engine, ward.id, member)
        await asyncio.sleep(0.4)
    finally:
        await engine.dispose()
    refused(await ask(oidc_app, provider.token(ward, member)), 403, "not a member")


async def test_memberships_are_tenant_data_under_row_level_security(
    settings: Settings, dataset: fixtures.Dataset, ward: fixtures.HospitalData, member: str
) -> None:
    """The app role sees a hospital's memberships only under that hospital's binding."""
    from hms.persistence.database import Database

    database = Database.from_settings(settings)
    try:
        for hospital_id, expected in (
            (ward.id, {"clinician", "front_desk"}),
            (dataset.alpha.id, None),
        ):
            db = database.request(hospital_id, readonly=True)
            try:
                assert await memberships.roles_of(db, member) == (
                    None if expected is None else frozenset(expected)
                )
            finally:
                await db.close()
    finally:
        await database.dispose()


def test_hms_members_adds_lists_and_removes(
    database_url: str,
    ward: fixtures.HospitalData,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from hms import cli

    monkeypatch.setenv("HMS_DATABASE_URL", database_url)
    monkeypatch.setenv("HMS_JWT_SECRET", SECRET)

    def hms(*argv: str) -> tuple[int, str]:
        code = cli.main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    code, said = hms("members", "add", "--hospital", ward.slug, "--subject", "nurse-1",
                     "--role", "clinician", "--role", "front_desk")  # fmt: skip
    assert code == 0, said
    assert hms("members", "list", "--hospital", ward.slug) == (0, "nurse-1\tclinician,front_desk\n")
    assert hms("members", "add", "--hospital", ward.slug, "--subject", "nurse-1",
               "--role", "auditor")[0] == 0  # fmt: skip
    assert hms("members", "list", "--hospital", ward.slug) == (0, "nurse-1\tauditor\n")
    assert hms("members", "remove", "--hospital", ward.slug, "--subject", "nurse-1")[0] == 0
    assert hms("members", "remove", "--hospital", ward.slug, "--subject", "nurse-1")[0] == 1
    code, said = hms("members", "list", "--hospital", "nowhere")
    assert code == 2
    assert "unknown hospital" in said
    with pytest.raises(SystemExit):  # argparse refuses a role the policy does not know
        hms("members", "add", "--hospital", ward.slug, "--subject", "x", "--role", "root")


async def test_a_token_signed_by_another_key_under_a_known_kid_is_refused(
    oidc_app: Starlette, provider: Provider, ward: fixtures.HospitalData, member: str
) -> None:
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = provider.token(ward, member, key=impostor, kid="rsa-1")
    refused(await ask(oidc_app, forged), 401, "signature is invalid")
    refused(await ask(oidc_app, "not.a.token"), 401, "malformed")
    without_audience = provider.token(ward, member, aud=None)
    refused(await ask(oidc_app, without_audience), 401, "malformed")


async def test_only_signing_keys_the_server_can_use_are_taken(
    settings: Settings, provider: Provider, ward: fixtures.HospitalData, member: str
) -> None:
    """A JWKS may hold encryption keys and key types this server cannot use: they are skipped,
    never mistaken for signing keys."""
    encrypting = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unusable = {"kty": "EC", "crv": "P-999", "x": "AA", "y": "AA", "kid": "odd", "use": "sig"}
    old = list(provider.published)
    provider.published = [
        unusable,
        {**provider.jwk(encrypting, "enc-1"), "use": "enc"},
        *old,
    ]
    app = create_app(settings.with_(oidc_issuer=provider.issuer, oidc_audience=AUDIENCE))
    try:
        async with app.router.lifespan_context(app):
            assert (await ask(app, provider.token(ward, member))).status_code == 200
            sealed = provider.token(ward, member, key=encrypting, kid="enc-1")
            refused(await ask(app, sealed), 401, "does not publish")
    finally:
        provider.published = old


async def test_a_token_without_kid_uses_the_only_key_and_no_other(
    settings: Settings, provider: Provider, ward: fixtures.HospitalData, member: str
) -> None:
    old = list(provider.published)
    try:
        provider.published = [provider.jwk(provider.rsa, "rsa-1")]
        app = create_app(settings.with_(oidc_issuer=provider.issuer, oidc_audience=AUDIENCE))
        async with app.router.lifespan_context(app):
            assert (await ask(app, provider.token(ward, member, kid=None))).status_code == 200
        provider.published = old  # two keys: which one would it be?
        app = create_app(settings.with_(oidc_issuer=provider.issuer, oidc_audience=AUDIENCE))
        async with app.router.lifespan_context(app):
            refused(await ask(app, provider.token(ward, member, kid=None)), 401, "not publish")
    finally:
        provider.published = old


async def test_a_discovery_document_of_another_issuer_is_not_trusted(
    settings: Settings, provider: Provider, ward: fixtures.HospitalData, member: str
) -> None:
    provider.claims_issuer = "https://evil.example.net/realms/hospital"
    try:
        app = create_app(settings.with_(oidc_issuer=provider.issuer, oidc_audience=AUDIENCE))
        async with app.router.lifespan_context(app):
            refused(await ask(app, provider.token(ward, member)), 401, "does not publish")
    finally:
        provider.claims_issuer = None
