"""A bad setting in the environment is one clear line from the migration commands, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from counter_core.connection import ConnectionCache
from counter_core.manifest import bundled_manifest
from counter_core.store import CounterStore, Increment

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [["migrate", "--workers", "1"], ["migrate", "--workers", "2"]])
def test_a_malformed_busy_timeout_is_named_and_exits_2(tmp_path: Path, command: list[str]) -> None:
    # GIVEN a root with one counter file, and an operator's typo in the environment
    root = tmp_path / "counters"
    cache = ConnectionCache(root, bundled_manifest(), capacity=1, busy_timeout_ms=1000)
    CounterStore(cache, idempotency_ttl_s=60).apply("a", Increment(1), request_id=None)
    # WHEN `migrate`, the fleet command that writes and so waits on locks, runs
    done = subprocess.run(
        [sys.executable, "-m", "tools.migrations", command[0], str(root), *command[1:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COUNTERS_BUSY_TIMEOUT_MS": "abc"},
        timeout=120,
        check=False,
    )
    # THEN it names the setting and what to do, with no traceback, and exits 2
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "COUNTERS_BUSY_TIMEOUT_MS='abc' is not an integer - set it to a whole number" in done.stderr
