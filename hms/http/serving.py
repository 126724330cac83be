"""Serve the app with uvicorn, and stop it without dropping a request.

On SIGTERM (Kubernetes, ``docker stop``, systemd) or SIGINT (Ctrl-C):

1. ``/readyz`` answers 503 ``draining`` at once (``Lifecycle.drain``); ``/healthz`` still 200.
2. On SIGTERM only, ``HMS_SHUTDOWN_DELAY`` seconds pass in which everything else is served as
   before, so a load balancer that polls readiness (or Kubernetes, which removes the pod from its
   endpoints while it sends SIGTERM) stops routing here before the listener closes.
3. uvicorn's graceful shutdown: the listener closes (new connections are refused), idle
   keep-alive connections close, requests in flight finish and their connections close after
   the answer, for up to ``HMS_SHUTDOWN_TIMEOUT`` seconds; requests still running then are
   cancelled (their transactions roll back). Then the lifespan's shutdown closes the pools.

uvicorn installs its signal handlers when it starts serving and builds the app from a factory
after that, so the factory is where step 1 chains onto them (``drain_on_signals``): the lifespan's
shutdown runs only after step 3, far too late to tell anyone. Our subclass of ``uvicorn.Server``
(``_Server``) could do it for one process but not for workers, which uvicorn's supervisor
builds itself.

With several workers, uvicorn's supervisor forwards SIGTERM to each, and each drains as above;
``_Supervisor`` also closes the supervisor's own copy of the listening socket, without which the
kernel would keep queueing new connections that no worker accepts any more.

``on_listening`` is called once the socket is bound (``_Server.startup`` in one process, right
after the supervisor's bind with several), so what the CLI prints there, the URL and the demo
tokens, works the moment it appears. After a graceful stop by either signal ``run`` returns
normally and ``hms serve`` exits 0: ``make run`` then reports no error.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.supervisors.multiprocess import Multiprocess

from hms.http.health import Lifecycle
from hms.observability import logs
from hms.settings import Settings

Handler = Callable[[int, FrameType | None], Any]
#: What stops the server gracefully: SIGTERM (process managers, Kubernetes) and SIGINT (Ctrl-C).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def drain_on_signals(lifecycle: Lifecycle, delay: float) -> None:
    """Mark ``lifecycle`` draining on SIGTERM/SIGINT before the handler in place (uvicorn's)
    starts the graceful shutdown; on SIGTERM, start it only ``delay`` seconds later.

    A further SIGTERM during the delay changes nothing (a supervisor and a process manager may
    both send one); a SIGINT goes through at once, as a second Ctrl-C does.
    """
    for number in STOP_SIGNALS:
        server_handler = signal.getsignal(number)
        if callable(server_handler):  # not serving (a test calling the factory): nothing to chain
            signal.signal(number, _draining(lifecycle, delay, server_handler))


def _draining(lifecycle: Lifecycle, delay: float, server_handler: Handler) -> Handler:
    def handler(number: int, frame: FrameType | None) -> None:
        if number == signal.SIGTERM and delay > 0:
            if not lifecycle.draining:
                lifecycle.drain()
                # uvicorn's handler only sets flags its main loop polls: safe from a thread.
                timer = threading.Timer(delay, server_handler, (number, None))
                timer.daemon = True
                timer.start()
            return
        lifecycle.drain()
        server_handler(number, frame)

    return handler


def _logging(settings: Settings) -> dict[str, Any]:
    """uvicorn's logging: every line through the platform's formatter; no access log (each
    GraphQL request has its own ``hms.access`` line)."""
    return {
        "log_config": logs.config(settings.log_level, settings.log_format),
        "log_level": settings.log_level,
        "access_log": False,
    }


class _Stopped(Exception):
    """uvicorn re-raised the signal that stopped it, after its graceful shutdown."""


def _stopped(number: int, frame: FrameType | None) -> None:
    raise _Stopped


class _Server(uvicorn.Server):
    """uvicorn's server, telling ``on_listening`` once its socket is bound: ``startup`` returns
    after the app's lifespan startup and the bind, so from then on a connection is accepted."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:  # not when a signal came during startup
            self.on_listening()


def run(
    app: Starlette, settings: Settings, *, on_listening: Callable[[], None] = lambda: None
) -> bool:
    """Serve ``app`` in this process until a signal stops it; ``on_listening`` is called once
    the socket is bound. True once it has stopped cleanly, False when it never started (the
    app's startup failed or the address was taken; uvicorn logged why).

    uvicorn re-raises the signal that stopped it after its graceful shutdown, under the handler
    it found: here, for SIGTERM and SIGINT alike, one that ends ``run`` normally, so the caller
    exits 0 and its ``atexit`` hooks run.
    """
    lifecycle: Lifecycle = app.state.lifecycle

    def serving() -> Starlette:
        drain_on_signals(lifecycle, settings.shutdown_delay)
        return app

    server = _Server(
        uvicorn.Config(
            serving,
            factory=True,
            host=settings.host,
            port=settings.port,
            timeout_graceful_shutdown=settings.shutdown_timeout,
            **_logging(settings),
        ),
        on_listening,
    )
    previous = {number: signal.signal(number, _stopped) for number in STOP_SIGNALS}
    try:
        server.run()
    except _Stopped:
        pass
    except SystemExit:  # uvicorn's way to say it could not start
        return False
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return server.started


class _Supervisor(Multiprocess):
    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()  # the workers' copies close when they stop accepting
        super().terminate_all()


def run_workers(
    factory: str,
    settings: Settings,
    workers: int,
    *,
    on_listening: Callable[[], None] = lambda: None,
) -> None:
    """Serve with ``workers`` processes, each building its app with ``factory`` (an import
    string; it should call ``drain_on_signals``); return when all have stopped.

    The supervisor binds the socket and listens on it before it starts the workers, and
    ``on_listening`` is called right after: from then on the kernel accepts connections (into
    the backlog), which the first worker to be ready answers."""
    config = uvicorn.Config(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        timeout_graceful_shutdown=settings.shutdown_timeout,
        **_logging(settings),
    )
    sock = config.bind_socket()
    # uvicorn leaves listen() to each worker's server; until the first one is up, connecting
    # would be refused although the address is taken.
    sock.listen(config.backlog)
    on_listening()
    _Supervisor(config, sockets=[sock]).run()


def address_in_use(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound now (e.g. another server on it), None if it can.

    Checked before the slow part of a start (the database, migrations, demo data), so a taken
    port is said at once; uvicorn binds for real later, with the same ``SO_REUSEADDR``.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:
        return error.strerror or str(error)
    return None
