"""A command run as in a terminal: its output read line by line as it comes, signals sent to
its process group as a terminal's Ctrl-C is, and always stopped at the end.

For the tests of what a person sees (``hms serve``, ``make run``): stdout and stderr are one
stream, in the order written, so a test can act the moment a line appears.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The virtualenv the tests run in (``make install`` made it), for ``make run VENV=…``.
VENV = Path(sys.prefix)


def make_run(venv: Path = VENV) -> list[str]:
    """``make run`` on this checkout and venv, never (re)installing: ``-o`` holds the runtime
    stamp as up to date, so a test starts the server, not pip
    (tests/integration/test_serve_lifecycle.py checks that this is the Makefile's stamp)."""
    stamp = venv / ".runtime-installed"
    return ["make", "--no-print-directory", "-o", str(stamp), "run", f"VENV={venv}"]


class Console:
    """A running command; ``lines`` is everything it printed so far."""

    def __init__(self, command: list[str], env: Mapping[str, str], *, timeout: float) -> None:
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, like a terminal's foreground job
        )
        self.lines: list[str] = []
        # A hung command must fail the test, not hang it: after ``timeout`` s it is killed,
        # which ends every read below.
        self._watchdog = threading.Timer(timeout, self._kill)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def next_line(self) -> str | None:
        """The next line printed (without its newline); None once the output has ended."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            return None
        self.lines.append(line.rstrip("\n"))
        return self.lines[-1]

    def until(self, pattern: str) -> re.Match[str]:
        """Read up to the first line matching ``pattern``; fail with the output if it ends."""
        while (line := self.next_line()) is not None:
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no line matching {pattern!r}; the output was:\n{self.text}")

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def stop(self, number: int = signal.SIGINT, *, group: bool = True) -> int:
        """Send ``number`` (to the whole group, as a terminal does, or to the command only),
        read the rest of the output and return the exit status (-N: ended by signal N)."""
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(self.process.pid, number)
            else:
                os.kill(self.process.pid, number)
        while self.next_line() is not None:
            pass
        return self.process.wait()

    def close(self) -> None:
        self._watchdog.cancel()
        if self.process.poll() is None:
            self.stop(signal.SIGTERM)
        # Whatever it started (the embedded PostgreSQL stops with the server) gets a moment.
        deadline = time.monotonic() + 20
        while self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        self._kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextlib.contextmanager
def console(
    command: list[str], env: Mapping[str, str], *, timeout: float = 180.0
) -> Iterator[Console]:
    running = Console(command, env, timeout=timeout)
    try:
        yield running
    finally:
        running.close()
