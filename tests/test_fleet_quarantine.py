"""A counter whose migration fails is not migrated again on every request (issue 12.3).

Real counter files through the API handler; a second connection holding the file's exclusive lock
shows whether a request touches the file: one that does waits out the busy timeout and answers
`busy`, one that does not answers at once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import apsw
import pytest

import handlers.api
from counter_core import MigrationFailed, Quarantine
from counter_core.paths import counter_path as file_of
from tests.api_events import counter_path, http_event, invoke
from tests.migration_folders import make_folder

REPO = Path(__file__).parent.parent
UNIQUE_OP = "CREATE UNIQUE INDEX `history_op` ON `counter_history` (`op`);"


@pytest.fixture
def failing_deploy(api_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Counter 'dup' made by the bundle (two increments), then a deploy whose next migration fails on it."""
    monkeypatch.setenv("COUNTERS_BUSY_TIMEOUT_MS", "2000")
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    handlers.api._state = None
    for n in range(2):
        assert invoke(http_event("POST", counter_path("dup", "/increment"), request_id=f"i{n}")).status == 200
    init = (REPO / "generated" / "0000_init.sql").read_text()
    manifest = make_folder(tmp_path / "failing", [("init", init), ("unique_op", UNIQUE_OP)])
    monkeypatch.setattr(handlers.api, "MANIFEST", manifest)
    handlers.api._state = None  # a fresh process of the new deployment
    return file_of(api_root, "dup")


def _get() -> tuple[int, str, dict[str, str], float]:
    started = time.monotonic()
    result = invoke(http_event("GET", counter_path("dup")))
    return (
        result.status,
        result.error_code if result.status != 200 else "",
        result.headers,
        time.monotonic() - started,
    )


def test_a_failed_migration_is_not_retried_until_its_back_off_ends(
    failing_deploy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    # WHEN the counter is read: its migration fails (two 'increment' rows break the unique index)
    status, code, headers, _ = _get()
    assert (status, code, headers["retry-after"]) == (503, "migration_failed", "30")
    metrics = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"MigrationFailures"' in line
    ]
    assert [m["MigrationFailures"] for m in metrics] == [1]
    # AND another writer then holds the file's lock
    holder = apsw.Connection(str(failing_deploy))
    holder.execute("BEGIN EXCLUSIVE")
    try:
        # WHEN it is read again within the back-off window
        status, code, headers, seconds = _get()
        # THEN the answer is the same 503, at once: the file was not touched (touching it would wait
        # out the 2 s busy timeout and answer busy), and no new failure was counted
        assert (status, code) == (503, "migration_failed")
        assert 0 < int(headers["retry-after"]) <= 30 and seconds < 1.0
        assert '"MigrationFailures"' not in capsys.readouterr().out
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # WHEN the window has passed, the next request tries again; it fails again, and the window doubles
    quarantine = handlers.api._current_state().cache.quarantine
    real_clock = quarantine._clock
    quarantine._clock = lambda: real_clock() + 31
    status, code, headers, _ = _get()
    assert (status, code, headers["retry-after"]) == (503, "migration_failed", "30")
    status, code, headers, _ = _get()
    assert (status, code) == (503, "migration_failed") and 31 <= int(headers["retry-after"]) <= 60

    # WHEN an operator repairs the rows (README: 'Repairing a counter whose migration fails') and the
    # window has passed
    repair = apsw.Connection(str(failing_deploy))
    repair.execute("DELETE FROM counter_history WHERE seq = (SELECT min(seq) FROM counter_history)")
    repair.close()
    quarantine._clock = lambda: real_clock() + 31 + 61
    # THEN the counter migrates and is served, and is no longer quarantined
    status, _, _, _ = _get()
    assert status == 200
    assert "dup" not in quarantine


def test_quarantine_windows_double_up_to_the_cap_and_a_success_forgets() -> None:
    now = [1000.0]
    failures: list[str] = []
    quarantine = Quarantine(
        base_s=30, max_s=100, clock=lambda: now[0], on_failure=lambda c, e: failures.append(c)
    )
    error = MigrationFailed("x: migration '0001_a' failed", public="failed", tag="0001_a", statement=1)
    windows = []
    for _ in range(4):
        quarantine.record("c", error)
        with pytest.raises(MigrationFailed) as raised:
            quarantine.check("c")
        windows.append(raised.value.retry_after_s)  # type: ignore[attr-defined]
        assert raised.value.code == "migration_failed" and raised.value.tag == "0001_a"
    assert windows == [30, 60, 100, 100] and failures == ["c"] * 4
    now[0] += 100
    quarantine.check("c")  # the window is over: no raise
    quarantine.release("c")
    assert "c" not in quarantine
