"""Racing cold starts, with real processes on one real file."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import apsw

from tests.migration_folders import make_folder
from tests.processes import cache_cold_start, cold_start

PROCESSES = 8


def test_eight_cold_starts_on_one_new_counter_apply_each_migration_exactly_once(tmp_path: Path) -> None:
    # GIVEN migrations whose double application would show: each inserts a row into a log table
    folder = tmp_path / "migrations"
    make_folder(
        folder,
        [
            (
                "init",
                "CREATE TABLE log (tag text NOT NULL);--> statement-breakpoint\nINSERT INTO log VALUES ('0000');",
            ),
            ("second", "INSERT INTO log VALUES ('0001');"),
            (
                "third",
                "ALTER TABLE log ADD `n` integer;--> statement-breakpoint\nINSERT INTO log VALUES ('0002', 3);",
            ),
        ],
    )
    path = tmp_path / "ab" / "cd" / "shared.sqlite3"
    context = multiprocessing.get_context("spawn")
    barrier = context.Manager().Barrier(PROCESSES)
    # WHEN eight processes open the same new file at the same moment
    with context.Pool(PROCESSES) as pool:
        results = pool.starmap(cold_start, [(str(path), str(folder), barrier)] * PROCESSES)
    # THEN exactly one applied all three, the others found nothing to do, and each ran once
    assert sorted(results, key=len) == [()] * (PROCESSES - 1) + [("0000_init", "0001_second", "0002_third")]
    conn = apsw.Connection(str(path))
    assert conn.execute("SELECT tag FROM log ORDER BY rowid").fetchall() == [("0000",), ("0001",), ("0002",)]
    assert conn.execute("SELECT idx FROM __migrations ORDER BY idx").fetchall() == [(0,), (1,), (2,)]
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_eight_processes_creating_one_counter_link_exactly_one_complete_file(tmp_path: Path) -> None:
    # GIVEN eight cold starts about to create the same counter through the connection cache
    folder = tmp_path / "migrations"
    make_folder(
        folder,
        [("init", "CREATE TABLE log (tag text NOT NULL);"), ("seed", "INSERT INTO log VALUES ('0001');")],
    )
    root = tmp_path / "counters"
    context = multiprocessing.get_context("spawn")
    barrier = context.Manager().Barrier(PROCESSES)
    with context.Pool(PROCESSES) as pool:
        results = pool.starmap(cache_cold_start, [(str(root), str(folder), barrier)] * PROCESSES)
    # THEN one file won the link, every process wrote into that same file, and no temporary is left
    assert results.count(("0000_init", "0001_seed")) >= 1
    [path] = [p for p in root.rglob("*") if p.is_file()]
    assert path.name.endswith(".sqlite3")
    conn = apsw.Connection(str(path))
    assert conn.execute("SELECT count(*) FROM log WHERE tag = '0001'").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM log WHERE tag = 'hello'").fetchone() == (PROCESSES,)
    assert conn.execute("SELECT idx FROM __migrations").fetchall() == [(0,), (1,)]
