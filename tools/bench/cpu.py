"""CPU per warm increment: the Lambda handler against raw APSW doing the same SQL, in one process.

`python -m tools.bench.cpu ROOT REQUESTS GAP_MS OUT` warms one counter on each side, then runs
REQUESTS increments per side, interleaved, timing each with the thread's CPU clock (user and system
time; waiting for the disk is not CPU), with GAP_MS of sleep between requests. Lambda instances sit
idle between invocations, and code that ran a moment ago is no longer in the CPU's caches: the gap
shows what a request costs then. The handler's output (log and metric lines) goes where the
worker's stdout goes, as on Lambda.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    root, requests, gap_ms, out = Path(argv[0]), int(argv[1]), float(argv[2]), Path(argv[3])
    os.environ["COUNTERS_ROOT"] = str(root / "project")
    import apsw

    from counter_core import bundled_manifest, config
    from handlers.api import handler
    from tools.bench.baseline import LambdaContext, ddl_statements, increment_event, raw_increment

    (root / "raw").mkdir(parents=True, exist_ok=True)
    raw = apsw.Connection(str(root / "raw" / "cpu.sqlite3"))
    raw.set_busy_timeout(config.busy_timeout_ms())
    raw.execute("PRAGMA synchronous=FULL")
    raw.execute("PRAGMA foreign_keys=ON")
    for statement in ddl_statements(bundled_manifest()):
        raw.execute(statement)
    events = [increment_event("cpu") for _ in range(requests + 5)]
    contexts = [LambdaContext() for _ in events]
    for i in range(5):  # create the counter, open and cache its connection, warm both sides
        handler(events[i], contexts[i])
        raw_increment(raw, "cpu", now_ms=time.time_ns() // 1_000_000)
    gap = gap_ms / 1000
    project_us: list[float] = []
    raw_us: list[float] = []
    for i in range(5, requests + 5):
        started = time.thread_time_ns()
        handler(events[i], contexts[i])
        project_us.append((time.thread_time_ns() - started) / 1000)
        if gap:
            time.sleep(gap)
        started = time.thread_time_ns()
        raw_increment(raw, "cpu", now_ms=time.time_ns() // 1_000_000)
        raw_us.append((time.thread_time_ns() - started) / 1000)
        if gap:
            time.sleep(gap)
    out.write_text(json.dumps({"project_us": project_us, "raw_us": raw_us}), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
