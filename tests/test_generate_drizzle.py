"""Continue a history that drizzle-kit 0.31.11 generated (tests/fixtures/drizzle, read-only)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import apsw
import pytest

from counter_core.migrate import ensure_current
from tests.generate_support import run, write
from tests.migration_folders import DRIZZLE_FOLDER, FIXTURES
from tools.migrations.folder import read_journal
from tools.migrations.manifest import build_manifest, write_manifest

# The fixture's final schema (source/schema_0003.ts) written as SQL.
DRIZZLE_FINAL = """CREATE TABLE parents (
    id integer PRIMARY KEY NOT NULL,
    name text NOT NULL DEFAULT 'unnamed'
);
CREATE TABLE children (
    id integer PRIMARY KEY NOT NULL,
    parent_id integer NOT NULL REFERENCES parents(id) ON DELETE CASCADE,
    label text,
    note text
);
CREATE INDEX children_parent_id_idx ON children (parent_id);
"""
# The change: a new column with a default (ADD COLUMN) and a default change on parents (a rebuild of
# the parent table whose children cascade on delete).
CHANGED = DRIZZLE_FINAL.replace("note text", "note text,\n    rank integer NOT NULL DEFAULT 0").replace(
    "DEFAULT 'unnamed'", "DEFAULT 'anonymous'"
)


@pytest.fixture
def drizzle_folder(tmp_path: Path) -> Path:
    """A copy of drizzle-kit's migrations folder (0000_init .. 0003_backfill) with our manifest added."""
    folder = tmp_path / "drizzle"
    shutil.copytree(DRIZZLE_FOLDER, folder)
    write_manifest(folder)
    return folder


def test_drizzle_history_checks_against_its_final_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], drizzle_folder: Path
) -> None:
    schema = write(tmp_path / "schema.sql", DRIZZLE_FINAL)
    result = run(capsys, "check", "--schema", schema, "--migrations", drizzle_folder)
    assert result.code == 0, result.err
    nothing = run(capsys, "generate", "--name", "noop", "--schema", schema, "--migrations", drizzle_folder)
    assert nothing.out.startswith("Nothing to do:")


def test_generate_continues_the_drizzle_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], drizzle_folder: Path
) -> None:
    schema = write(tmp_path / "schema.sql", CHANGED)
    result = run(capsys, "generate", "--name", "rank", "--schema", schema, "--migrations", drizzle_folder)
    assert result.code == 0, result.err

    entries = read_journal(drizzle_folder)
    assert [e.tag for e in entries] == [
        "0000_init",
        "0001_rebuild_parents",
        "0002_add_note",
        "0003_backfill",
        "0004_rank",
    ]
    assert entries[4].idx == 4 and entries[4].when > entries[3].when
    last = json.loads((drizzle_folder / "meta" / "0003_snapshot.json").read_text())
    new = json.loads((drizzle_folder / "meta" / "0004_snapshot.json").read_text())
    assert new["prevId"] == last["id"] == "a621a8a6-a23b-4446-aed2-fd630f3f2d00"
    # Drizzle Kit's files are untouched, byte for byte.
    for path in DRIZZLE_FOLDER.rglob("*"):
        if path.is_file() and path.name != "_journal.json":
            assert (drizzle_folder / path.relative_to(DRIZZLE_FOLDER)).read_bytes() == path.read_bytes()
    # Tables in name order, as Drizzle Kit orders them.
    assert (drizzle_folder / "0004_rank.sql").read_text() == (
        "ALTER TABLE `children` ADD `rank` integer DEFAULT 0 NOT NULL;--> statement-breakpoint\n"
        "PRAGMA foreign_keys=OFF;--> statement-breakpoint\n"
        "CREATE TABLE `__new_parents` (\n"
        "\t`id` integer PRIMARY KEY NOT NULL,\n"
        "\t`name` text DEFAULT 'anonymous' NOT NULL\n"
        ");\n"
        "--> statement-breakpoint\n"
        'INSERT INTO `__new_parents`("id", "name") SELECT "id", "name" FROM `parents`;--> statement-breakpoint\n'
        "DROP TABLE `parents`;--> statement-breakpoint\n"
        "ALTER TABLE `__new_parents` RENAME TO `parents`;--> statement-breakpoint\n"
        "PRAGMA foreign_keys=ON;"
    )
    assert run(capsys, "check", "--schema", schema, "--migrations", drizzle_folder).code == 0


def test_the_continued_history_migrates_a_database_drizzle_migrated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], drizzle_folder: Path
) -> None:
    # GIVEN a database drizzle-orm's own migrator brought to 0003, with a parent and two children
    schema = write(tmp_path / "schema.sql", CHANGED)
    assert (
        run(capsys, "generate", "--name", "rank", "--schema", schema, "--migrations", drizzle_folder).code
        == 0
    )
    database = tmp_path / "counter.sqlite3"
    shutil.copyfile(FIXTURES / "drizzle" / "drizzle_migrated_all.sqlite3", database)
    conn = apsw.Connection(str(database))
    conn.execute("PRAGMA foreign_keys=ON")
    # WHEN the engine adopts Drizzle's history and applies the generated 0004
    report = ensure_current(conn, build_manifest(drizzle_folder), label="drizzle")
    # THEN the parent rebuild kept every child row, and the new column has its default
    assert report is not None and report.applied == ("0004_rank",)
    assert conn.execute("SELECT id, parent_id, label, note, rank FROM children ORDER BY id").fetchall() == [
        (1, 1, "first", "hello", 0),
        (2, 1, "second", None, 0),
    ]
    assert conn.execute("SELECT id, name FROM parents").fetchall() == [(1, "alice")]
