"""Entry points for tests that need real processes (importable by multiprocessing's spawn)."""

from __future__ import annotations

from multiprocessing.synchronize import Barrier
from pathlib import Path

from counter_core import load_manifest, open_database
from counter_core.migrate import ensure_current


def cold_start(path: str, folder: str, barrier: Barrier) -> tuple[str, ...]:
    """One 'Lambda instance' cold-starting on a counter file: open it and make it current."""
    manifest = load_manifest(Path(folder))
    barrier.wait()
    conn = open_database(Path(path), create=True, busy_timeout_ms=20_000)
    report = ensure_current(conn, manifest, label="shared")
    conn.close()
    return report.applied if report else ()
