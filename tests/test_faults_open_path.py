"""The open path under a hostile environment: real files on a real (small, full) file system.

A full disk is not a broken migration: the request answers a storage error that says so, nothing
changes, and once space is freed the counter is served at once - no quarantine holds it back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from counter_core import ConnectionCache, Manifest, bundled_manifest, counter_path, open_database
from counter_core.connection import REVALIDATE_S
from counter_core.errors import CounterFileDamaged, CounterNotFound, NotACounterDatabase, StorageUnavailable
from counter_core.migrate import read_header
from counter_core.store import CounterStore, Increment
from handlers.errors import from_domain_error
from tests.test_engine_open_path import _newer

REPO = Path(__file__).resolve().parent.parent

# One more migration that needs room: 50 rows of 1,000 bytes, more than the full disk has.
_NEEDS_ROOM = (
    "CREATE TABLE `ballast` (`x` blob);\n--> statement-breakpoint\n"
    "INSERT INTO `ballast` SELECT zeroblob(1000) FROM"
    " (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 50) SELECT n FROM c);"
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(disk: Path) -> Path:
    """Fill the file system to its last byte; the filler file, to delete to free the space."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    try:
        while True:
            os.write(fd, b"\0")
    except OSError:
        pass
    os.close(fd)
    return filler


def _store(root: Path, manifest: Manifest) -> CounterStore:
    return CounterStore(
        ConnectionCache(root, manifest, capacity=4, busy_timeout_ms=500), idempotency_ttl_s=60
    )


def test_a_migration_on_a_full_disk_is_a_storage_error_and_runs_once_space_is_freed(
    small_disk: Path, tmp_path: Path
) -> None:
    # GIVEN a counter written by the current bundle, and a newer bundle whose migration needs room
    root = small_disk / "counters"
    old = _store(root, bundled_manifest())
    old.apply("c", Increment(1), request_id="r")
    newer = _newer(tmp_path / "newer", "ballast", _NEEDS_ROOM)
    store = _store(root, newer)
    path = counter_path(root, "c")
    # WHEN the disk is full and the newer bundle writes the counter
    filler = _fill(small_disk)
    before = path.read_bytes()
    with pytest.raises(StorageUnavailable) as refused:
        store.apply("c", Increment(1), request_id="r")
    # THEN the answer is a 503 that blames the storage, not the migration, and the file is unchanged
    response = from_domain_error(refused.value, "req")
    assert response.status == 503
    assert "storage" in refused.value.public_message
    assert str(small_disk) not in refused.value.public_message
    assert path.read_bytes() == before
    # AND once space is freed, the very next request migrates and counts (no quarantine window)
    filler.unlink()
    outcome = store.apply("c", Increment(1), request_id="r")
    assert outcome.outcome is not None and outcome.outcome.counter is not None
    assert outcome.outcome.counter.value == 2
    old._cache.close()
    store._cache.close()
    conn = open_database(path, create=False, busy_timeout_ms=500)
    assert read_header(conn)[1] == newer.version
    conn.close()


def test_a_first_touch_on_a_full_disk_is_a_storage_error_and_leaves_nothing(small_disk: Path) -> None:
    # GIVEN a full disk
    root = small_disk / "counters"
    root.mkdir()
    store = _store(root, bundled_manifest())
    filler = _fill(small_disk)
    # WHEN a new counter is incremented
    with pytest.raises(StorageUnavailable) as refused:
        store.apply("new", Increment(1), request_id="r")
    # THEN a 503 storage error (not a 500), and no counter file and no temporary file remain
    assert from_domain_error(refused.value, "req").status == 503
    assert not counter_path(root, "new").exists()
    assert [p.name for p in root.rglob("*") if p.is_file()] == []
    # AND once space is freed, the counter is created
    filler.unlink()
    applied = store.apply("new", Increment(1), request_id="r")
    assert applied.outcome is not None and applied.outcome.created
    store._cache.close()
    shutil.rmtree(root)


@pytest.fixture
def read_only_view(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(a writable directory, a read-only bind mount of it), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    writable = tmp_path / "rw"
    view = tmp_path / "ro"
    writable.mkdir()
    view.mkdir()
    subprocess.run(["mount", "--bind", str(writable), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        yield writable, view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=True)


def test_a_first_touch_under_a_read_only_root_is_a_storage_error(read_only_view: tuple[Path, Path]) -> None:
    # GIVEN a root mounted read-only (an EFS access point with the wrong owner behaves alike), holding
    # one counter, and the fan-out directory of another counter that has no file yet
    writable, view = read_only_view
    _store(writable, bundled_manifest()).apply("kept", Increment(1), request_id="r")
    counter_path(writable, "sibling").parent.mkdir(parents=True)
    store = _store(view, bundled_manifest())
    for counter_id in ("elsewhere", "sibling"):
        # WHEN a new counter is incremented there
        with pytest.raises(StorageUnavailable) as refused:
            store.apply(counter_id, Increment(1), request_id="r")
        # THEN a 503 storage error that names no path, not a 500
        assert from_domain_error(refused.value, "req").status == 503
        assert str(view) not in refused.value.public_message
    # AND the existing counter still reads
    assert store.get("kept").value == 1
    store._cache.close()


def _warm_store(root: Path, counter_id: str) -> CounterStore:
    """A store whose cache holds the counter's connection, as a warm Lambda instance's does."""
    store = _store(root, bundled_manifest())
    for _ in range(2):
        store.apply(counter_id, Increment(1), request_id="r")
    return store


def test_a_counter_restored_from_a_backup_under_a_warm_connection_is_served_from_the_restored_file(
    tmp_path: Path,
) -> None:
    # GIVEN a warm instance, and a backup of its counter taken at value 2
    root = tmp_path / "counters"
    store = _warm_store(root, "c")
    path = counter_path(root, "c")
    backup = tmp_path / "backup"
    shutil.copy(path, backup)
    store.apply("c", Increment(1), request_id="r")
    # WHEN the operator restores the backup the usual way (an atomic rename over the live file)
    backup.replace(path)
    # THEN the warm instance's next write lands in the restored file, the one every process sees
    applied = store.apply("c", Increment(10), request_id="r")
    assert applied.outcome is not None and applied.outcome.counter is not None
    assert applied.outcome.counter.value == 12
    fresh = _store(root, bundled_manifest())
    assert fresh.get("c").value == 12
    store._cache.close()
    fresh._cache.close()


def test_a_warm_instance_serves_a_damaged_counter_again_once_the_operator_restores_it(tmp_path: Path) -> None:
    # GIVEN a warm instance whose counter file is truncated to nothing, and a backup of it
    root = tmp_path / "counters"
    store = _warm_store(root, "c")
    path = counter_path(root, "c")
    backup = tmp_path / "backup"
    shutil.copy(path, backup)
    os.truncate(path, 0)
    # WHEN a request meets the damage, and the operator then does what the error says (restore it)
    with pytest.raises(CounterFileDamaged):
        store.apply("c", Increment(1), request_id="r")
    backup.replace(path)
    # THEN the warm instance serves the restored file: reads and writes
    assert store.get("c").value == 2
    applied = store.apply("c", Increment(1), request_id="r")
    assert applied.outcome is not None and applied.outcome.counter is not None
    assert applied.outcome.counter.value == 3
    store._cache.close()


def test_a_warm_instance_starts_a_counter_afresh_once_its_damaged_file_is_moved_away(tmp_path: Path) -> None:
    # GIVEN a warm instance whose counter file is truncated to nothing, met by one request
    root = tmp_path / "counters"
    store = _warm_store(root, "c")
    path = counter_path(root, "c")
    os.truncate(path, 0)
    with pytest.raises(CounterFileDamaged):
        store.get("c")
    # WHEN the operator moves the file away (the counter then starts afresh, says the error)
    path.rename(tmp_path / "damaged")
    # THEN the warm instance finds no counter, and a write creates it anew
    with pytest.raises(CounterNotFound):
        store.get("c")
    applied = store.apply("c", Increment(1), request_id="r")
    assert applied.outcome is not None and applied.outcome.created
    store._cache.close()


def test_a_write_through_a_warm_connection_after_its_file_was_moved_away_creates_the_counter_anew(
    tmp_path: Path,
) -> None:
    # GIVEN a warm instance whose counter file is moved away by an operator
    root = tmp_path / "counters"
    store = _warm_store(root, "c")
    path = counter_path(root, "c")
    path.rename(tmp_path / "moved")
    # WHEN the warm instance increments the counter
    applied = store.apply("c", Increment(5), request_id="r")
    # THEN the counter starts afresh in a new file at its path (not in the moved one)
    assert applied.outcome is not None and applied.outcome.counter is not None
    assert applied.outcome.created and applied.outcome.counter.value == 5
    fresh = _store(root, bundled_manifest())
    assert fresh.get("c").value == 5
    store._cache.close()
    fresh._cache.close()


def _run_injected(
    root: Path, path: Path, syscall: str, inject: str, *operations: str
) -> subprocess.CompletedProcess[str]:
    """Run `operations` (_COLD_INSTANCE) in a new process whose `syscall`s on `path` get the strace `inject`."""
    if shutil.which("strace") is None:
        pytest.skip("needs strace (fault injection)")
    return subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-P",
            str(path),
            "-e",
            f"trace={syscall}",
            "-e",
            inject,
            sys.executable,
            "-c",
            _COLD_INSTANCE,
            str(root),
            *operations,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


# A new process (a cold instance) runs the operations in argv[2:] on counter "c" under root argv[1],
# printing per operation the counter's value or the error code.
_COLD_INSTANCE = """
import sys
from pathlib import Path
from counter_core import ConnectionCache, bundled_manifest
from counter_core.errors import CounterError
from counter_core.store import CounterStore, Increment
store = CounterStore(
    ConnectionCache(Path(sys.argv[1]), bundled_manifest(), capacity=4, busy_timeout_ms=500), idempotency_ttl_s=60
)
for operation in sys.argv[2:]:
    try:
        if operation == "read":
            print(store.get("c").value)
        else:
            print(store.apply("c", Increment(1), request_id="r").outcome.counter.value)
    except CounterError as exc:
        print(exc.code)
"""


def test_the_loser_of_a_first_touch_race_with_an_in_place_creator_reports_damage_not_a_foreign_file(
    tmp_path: Path,
) -> None:
    # GIVEN the empty file an in-place creator (a process without hard links) has just made
    root = tmp_path / "counters"
    path = counter_path(root, "c")
    path.parent.mkdir(parents=True)
    path.touch()
    # WHEN a process with hard links looks just before it appeared (its lstat says: no file), builds
    # its own file and loses the link to it
    done = _run_injected(root, path, "newfstatat", "inject=newfstatat:error=ENOENT:when=1", "write")
    # THEN it answers as for any empty counter file (503 counter_file_damaged, as the README says of
    # in-place creation), never "not a counter database", which tells the operator to move it away
    assert done.stdout.strip() == "counter_file_damaged", done.stderr
    assert path.stat().st_size == 0


def test_a_connection_opened_while_its_file_could_not_be_written_does_not_refuse_writes_for_good(
    tmp_path: Path,
) -> None:
    # GIVEN a counter at value 1
    root = tmp_path / "counters"
    _store(root, bundled_manifest()).apply("c", Increment(1), request_id="r")
    path = counter_path(root, "c")
    # WHEN a cold instance reads it at a moment its file cannot be opened for writing (mode 444 then
    # fixed, a transient EACCES or EMFILE: SQLite then opens it read-only), and writes it afterwards
    done = _run_injected(root, path, "openat", "inject=openat:error=EACCES:when=1", "read", "write")
    # THEN the read is served, and so is the write: the read-only connection is not kept for writes
    assert done.stdout.split() == ["1", "2"], done.stderr


def test_a_first_touch_whose_new_file_cannot_be_reopened_still_answers_its_committed_write(
    tmp_path: Path,
) -> None:
    # GIVEN a process that will build and link a new counter file, but cannot open it again at its
    # path afterwards (every open of that path fails: ENFILE, the system's file table is full)
    root = tmp_path / "counters"
    path = counter_path(root, "c")
    done = _run_injected(root, path, "openat", "inject=openat:error=ENFILE:when=1+", "write")
    # THEN the write, which committed in the new file, is answered as done (an error would say
    # nothing changed, and the client's retry would count it twice)
    assert done.stdout.split() == ["1"], done.stderr
    assert _store(root, bundled_manifest()).get("c").value == 1


def _switch_to_wal(path: Path) -> None:
    """What an operator's tool does (a sqlite3 shell, a backup agent): the file is in WAL mode after it."""
    conn = apsw.Connection(str(path))
    assert conn.execute("PRAGMA journal_mode=WAL").fetchall() == [("wal",)]
    conn.close()


@pytest.mark.parametrize("first", ["read", "write"])
def test_a_warm_instance_stops_using_a_counter_file_switched_to_wal(tmp_path: Path, first: str) -> None:
    # GIVEN a warm instance, and its counter's file switched to WAL by another tool (WAL's index lives
    # in shared memory, which hosts sharing an NFS mount do not share: counter files never use it)
    root = tmp_path / "counters"
    store = _warm_store(root, "c")
    path = counter_path(root, "c")
    _switch_to_wal(path)
    # WHEN the warm instance serves requests for it
    outcomes = []
    for operation in [first, "read", "write", "read"]:
        try:
            if operation == "read":
                store.get("c")
            else:
                store.apply("c", Increment(1), request_id="r")
            outcomes.append("served")
        except NotACounterDatabase:
            outcomes.append("refused")
    # THEN, as a cold instance does, it refuses the file - from the request after its first write
    # there: a check per request would cost every warm request a statement, while WAL commits call a
    # hook (rollback-journal commits never do)
    served_until_written = {"write": ["served"], "read": ["served", "served", "served"]}[first]
    assert outcomes == served_until_written + ["refused"] * (4 - len(served_until_written))
    store._cache.close()


def _cut_short(path: Path) -> None:
    """Keep the first three pages only: a copy or restore that stopped half-way."""
    os.truncate(path, 3 * 4096)


def _attempt(store: CounterStore, operation: str) -> None:
    if operation == "read":
        store.get("c")
    elif operation == "history":
        store.history("c", limit=500, cursor=None)
    else:
        store.apply("c", Increment(1), request_id="r")


@pytest.mark.parametrize("operation", ["read", "history", "write"])
@pytest.mark.parametrize("warm", [True, False])
def test_a_counter_file_cut_short_is_reported_damaged(tmp_path: Path, operation: str, warm: bool) -> None:
    # GIVEN a counter with some history whose file is then cut short
    root = tmp_path / "counters"
    store = _store(root, bundled_manifest())
    for _ in range(300):
        store.apply("c", Increment(1), request_id="r")
    path = counter_path(root, "c")
    _cut_short(path)
    before = path.read_bytes()
    # WHEN a warm or a cold instance serves a request for it
    serving = store if warm else _store(root, bundled_manifest())
    with pytest.raises(CounterFileDamaged) as refused:
        _attempt(serving, operation)
    # THEN 503 counter_file_damaged (restore it), never a 500 or "not a counter database" (move it
    # away), and the file is unchanged
    assert from_domain_error(refused.value, "req").status == 503
    assert path.read_bytes() == before
    store._cache.close()
    serving._cache.close()


def test_a_behind_counter_file_cut_short_is_damaged_not_a_failed_migration(tmp_path: Path) -> None:
    # GIVEN a counter file cut short, and a newer bundle that must migrate it
    root = tmp_path / "counters"
    old = _store(root, bundled_manifest())
    for _ in range(300):
        old.apply("c", Increment(1), request_id="r")
    old._cache.close()
    _cut_short(counter_path(root, "c"))
    newer = _store(
        root, _newer(tmp_path / "newer", "note", "ALTER TABLE `counter_metadata` ADD `note` text;")
    )
    # WHEN it is written, twice
    for _ in range(2):
        # THEN it is damaged each time (no quarantine: the migration itself is fine)
        with pytest.raises(CounterFileDamaged):
            newer.apply("c", Increment(1), request_id="r")
    newer._cache.close()


def test_reads_through_a_warm_connection_see_a_file_restored_by_rename_within_the_check_interval(
    tmp_path: Path,
) -> None:
    # GIVEN a warm instance reading a counter, and a backup of it taken at value 2
    root = tmp_path / "counters"
    now = [1000.0]
    cache = ConnectionCache(root, bundled_manifest(), capacity=4, busy_timeout_ms=500, clock=lambda: now[0])
    store = CounterStore(cache, idempotency_ttl_s=60)
    for _ in range(2):
        store.apply("c", Increment(1), request_id="r")
    path = counter_path(root, "c")
    backup = tmp_path / "backup"
    shutil.copy(path, backup)
    store.apply("c", Increment(1), request_id="r")
    assert store.get("c").value == 3
    # WHEN the operator renames the backup over the live file, and only reads follow
    backup.replace(path)
    # THEN within the check interval the warm connection may still read the file it has open,
    assert store.get("c").value in (2, 3)
    # and once the interval has passed it reads the restored file, as every other process does
    now[0] += REVALIDATE_S
    assert store.get("c").value == 2
    cache.close()
