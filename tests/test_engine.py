"""The migration engine on real SQLite files: fast path, all-or-nothing, drift, rolling deploys."""

from __future__ import annotations

import hashlib
from pathlib import Path

import apsw
import pytest

from counter_core import (
    APPLICATION_ID,
    ConnectionCache,
    CounterNotFound,
    Manifest,
    MigrationDrift,
    MigrationFailed,
    MigrationReport,
    NotACounterDatabase,
    SchemaTooNew,
    counter_path,
    ensure_current,
    open_database,
)
from counter_core.migrate import applied_migrations, read_header
from tests.conftest import ADD_NOTE, PARENT_CHILD
from tests.migration_folders import make_folder

REBUILD_PARENTS = """PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_parents` (`id` integer PRIMARY KEY NOT NULL, `name` text DEFAULT 'unnamed' NOT NULL);
--> statement-breakpoint
INSERT INTO `__new_parents`("id", "name") SELECT "id", "name" FROM `parents`;--> statement-breakpoint
DROP TABLE `parents`;--> statement-breakpoint
ALTER TABLE `__new_parents` RENAME TO `parents`;--> statement-breakpoint
PRAGMA foreign_keys=ON;"""


def _open(path: Path, *, create: bool = True) -> apsw.Connection:
    return open_database(path, create=create, busy_timeout_ms=2000)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _seed_family(conn: apsw.Connection) -> None:
    conn.execute(
        "INSERT INTO parents VALUES (1, 'p'); INSERT INTO children (id, parent_id, label) VALUES (1, 1, 'a'), (2, 1, 'b')"
    )


def test_new_file_gets_every_migration_once_then_takes_the_fast_path(
    tmp_path: Path, v2_manifest: Manifest
) -> None:
    # GIVEN a database file that does not exist yet
    conn = _open(tmp_path / "c.sqlite3")
    # WHEN it is opened and made current twice
    first = ensure_current(conn, v2_manifest, label="c")
    second = ensure_current(conn, v2_manifest, label="c")
    # THEN the first call applied both migrations, marked the file, and recorded each one
    assert first is not None
    assert first.applied == ("0000_init", "0001_add_note")
    assert (first.from_version, first.to_version) == (0, 2)
    assert second is None
    assert read_header(conn) == (APPLICATION_ID, 2)
    records = applied_migrations(conn)
    assert [(r.idx, r.tag, r.sha256) for r in records] == [
        (m.idx, m.tag, m.sha256) for m in v2_manifest.migrations
    ]
    row = conn.execute('SELECT "when", applied_at, additive FROM __migrations WHERE idx = 1').fetchone()
    assert row[0] == v2_manifest.migrations[1].when and row[1].endswith("Z") and row[2] == 1


def test_pending_migrations_apply_on_a_file_that_is_behind(
    tmp_path: Path, v1_manifest: Manifest, v2_manifest: Manifest
) -> None:
    conn = _open(tmp_path / "c.sqlite3")
    ensure_current(conn, v1_manifest, label="c")
    _seed_family(conn)
    report = ensure_current(conn, v2_manifest, label="c")
    assert report is not None and report.applied == ("0001_add_note",) and report.from_version == 1
    assert conn.execute("SELECT count(*) FROM children WHERE note IS NULL").fetchone()[0] == 2


def test_a_failing_migration_rolls_everything_back_byte_for_byte(
    tmp_path: Path, v1_manifest: Manifest
) -> None:
    # GIVEN a file at version 1 with rows, and a bundle with two more migrations, the second failing at statement 2
    path = tmp_path / "c.sqlite3"
    conn = _open(path)
    ensure_current(conn, v1_manifest, label="c")
    _seed_family(conn)
    conn.close()
    before = _digest(path)
    bad = make_folder(
        tmp_path / "bad",
        [
            ("init", PARENT_CHILD),
            ("add_note", ADD_NOTE),
            (
                "broken",
                "CREATE TABLE extra (x integer);--> statement-breakpoint\nINSERT INTO nope VALUES (1);",
            ),
        ],
    )
    conn = _open(path, create=False)
    # WHEN the engine runs
    with pytest.raises(MigrationFailed) as caught:
        ensure_current(conn, bad, label="counter 'c'")
    # THEN the error names tag, statement and SQLite's message, and nothing changed - not even the good migration
    assert str(caught.value) == (
        "counter 'c': migration '0002_broken' failed at statement 2: no such table: nope"
        " - the database is unchanged; fix the migration and redeploy"
    )
    assert caught.value.public_message == (
        "migration '0002_broken' failed - the database is unchanged; an operator must fix the migration"
    )
    conn.close()
    assert _digest(path) == before
    # AND a fixed bundle applies each pending migration exactly once on the next open
    fixed = make_folder(
        tmp_path / "fixed",
        [("init", PARENT_CHILD), ("add_note", ADD_NOTE), ("broken", "CREATE TABLE extra (x integer);")],
    )
    conn = _open(path, create=False)
    report = ensure_current(conn, fixed, label="c")
    assert report is not None and report.applied == ("0001_add_note", "0002_broken")
    assert [r.idx for r in applied_migrations(conn)] == [0, 1, 2]
    assert conn.execute("SELECT count(*) FROM children").fetchone()[0] == 2


def test_a_failed_first_migration_leaves_a_new_file_empty_and_unmarked(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    bad = make_folder(
        tmp_path / "bad", [("init", "CREATE TABLE a (x integer);\nINSERT INTO nope VALUES (1);")]
    )
    conn = _open(path)
    with pytest.raises(MigrationFailed):
        ensure_current(conn, bad, label="c")
    assert read_header(conn) == (0, 0)
    assert conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0] == 0


def test_drift_is_refused_naming_the_tag_and_both_hashes(tmp_path: Path, v1_manifest: Manifest) -> None:
    path = tmp_path / "c.sqlite3"
    conn = _open(path)
    ensure_current(conn, v1_manifest, label="c")
    conn.close()
    before = _digest(path)
    # GIVEN a bundle whose 0000_init was edited after release
    edited = make_folder(
        tmp_path / "edited", [("init", PARENT_CHILD + "\n-- edited"), ("add_note", ADD_NOTE)]
    )
    conn = _open(path, create=False)
    with pytest.raises(MigrationDrift) as caught:
        ensure_current(conn, edited, label="c")
    old, new = v1_manifest.migrations[0].sha256, edited.migrations[0].sha256
    assert str(caught.value) == (
        f"c: migration '0000_init' was applied with sha256 {old} but this bundle has '0000_init' with sha256 {new}"
        " - applied migrations must never be edited; restore the original file (git history) and add a new"
        " migration instead"
    )
    conn.close()
    assert _digest(path) == before


def test_a_newer_database_is_served_when_every_unknown_migration_is_additive(
    tmp_path: Path, v1_manifest: Manifest, v2_manifest: Manifest
) -> None:
    # GIVEN a file a newer deployment (v2) migrated, met by old code (v1) during a rolling deploy
    conn = _open(tmp_path / "c.sqlite3")
    ensure_current(conn, v2_manifest, label="c")
    # WHEN the old bundle opens it THEN it carries on, knowing what it tolerated
    report = ensure_current(conn, v1_manifest, label="c")
    assert report is not None and report.unknown_additive == ("0001_add_note",) and report.applied == ()
    assert read_header(conn) == (APPLICATION_ID, 2)


def test_a_newer_database_with_a_breaking_migration_is_refused(tmp_path: Path, v1_manifest: Manifest) -> None:
    newer = make_folder(tmp_path / "newer", [("init", PARENT_CHILD), ("rebuild", REBUILD_PARENTS)])
    path = tmp_path / "c.sqlite3"
    conn = _open(path)
    ensure_current(conn, newer, label="c")
    with pytest.raises(SchemaTooNew) as caught:
        ensure_current(conn, v1_manifest, label="c")
    assert str(caught.value) == (
        "c: the database is newer than this deployment: it applied ['0001_rebuild'], of which ['0001_rebuild'] are"
        " not additive - deploy the newer bundle (or finish the rolling deploy)"
    )
    assert caught.value.public_message == (
        "the counter's database is newer than this deployment - retry once the deployment completes"
    )


@pytest.mark.parametrize(
    ("setup", "why"),
    [
        ("PRAGMA application_id=42; CREATE TABLE t (x)", "its application_id is 0x0000002a"),
        (
            "CREATE TABLE accounts (id integer primary key)",
            "it has tables but is not marked as a counter database",
        ),
    ],
)
def test_a_foreign_database_is_refused_and_left_untouched(
    tmp_path: Path, v1_manifest: Manifest, setup: str, why: str
) -> None:
    path = tmp_path / "c.sqlite3"
    other = apsw.Connection(str(path))
    other.execute(setup)
    other.close()
    before = _digest(path)
    # GIVEN another application's file WHEN it is opened and checked THEN it is refused, by the open
    # (its header) or by the engine (its tables), and never written to.
    with pytest.raises(NotACounterDatabase) as caught:
        conn = open_database(path, create=False, busy_timeout_ms=2000, label="c")
        try:
            ensure_current(conn, v1_manifest, label="c")
        finally:
            conn.close()
    assert str(caught.value) == (
        f"c: not a counter database ({why}) - it was left untouched; move it away if it does not belong here"
    )
    assert _digest(path) == before


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path, v1_manifest: Manifest) -> None:
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"definitely not a database file" * 100)
    with pytest.raises(NotACounterDatabase, match="it is not an SQLite database"):
        _open(path, create=False)
    assert path.read_bytes() == b"definitely not a database file" * 100


def test_a_table_rebuild_never_cascade_deletes_child_rows(tmp_path: Path, v1_manifest: Manifest) -> None:
    # GIVEN children that reference their parent with ON DELETE CASCADE, and foreign keys on
    path = tmp_path / "c.sqlite3"
    conn = _open(path)
    ensure_current(conn, v1_manifest, label="c")
    _seed_family(conn)
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    rebuild = make_folder(tmp_path / "rebuild", [("init", PARENT_CHILD), ("rebuild", REBUILD_PARENTS)])
    assert rebuild.migrations[1].foreign_keys_off
    # WHEN the parent table is rebuilt (DROP TABLE parents would cascade if foreign keys were on)
    ensure_current(conn, rebuild, label="c")
    # THEN every child survives, and foreign keys are back on
    assert conn.execute("SELECT id, parent_id FROM children ORDER BY id").fetchall() == [(1, 1), (2, 1)]
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("SELECT name FROM parents").fetchall() == [("p",)]


def test_the_same_rebuild_with_drizzles_in_transaction_pragma_loses_children(tmp_path: Path) -> None:
    """The control for the test above: Drizzle's way (PRAGMA inside the transaction) cascades."""
    conn = apsw.Connection(str(tmp_path / "d.sqlite3"))
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(PARENT_CHILD.replace("--> statement-breakpoint", ""))
    _seed_family(conn)
    conn.execute("BEGIN; " + REBUILD_PARENTS.replace("--> statement-breakpoint", "") + " COMMIT;")
    assert conn.execute("SELECT count(*) FROM children").fetchone()[0] == 0


def test_a_rebuild_that_breaks_foreign_keys_rolls_back_naming_the_table(
    tmp_path: Path, v1_manifest: Manifest
) -> None:
    path = tmp_path / "c.sqlite3"
    conn = _open(path)
    ensure_current(conn, v1_manifest, label="c")
    _seed_family(conn)
    conn.close()
    before = _digest(path)
    orphaning = REBUILD_PARENTS.replace(
        'INSERT INTO `__new_parents`("id", "name") SELECT "id", "name" FROM `parents`;', "SELECT 1;"
    )
    bad = make_folder(tmp_path / "bad", [("init", PARENT_CHILD), ("lose_parents", orphaning)])
    conn = _open(path, create=False)
    with pytest.raises(MigrationFailed) as caught:
        ensure_current(conn, bad, label="c")
    assert str(caught.value) == (
        "c: after ['0001_lose_parents'] 2 row(s) violate foreign keys in table(s) ['children']"
        " - the database is unchanged; fix the migration so child rows keep a parent"
    )
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    conn.close()
    assert _digest(path) == before


def test_a_read_of_a_missing_counter_creates_nothing(fresh_root: Path, v1_manifest: Manifest) -> None:
    cache = ConnectionCache(fresh_root, v1_manifest, capacity=4, busy_timeout_ms=100)
    with pytest.raises(CounterNotFound) as caught:
        cache.connection("nobody", create=False)
    assert not fresh_root.exists()
    assert "/" not in caught.value.public_message


def test_the_cache_reuses_connections_and_evicts_the_least_recent(
    fresh_root: Path, v1_manifest: Manifest
) -> None:
    migrated: list[str] = []
    cache = ConnectionCache(
        fresh_root,
        v1_manifest,
        capacity=2,
        busy_timeout_ms=100,
        on_migrated=lambda cid, _r: migrated.append(cid),
    )
    a = cache.connection("a", create=True)
    assert cache.connection("a", create=False) is a
    b = cache.connection("b", create=True)
    cache.connection("a", create=False)  # a is now the most recent
    cache.connection("c", create=True)
    assert len(cache) == 2
    with pytest.raises(apsw.ConnectionClosedError):
        b.execute("SELECT 1")
    assert migrated == ["a", "b", "c"]
    assert counter_path(fresh_root, "b").exists()
    cache.close()
    assert len(cache) == 0


def test_a_counter_whose_creation_fails_leaves_no_file_behind(fresh_root: Path, tmp_path: Path) -> None:
    bad = make_folder(
        tmp_path / "bad", [("init", "CREATE TABLE a (x integer);\nINSERT INTO nope VALUES (1);")]
    )
    cache = ConnectionCache(fresh_root, bad, capacity=2, busy_timeout_ms=100)
    with pytest.raises(
        MigrationFailed, match="migration '0000_init' failed at statement 2: no such table: nope"
    ):
        cache.connection("new", create=True)
    assert [p for p in fresh_root.rglob("*") if p.is_file()] == []
    assert not counter_path(fresh_root, "new").exists()


def test_a_new_counter_file_appears_complete_with_no_temporary_left(
    fresh_root: Path, v2_manifest: Manifest
) -> None:
    reports: list[MigrationReport] = []
    cache = ConnectionCache(
        fresh_root, v2_manifest, capacity=2, busy_timeout_ms=100, on_migrated=lambda _c, r: reports.append(r)
    )
    cache.connection("new", create=True)
    [report] = reports
    assert report.applied == ("0000_init", "0001_add_note")
    assert [p.name for p in fresh_root.rglob("*") if p.is_file()] == [counter_path(fresh_root, "new").name]
    conn = open_database(counter_path(fresh_root, "new"), create=False, busy_timeout_ms=100)
    assert read_header(conn) == (APPLICATION_ID, 2)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_without_hard_links_a_new_counter_is_created_in_place(
    fresh_root: Path, v2_manifest: Manifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a file system that refuses hard links (EFS, ext4 and tmpfs have them; some do not)
    import errno
    import os

    from counter_core import create

    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(create, "_links_work", True)
    cache = ConnectionCache(fresh_root, v2_manifest, capacity=2, busy_timeout_ms=100)
    # WHEN counters are created
    cache.connection("a", create=True)
    cache.connection("b", create=True)
    # THEN each file is made in place and migrated under the lock, no temporary is left, and the
    # second creation did not try the link again
    assert create._links_work is False
    for counter_id in ("a", "b"):
        conn = open_database(counter_path(fresh_root, counter_id), create=False, busy_timeout_ms=100)
        assert read_header(conn) == (APPLICATION_ID, 2)
    assert sorted(p.name for p in fresh_root.rglob("*") if p.is_file()) == sorted(
        counter_path(fresh_root, c).name for c in ("a", "b")
    )


def test_a_counter_another_process_links_first_gets_this_write_in_its_file(
    fresh_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a complete counter file that another process links into place after our lookup found none
    import os

    from counter_core import bundled_manifest, create
    from counter_core.store import CounterStore, Increment

    theirs = CounterStore(
        ConnectionCache(tmp_path / "theirs", bundled_manifest(), capacity=2, busy_timeout_ms=100),
        idempotency_ttl_s=60,
    )
    theirs.apply("c", Increment(by=5), request_id=None)
    their_file = counter_path(tmp_path / "theirs", "c")
    real_link = os.link

    def racing_link(src: object, dst: object) -> None:
        real_link(their_file, str(dst))
        real_link(str(src), str(dst))

    monkeypatch.setattr(create.os, "link", racing_link)
    store = CounterStore(
        ConnectionCache(fresh_root, bundled_manifest(), capacity=2, busy_timeout_ms=100), idempotency_ttl_s=60
    )
    # WHEN this process's first touch loses the link THEN its write lands in the winner's file, once
    applied = store.apply("c", Increment(by=1), request_id=None)
    assert applied.outcome is not None and applied.outcome.counter is not None
    assert applied.outcome.counter.value == 6
    assert [p.name for p in fresh_root.rglob("*") if p.is_file()] == [counter_path(fresh_root, "c").name]


def test_a_migration_report_equals_one_that_took_a_different_time() -> None:
    # The time a migration took is not part of what it did (it was a compare=False dataclass field).
    fast = MigrationReport(from_version=1, to_version=2, applied=("0001_add_note",), seconds=0.001)
    slow = MigrationReport(from_version=1, to_version=2, applied=("0001_add_note",), seconds=2.5)
    assert fast == slow and hash(fast) == hash(slow)
    assert fast != MigrationReport(from_version=1, to_version=2, applied=("0001_other",), seconds=0.001)
    assert "seconds=2.5" in repr(slow)
