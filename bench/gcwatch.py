"""Run the server with the garbage collector's pauses timed, for ``bench.memory``.

``python bench/gcwatch.py STATS_JSON PORT`` serves ``hms.cli:app_factory`` like the bench's
server (uvicorn, uvloop, httptools, one worker) and, when it exits, writes how long the
collector ran, per generation, and its longest pause. A script rather than a module so that it
can run against another checkout of the project (``PYTHONPATH=<checkout>``), whose ``hms``
is then the one measured.
"""

from __future__ import annotations

import atexit
import gc
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson


def main() -> None:
    out, port = Path(sys.argv[1]), int(sys.argv[2])
    stats: dict[str, Any] = {"seconds": 0.0, "longest": 0.0, "collections": [0, 0, 0]}
    started = [0.0]

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        pause = time.perf_counter() - started[0]
        stats["seconds"] += pause
        stats["longest"] = max(stats["longest"], pause)
        stats["collections"][info["generation"]] += 1

    gc.callbacks.append(watch)
    atexit.register(lambda: out.write_bytes(orjson.dumps(stats)))
    # uvicorn re-raises SIGTERM after its graceful shutdown; exit through Python so atexit runs.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))

    import uvicorn

    uvicorn.run(
        "hms.cli:app_factory",
        factory=True,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
