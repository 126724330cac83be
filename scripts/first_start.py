#!/usr/bin/env python3
"""How long a newcomer waits: ``make run`` from a fresh clone, then again.

    python3 scripts/first_start.py [--venv DIR] [--data-dir DIR] [--runs N] [--timeline]

Runs ``make run`` exactly as a person would, with a free ``HMS_PORT``, a throwaway
``HMS_DATA_DIR`` (the embedded PostgreSQL and its demo data) and, unless ``--venv`` names one,
a throwaway virtualenv, so nothing of yours is touched. Each run is timed from the invocation to

- ``listening``: the server's ``listening on http://…`` line (printed once the socket is bound),
- ``answer``: the first ``GET /healthz`` that answers 200 (polled every 20 ms),

and then stopped with SIGINT, as Ctrl-C in a terminal does; make's exit status is reported
(-2: make ends by the SIGINT it was sent, after the server exited 0) with any ``make: ***``
complaint (none is the quiet stop). The first run includes creating the venv, installing the
runtime dependencies and the first start of the database (``initdb``, migrations, demo data);
the later runs are the second start the README promises is quick.

Only the standard library: it runs before ``.venv`` exists. Figures depend on the machine and on
pip's download cache (``~/.cache/pip``; a first-ever install downloads ~50 MB more); compare
runs on one machine, and read the first run as an upper bound on a warm cache. Timings are
printed, never asserted (tests check behaviour; ``bench/`` and this script measure).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Run:
    """One ``make run`` until it answers, then stopped with SIGINT."""

    def __init__(self, venv: Path, data_dir: Path, port: int, timeout: float) -> None:
        self.venv, self.data_dir, self.port, self.timeout = venv, data_dir, port, timeout
        self.lines: list[tuple[float, str]] = []
        self.listening: float | None = None
        self.answer: float | None = None
        self.exit_code: int | None = None

    def go(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HMS_")}
        env |= {"HMS_DATA_DIR": str(self.data_dir), "HMS_PORT": str(self.port)}
        start = time.monotonic()
        process = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
            ["make", "--no-print-directory", "run", f"VENV={self.venv}"],  # noqa: S607 - PATH's make
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
        reader = threading.Thread(target=self._read, args=(process, start), daemon=True)
        reader.start()
        try:
            self._poll(process, start)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            try:
                self.exit_code = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                self.exit_code = process.wait()
            reader.join(timeout=5)

    def _read(self, process: subprocess.Popen[str], start: float) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            now = time.monotonic() - start
            self.lines.append((now, line.rstrip("\n")))
            if self.listening is None and "listening on http://" in line:
                self.listening = now

    def _poll(self, process: subprocess.Popen[str], start: float) -> None:
        url = f"http://127.0.0.1:{self.port}/healthz"
        while time.monotonic() - start < self.timeout:
            if process.poll() is not None:
                return
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(url, timeout=1) as response,
            ):
                if response.status == 200:
                    self.answer = time.monotonic() - start
                    # The line may come a moment after the socket works; give it a second.
                    deadline = time.monotonic() + 1
                    while self.listening is None and time.monotonic() < deadline:
                        time.sleep(0.01)
                    return
            time.sleep(0.02)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, help="use this virtualenv (default: a fresh one)")
    parser.add_argument("--data-dir", type=Path, help="HMS_DATA_DIR (default: a fresh one)")
    parser.add_argument("--runs", type=int, default=3, help="starts in all (the first included)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for one")
    parser.add_argument("--timeline", action="store_true", help="print every line with its time")
    args = parser.parse_args()
    if shutil.which("make") is None:
        print("make is not on PATH", file=sys.stderr)
        return 2

    scratch = Path(tempfile.mkdtemp(prefix="hms-first-start-"))
    venv = args.venv or scratch / "venv"
    data_dir = args.data_dir or scratch / "data"
    try:
        runs = []
        for number in range(1, args.runs + 1):
            run = Run(venv.resolve(), data_dir.resolve(), free_port(), args.timeout)
            run.go()
            runs.append(run)
            if args.timeline:
                print(f"--- run {number}")
                for at, line in run.lines:
                    print(f"{at:7.2f}  {line[:150]}")
            if run.answer is None:
                print(f"run {number} never answered; its output:", file=sys.stderr)
                for _, line in run.lines[-40:]:
                    print(f"  {line}", file=sys.stderr)
                return 1
        print(f"{'run':<6}{'listening':>12}{'answer':>12}{'exit':>6}  make said")
        for number, run in enumerate(runs, 1):
            complaints = [line for _, line in run.lines if line.startswith("make: ***")]
            print(
                f"{number:<6}{_seconds(run.listening):>12}{_seconds(run.answer):>12}"
                f"{run.exit_code!s:>6}  {'; '.join(complaints) or '-'}"
            )
        later = [run.answer for run in runs[1:] if run.answer is not None]
        if later:
            print(f"later starts, median to the first answer: {statistics.median(later):.2f} s")
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
