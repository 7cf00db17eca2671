"""History retention: a counter file stays bounded however often it is written.

Real counter files in tmp_path, through the store and through the handler.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import apsw
import pytest

from counter_core import ConnectionCache, bundled_manifest, config, create
from counter_core.errors import Misconfigured
from counter_core.paths import counter_path
from counter_core.store import PRUNE_EVERY, PRUNE_MAX_ROWS, CounterStore, Delete, Increment
from handlers.api import handler
from tests.api_events import http_event

MANIFEST = bundled_manifest()


def _store(root: Path, *, keep: int) -> CounterStore:
    cache = ConnectionCache(root, MANIFEST, capacity=4, busy_timeout_ms=1000)
    return CounterStore(cache, idempotency_ttl_s=60, history_retention_rows=keep)


def _history(root: Path, counter_id: str) -> tuple[int, int, int]:
    """(rows, oldest seq, newest seq) of the counter's history, read straight from its file."""
    conn = apsw.Connection(str(counter_path(root, counter_id)), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        row = conn.execute("SELECT count(*), min(seq), max(seq) FROM counter_history").fetchone()
        assert row is not None
        return (int(row[0]), int(row[1]), int(row[2]))
    finally:
        conn.close()


def _auto_vacuum(path: Path) -> int:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        row = conn.execute("PRAGMA auto_vacuum").fetchone()
        assert row is not None
        return int(row[0])
    finally:
        conn.close()


def test_history_keeps_the_newest_rows_and_prunes_in_batches(fresh_root: Path) -> None:
    # GIVEN a store keeping 100 history rows
    store = _store(fresh_root, keep=100)
    # WHEN a counter is incremented 1,000 times
    for _ in range(1000):
        store.apply("hot", Increment(1), request_id="r")
    # THEN the newest row is the 1,000th, and between 100 and 100 + PRUNE_EVERY - 1 rows remain
    rows, oldest, newest = _history(fresh_root, "hot")
    assert newest == 1000
    assert 100 <= rows < 100 + PRUNE_EVERY
    assert oldest == newest - rows + 1  # the newest rows, contiguous
    assert store.get("hot").value == 1000


def test_retention_zero_keeps_every_row(fresh_root: Path) -> None:
    store = _store(fresh_root, keep=0)
    for _ in range(300):
        store.apply("all", Increment(1), request_id=None)
    assert _history(fresh_root, "all") == (300, 1, 300)


def test_new_files_return_freed_pages_and_stay_bounded(fresh_root: Path) -> None:
    # GIVEN a new counter (auto_vacuum chosen before its first table)
    store = _store(fresh_root, keep=config.DEFAULT_HISTORY_RETENTION_ROWS)
    store.apply("bounded", Increment(1), request_id="r0")
    path = counter_path(fresh_root, "bounded")
    assert _auto_vacuum(path) == 1  # FULL
    new_size = path.stat().st_size
    # WHEN it is written 3,000 times, with a request ID per row as the handler stores one
    for i in range(3000):
        store.apply("bounded", Increment(1), request_id=f"{i:08d}-0000-4000-8000-000000000000")
    # THEN the file stays near its kept history (under 128 KiB), not proportional to the writes
    size = path.stat().st_size
    assert size < 128 * 1024, size
    # AND deleting the counter gives the history's pages back at once
    store.apply("bounded", Delete(), request_id="r")
    assert path.stat().st_size <= new_size


def test_a_file_created_in_place_gets_auto_vacuum_too(
    fresh_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a file system without hard links, where new files are created in place
    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(create, "_links_work", True)
    store = _store(fresh_root, keep=10)
    # WHEN a counter is created
    store.apply("in-place", Increment(1), request_id=None)
    # THEN it returns freed pages like any new file
    assert create._links_work is False
    assert _auto_vacuum(counter_path(fresh_root, "in-place")) == 1


def test_an_existing_file_without_auto_vacuum_is_pruned_and_reuses_its_pages(fresh_root: Path) -> None:
    # GIVEN a counter file made before this setting existed (auto_vacuum NONE) with 2,000 history rows
    old = _store(fresh_root, keep=0)
    old.apply("legacy", Increment(1), request_id=None)
    path = counter_path(fresh_root, "legacy")
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA auto_vacuum=NONE; VACUUM")
    assert _auto_vacuum(path) == 0
    conn.close()
    for _ in range(1999):
        old.apply("legacy", Increment(1), request_id=None)
    size_before = path.stat().st_size
    # WHEN the retention applies and the counter keeps being written
    store = _store(fresh_root, keep=100)
    for _ in range(2000):
        store.apply("legacy", Increment(1), request_id=None)
    # THEN old rows go, and the file does not grow past its size before: freed pages are reused
    rows, _, newest = _history(fresh_root, "legacy")
    assert newest == 4000 and rows < 100 + PRUNE_EVERY
    assert path.stat().st_size <= size_before
    assert _auto_vacuum(path) == 0  # unchanged: only a VACUUM could switch it


@pytest.mark.parametrize(("raw", "expected"), [(None, 1000), ("", 1000), ("0", 0), ("25", 25)])
def test_the_setting_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: int
) -> None:
    if raw is None:
        monkeypatch.delenv(config.ENV_HISTORY_RETENTION_ROWS, raising=False)
    else:
        monkeypatch.setenv(config.ENV_HISTORY_RETENTION_ROWS, raw)
    assert config.history_retention_rows() == expected


def test_a_negative_setting_is_refused_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.ENV_HISTORY_RETENTION_ROWS, "-1")
    with pytest.raises(Misconfigured) as caught:
        config.history_retention_rows()
    assert str(caught.value) == "COUNTERS_HISTORY_RETENTION_ROWS=-1 is below 0 - set it to at least 0"


def test_a_setting_the_handler_cannot_use_is_a_clear_500_that_writes_nothing(
    api_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a deployment whose retention setting is a typo
    monkeypatch.setenv(config.ENV_HISTORY_RETENTION_ROWS, "1k")
    # WHEN a request arrives
    response = handler(http_event("POST", "/counters/typo/increment"), None)
    # THEN it is a 500 that says the service is misconfigured, names no setting to the client,
    # and the log names the setting in one line, without a traceback
    assert response["statusCode"] == 500
    error = json.loads(response["body"])["error"]
    assert error["code"] == "misconfigured"
    assert error["message"] == (
        "the service is misconfigured - its operator must fix a setting (the log names it); retry later"
    )
    [record] = [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert getattr(record, "reason", "").startswith("COUNTERS_HISTORY_RETENTION_ROWS='1k' is not an integer")
    assert record.exc_info is None
    # AND nothing was written
    assert not any(path.is_file() for path in api_root.rglob("*"))


def test_an_idempotency_ttl_too_large_to_compute_with_is_refused(
    api_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a TTL whose milliseconds do not fit SQLite's 64-bit integers (it was accepted, then every
    # request with an Idempotency-Key answered 500 internal: OverflowError binding it)
    monkeypatch.setenv(config.ENV_IDEMPOTENCY_TTL_S, str(10**16))
    # THEN the setting is refused by name, with the largest value allowed
    assert config.problems() == [
        f"COUNTERS_IDEMPOTENCY_TTL_S={10**16} is above {config.MAX_IDEMPOTENCY_TTL_S}"
        f" - set it to at most {config.MAX_IDEMPOTENCY_TTL_S}"
    ]
    # AND the largest allowed value works
    monkeypatch.setenv(config.ENV_IDEMPOTENCY_TTL_S, str(config.MAX_IDEMPOTENCY_TTL_S))
    event = http_event("POST", "/counters/ttl/increment", headers={"idempotency-key": "k1"})
    assert handler(event, None)["statusCode"] == 200
    assert handler(event, None)["headers"]["idempotent-replayed"] == "true"


def test_the_handler_applies_the_setting(api_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the handler configured to keep 1 history row
    monkeypatch.setenv(config.ENV_HISTORY_RETENTION_ROWS, "1")
    # WHEN a counter is incremented past one pruning batch
    for _ in range(PRUNE_EVERY):
        response = handler(http_event("POST", "/counters/kept/increment"), None)
        assert response["statusCode"] == 200
    # THEN the history API shows only the newest row
    page = json.loads(handler(http_event("GET", "/counters/kept/history"), None)["body"])
    assert [item["value"] for item in page["items"]] == [PRUNE_EVERY]


def test_a_long_history_is_pruned_a_bounded_batch_per_write(fresh_root: Path) -> None:
    # GIVEN a counter whose history grew without retention (an older bundle, or keep=0)
    path = counter_path(fresh_root, "long")
    _store(fresh_root, keep=0).apply("long", Increment(1), request_id=None)
    conn = apsw.Connection(str(path))
    with conn:
        conn.execute(
            "WITH RECURSIVE n(v) AS (SELECT 2 UNION ALL SELECT v + 1 FROM n WHERE v < ?)"
            " INSERT INTO counter_history (op, amount, value_after, at, request_id)"
            " SELECT 'increment', 1, v, 0, NULL FROM n",
            (PRUNE_MAX_ROWS * 3,),
        )
    conn.close()
    rows_before, _, _ = _history(fresh_root, "long")
    # WHEN retention applies and the next writes reach a pruning write
    store = _store(fresh_root, keep=100)
    writes = PRUNE_EVERY - (rows_before % PRUNE_EVERY)
    for _ in range(writes):
        store.apply("long", Increment(1), request_id=None)
    # THEN that one write deleted at most PRUNE_MAX_ROWS rows (no request pays for the whole backlog)
    rows_after, _, _ = _history(fresh_root, "long")
    assert rows_after == rows_before + writes - PRUNE_MAX_ROWS
    # AND later pruning writes catch up until the retention holds
    for _ in range(PRUNE_EVERY * 4):
        store.apply("long", Increment(1), request_id=None)
    rows, _, _ = _history(fresh_root, "long")
    assert rows < 100 + PRUNE_EVERY
