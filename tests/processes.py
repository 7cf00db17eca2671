"""Entry points for tests that need real processes (importable by multiprocessing's spawn)."""

from __future__ import annotations

import json
import sys
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from pathlib import Path

from counter_core import ConnectionCache, load_manifest, open_database
from counter_core.migrate import ensure_current


def cold_start(path: str, folder: str, barrier: Barrier) -> tuple[str, ...]:
    """One 'Lambda instance' cold-starting on a counter file: open it and make it current."""
    manifest = load_manifest(Path(folder))
    barrier.wait()
    conn = open_database(Path(path), create=True, busy_timeout_ms=20_000)
    report = ensure_current(conn, manifest, label="shared")
    conn.close()
    return report.applied if report else ()


def _quiet_handler(root: str):  # type: ignore[no-untyped-def]
    import os

    os.environ["COUNTERS_ROOT"] = root
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    os.environ["POWERTOOLS_LOG_LEVEL"] = "ERROR"
    from handlers.api import handler

    return handler


def increment_many(root: str, counter_id: str, times: int, barrier: Barrier) -> list[int]:
    """A Lambda instance taking `times` increments of one counter; returns the status codes it answered."""
    from tests.api_events import counter_path, http_event
    from tools.serve import LocalContext

    handler = _quiet_handler(root)
    barrier.wait()
    statuses = []
    for n in range(times):
        event = http_event("POST", counter_path(counter_id, "/increment"), request_id=f"{n}")
        statuses.append(handler(event, LocalContext(aws_request_id=str(n)))["statusCode"])
    return statuses


def serve_commands(root: str, counter_id: str, commands: Connection) -> None:
    """A warm Lambda instance: increments on request through its cached connection, replies with the value."""
    from tests.api_events import counter_path, http_event
    from tools.serve import LocalContext

    handler = _quiet_handler(root)
    while (command := commands.recv()) != "stop":
        result = handler(
            http_event("POST", counter_path(counter_id, "/increment")), LocalContext(aws_request_id=command)
        )
        commands.send((result["statusCode"], json.loads(result["body"])["value"]))


def stream_increments(root: str, counter_id: str) -> None:
    """Increment forever, printing each acknowledged value (the test kills this process with SIGKILL)."""
    from tests.api_events import counter_path, http_event
    from tools.serve import LocalContext

    handler = _quiet_handler(root)
    n = 0
    while True:
        n += 1
        result = handler(
            http_event("POST", counter_path(counter_id, "/increment")), LocalContext(aws_request_id=str(n))
        )
        if result["statusCode"] == 200:
            sys.stdout.write(f"{json.loads(result['body'])['value']}\n")
            sys.stdout.flush()


def _reporting_cache(root: str, folder: str) -> tuple[ConnectionCache, list[tuple[str, ...]]]:
    """A connection cache as an API instance has one, and the migrations it applies, as they happen."""
    reports: list[tuple[str, ...]] = []
    cache = ConnectionCache(
        Path(root),
        load_manifest(Path(folder)),
        capacity=4,
        busy_timeout_ms=20_000,
        on_migrated=lambda _id, report: reports.append(report.applied),
    )
    return cache, reports


def cache_cold_start(root: str, folder: str, barrier: Barrier) -> tuple[str, ...]:
    """A cold start through the connection cache, as the API opens a counter it is about to create."""
    cache, reports = _reporting_cache(root, folder)
    barrier.wait()
    cache.connection("shared", create=True).execute("INSERT INTO log VALUES ('hello')")
    cache.close()
    return reports[0] if reports else ()


def increment_behind(root: str, folder: str, barrier: Barrier) -> tuple[str, ...]:
    """A new instance of a newer bundle incrementing a counter whose file is behind; what it applied."""
    from counter_core.store import CounterStore, Increment

    cache, reports = _reporting_cache(root, folder)
    barrier.wait()
    CounterStore(cache, idempotency_ttl_s=60).apply("shared", Increment(by=1), request_id=None)
    cache.close()
    return reports[0] if reports else ()
