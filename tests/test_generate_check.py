"""`check`: CI's guard over a migrations folder and the schema file, including the project's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.generate_support import empty_folder, run, write
from tools.migrations.folder import DEFAULT_FOLDER
from tools.migrations.generate import DEFAULT_SCHEMA

SCHEMA = "CREATE TABLE t (\n    id INTEGER PRIMARY KEY NOT NULL,\n    a TEXT\n);\n"


def stale_hint(folder: Path, schema: Path) -> str:
    return (
        "check failed - fix the errors above and run"
        f" `python -m tools.migrations check --migrations {folder} --schema {schema}` again."
    )


@pytest.fixture
def generated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """(folder, schema): two generated migrations that match the schema file."""
    folder = empty_folder(tmp_path / "migrations")
    schema = write(tmp_path / "schema.sql", SCHEMA)
    assert run(capsys, "generate", "--name", "init", "--schema", schema, "--migrations", folder).code == 0
    write(schema, SCHEMA + "CREATE INDEX t_a ON t (a);\n")
    assert run(capsys, "generate", "--name", "index", "--schema", schema, "--migrations", folder).code == 0
    return folder, schema


def test_the_projects_generated_folder_passes_check(capsys: pytest.CaptureFixture[str]) -> None:
    """generated/ is the output of `generate` for counter_core/schema.sql, and nothing is pending."""
    result = run(capsys, "check")
    assert result.code == 0, result.err
    assert result.out.startswith("check passed:")
    assert (DEFAULT_FOLDER / "0000_init.sql").exists() and DEFAULT_SCHEMA.exists()


def test_check_passes(capsys: pytest.CaptureFixture[str], generated: tuple[Path, Path]) -> None:
    folder, schema = generated
    result = run(capsys, "check", "--schema", schema, "--migrations", folder)
    assert (result.code, result.err) == (0, "")
    assert result.out == (
        f"check passed: 2 migration(s) in {folder}: journal, files, snapshot chain and manifest agree,"
        f" {schema} has no changes left to generate, and replaying the migrations gives it.\n"
    )


def test_pending_schema_change_fails(
    capsys: pytest.CaptureFixture[str], generated: tuple[Path, Path]
) -> None:
    folder, schema = generated
    write(schema, SCHEMA.replace("a TEXT", "a TEXT,\n    b INTEGER"))
    result = run(capsys, "check", "--schema", schema, "--migrations", folder)
    assert result.code == 1
    lines = result.err.splitlines()
    assert any(line.startswith("+") and '"b": {' in line for line in lines)
    assert lines[-2:] == [
        f"error: {schema} has changes that no migration makes yet (difference above)"
        " - run `python -m tools.migrations generate --name <what_changed>"
        f" --migrations {folder} --schema {schema}`",
        stale_hint(folder, schema),
    ]


def test_stale_manifest_fails(capsys: pytest.CaptureFixture[str], generated: tuple[Path, Path]) -> None:
    folder, schema = generated
    write(folder / "manifest.json", '{"format": 1, "migrations": []}\n')
    result = run(capsys, "check", "--schema", schema, "--migrations", folder)
    assert (result.code, result.err.splitlines()) == (
        1,
        [
            f"error: {folder}/manifest.json is stale - run `python -m tools.migrations manifest --migrations {folder}`"
            " and commit it",
            stale_hint(folder, schema),
        ],
    )


def test_hand_edited_migration_fails_replay(
    capsys: pytest.CaptureFixture[str], generated: tuple[Path, Path]
) -> None:
    folder, schema = generated
    write(folder / "0001_index.sql", "CREATE INDEX `t_a` ON `t` (`a`, `id`);")
    assert run(capsys, "manifest", "--migrations", folder).code == 0
    result = run(capsys, "check", "--schema", schema, "--migrations", folder)
    assert result.code == 1
    assert result.err.splitlines()[-2:] == [
        "error: replaying the migrations does not give meta/0001_snapshot.json (difference above) - a migration was"
        " edited by hand or a custom migration changes the schema; restore it, and put schema changes in the"
        " schema file",
        stale_hint(folder, schema),
    ]


def test_failing_migration_fails_replay(
    capsys: pytest.CaptureFixture[str], generated: tuple[Path, Path]
) -> None:
    folder, schema = generated
    write(folder / "0001_index.sql", "CREATE INDEX `t_a` ON `missing` (`a`);")
    assert run(capsys, "manifest", "--migrations", folder).code == 0
    result = run(capsys, "check", "--schema", schema, "--migrations", folder)
    assert result.code == 1
    assert result.err.splitlines()[0] == (
        "error: replaying the migrations onto an empty database failed: the verification database: migration"
        " '0001_index' failed at statement 1: no such table: main.missing - the database is unchanged;"
        " fix the migration and redeploy"
    )


def test_broken_snapshot_chain_is_bad_input(
    capsys: pytest.CaptureFixture[str], generated: tuple[Path, Path]
) -> None:
    folder, schema = generated
    path = folder / "meta" / "0001_snapshot.json"
    snapshot = json.loads(path.read_text())
    snapshot["prevId"] = "ffffffff-ffff-4fff-8fff-ffffffffffff"
    path.write_text(json.dumps(snapshot))
    write(folder / "meta" / "0007_snapshot.json", "{}")
    result = run(capsys, "check", "--schema", schema, "--migrations", folder)
    assert result.code == 2
    first_id = json.loads((folder / "meta" / "0000_snapshot.json").read_text())["id"]
    assert result.err.splitlines() == [
        "error: meta/0001_snapshot.json: prevId is 'ffffffff-ffff-4fff-8fff-ffffffffffff', expected"
        f" '{first_id}' (the id of the snapshot before) - the snapshot chain is broken; restore the snapshots"
        " from version control",
        "error: meta/0007_snapshot.json: no journal entry has this snapshot - delete it or restore the entry",
        f"2 problem(s) in {folder} - fix them and run the command again.",
    ]


def test_orphan_sql_file_is_bad_input(
    capsys: pytest.CaptureFixture[str], generated: tuple[Path, Path]
) -> None:
    folder, schema = generated
    write(folder / "0002_orphan.sql", "SELECT 1;")
    result = run(capsys, "check", "--schema", schema, "--migrations", folder)
    assert result.code == 2
    assert "error: 0002_orphan.sql:1: not in meta/_journal.json" in result.err
