"""hms.http.compression on small ASGI apps: what is compressed, how, and what is left alone."""

from __future__ import annotations

import gzip
import threading
import zlib

import brotli
import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from hms.http import compression
from hms.http.compression import Compression, choose

JSON = b'{"data": {"patients": [' + b", ".join([b'{"mrn": "A-0001"}'] * 400) + b"]}}"


@pytest.mark.parametrize(
    ("header", "coding"),
    [
        ("", None),
        ("br", "br"),
        ("gzip", "gzip"),
        ("GZip", "gzip"),
        ("gzip, br", "br"),
        ("gzip;q=0.9, br;q=0.8", "gzip"),
        ("br;q=0", None),
        ("br;q=0, *", "gzip"),
        ("*;q=0.5, gzip", "gzip"),
        ("*", "br"),
        ("br;q=nan, gzip;q=0.1", "gzip"),
        ("br;q=abc", None),
        ("deflate, identity", None),
        (" , ;q=1,br ; q=0.3", "br"),
    ],
)
def test_choose_follows_the_q_values(header: str, coding: str | None) -> None:
    assert choose(header) == coding


def app_sending(*messages: Message) -> Compression:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for message in messages:
            await send(dict(message))

    return Compression(app)


def start(*headers: tuple[str, str], status: int = 200) -> Message:
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [(name.encode(), value.encode()) for name, value in headers],
    }


def body(data: bytes, *, more: bool = False) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


async def call(app: Compression, accept_encoding: str = "br") -> list[Message]:
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"accept-encoding", accept_encoding.encode())],
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def headers(message: Message) -> httpx.Headers:
    return httpx.Headers([(k.decode(), v.decode()) for k, v in message["headers"]])


async def test_a_one_shot_body_is_compressed_whole() -> None:
    app = app_sending(
        start(("content-type", "application/json"), ("content-length", str(len(JSON)))),
        body(JSON),
    )
    sent = await call(app, "br")
    assert len(sent) == 2
    got = headers(sent[0])
    assert got["content-encoding"] == "br"
    assert got["vary"] == "Accept-Encoding"
    assert int(got["content-length"]) == len(sent[1]["body"]) < len(JSON) / 10
    assert brotli.decompress(sent[1]["body"]) == JSON


async def test_a_streamed_body_is_flushed_chunk_by_chunk() -> None:
    """Whatever the app has sent, the client can already decode: nothing waits in the
    compressor for the next chunk."""
    chunks = [JSON[:3000], JSON[3000:6000], JSON[6000:]]
    for coding in ("br", "gzip"):
        app = app_sending(
            start(("content-type", "text/plain; charset=utf-8")),
            *(body(chunk, more=i < 2) for i, chunk in enumerate(chunks)),
        )
        sent = await call(app, coding)
        got = headers(sent[0])
        assert got["content-encoding"] == coding
        assert "content-length" not in got
        assert [m.get("more_body", False) for m in sent[1:]] == [True, True, False]
        if coding == "br":
            decoder = brotli.Decompressor()
            decoded = [decoder.process(m["body"]) for m in sent[1:]]
            assert decoder.is_finished()
        else:
            inflater = zlib.decompressobj(31)
            decoded = [inflater.decompress(m["body"]) for m in sent[1:]]
            assert inflater.eof
        assert decoded == chunks


async def test_a_small_streamed_body_with_a_length_is_left_alone() -> None:
    app = app_sending(
        start(("content-type", "text/css"), ("content-length", "10")),
        body(b"a { b: c }", more=True),
        body(b""),
    )
    sent = await call(app, "gzip")
    assert "content-encoding" not in headers(sent[0])
    assert headers(sent[0])["vary"] == "Accept-Encoding"
    assert [m["body"] for m in sent[1:]] == [b"a { b: c }", b""]


@pytest.mark.parametrize(
    "response_headers",
    [
        [("content-type", "image/png")],
        [("content-type", "application/octet-stream")],
        [("content-type", "text/event-stream")],
        [("content-type", "application/json"), ("content-encoding", "gzip")],
        [],
    ],
)
async def test_what_is_not_compressed_passes_untouched(
    response_headers: list[tuple[str, str]],
) -> None:
    app = app_sending(start(*response_headers), body(JSON))
    sent = await call(app, "br, gzip")
    assert sent == [start(*response_headers), body(JSON)]  # not even a Vary


async def test_an_already_encoded_body_is_never_compressed_twice() -> None:
    packed = gzip.compress(JSON)
    app = app_sending(
        start(("content-type", "application/json"), ("content-encoding", "gzip")), body(packed)
    )
    sent = await call(app, "gzip")
    assert headers(sent[0]).get_list("content-encoding") == ["gzip"]
    assert gzip.decompress(sent[1]["body"]) == JSON


async def test_not_modified_has_no_body_to_compress() -> None:
    app = app_sending(start(("etag", '"abc"'), status=304), body(b""))
    sent = await call(app, "br")
    assert headers(sent[0])["etag"] == '"abc"'
    assert "content-encoding" not in headers(sent[0])


async def test_vary_joins_what_the_app_set() -> None:
    app = app_sending(start(("content-type", "text/html"), ("vary", "Accept")), body(JSON))
    sent = await call(app, "gzip")
    assert headers(sent[0])["vary"] == "Accept, Accept-Encoding"
    app = app_sending(start(("content-type", "text/html"), ("vary", "accept-encoding")), body(JSON))
    sent = await call(app, "gzip")
    assert headers(sent[0])["vary"] == "accept-encoding"


async def test_a_large_body_is_compressed_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[threading.Thread] = []
    compress = compression._compress

    def recording(coding: str, data: bytes) -> bytes:
        threads.append(threading.current_thread())
        return compress(coding, data)

    monkeypatch.setattr(compression, "_compress", recording)
    large = JSON * (compression.THREAD_BYTES // len(JSON) + 1)
    sent = await call(app_sending(start(("content-type", "application/json")), body(large)))
    assert brotli.decompress(sent[1]["body"]) == large
    await call(app_sending(start(("content-type", "application/json")), body(JSON)))
    main = threading.main_thread()
    assert [thread is main for thread in threads] == [False, True]  # a small one: no thread
