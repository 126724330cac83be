"""Response compression: brotli when the client accepts ``br``, else gzip, else none.

Only answers worth it are compressed: JSON (``application/json``,
``application/graphql-response+json``) and ``text/*`` (``/metrics``, GraphiQL's page and assets),
of at least ``MIN_BYTES``; below that, headers and framing cost more than the bytes saved. An
answer that already has a ``Content-Encoding`` is passed on untouched (never compressed twice),
and so are server-sent events, whose consumers expect every event at once.

Every compressible answer says ``Vary: Accept-Encoding``, compressed or not, so a shared cache
never hands a brotli body to a client that asked for gzip. A compressed answer's strong ``ETag``
becomes weak (``W/"…"``): the bytes differ from the identity body the tag was computed on, the
content does not; ``If-None-Match`` compares weakly, so the client's next request still gets 304.

One-shot bodies (every GraphQL answer) are compressed whole. A streamed body is compressed as it
comes and flushed after each chunk, so nothing the app sends waits in the compressor.

The levels are chosen for CPU, not for the last byte, since the compiled path spends ~1.5 ms of
CPU on a whole request. Measured once (2 cores, a 55 KB answer: 30 patients with appointments,
practitioners and encounters; global ids and UUIDs do not compress, so ~4x is all there is):

==========  ========  ======  ==========================================
coding      CPU       ratio   next level up
==========  ========  ======  ==========================================
brotli 3    0.21 ms   3.96x   brotli 4: 0.38 ms for 2 % fewer bytes
gzip 3      0.19 ms   3.80x   gzip 4: 0.43 ms (lazy matching), gzip 6: 0.74 ms, 4.10x
==========  ========  ======  ==========================================

Bodies of ``THREAD_BYTES`` or more (~1 ms and up) are compressed off the event loop.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from typing import Protocol

import brotli
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Smaller bodies are sent as they are.
MIN_BYTES = 1024
BROTLI_QUALITY = 3
GZIP_LEVEL = 3
#: Bodies this large are compressed in a worker thread, so other requests are not held up.
THREAD_BYTES = 256 * 1024
#: Media types worth compressing (prefixes of the Content-Type, lowercase).
COMPRESSIBLE = ("application/json", "application/graphql-response+json", "text/")
#: ... except these, whose consumers read each chunk as it arrives.
STREAMED = ("text/event-stream",)


def choose(accept_encoding: str) -> str | None:
    """The coding to answer with, ``br`` or ``gzip``, by the client's q-values (``br`` on a tie);
    ``None`` for identity. ``*`` stands for any coding the client did not name."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        if not name:
            continue
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[name] = weight
    best, best_weight = None, 0.0
    for coding in ("br", "gzip"):
        weight = weights.get(coding, weights.get("*", 0.0))
        if weight > best_weight:  # also false for nan
            best, best_weight = coding, weight
    return best


def _compress(coding: str, body: bytes) -> bytes:
    if coding == "br":
        packed: bytes = brotli.compress(body, quality=BROTLI_QUALITY)
        return packed
    return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)


class _Stream(Protocol):
    def chunk(self, data: bytes, *, last: bool) -> bytes: ...


class _Brotli:
    def __init__(self) -> None:
        self.compressor = brotli.Compressor(quality=BROTLI_QUALITY)

    def chunk(self, data: bytes, *, last: bool) -> bytes:
        out: bytes = self.compressor.process(data)
        out += self.compressor.finish() if last else self.compressor.flush()
        return out


class _Gzip:
    def __init__(self) -> None:
        self.compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip framing

    def chunk(self, data: bytes, *, last: bool) -> bytes:
        out = self.compressor.compress(data)
        return out + self.compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def _compressible(headers: MutableHeaders) -> bool:
    media = headers.get("content-type", "").lower()
    return (
        "content-encoding" not in headers
        and media.startswith(COMPRESSIBLE)
        and not media.startswith(STREAMED)
    )


def _vary_on_encoding(headers: MutableHeaders) -> None:
    present = {token.strip().lower() for token in headers.get("vary", "").split(",")}
    if "*" in present or "accept-encoding" in present:
        return
    headers["vary"] = (
        f"{headers['vary']}, Accept-Encoding" if "vary" in headers else "Accept-Encoding"
    )


class Compression:
    """Compresses HTTP answers as the module docstring says (pure ASGI)."""

    def __init__(self, app: ASGIApp, *, min_bytes: int = MIN_BYTES) -> None:
        self.app = app
        self.min_bytes = min_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        accepted = b", ".join(
            value for name, value in scope["headers"] if name.lower() == b"accept-encoding"
        )
        coding = choose(accepted.decode("latin-1")) if accepted else None
        await self.app(scope, receive, _Encoder(send, coding, self.min_bytes).send)


class _Encoder:
    """One answer's way through: hold the start until the first body chunk says how big it is."""

    __slots__ = ("coding", "min_bytes", "next", "start", "stream")

    def __init__(self, send: Send, coding: str | None, min_bytes: int) -> None:
        self.next = send
        self.coding = coding
        self.min_bytes = min_bytes
        self.start: Message | None = None  # held until the first body chunk
        self.stream: _Stream | None = None  # set while a streamed body is being compressed

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            headers = MutableHeaders(raw=list(message.get("headers", ())))
            message["headers"] = headers.raw
            status = message["status"]
            if status < 200 or status in (204, 304) or not _compressible(headers):
                await self.next(message)
                return
            _vary_on_encoding(headers)
            if self.coding is None:
                await self.next(message)
            else:
                self.start = message
            return
        if self.stream is not None:  # the rest of a streamed body
            if kind == "http.response.body":
                last = not message.get("more_body", False)
                message["body"] = self.stream.chunk(message.get("body", b""), last=last)
            await self.next(message)
            return
        start, self.start = self.start, None
        if start is None or self.coding is None:  # not ours to compress
            await self.next(message)
            return
        if kind != "http.response.body":  # e.g. a path to send: not something we can compress
            await self.next(start)
            await self.next(message)
            return
        headers = MutableHeaders(raw=start["headers"])
        body: bytes = message.get("body", b"")
        if message.get("more_body", False):
            size = headers.get("content-length")
            if size is not None and size.isdigit() and int(size) < self.min_bytes:
                await self.next(start)
                await self.next(message)
                return
            self.stream = _Brotli() if self.coding == "br" else _Gzip()
            _encoded(headers, self.coding, None)
            message["body"] = self.stream.chunk(body, last=False)
            await self.next(start)
            await self.next(message)
            return
        if len(body) < self.min_bytes:
            await self.next(start)
            await self.next(message)
            return
        if len(body) < THREAD_BYTES:
            packed = _compress(self.coding, body)
        else:
            packed = await asyncio.to_thread(_compress, self.coding, body)
        _encoded(headers, self.coding, len(packed))
        message["body"] = packed
        await self.next(start)
        await self.next(message)


def _encoded(headers: MutableHeaders, coding: str, size: int | None) -> None:
    headers["content-encoding"] = coding
    if size is None:
        del headers["content-length"]
    else:
        headers["content-length"] = str(size)
    etag = headers.get("etag")
    if etag is not None and etag.startswith('"'):
        headers["etag"] = "W/" + etag
