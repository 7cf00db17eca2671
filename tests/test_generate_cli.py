"""`generate`: what it writes, bad input (exit 2), custom migrations, and its self-verification (exit 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.generate_support import empty_folder, files, run, write
from tools.migrations import diff as schema_diff
from tools.migrations.diff import Renames
from tools.migrations.folder import read_journal
from tools.migrations.generate import Request, generate
from tools.migrations.snapshot import ZERO_ID

SCHEMA = """CREATE TABLE parents (
    id INTEGER PRIMARY KEY NOT NULL,
    name TEXT
);
CREATE TABLE children (
    id INTEGER PRIMARY KEY NOT NULL,
    parent_id INTEGER NOT NULL REFERENCES parents(id) ON DELETE CASCADE
);
CREATE TABLE history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    op TEXT NOT NULL
);
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An empty migrations folder (journal without entries, empty manifest)."""
    return empty_folder(tmp_path / "migrations")


def test_first_migration_writes_sql_snapshot_journal_and_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: Path
) -> None:
    schema = write(tmp_path / "schema.sql", SCHEMA)
    result = run(capsys, "generate", "--name", "init", "--schema", schema, "--migrations", folder)
    assert result.code == 0, result.err
    assert result.out == (
        f"Wrote {folder}/0000_init.sql (3 statement(s)), {folder}/meta/0000_snapshot.json, the journal entry"
        f" and {folder}/manifest.json.\n"
        "0000_init: additive\n"
        "  - creates table `children`\n"
        "  - creates table `history`\n"
        "  - creates table `parents`\n"
        "  rollout: old instances keep serving the files it migrates\n"
        f"Next: review the SQL, run `python -m tools.migrations check --migrations {folder} --schema {schema}`,"
        " and commit it with the schema file.\n"
    )
    [entry] = read_journal(folder)
    assert (entry.idx, entry.tag, entry.breakpoints, entry.version) == (0, "0000_init", True, "6")
    snapshot = json.loads((folder / "meta" / "0000_snapshot.json").read_text())
    assert list(snapshot) == [
        "version",
        "dialect",
        "id",
        "prevId",
        "tables",
        "views",
        "enums",
        "_meta",
        "internal",
    ]
    assert snapshot["prevId"] == ZERO_ID
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [m["tag"] for m in manifest["migrations"]] == ["0000_init"]


def test_nothing_to_do_says_so_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: Path
) -> None:
    schema = write(tmp_path / "schema.sql", SCHEMA)
    assert run(capsys, "generate", "--name", "init", "--schema", schema, "--migrations", folder).code == 0
    before = files(folder)
    result = run(capsys, "generate", "--name", "again", "--schema", schema, "--migrations", folder)
    assert (result.code, result.err) == (0, "")
    assert (
        result.out == f"Nothing to do: {schema} has no changes since the last migration - nothing written.\n"
    )
    assert files(folder) == before


def test_when_strictly_increases_even_if_the_clock_goes_back(tmp_path: Path, folder: Path) -> None:
    schema = write(tmp_path / "schema.sql", SCHEMA)
    assert generate(Request(folder, schema, "init"), now_ms=lambda: 5_000) == 0
    write(schema, SCHEMA + "CREATE INDEX history_op ON history (op);\n")
    assert generate(Request(folder, schema, "index"), now_ms=lambda: 1_000) == 0
    assert [e.when for e in read_journal(folder)] == [5_000, 5_001]


def test_snapshots_chain_by_prev_id(tmp_path: Path, folder: Path) -> None:
    schema = write(tmp_path / "schema.sql", SCHEMA)
    ids = iter(["11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"])
    assert generate(Request(folder, schema, "init"), new_id=lambda: next(ids)) == 0
    write(schema, SCHEMA.replace("name TEXT", "name TEXT,\n    born INTEGER"))
    assert generate(Request(folder, schema, "born"), new_id=lambda: next(ids)) == 0
    second = json.loads((folder / "meta" / "0001_snapshot.json").read_text())
    assert (second["id"], second["prevId"]) == ids_pair("2", "1")


def ids_pair(new: str, prev: str) -> tuple[str, str]:
    def make(d: str) -> str:
        return f"{d * 8}-{d * 4}-4{d * 3}-8{d * 3}-{d * 12}"

    return make(new), make(prev)


def test_custom_migration_is_a_comment_and_carries_the_snapshot_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: Path
) -> None:
    schema = write(tmp_path / "schema.sql", SCHEMA)
    assert run(capsys, "generate", "--name", "init", "--schema", schema, "--migrations", folder).code == 0
    result = run(
        capsys, "generate", "--custom", "--name", "backfill", "--schema", schema, "--migrations", folder
    )
    assert result.code == 0, result.err
    assert result.out.endswith(
        f"Next: write the data change into {folder}/0001_backfill.sql, then run"
        f" `python -m tools.migrations check --migrations {folder} --schema {schema}`.\n"
    )
    assert (
        folder / "0001_backfill.sql"
    ).read_text() == "-- Custom SQL migration file, put your code below! --"
    first = json.loads((folder / "meta" / "0000_snapshot.json").read_text())
    custom = json.loads((folder / "meta" / "0001_snapshot.json").read_text())
    assert list(custom)[:2] == ["id", "prevId"]  # Drizzle Kit's key order for a custom snapshot
    assert custom["prevId"] == first["id"] != custom["id"]
    assert {k: v for k, v in custom.items() if k not in ("id", "prevId")} == {
        k: v for k, v in first.items() if k not in ("id", "prevId")
    }
    # A hand-written data change keeps the history consistent.
    write(folder / "0001_backfill.sql", "UPDATE parents SET name = 'x' WHERE name IS NULL;")
    assert run(capsys, "manifest", "--migrations", folder).code == 0
    assert run(capsys, "check", "--schema", schema, "--migrations", folder).code == 0


def test_custom_migration_may_be_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: Path
) -> None:
    result = run(capsys, "generate", "--custom", "--name", "seed", "--migrations", folder)
    assert result.code == 0, result.err
    snapshot = json.loads((folder / "meta" / "0000_snapshot.json").read_text())
    assert (snapshot["prevId"], snapshot["tables"]) == (ZERO_ID, {})


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--name", "bad name"],
            "error: --name 'bad name': use letters, digits, '_' and '-' (it becomes part of the file name)\n"
            "1 problem(s) - fix them and run the command again.\n",
        ),
        (
            ["--name", "x", "--rename", "t.a", "--rename-table", "foo"],
            "error: --rename-table 'foo': expected OLD=NEW with two different table names\n"
            "error: --rename 't.a': expected TABLE.OLD=NEW, e.g. --rename counter_history.amount=delta\n"
            "fix the flags and run the command again.\n",
        ),
        (
            ["--name", "x", "--rename", "t.a=b", "--rename", "t.a=c"],
            "error: --rename 't.a=c': column `t`.`a` is renamed twice - declare it once\n"
            "fix the flags and run the command again.\n",
        ),
    ],
)
def test_bad_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: Path, args: list[str], expected: str
) -> None:
    schema = write(tmp_path / "schema.sql", SCHEMA)
    result = run(capsys, "generate", *args, "--schema", schema, "--migrations", folder)
    assert (result.code, result.err) == (2, expected)
    assert read_journal(folder) == []


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (
            ["--rename-table", "nope=kids"],
            "--rename-table nope=kids: table `nope` is not in the last snapshot - tables there: children, history,"
            " parents",
        ),
        (
            ["--rename-table", "children=missing"],
            "--rename-table children=missing: table `missing` is not in {schema} - tables there: children,"
            " history, parents",
        ),
        (
            ["--rename-table", "children=parents"],
            "--rename-table children=parents: table `parents` is already in the last snapshot and keeps its name - to"
            " move it aside in the same step, declare that too (--rename-table parents=OTHER_NAME), else remove the"
            " flag",
        ),
        (
            ["--rename", "nope.a=b"],
            "--rename nope.a=b: table `nope` is not in both the last snapshot and {schema} - tables in both:"
            " children, history, parents",
        ),
        (
            ["--rename", "parents.zz=name"],
            "--rename parents.zz=name: `parents` has no column `zz` in the last snapshot - columns: id, name",
        ),
        (
            ["--rename", "parents.name=zz"],
            "--rename parents.name=zz: `parents` has no column `zz` in {schema} - columns: id, name",
        ),
        (
            ["--rename", "parents.id=name"],
            "--rename parents.id=name: `parents` already has a column `name` in the last snapshot and it keeps its"
            " name - to move it aside in the same step, declare that too (--rename parents.name=OTHER_NAME), else"
            " remove the flag",
        ),
    ],
)
def test_renames_that_do_not_fit_the_schemas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: Path, flags: list[str], problem: str
) -> None:
    schema = write(tmp_path / "schema.sql", SCHEMA)
    assert run(capsys, "generate", "--name", "init", "--schema", schema, "--migrations", folder).code == 0
    result = run(capsys, "generate", "--name", "x", "--schema", schema, "--migrations", folder, *flags)
    assert result.code == 2
    assert result.err == (
        f"error: {problem.format(schema=schema)}\n1 problem(s) - fix them and run the command again.\n"
    )


@pytest.mark.parametrize(
    ("sql", "problems"),
    [
        (
            "CREATE TABLE t (id INTEGER PRIMARY KEY);\nINSERT INTO t VALUES (1);\nCREATE VIEW v AS SELECT 1;\n"
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END;\nCREATE TABLE oops (;\n",
            [
                "{schema}:2: INSERT does not belong in the schema file: it holds only CREATE TABLE and CREATE INDEX"
                " statements - put data changes in a custom migration"
                " (`python -m tools.migrations generate --custom --name NAME`)",
                "{schema}:3: CREATE VIEW is not supported - the generator supports tables, columns, indexes,"
                " primary, foreign, unique and check constraints",
                "{schema}:4: CREATE TRIGGER is not supported - the generator supports tables, columns, indexes,"
                " primary, foreign, unique and check constraints",
                '{schema}:5: near ";": syntax error - fix the statement',
            ],
        ),
        (
            "CREATE TABLE t (\n  id INTEGER PRIMARY KEY,\n  a TEXT COLLATE NOCASE,\n  b AS (id + 1),\n"
            "  c REFERENCES missing(a),\n  d INTEGER DEFERRABLE,\n  CONSTRAINT k UNIQUE (a DESC) ON CONFLICT REPLACE,\n"
            "  CHECK (a COLLATE NOCASE <> 'x')\n);\n"
            "CREATE TABLE s (id INTEGER PRIMARY KEY) STRICT;\nCREATE TABLE w (id INTEGER PRIMARY KEY) WITHOUT ROWID;\n"
            "CREATE TABLE __new_x (id);\nCREATE TABLE e (a INTEGER);\nCREATE INDEX e_expr ON e (a + 1);\n",
            [
                "{schema}: table name `__new_x` starts with `__new_`, which table rebuilds use - rename the table",
                "{schema}: table `s` is STRICT, which is not supported - remove STRICT",
                "{schema}: table `w` is WITHOUT ROWID, which is not supported - remove WITHOUT ROWID",
                "{schema}: table `e`: index `e_expr` uses an expression, DESC or COLLATE, which the generator does"
                " not support - index plain columns",
                "{schema}: table `t`: column `a` uses COLLATE, which the generator does not support - remove it",
                "{schema}: table `t`: column `d` uses DEFERRABLE, which the generator does not support - remove it",
                "{schema}: table `t`: a table constraint uses DESC and ON CONFLICT, which the generator does not"
                " support - remove it",
                "{schema}: table `t`: generated column `b` is not supported - store the value instead",
                "{schema}: table `t`: foreign key references table `missing`, which the schema does not define"
                " - add it",
            ],
        ),
        (
            "CREATE TABLE __migrations (id INTEGER PRIMARY KEY);\n",
            ["{schema}: table name `__migrations` is reserved for the migration engine - rename the table"],
        ),
        (
            "CREATE TABLE p (id INTEGER PRIMARY KEY, a TEXT);\nCREATE TABLE c (id INTEGER PRIMARY KEY,"
            " pa TEXT REFERENCES p(a));\n",
            [
                '{schema}: foreign key mismatch - "c" referencing "p" - a foreign key must reference the'
                " parent's primary key or unique columns"
            ],
        ),
    ],
    ids=["statements", "features", "reserved", "fk-mismatch"],
)
def test_schema_file_problems_are_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: Path, sql: str, problems: list[str]
) -> None:
    schema = write(tmp_path / "schema.sql", sql)
    result = run(capsys, "generate", "--name", "x", "--schema", schema, "--migrations", folder)
    assert result.code == 2
    expected = [f"error: {p.format(schema=schema)}" for p in problems]
    assert result.err.splitlines() == [
        *expected,
        f"{len(problems)} problem(s) - fix them and run the command again.",
    ]
    assert read_journal(folder) == []


def test_missing_schema_file_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: Path
) -> None:
    missing = tmp_path / "nope.sql"
    result = run(capsys, "generate", "--name", "x", "--schema", missing, "--migrations", folder)
    assert (result.code, result.err) == (
        2,
        f"error: {missing}: cannot be read (No such file or directory) - pass the schema file with --schema\n"
        "1 problem(s) - fix them and run the command again.\n",
    )


def test_inconsistent_folder_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: Path
) -> None:
    schema = write(tmp_path / "schema.sql", SCHEMA)
    assert run(capsys, "generate", "--name", "init", "--schema", schema, "--migrations", folder).code == 0
    (folder / "meta" / "0000_snapshot.json").unlink()
    result = run(capsys, "generate", "--name", "x", "--schema", schema, "--migrations", folder)
    assert result.code == 2
    assert result.err == (
        "error: meta/0000_snapshot.json: missing for journal entry '0000_init' - restore it from version control"
        " (every migration needs the snapshot of the schema after it)\n"
        f"1 problem(s) in {folder} - fix them and run the command again.\n"
    )


def test_verification_failure_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: Path
) -> None:
    # GIVEN a custom migration that changed the schema behind the snapshots' back
    schema = write(tmp_path / "schema.sql", SCHEMA)
    assert run(capsys, "generate", "--name", "init", "--schema", schema, "--migrations", folder).code == 0
    assert run(capsys, "generate", "--custom", "--name", "sneaky", "--migrations", folder).code == 0
    write(folder / "0001_sneaky.sql", "CREATE TABLE sneaky (id INTEGER PRIMARY KEY);")
    assert run(capsys, "manifest", "--migrations", folder).code == 0
    before = files(folder)
    # WHEN the next migration is generated
    write(schema, SCHEMA + "CREATE INDEX history_op ON history (op);\n")
    result = run(capsys, "generate", "--name", "index", "--schema", schema, "--migrations", folder)
    # THEN replay shows the extra table, and nothing is written
    assert result.code == 1
    assert '+  "sneaky": {' not in result.err and '-  "sneaky": {' in result.err
    assert result.err.splitlines()[-2:] == [
        f"error: replaying the migrations does not give {schema} (difference above)",
        "verification failed - nothing was written. If a custom migration changes the schema, move that change into"
        " the schema file; otherwise report a generator bug with the schema file and the last snapshot.",
    ]
    assert files(folder) == before


def _rebuild_without_foreign_keys_off(before: schema_diff.Table, after: schema_diff.Table) -> list[str]:
    return [s for s in ORIGINAL_REBUILD(before, after) if not s.startswith("PRAGMA foreign_keys")]


def _rebuild_without_sequence(before: schema_diff.Table, after: schema_diff.Table) -> list[str]:
    return [s for s in ORIGINAL_REBUILD(before, after) if "sqlite_sequence" not in s]


ORIGINAL_REBUILD = schema_diff._rebuild


@pytest.mark.parametrize(
    ("sabotage", "change", "problem"),
    [
        (
            # Drizzle's own bug: without foreign keys off, DROP TABLE parents cascades into children.
            _rebuild_without_foreign_keys_off,
            ("name TEXT", "name TEXT NOT NULL DEFAULT ''"),
            "error: table `children`: 3 row(s) before, 0 after; values of unchanged columns ['id', 'parent_id'] lost,"
            " e.g. [(1, 1), (2, 2), (3, 3)]",
        ),
        (
            _rebuild_without_sequence,
            ("op TEXT NOT NULL", "op TEXT NOT NULL DEFAULT ''"),
            "error: table `history`: AUTOINCREMENT sequence was 1003, is 3 after the migration (ids of deleted rows"
            " would be reused)",
        ),
    ],
    ids=["cascade", "sequence"],
)
def test_verification_catches_data_loss(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    sabotage: object,
    change: tuple[str, str],
    problem: str,
) -> None:
    schema = write(tmp_path / "schema.sql", SCHEMA)
    assert run(capsys, "generate", "--name", "init", "--schema", schema, "--migrations", folder).code == 0
    before = files(folder)
    monkeypatch.setattr(schema_diff, "_rebuild", sabotage)
    write(schema, SCHEMA.replace(*change))
    result = run(capsys, "generate", "--name", "change", "--schema", schema, "--migrations", folder)
    assert result.code == 1
    assert problem in result.err.splitlines()
    assert files(folder) == before


def test_renames_reach_the_data_check(tmp_path: Path, folder: Path) -> None:
    schema = write(tmp_path / "schema.sql", SCHEMA)
    assert generate(Request(folder, schema, "init")) == 0
    write(
        schema,
        SCHEMA.replace("TABLE parents", "TABLE owners")
        .replace("parents(id)", "owners(id)")
        .replace("name TEXT", "title TEXT"),
    )
    renames = Renames(tables={"parents": "owners"}, columns={("owners", "name"): "title"})
    assert generate(Request(folder, schema, "rename", renames=renames)) == 0
    assert (folder / "0001_rename.sql").read_text() == (
        "ALTER TABLE `parents` RENAME TO `owners`;--> statement-breakpoint\n"
        "ALTER TABLE `owners` RENAME COLUMN `name` TO `title`;"
    )


def test_a_table_that_cannot_be_seeded_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: Path
) -> None:
    # GIVEN a table whose CHECK no synthesized value satisfies
    schema = write(tmp_path / "schema.sql", "CREATE TABLE t (a TEXT NOT NULL CHECK (a = 'exact'));\n")
    assert run(capsys, "generate", "--name", "init", "--schema", schema, "--migrations", folder).code == 0
    # WHEN it changes
    write(schema, "CREATE TABLE t (a TEXT NOT NULL CHECK (a = 'exact'), b TEXT);\n")
    result = run(capsys, "generate", "--name", "b", "--schema", schema, "--migrations", folder)
    # THEN the migration is written, and the data check says what it could not check
    assert result.code == 0
    assert result.err == (
        "warning: table `t` could not be given a row (CHECK constraint failed: t_a_check), so its data was not"
        " checked\n"
    )
