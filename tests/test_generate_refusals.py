"""Every refusal of `generate`, with its exact message, its exit code, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.generate_support import Result, empty_folder, files, run, write

BEFORE = """CREATE TABLE t (
    id INTEGER PRIMARY KEY NOT NULL,
    a TEXT,
    u TEXT UNIQUE
);
CREATE TABLE gone (id INTEGER PRIMARY KEY);
"""
NO_DATA_LOSS_HINT = (
    "if a table or column was renamed, declare it with --rename-table OLD=NEW or --rename TABLE.OLD=NEW;"
    " if the data may go, run again with --allow-data-loss."
)


@pytest.fixture
def generated_before(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A migrations folder holding one migration: tables `t` (id, a, u UNIQUE) and `gone`."""
    folder = empty_folder(tmp_path / "migrations")
    result = run(
        capsys,
        "generate",
        "--name",
        "before",
        "--schema",
        write(tmp_path / "b.sql", BEFORE),
        "--migrations",
        folder,
    )
    assert result.code == 0, result.err
    return folder


def generate_after(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: Path, schema: str, *flags: str
) -> tuple[Result, Path]:
    after = write(tmp_path / "after.sql", schema)
    before = files(folder)
    result = run(capsys, "generate", "--name", "after", "--schema", after, "--migrations", folder, *flags)
    if result.code != 0:
        assert files(folder) == before, "a refused generate must write nothing"
    return result, after


def test_drop_table_is_refused_without_allow_data_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], generated_before: Path
) -> None:
    schema = BEFORE.replace("CREATE TABLE gone (id INTEGER PRIMARY KEY);\n", "")
    result, _ = generate_after(tmp_path, capsys, generated_before, schema)
    assert result.code == 3
    assert result.err == (
        "error: table `gone` would be dropped with all its rows\n"
        f"refused: nothing written - {NO_DATA_LOSS_HINT}\n"
    )


def test_drop_column_is_refused_without_allow_data_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], generated_before: Path
) -> None:
    result, _ = generate_after(tmp_path, capsys, generated_before, BEFORE.replace("    a TEXT,\n", ""))
    assert result.code == 3
    assert result.err == (
        f"error: column `t`.`a` would be dropped\nrefused: nothing written - {NO_DATA_LOSS_HINT}\n"
    )


def test_rebuild_that_discards_a_column_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], generated_before: Path
) -> None:
    # GIVEN `u` has a UNIQUE constraint, which ALTER TABLE DROP COLUMN cannot drop
    schema = BEFORE.replace(",\n    u TEXT UNIQUE", "").replace("a TEXT", "a TEXT NOT NULL DEFAULT ''")
    # WHEN it goes away
    result, _ = generate_after(tmp_path, capsys, generated_before, schema)
    # THEN the rebuild that would discard it is refused, with the warning about the tightened column
    assert result.code == 3
    assert result.err == (
        "warning: column `t`.`a` becomes NOT NULL: the migration fails on databases where it holds NULL"
        " - backfill it in a custom migration first\n"
        "error: rebuilding table `t` would discard column `u`\n"
        f"refused: nothing written - {NO_DATA_LOSS_HINT}\n"
    )


def test_allow_data_loss_writes_what_was_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], generated_before: Path
) -> None:
    schema = BEFORE.replace("    a TEXT,\n", "").replace("CREATE TABLE gone (id INTEGER PRIMARY KEY);\n", "")
    result, _ = generate_after(tmp_path, capsys, generated_before, schema, "--allow-data-loss")
    assert result.code == 0, result.err
    assert (generated_before / "0001_after.sql").read_text() == (
        "DROP TABLE `gone`;--> statement-breakpoint\nALTER TABLE `t` DROP COLUMN `a`;"
    )


@pytest.mark.parametrize("flags", [(), ("--allow-data-loss",)])
def test_new_not_null_column_without_default_is_refused_even_with_allow_data_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], generated_before: Path, flags: tuple[str, ...]
) -> None:
    result, after = generate_after(
        tmp_path,
        capsys,
        generated_before,
        BEFORE.replace("a TEXT,", "a TEXT,\n    b INTEGER NOT NULL,"),
        *flags,
    )
    assert result.code == 3
    assert result.err == (
        "error: new column `t`.`b` is NOT NULL without a default, so the rows that already exist would have no"
        " value for it - add a DEFAULT to `b` (or drop NOT NULL) in the schema file\n"
        f"refused: nothing written - fix {after}.\n"
    )


def test_not_null_default_null_counts_as_no_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], generated_before: Path
) -> None:
    schema = BEFORE.replace("a TEXT,", "a TEXT,\n    b INTEGER NOT NULL DEFAULT NULL,")
    result, _ = generate_after(tmp_path, capsys, generated_before, schema)
    assert result.code == 3
    assert "error: new column `t`.`b` is NOT NULL without a default" in result.err


def test_every_refusal_is_listed_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], generated_before: Path
) -> None:
    schema = "CREATE TABLE t (\n    id INTEGER PRIMARY KEY NOT NULL,\n    b TEXT NOT NULL\n);\n"
    result, after = generate_after(tmp_path, capsys, generated_before, schema)
    assert result.code == 3
    assert result.err == (
        "error: new column `t`.`b` is NOT NULL without a default, so the rows that already exist would have no"
        " value for it - add a DEFAULT to `b` (or drop NOT NULL) in the schema file\n"
        "error: table `gone` would be dropped with all its rows\n"
        "error: rebuilding table `t` would discard column `a`\n"
        "error: rebuilding table `t` would discard column `u`\n"
        f"refused: nothing written - fix {after}; {NO_DATA_LOSS_HINT}\n"
    )


def test_a_declared_rename_is_not_data_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], generated_before: Path
) -> None:
    schema = BEFORE.replace("a TEXT", "alias TEXT").replace("TABLE gone", "TABLE kept")
    result, _ = generate_after(
        tmp_path, capsys, generated_before, schema, "--rename", "t.a=alias", "--rename-table", "gone=kept"
    )
    assert result.code == 0, result.err
    assert (generated_before / "0001_after.sql").read_text() == (
        "ALTER TABLE `gone` RENAME TO `kept`;--> statement-breakpoint\n"
        "ALTER TABLE `t` RENAME COLUMN `a` TO `alias`;"
    )
