"""Run a real server process for an interop test: free port, wait for health, always stop it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without inherited ``HMS_*``, plus ``settings``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("HMS_")}
    env.update(settings)
    return env


@contextlib.contextmanager
def running(
    command: list[str], env: Mapping[str, str], port: int, log: Path, *, startup: float = 60.0
) -> Iterator[str]:
    """Start ``command``, yield its base URL once /healthz answers, SIGTERM it afterwards."""
    with started(command, env, port, log, startup=startup) as (_, base):
        yield base


@contextlib.contextmanager
def started(
    command: list[str], env: Mapping[str, str], port: int, log: Path, *, startup: float = 60.0
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Like ``running``, yielding the process too (a test may stop it itself)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"server not healthy after {startup:g}s:\n{log.read_text()}")
            time.sleep(0.1)
        yield process, base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
