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
shutdown runs only after step 3, far too late to tell anyone. A subclass of ``uvicorn.Server``
would do for one process but not for workers, which uvicorn's supervisor builds itself.

With several workers, uvicorn's supervisor forwards SIGTERM to each, and each drains as above;
``_Supervisor`` also closes the supervisor's own copy of the listening socket, without which the
kernel would keep queueing new connections that no worker accepts any more.
"""

from __future__ import annotations

import signal
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


def drain_on_signals(lifecycle: Lifecycle, delay: float) -> None:
    """Mark ``lifecycle`` draining on SIGTERM/SIGINT before the handler in place (uvicorn's)
    starts the graceful shutdown; on SIGTERM, start it only ``delay`` seconds later.

    A further SIGTERM during the delay changes nothing (a supervisor and a process manager may
    both send one); a SIGINT goes through at once, as a second Ctrl-C does.
    """
    for number in (signal.SIGTERM, signal.SIGINT):
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


class _Stopped(Exception):
    """uvicorn re-raised SIGTERM after its graceful shutdown."""


def _stopped(number: int, frame: FrameType | None) -> None:
    raise _Stopped


def _logging(settings: Settings) -> dict[str, Any]:
    """uvicorn's logging: every line through the platform's formatter; no access log (each
    GraphQL request has its own ``hms.access`` line)."""
    return {
        "log_config": logs.config(settings.log_level, settings.log_format),
        "log_level": settings.log_level,
        "access_log": False,
    }


def run(app: Starlette, settings: Settings) -> None:
    """Serve ``app`` in this process until a signal stops it; return once it has stopped cleanly.

    uvicorn re-raises SIGTERM after its graceful shutdown, under the handler it found: here one
    that ends ``run`` normally, so the caller exits 0 and its ``atexit`` hooks run.
    """
    lifecycle: Lifecycle = app.state.lifecycle

    def serving() -> Starlette:
        drain_on_signals(lifecycle, settings.shutdown_delay)
        return app

    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        uvicorn.run(
            serving,
            factory=True,
            host=settings.host,
            port=settings.port,
            timeout_graceful_shutdown=settings.shutdown_timeout,
            **_logging(settings),
        )
    except _Stopped:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Supervisor(Multiprocess):
    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()  # the workers' copies close when they stop accepting
        super().terminate_all()


def run_workers(factory: str, settings: Settings, workers: int) -> None:
    """Serve with ``workers`` processes, each building its app with ``factory`` (an import
    string; it should call ``drain_on_signals``); return when all have stopped."""
    config = uvicorn.Config(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        timeout_graceful_shutdown=settings.shutdown_timeout,
        **_logging(settings),
    )
    _Supervisor(config, sockets=[config.bind_socket()]).run()
