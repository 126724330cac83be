"""Real pieces for the background-job tests: a webhook receiver and ``hms worker`` processes.

The receiver is an HTTP server on a loopback port that checks every delivery with the Standard
Webhooks reference implementation (``standardwebhooks``) and keeps one message per
``webhook-id``, as a receiver that dedupes would. Workers are ``python -m hms.cli worker``
subprocesses: killed with SIGKILL or stopped with SIGTERM like in production.
"""

from __future__ import annotations

import dataclasses
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from standardwebhooks import Webhook

from tests.conftest import SECRET


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclasses.dataclass
class Delivery:
    message_id: str
    body: dict[str, Any]
    at: float


class Receiver:
    """Records signed deliveries; ``answer`` decides the status of each (200 by default);
    ``hold`` makes the first delivery of each message wait until it is set."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.verifier = Webhook(secret)
        self.lock = threading.Lock()
        self.tries: list[Delivery] = []
        self.kept: dict[str, Delivery] = {}
        self.refused = 0
        self.answer: Callable[[Delivery], int] = lambda delivery: 200
        self.hold: threading.Event | None = None
        self.arrived = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    body = receiver.verifier.verify(raw, headers)
                except Exception:
                    with receiver.lock:
                        receiver.refused += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                delivery = Delivery(headers["webhook-id"], body, time.monotonic())
                with receiver.lock:
                    first = delivery.message_id not in {d.message_id for d in receiver.tries}
                    receiver.tries.append(delivery)
                receiver.arrived.set()
                if first and receiver.hold is not None:
                    receiver.hold.wait(60)
                status = receiver.answer(delivery)
                if 200 <= status < 300:
                    with receiver.lock:
                        receiver.kept.setdefault(delivery.message_id, delivery)
                self.send_response(status)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/reminders"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()

    def kept_for(self, prefix: str) -> dict[str, Delivery]:
        with self.lock:
            return {k: v for k, v in self.kept.items() if k.startswith(prefix)}

    def tries_of(self, message_id: str) -> int:
        with self.lock:
            return sum(1 for d in self.tries if d.message_id == message_id)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Worker:
    """One ``hms worker`` process against ``database_url``, its log in ``log``."""

    def __init__(self, database_url: str, directory: Path, **env: str) -> None:
        self.metrics_port = free_port()
        self.log = directory / f"worker-{self.metrics_port}.log"
        environment = {
            **os.environ,
            "HMS_DATABASE_URL": database_url,
            "HMS_JWT_SECRET": SECRET,
            "HMS_DATA_DIR": str(directory),
            "HMS_HOST": "127.0.0.1",
            "HMS_LOG_FORMAT": "text",
            "HMS_WORKER_METRICS_PORT": str(self.metrics_port),
            "HMS_JOB_RETRY_BASE_SECONDS": "0.05",
            "HMS_JOB_RETRY_MAX_SECONDS": "0.2",
            "HMS_JOB_HEARTBEAT_TIMEOUT": "2",
            "HMS_SHUTDOWN_TIMEOUT": "2",
            "HMS_JOB_POLL_SECONDS": "0.2",
            **env,
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hms.cli", "worker"],
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_until(
            lambda: "worker ready" in self.output() or self.process.poll() is not None,
            60,
            "the worker to start",
        )
        assert self.process.poll() is None, self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def running(database_url: str, directory: Path, **env: str) -> Iterator[Worker]:
    worker = Worker(database_url, directory, **env)
    try:
        yield worker
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(10)


def body_of(delivery: Delivery) -> dict[str, Any]:
    return delivery.body if isinstance(delivery.body, dict) else orjson.loads(delivery.body)
