"""Interop with what Drizzle Kit and Drizzle's migrator really produced (tests/fixtures/drizzle/README.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import apsw
import pytest

from counter_core import AdoptionRefused, MigrationDrift, ensure_current, open_database
from counter_core.migrate import APPLICATION_ID, applied_migrations, read_header
from tests.migration_folders import FIXTURES, copy_drizzle_folder

DRIZZLE_DBS = FIXTURES / "drizzle"


def _copy_db(name: str, target: Path) -> apsw.Connection:
    shutil.copyfile(DRIZZLE_DBS / name, target)
    return open_database(target, create=False, busy_timeout_ms=1000)


def test_a_drizzle_kit_folder_applies_from_scratch(tmp_path: Path) -> None:
    manifest = copy_drizzle_folder(tmp_path / "migrations")
    assert [m.foreign_keys_off for m in manifest.migrations] == [False, True, False, False]
    conn = open_database(tmp_path / "c.sqlite3", create=True, busy_timeout_ms=1000)
    report = ensure_current(conn, manifest, label="c")
    assert report is not None and len(report.applied) == 4
    columns = [row[1] for row in conn.execute("PRAGMA table_info(children)")]
    assert columns == ["id", "parent_id", "label", "note"]
    assert conn.execute(
        "SELECT dflt_value FROM pragma_table_info('parents') WHERE name = 'name'"
    ).fetchone() == ("'unnamed'",)


def test_drizzles_rebuild_keeps_child_rows_under_this_engine(tmp_path: Path) -> None:
    # GIVEN a counter at Drizzle's 0000 with a parent and two children, foreign keys on
    first = copy_drizzle_folder(tmp_path / "first", keep=1)
    conn = open_database(tmp_path / "c.sqlite3", create=True, busy_timeout_ms=1000)
    ensure_current(conn, first, label="c")
    conn.execute(
        "INSERT INTO parents VALUES (1, 'p'); INSERT INTO children (id, parent_id) VALUES (1, 1), (2, 1)"
    )
    # WHEN Drizzle's 0001 rebuilds `parents` (children reference it ON DELETE CASCADE)
    ensure_current(conn, copy_drizzle_folder(tmp_path / "all"), label="c")
    # THEN no child row was cascade-deleted
    assert conn.execute("SELECT count(*) FROM children").fetchone() == (2,)


def test_a_database_migrated_by_drizzle_is_adopted_not_rerun(tmp_path: Path) -> None:
    # GIVEN a database Drizzle's migrator brought to 0001, with rows, and a bundle holding 0000..0003
    manifest = copy_drizzle_folder(tmp_path / "migrations")
    conn = _copy_db("drizzle_migrated_0001.sqlite3", tmp_path / "c.sqlite3")
    rows_before = conn.execute("SELECT * FROM children ORDER BY id").fetchall()
    assert rows_before
    # WHEN the engine opens it
    report = ensure_current(conn, manifest, label="c")
    # THEN Drizzle's two are recorded (verified by their hashes), the rest applied, no row lost
    assert report is not None
    assert report.adopted == ("0000_init", "0001_rebuild_parents")
    assert report.applied == ("0002_add_note", "0003_backfill")
    assert read_header(conn) == (APPLICATION_ID, 4)
    assert [r.sha256 for r in applied_migrations(conn)] == [m.sha256 for m in manifest.migrations]
    assert [row[:3] for row in conn.execute("SELECT * FROM children ORDER BY id")] == [
        r[:3] for r in rows_before
    ]


def test_a_fully_migrated_drizzle_database_is_adopted_whole(tmp_path: Path) -> None:
    manifest = copy_drizzle_folder(tmp_path / "migrations")
    conn = _copy_db("drizzle_migrated_all.sqlite3", tmp_path / "c.sqlite3")
    report = ensure_current(conn, manifest, label="c")
    assert report is not None and len(report.adopted) == 4 and report.applied == ()
    assert ensure_current(conn, manifest, label="c") is None


def test_durable_sqlite_records_with_empty_hashes_are_adopted_by_timestamp(tmp_path: Path) -> None:
    manifest = copy_drizzle_folder(tmp_path / "migrations")
    conn = _copy_db("drizzle_migrated_0001.sqlite3", tmp_path / "c.sqlite3")
    conn.execute("UPDATE __drizzle_migrations SET hash = ''")  # what Drizzle's durable-sqlite migrator stores
    report = ensure_current(conn, manifest, label="c")
    assert report is not None and report.adopted == ("0000_init", "0001_rebuild_parents")


def test_a_drizzle_hash_that_differs_is_drift(tmp_path: Path) -> None:
    manifest = copy_drizzle_folder(tmp_path / "migrations")
    conn = _copy_db("drizzle_migrated_0001.sqlite3", tmp_path / "c.sqlite3")
    conn.execute(
        "UPDATE __drizzle_migrations SET hash = 'abc' WHERE created_at = ?", (manifest.migrations[1].when,)
    )
    with pytest.raises(MigrationDrift) as caught:
        ensure_current(conn, manifest, label="c")
    assert str(caught.value) == (
        f"c: Drizzle applied '0001_rebuild_parents' with sha256 abc but this bundle has sha256"
        f" {manifest.migrations[1].sha256} - restore the original migration file"
    )
    assert read_header(conn) == (0, 0)


def test_a_drizzle_history_with_a_gap_is_refused(tmp_path: Path) -> None:
    # GIVEN Drizzle's timestamp logic skipped 0001 (merged with an older `when`) but applied 0002
    manifest = copy_drizzle_folder(tmp_path / "migrations")
    conn = _copy_db("drizzle_migrated_all.sqlite3", tmp_path / "c.sqlite3")
    conn.execute(
        "DELETE FROM __drizzle_migrations WHERE created_at IN (?, ?)",
        (manifest.migrations[1].when, manifest.migrations[3].when),
    )
    with pytest.raises(AdoptionRefused) as caught:
        ensure_current(conn, manifest, label="c")
    assert str(caught.value) == (
        "c: Drizzle applied ['0000_init', '0002_add_note'] but skipped ['0001_rebuild_parents'] (its migrator skips a"
        " migration whose `when` is older than the last applied one) - apply the skipped migration by hand, then retry"
    )


def test_a_drizzle_record_this_bundle_does_not_know_is_refused(tmp_path: Path) -> None:
    manifest = copy_drizzle_folder(tmp_path / "migrations", keep=2)
    conn = _copy_db("drizzle_migrated_all.sqlite3", tmp_path / "c.sqlite3")
    with pytest.raises(
        AdoptionRefused, match="records a migration created at 1795576935181 that this bundle does not have"
    ):
        ensure_current(conn, manifest, label="c")
