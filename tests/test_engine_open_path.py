"""The open path on real files: odd files refused untouched, rolling deploys seen by cached connections.

DESIGN.md, "What odd files get": not ours (any journal mode), empty, a FIFO, a directory or a link
at a counter's path gets a clear 503 and the file is never changed; the root itself may be reached
through a link. And a warm instance whose cached connection meets a file that a newer bundle
migrated answers `503 schema_too_new`, checked inside the request's own transaction.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import apsw
import pytest

from counter_core import (
    APPLICATION_ID,
    ConnectionCache,
    Manifest,
    bundled_manifest,
    counter_path,
    ensure_current,
    open_database,
)
from counter_core.migrate import read_header
from counter_core.store import CounterStore, Increment
from tests.api_events import http_event, invoke
from tools.migrations.folder import DEFAULT_FOLDER, JournalEntry, read_journal, write_journal
from tools.migrations.manifest import write_manifest

RENAME_METADATA = "ALTER TABLE `counter_metadata` RENAME COLUMN `metadata` TO `meta`;"
ADD_NOTE = "ALTER TABLE `counter_metadata` ADD `note` text;"


def _newer(folder: Path, name: str, sql: str) -> Manifest:
    """The bundled migrations plus one more, as a newer deployment would ship them."""
    shutil.copytree(DEFAULT_FOLDER, folder, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    entries = read_journal(folder)
    tag = f"{len(entries):04d}_{name}"
    (folder / f"{tag}.sql").write_text(sql + "\n", encoding="utf-8")
    write_journal(
        folder,
        [*entries, JournalEntry(idx=len(entries), when=entries[-1].when + 1000, tag=tag, breakpoints=True)],
    )
    return write_manifest(folder)


def _warm_instance(counter_id: str) -> None:
    """This process with the counter's connection cached: created by one request, served by the next."""
    for _ in range(2):
        assert invoke(http_event("POST", f"/counters/{counter_id}/increment")).status == 200


def _new_process() -> None:
    """What a new Lambda instance has: no cached connection."""
    from handlers import api

    api._current_state().cache.close()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _every_route(counter_id: str) -> list[tuple[str, str, object]]:
    base = f"/counters/{counter_id}"
    return [
        ("GET", base, None),
        ("POST", f"{base}/increment", None),
        ("POST", f"{base}/decrement", {"by": 2}),
        ("POST", f"{base}/reset", None),
        ("PUT", base, {"value": 7}),
        ("GET", f"{base}/history", None),
        ("DELETE", base, None),
    ]


def _codes(counter_id: str) -> set[tuple[int, str]]:
    return {
        (result.status, result.error_code)
        for method, path, body in _every_route(counter_id)
        for result in [invoke(http_event(method, path, body=body))]
    }


def test_a_warm_old_instance_answers_schema_too_new_after_a_newer_bundle_breaks_the_schema(
    api_root: Path, tmp_path: Path
) -> None:
    # GIVEN an old instance with a cached connection to a counter
    _warm_instance("hot")
    # WHEN a newer bundle renames a column in that counter's file (a breaking migration)
    newer = _newer(tmp_path / "newer", "rename_metadata", RENAME_METADATA)
    path = counter_path(api_root, "hot")
    conn = open_database(path, create=False, busy_timeout_ms=1000)
    assert ensure_current(conn, newer, label="hot") is not None
    conn.close()
    before = _digest(path)
    # THEN every route of the old instance answers 503 schema_too_new, and the file is unchanged
    assert _codes("hot") == {(503, "schema_too_new")}
    assert _digest(path) == before


def test_a_warm_old_instance_keeps_serving_after_a_newer_additive_migration(
    api_root: Path, tmp_path: Path
) -> None:
    # GIVEN an old instance with a cached connection, and a newer bundle that only adds a column
    _warm_instance("hot")
    newer = _newer(tmp_path / "newer", "add_note", ADD_NOTE)
    other = CounterStore(
        ConnectionCache(api_root, newer, capacity=1, busy_timeout_ms=1000), idempotency_ttl_s=60
    )
    other.apply("hot", Increment(by=1), request_id=None)
    # WHEN the old instance serves the counter again THEN it carries on
    result = invoke(http_event("POST", "/counters/hot/increment"))
    assert (result.status, result.json["value"]) == (200, 4)


def test_a_root_reached_through_a_symlink_serves_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN COUNTERS_ROOT reached through a link (macOS's /tmp is one)
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    monkeypatch.setenv("COUNTERS_ROOT", str(tmp_path / "link"))
    # WHEN counters are created, read and incremented THEN every request succeeds, in the real root
    assert invoke(http_event("POST", "/counters/a/increment")).status == 200
    assert invoke(http_event("POST", "/counters/a/increment")).json["value"] == 2
    assert invoke(http_event("GET", "/counters/a")).json["value"] == 2
    assert counter_path(real, "a").is_file()


def test_a_link_below_the_root_is_refused_and_left_alone(api_root: Path, tmp_path: Path) -> None:
    # GIVEN a counter whose fan-out directory was replaced by a link to a copy elsewhere
    assert invoke(http_event("POST", "/counters/a/increment")).status == 200
    fan_out = counter_path(api_root, "a").parent
    elsewhere = tmp_path / "elsewhere"
    _new_process()
    fan_out.rename(elsewhere)
    fan_out.symlink_to(elsewhere)
    before = _digest(elsewhere / counter_path(api_root, "a").name)
    # WHEN a new process serves it THEN it refuses, and the file behind the link is unchanged
    assert _codes("a") == {(503, "not_a_counter_database")}
    assert _digest(elsewhere / counter_path(api_root, "a").name) == before


@pytest.mark.parametrize("application_id", [42, 0])
def test_a_foreign_database_in_wal_mode_is_refused_and_never_written(
    api_root: Path, application_id: int
) -> None:
    # GIVEN another application's database, in WAL mode, at a counter's path
    path = counter_path(api_root, "theirs")
    path.parent.mkdir(parents=True)
    other = apsw.Connection(str(path))
    other.execute(f"PRAGMA journal_mode=WAL; PRAGMA application_id={application_id}; CREATE TABLE t (x)")
    other.close()
    before = _digest(path)
    # WHEN every route is asked for it THEN each is refused and the file is byte-for-byte the same,
    # still in WAL mode, with no journal or WAL file made beside it
    assert _codes("theirs") == {(503, "not_a_counter_database")}
    assert _digest(path) == before
    assert path.read_bytes()[18:20] == b"\x02\x02"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_an_empty_counter_file_is_damage_not_a_new_counter(api_root: Path) -> None:
    # GIVEN a counter at 5 whose file was then truncated to 0 bytes
    invoke(http_event("PUT", "/counters/c", body={"value": 5}))
    path = counter_path(api_root, "c")
    _new_process()
    path.write_bytes(b"")
    # WHEN every route is asked for it THEN each answers 503 counter_file_damaged; nothing is written
    assert _codes("c") == {(503, "counter_file_damaged")}
    assert path.stat().st_size == 0
    body = invoke(http_event("GET", "/counters/c")).json
    assert "/" not in body["error"]["message"]


def test_a_counter_file_emptied_under_a_cached_connection_is_not_rewritten(api_root: Path) -> None:
    # GIVEN a warm instance with the counter's connection cached
    invoke(http_event("PUT", "/counters/c", body={"value": 5}))
    path = counter_path(api_root, "c")
    # WHEN the file is truncated to 0 bytes behind its back
    with path.open("r+b") as handle:
        handle.truncate(0)
    # THEN the next requests answer 503 and the file stays empty
    assert _codes("c") == {(503, "counter_file_damaged")}
    assert path.stat().st_size == 0


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink"])
def test_a_counter_path_that_is_not_a_regular_file_is_refused_without_opening(
    api_root: Path, tmp_path: Path, kind: str
) -> None:
    # GIVEN a FIFO, a directory or a link where a counter's file would be
    path = counter_path(api_root, "odd")
    path.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        target = tmp_path / "target.sqlite3"
        CounterStore(
            ConnectionCache(tmp_path / "elsewhere", bundled_manifest(), capacity=1, busy_timeout_ms=100),
            idempotency_ttl_s=60,
        ).apply("odd", Increment(by=1), request_id=None)
        shutil.copyfile(counter_path(tmp_path / "elsewhere", "odd"), target)
        path.symlink_to(target)
    # WHEN every route is asked for it THEN each is refused, and nothing was made beside it
    assert _codes("odd") == {(503, "not_a_counter_database")}
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_an_increment_on_a_file_behind_migrates_and_writes_in_one_transaction(tmp_path: Path) -> None:
    # GIVEN a counter file one migration behind a newer bundle
    root = tmp_path / "root"
    old = CounterStore(
        ConnectionCache(root, bundled_manifest(), capacity=1, busy_timeout_ms=100), idempotency_ttl_s=60
    )
    old.apply("c", Increment(by=2**63 - 2), request_id=None)
    newer = _newer(tmp_path / "newer", "add_note", ADD_NOTE)
    store = CounterStore(ConnectionCache(root, newer, capacity=1, busy_timeout_ms=100), idempotency_ttl_s=60)
    path = counter_path(root, "c")
    before = _digest(path)
    # WHEN the increment fails (out of range) THEN the migration it carried is rolled back with it
    from counter_core.errors import OutOfRange

    with pytest.raises(OutOfRange):
        store.apply("c", Increment(by=5), request_id=None)
    assert _digest(path) == before
    # WHEN it succeeds THEN the file is migrated and incremented
    applied = store.apply("c", Increment(by=1), request_id=None)
    assert applied.outcome is not None and applied.outcome.counter is not None
    assert applied.outcome.counter.value == 2**63 - 1
    conn = apsw.Connection(str(path))
    assert read_header(conn) == (APPLICATION_ID, newer.version)


def test_the_busy_handler_gives_up_only_after_the_whole_busy_timeout(tmp_path: Path) -> None:
    # GIVEN a counter file whose write lock another connection holds
    path = tmp_path / "c.sqlite3"
    holder = open_database(path, create=True, busy_timeout_ms=100)
    holder.execute("CREATE TABLE t (x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1)")
    waiter = open_database(path, create=False, busy_timeout_ms=150)
    # WHEN another writer asks for it THEN it waits the whole busy timeout, then gets SQLITE_BUSY
    import time

    started = time.monotonic()
    with pytest.raises(apsw.BusyError):
        waiter.execute("BEGIN IMMEDIATE")
    assert time.monotonic() - started >= 0.15
    holder.execute("COMMIT")


def test_a_waiting_writer_gets_the_lock_once_it_is_released(tmp_path: Path) -> None:
    # GIVEN a writer holding the lock, released by another thread while a second writer waits
    import threading

    path = tmp_path / "c.sqlite3"
    holder = open_database(path, create=True, busy_timeout_ms=100)
    holder.execute("CREATE TABLE t (x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1)")
    waiter = open_database(path, create=False, busy_timeout_ms=5000)
    release = threading.Timer(0.05, lambda: holder.execute("COMMIT"))
    release.start()
    # WHEN the second writer begins THEN it gets the lock and sees the first writer's row
    waiter.execute("BEGIN IMMEDIATE")
    assert waiter.execute("SELECT count(*) FROM t").fetchone() == (1,)
    waiter.execute("COMMIT")
    release.join()


@pytest.mark.parametrize("kind", ["empty", "fifo"])
def test_the_fleet_migration_reports_an_odd_file_and_carries_on(tmp_path: Path, kind: str) -> None:
    # GIVEN an odd file where a counter file would be
    from counter_core.fleet import MigrateOutcome, migrate_file

    path = counter_path(tmp_path, "odd")
    path.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(b"")
    # WHEN the fleet migration meets it THEN it is reported as failed, untouched, and nothing raises
    result = migrate_file(path, bundled_manifest(), busy_timeout_ms=100)
    assert result.outcome == MigrateOutcome.FAILED
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_eight_writers_on_a_file_behind_migrate_it_once_inside_their_own_transactions(tmp_path: Path) -> None:
    # GIVEN a counter at 10, one migration behind the bundle of eight new instances
    import multiprocessing

    from tests.processes import increment_behind

    root = tmp_path / "root"
    CounterStore(
        ConnectionCache(root, bundled_manifest(), capacity=1, busy_timeout_ms=100), idempotency_ttl_s=60
    ).apply("shared", Increment(by=10), request_id=None)
    newer = _newer(tmp_path / "newer", "add_note", ADD_NOTE)
    context = multiprocessing.get_context("spawn")
    barrier = context.Manager().Barrier(8)
    # WHEN all eight increment it at the same moment
    with context.Pool(8) as pool:
        results = pool.starmap(increment_behind, [(str(root), str(tmp_path / "newer"), barrier)] * 8)
    # THEN exactly one applied the migration (with its increment), and every increment counted once
    assert sorted(results, key=len) == [()] * 7 + [("0001_add_note",)]
    conn = apsw.Connection(str(counter_path(root, "shared")))
    assert conn.execute("SELECT value FROM counter_metadata").fetchone() == (18,)
    assert conn.execute("SELECT idx FROM __migrations ORDER BY idx").fetchall() == [(0,), (1,)]
    assert read_header(conn) == (APPLICATION_ID, newer.version)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_fan_out_directories_are_made_with_no_lookup_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On EFS each call is a round trip: os.makedirs stats every parent before making it (one more
    # lookup per first touch, tools.bench figure 1a); make_directories only tries mkdir.
    from counter_core import create

    root = tmp_path / "root"
    root.mkdir()
    calls: list[str] = []
    real_mkdir, real_stat = os.mkdir, os.stat
    monkeypatch.setattr(
        os, "mkdir", lambda p, *a, **k: (calls.append(f"mkdir {p}"), real_mkdir(p, *a, **k))[1]
    )
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: (calls.append(f"stat {p}"), real_stat(p, *a, **k))[1])
    create.make_directories(f"{root}/ab/cd")  # a new fan-out directory: its parent is new too
    assert calls == [f"mkdir {root}/ab/cd", f"mkdir {root}/ab", f"mkdir {root}/ab/cd"]
    calls.clear()
    create.make_directories(f"{root}/ab/cd")  # the usual case: it exists
    assert calls == [f"mkdir {root}/ab/cd"]
