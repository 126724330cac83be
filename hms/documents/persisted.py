"""Persisted documents: ids, the three request protocols, the modes, and where bodies live.

Every protocol maps to one internal id, ``sha256:<64 lowercase hex>`` of the exact document
text: Apollo's automatic persisted queries (``extensions.persistedQuery.sha256Hash``), the
GraphQL-over-HTTP ``documentId`` (``sha256:<hex>``) and Relay's ``doc_id`` (SHA-256 hex).

A body is found, for an id, in this worker's LRU, then in the shared cache (Redis, or process
memory without it), then in the PostgreSQL registry of trusted documents. Automatic
registrations live in the cache only; trusted documents come from ``hms documents push`` and
are copied into the cache when read. A cache that is down is a miss, never an error: trusted
documents are then served from PostgreSQL, and registration waits for the cache to return.

Retiring a document (``hms documents retire``) takes effect everywhere within bounded time: a
worker trusts its own copy for :data:`RECHECK_SECONDS`, then asks the cache again; the cache's
copy lives :data:`TRUSTED_TTL_SECONDS` (and the command deletes it at once when it can reach
the cache). Automatic registrations expire after :data:`APQ_TTL_SECONDS`; a client whose hash
has expired is told PersistedQueryNotFound and registers it again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

from hms.cache import keys
from hms.cache.backend import Cache
from hms.persistence import documents as registry
from hms.persistence.database import Database, DatabaseFailure

log = logging.getLogger("hms.documents")

PREFIX = "sha256:"
#: How long a worker serves a trusted document from its own memory before asking again.
RECHECK_SECONDS = 60.0
#: How long the shared cache keeps a copy of a registry document.
TRUSTED_TTL_SECONDS = 600.0
#: How long an automatic registration lives in the shared cache.
APQ_TTL_SECONDS = 24 * 3600.0
_HEX = re.compile(r"[0-9a-f]{64}")

Protocol = Literal["apq", "documentId", "doc_id"]


class BadDocumentId(ValueError):
    """The id is not a SHA-256 document id; ``str(error)`` is safe to show the client."""


def document_id(text: str) -> str:
    """The id of an exact document text."""
    return PREFIX + hashlib.sha256(text.encode()).hexdigest()


def parse_id(value: object, protocol: Protocol) -> str:
    """A request's id in the internal form, or :class:`BadDocumentId`."""
    if not isinstance(value, str):
        raise BadDocumentId(f"the {protocol} must be a string")
    digest = value
    if protocol == "documentId":
        if not value.startswith(PREFIX):
            raise BadDocumentId("documentId must be 'sha256:' and 64 lowercase hex digits")
        digest = value[len(PREFIX) :]
    elif protocol == "doc_id" and value.startswith(PREFIX):
        digest = value[len(PREFIX) :]
    if not _HEX.fullmatch(digest):
        raise BadDocumentId(f"the {protocol} must be a SHA-256 hash: 64 lowercase hex digits")
    return PREFIX + digest


@dataclasses.dataclass(frozen=True)
class PersistedRef:
    """What a request names instead of (or with) its document."""

    id: str
    protocol: Protocol


@dataclasses.dataclass(frozen=True)
class Mode:
    """How a client application may send documents.

    ``open``: anything, and automatic registration. ``apq``: anything valid, registration
    rate-limited and size-capped. ``trusted``: only registry documents, by id or full text.
    ``audit``: ``apq``, and every document outside the registry is logged (by id) — the step
    before ``trusted``.
    """

    name: Literal["open", "apq", "trusted", "audit"]

    @property
    def trusted(self) -> bool:
        return self.name == "trusted"

    @property
    def registers(self) -> bool:
        return self.name != "trusted"

    def at_least(self, other: Mode) -> Mode:
        """The stricter of the two."""
        return self if STRICTNESS[self.name] >= STRICTNESS[other.name] else other


#: From the loosest to the strictest.
STRICTNESS = {"open": 0, "apq": 1, "audit": 2, "trusted": 3}
MODES = tuple(STRICTNESS)


def mode_for(
    default: str, modes: dict[str, str], *, claimed: str | None, named: str | None
) -> Mode:
    """The mode of a request: by the client its token was issued to, else by the header.

    The token's ``azp`` claim is the issuer's word, so its client's mode applies as configured.
    The ``apollographql-client-name`` header is the caller's own say-so: it may ask for a
    stricter mode than the default, never a looser one, or any caller could step out of
    ``trusted`` by naming an ``apq`` client.
    """
    fallback = Mode(default)  # type: ignore[arg-type]  # Settings checked the names
    if claimed is not None:
        return Mode(modes.get(claimed, default))  # type: ignore[arg-type]
    if named is None or named not in modes:
        return fallback
    return Mode(modes[named]).at_least(fallback)  # type: ignore[arg-type]


class DocumentStore:
    """Document bodies by id, through the tiers; counts hits and misses per tier."""

    def __init__(
        self,
        cache: Cache,
        database: Database,
        *,
        count: Callable[[str, str], None] = lambda tier, outcome: None,
        size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache
        self.database = database
        #: (tier, outcome) -> None: the metric of lookups (tier: local, cache, registry).
        self.count = count
        self.size = size
        self.clock = clock
        # id -> (body, trusted, when it was last confirmed).
        self._local: OrderedDict[str, tuple[str, bool, float]] = OrderedDict()

    def _remember(self, document: str, body: str, trusted: bool) -> None:
        self._local[document] = (body, trusted, self.clock())
        self._local.move_to_end(document)
        if len(self._local) > self.size:
            self._local.popitem(last=False)

    def _fresh(self, entry: tuple[str, bool, float] | None, trusted_only: bool) -> bool:
        if entry is None:
            return False
        _, trusted, confirmed = entry
        if trusted:  # it may have been retired since: ask again after a while
            return self.clock() - confirmed < RECHECK_SECONDS
        return not trusted_only

    async def _cached(self, key: str) -> str | None:
        try:
            value = await self.cache.get(key)
        except Exception as error:  # the cache is an accelerator: down means a miss
            self.count("cache", "unavailable")
            log.warning("document cache unavailable (%s)", type(error).__name__)
            return None
        return None if value is None else value.decode()

    async def _store(self, key: str, body: str, ttl: float) -> bool:
        try:
            await self.cache.set(key, body.encode(), ttl=ttl)
        except Exception as error:
            self.count("cache", "unavailable")
            log.warning("document cache unavailable (%s)", type(error).__name__)
            return False
        return True

    async def find(self, document: str, *, trusted_only: bool) -> str | None:
        """The body of ``document``; with ``trusted_only``, from the registry only."""
        local = self._local.get(document)
        if local is not None and self._fresh(local, trusted_only):
            self._local.move_to_end(document)
            self.count("local", "hit")
            return local[0]
        digest = document[len(PREFIX) :]
        body = await self._cached(keys.trusted_document(digest))
        if body is not None:
            self.count("cache", "hit")
            self._remember(document, body, True)
            return body
        if not trusted_only:
            body = await self._cached(keys.apq_document(digest))
            if body is not None:
                self.count("cache", "hit")
                self._remember(document, body, False)
                return body
        body = await self._registry(document)
        if body is None:
            self.count("registry", "miss")
            return None
        self.count("registry", "hit")
        self._remember(document, body, True)
        await self._store(keys.trusted_document(digest), body, TRUSTED_TTL_SECONDS)
        return body

    async def is_trusted(self, document: str) -> bool:
        return await self.find(document, trusted_only=True) is not None

    async def _registry(self, document: str) -> str | None:
        db = self.database.request(None, readonly=True, timeout=5.0)
        try:
            return await registry.active_body(db, document)
        except DatabaseFailure:
            self.count("registry", "unavailable")
            raise
        finally:
            await db.close()

    async def register(self, document: str, body: str) -> bool:
        """Keep an automatically persisted document (in the shared cache, and here)."""
        known = self._local.get(document)
        if known is None or not known[1]:  # a registration never demotes a trusted copy
            self._remember(document, body, False)
        stored = await self._store(
            keys.apq_document(document[len(PREFIX) :]), body, APQ_TTL_SECONDS
        )
        self.count("cache", "registered" if stored else "unavailable")
        return stored
