"""Tokens from an OpenID Connect provider, checked against the issuer's published keys.

With ``HMS_OIDC_ISSUER`` and ``HMS_OIDC_AUDIENCE`` set, a token is accepted only if it is
signed by a key of the issuer's JWKS with an algorithm of the allow-list (asymmetric only: no
``none``, no HS*, so a public key can never serve as an HMAC secret), names exactly that
issuer and audience, and is inside its ``exp``/``nbf`` window (leeway at most 60 s).

Keys are fetched asynchronously (the JWKS address from the issuer's discovery document unless
``HMS_OIDC_JWKS_URL`` names it) and kept: a known key costs nothing per request. A token with
an unknown ``kid`` (the provider rotated its keys) triggers one refetch, at most once per
cooldown however many such tokens arrive, so a flood of made-up key ids cannot turn into a
flood of fetches. If the provider cannot be reached, the keys already held keep working.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jwt

from hms.security.tokens import AuthError, decoded
from hms.settings import OIDC_ALGORITHMS

if TYPE_CHECKING:  # imported at run time with the first fetch: a server without OIDC needs none
    import httpx


@dataclasses.dataclass(frozen=True)
class OidcConfig:
    issuer: str
    audience: str
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway: float = 30.0
    #: Keys are refetched after this long even when no unknown ``kid`` asked for it.
    refresh_after: float = 3600.0
    #: The least time between two fetches.
    cooldown: float = 30.0
    timeout: float = 5.0


class KeySet:
    """The issuer's signing keys by ``kid``, fetched when needed, never per request."""

    def __init__(
        self,
        config: OidcConfig,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.client = client
        self.clock = clock
        # kid -> the key and the algorithm its JWK declares (if it does).
        self._keys: dict[str | None, tuple[jwt.PyJWK, str | None]] = {}
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> tuple[jwt.PyJWK, str | None]:
        now = self.clock()
        known = self._keys.get(kid)
        if known is not None and now - self._fetched_at < self.config.refresh_after:
            return known
        await self._refresh()
        found = self._keys.get(kid)
        if found is None:
            raise AuthError("token is signed with a key the issuer does not publish")
        return found

    async def _refresh(self) -> None:
        asked = self.clock()
        async with self._lock:
            if self._attempted_at >= asked:
                return  # fetched while this request waited: one fetch serves them all
            if self.clock() - self._attempted_at < self.config.cooldown:
                return
            self._attempted_at = self.clock()
            import httpx

            try:
                self._keys = await self._fetch()
                self._fetched_at = self.clock()
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                pass  # keep the keys held; the next refresh tries again after the cooldown

    async def _fetch(self) -> dict[str | None, tuple[jwt.PyJWK, str | None]]:
        url = self.config.jwks_url or await self._discover()
        response = await self.client.get(url, timeout=self.config.timeout)
        response.raise_for_status()
        keys: dict[str | None, tuple[jwt.PyJWK, str | None]] = {}
        entries = response.json()["keys"]
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type or curve this server cannot use
            declared = entry.get("alg")
            keys[entry.get("kid")] = (key, declared if isinstance(declared, str) else None)
        if len(keys) == 1:  # a token without ``kid`` may use the only key
            keys[None] = next(iter(keys.values()))
        return keys

    async def _discover(self) -> str:
        issuer = self.config.issuer.rstrip("/")
        response = await self.client.get(
            f"{issuer}/.well-known/openid-configuration", timeout=self.config.timeout
        )
        response.raise_for_status()
        document = response.json()
        if document.get("issuer") != self.config.issuer:
            raise ValueError("the discovery document names another issuer")
        url: str = document["jwks_uri"]
        return url


class OidcVerifier:
    def __init__(self, config: OidcConfig, keys: KeySet) -> None:
        self.config = config
        self.keys = keys
        self.algorithms = frozenset(config.algorithms) & OIDC_ALGORITHMS

    async def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of ``token``, or :class:`AuthError` (safe to show the client)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("token is malformed") from None
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise AuthError(f"token algorithm {str(algorithm)[:16]!r} is not accepted")
        kid = header.get("kid")
        key, declared = await self.keys.key(kid if isinstance(kid, str) else None)
        if declared is not None and declared != algorithm:
            raise AuthError("token algorithm does not match its key")
        return decoded(
            lambda: jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        )
