"""The lock queue: many processes incrementing one counter, with an EFS-like lock hold and think time.

Each of `processes` worker processes runs `requests` increments of one counter file: BEGIN
IMMEDIATE, the increment's SQL, a sleep of `hold_ms` inside the transaction (on EFS a write
transaction holds the lock for its round trips: about 8 ms for the 18 ms of a warm increment's
calls after the lock), COMMIT, then `think_ms` outside it (the time between two requests of one
Lambda instance). The only difference between the sides is who waits for the lock: `raw` uses
SQLite's default busy handler (`set_busy_timeout`), `project` the project's (counter_core.connection).
Latency is from the attempt to take the lock to the end of COMMIT; a request that gets SQLITE_BUSY
after the whole busy timeout counts as a 503.
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_MS = 5000


def _worker(
    side: str, path: str, requests: int, hold_ms: float, think_ms: float, barrier: Any, out: Any
) -> None:
    import random

    import apsw

    from counter_core.connection import busy_handler
    from tools.bench.baseline import increment_statements

    conn = apsw.Connection(path)
    conn.execute("PRAGMA synchronous=FULL")
    if side == "raw":
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    else:
        conn.set_busy_handler(busy_handler(BUSY_TIMEOUT_MS))
    latencies: list[float] = []
    busy = 0
    barrier.wait()
    for _ in range(requests):
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except apsw.BusyError:
            busy += 1
            continue
        increment_statements(conn, "queue", 1, time.time_ns() // 1_000_000)
        time.sleep(hold_ms / 1000)
        conn.execute("COMMIT")
        latencies.append(time.perf_counter() - started)
        time.sleep(random.uniform(0.5, 1.5) * think_ms / 1000)  # noqa: S311 - spread, not a secret
    out.put({"latencies": latencies, "busy": busy})


def run(
    side: str, folder: Path, *, processes: int, requests: int, hold_ms: float, think_ms: float
) -> dict[str, Any]:
    """One run of one side on a new counter file in `folder`; returns throughput and latency figures."""
    import apsw

    from counter_core import bundled_manifest
    from tools.bench.baseline import ddl_statements

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"queue-{side}-{time.monotonic_ns()}.sqlite3"
    setup = apsw.Connection(str(path))
    for statement in ddl_statements(bundled_manifest()):
        setup.execute(statement)
    setup.close()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    out = context.Queue()
    workers = [
        context.Process(target=_worker, args=(side, str(path), requests, hold_ms, think_ms, barrier, out))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    results = [out.get(timeout=600) for _ in workers]
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join(timeout=60)
    latencies = sorted(value for result in results for value in result["latencies"])
    busy = sum(int(result["busy"]) for result in results)
    final = apsw.Connection(str(path)).execute("SELECT value FROM counter_metadata").fetchone()
    return {
        "side": side,
        "throughput_per_s": len(latencies) / elapsed,
        "p50_s": statistics.median(latencies),
        "p99_s": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
        "max_s": latencies[-1],
        "busy_503": busy,
        "committed": len(latencies),
        "final_value": None if final is None else int(final[0]),
    }


def main(argv: list[str]) -> int:
    side, folder, processes, requests, hold_ms, think_ms = argv
    print(
        json.dumps(
            run(
                side,
                Path(folder),
                processes=int(processes),
                requests=int(requests),
                hold_ms=float(hold_ms),
                think_ms=float(think_ms),
            )
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
