"""Starting a history: `generate` on a missing or empty folder, `check` and `manifest` before there is one."""

from __future__ import annotations

import json
import pickle
import shlex
from pathlib import Path

import pytest

from tests.generate_support import files, run, started_history, write
from tools.migrations.folder import FolderError, read_journal

SCHEMA = "CREATE TABLE t (\n    id INTEGER PRIMARY KEY NOT NULL,\n    a TEXT\n);\n"


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "nothing" / "migrations"


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def _empty_meta(tmp_path: Path) -> Path:
    folder = tmp_path / "meta_only"
    (folder / "meta").mkdir(parents=True)
    return folder


@pytest.mark.parametrize("make", [_missing, _empty, _empty_meta], ids=["missing", "empty", "empty_meta"])
def test_generate_starts_a_history(tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object) -> None:
    # GIVEN no history yet: no folder, an empty one, or one with an empty meta/
    folder = make(tmp_path)  # type: ignore[operator]
    schema = write(tmp_path / "schema.sql", SCHEMA)
    # WHEN the first migration is generated
    result = run(capsys, "generate", "--name", "init", "--schema", schema, "--migrations", folder)
    # THEN the folder, the journal, the snapshot, the SQL and the manifest exist, and check passes
    assert result.code == 0, result.err
    assert sorted(files(folder)) == [
        "0000_init.sql",
        "manifest.json",
        "meta/0000_snapshot.json",
        "meta/_journal.json",
    ]
    assert [e.tag for e in read_journal(folder)] == ["0000_init"]
    journal = json.loads((folder / "meta" / "_journal.json").read_text())
    assert (journal["version"], journal["dialect"]) == ("7", "sqlite")
    assert run(capsys, "check", "--schema", schema, "--migrations", folder).code == 0


def test_generate_custom_starts_a_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _missing(tmp_path)
    result = run(capsys, "generate", "--custom", "--name", "seed", "--migrations", folder)
    assert result.code == 0, result.err
    assert [e.tag for e in read_journal(folder)] == ["0000_seed"]


@pytest.mark.parametrize("make", [_missing, _empty, _empty_meta], ids=["missing", "empty", "empty_meta"])
@pytest.mark.parametrize("command", [["check"], ["manifest"], ["manifest", "--check"]])
def test_commands_on_no_history_say_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object, command: list[str]
) -> None:
    folder = make(tmp_path)  # type: ignore[operator]
    before = files(folder) if folder.exists() else None
    result = run(capsys, *command, "--migrations", folder)
    assert result.code == 2
    start = f"`python -m tools.migrations generate --name init --migrations {folder}`"
    assert result.err.splitlines() == [
        f"error: {folder}: no migration history yet (no meta/_journal.json)",
        f"Start one with {start}, then run this command again.",
    ]
    assert (files(folder) if folder.exists() else None) == before


@pytest.fixture
def started(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """(folder, schema file): a history of one generated migration."""
    return started_history(tmp_path, capsys, SCHEMA)


def test_a_lost_journal_is_not_taken_for_a_new_history(
    capsys: pytest.CaptureFixture[str], started: tuple[Path, Path]
) -> None:
    # GIVEN a history whose journal was deleted
    folder, schema = started
    (folder / "meta" / "_journal.json").unlink()
    # WHEN generate runs again THEN it refuses to start over, and says how to recover
    result = run(capsys, "generate", "--name", "again", "--schema", schema, "--migrations", folder)
    assert result.code == 2
    assert result.err.splitlines()[0] == (
        "error: meta/_journal.json: missing, but the folder holds 1 migration file(s) and 1 snapshot(s)"
        " - restore the journal from version control"
    )
    assert not (folder / "0001_again.sql").exists()


def test_check_without_manifest_says_it_has_none_yet(
    capsys: pytest.CaptureFixture[str], started: tuple[Path, Path]
) -> None:
    # GIVEN a folder as drizzle-kit leaves it: journal, SQL and snapshots, no manifest.json
    folder, schema = started
    (folder / "manifest.json").unlink()
    for command in (["check", "--schema", str(schema)], ["manifest", "--check"]):
        result = run(capsys, *command, "--migrations", folder)
        assert result.code == 1
        assert (
            f"{folder}/manifest.json does not exist yet - run `python -m tools.migrations manifest"
            f" --migrations {folder}` and commit it" in result.err
        )
        assert "stale" not in result.err


def test_folder_errors_survive_pickling() -> None:
    error = FolderError(["meta/_journal.json: missing"], next_step="run generate")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.problems, copy.next_step, str(copy)) == (error.problems, error.next_step, str(error))


@pytest.mark.parametrize(
    "command",
    [("generate", "--name", "init"), ("check",), ("manifest",), ("lint",)],
    ids=["generate", "check", "manifest", "lint"],
)
def test_a_migrations_path_that_is_a_file_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    # GIVEN --migrations naming a file (the manifest, say) instead of the folder that holds it
    not_a_folder = write(tmp_path / "manifest.json", "{}")
    schema = write(tmp_path / "schema.sql", SCHEMA)
    extra = ("--schema", schema) if command[0] in ("generate", "check") else ()
    # WHEN a command runs on it
    result = run(capsys, *command, *extra, "--migrations", not_a_folder)
    # THEN it is bad input, said in one line with what to do, and the file is untouched
    assert result.code == 2
    assert result.err.splitlines() == [
        f"error: {not_a_folder}: a file, not a migrations folder - pass the folder that holds"
        " meta/_journal.json (the project's is generated)",
        f"1 problem(s) in {not_a_folder} - fix them and run the command again.",
    ]
    assert not_a_folder.read_text() == "{}"


def test_a_journal_that_is_not_utf8_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, schema = started_history(tmp_path, capsys, SCHEMA)
    journal = folder / "meta" / "_journal.json"
    journal.write_text(journal.read_text(), encoding="utf-16")
    for command in (("check", "--schema", schema), ("lint",), ("manifest",)):
        result = run(capsys, *command, "--migrations", folder)
        assert result.code == 2, command
        assert result.err.splitlines()[0] == (
            "error: meta/_journal.json: not UTF-8 text - restore the file from version control"
        )


def test_a_schema_file_that_is_not_utf8_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a schema saved as UTF-16 (as PowerShell's `>` writes it), for a new history and a started one
    schema = tmp_path / "schema.sql"
    schema.write_text(SCHEMA, encoding="utf-16")
    new = tmp_path / "new"
    (tmp_path / "started").mkdir()
    started, _ = started_history(tmp_path / "started", capsys, SCHEMA)
    for command in (("generate", "--name", "init", "--migrations", new), ("check", "--migrations", started)):
        # WHEN a command reads it, THEN one line names the file and what to do
        result = run(capsys, *command, "--schema", schema)
        assert result.code == 2, command
        assert f"error: {schema}: not UTF-8 text - save it as UTF-8" in result.err.splitlines()
    assert not new.exists()


def test_a_snapshot_that_is_not_utf8_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, schema = started_history(tmp_path, capsys, SCHEMA)
    snapshot = folder / "meta" / "0000_snapshot.json"
    snapshot.write_text(snapshot.read_text(), encoding="utf-16")
    for command in (("check", "--schema", schema), ("lint",)):
        result = run(capsys, *command, "--migrations", folder)
        assert result.code == 2, command
        assert result.err.splitlines()[0] == (
            "error: meta/0000_snapshot.json: not UTF-8 text - restore the file from version control"
        )


def _printed_command(line: str, verb: str) -> list[str]:
    """The `python -m tools.migrations VERB ...` command quoted in a message line, as argv for main."""
    start = line.index(f"`python -m tools.migrations {verb}")
    return shlex.split(line[start + 1 : line.index("`", start + 1)])[3:]


def test_the_check_that_generate_prints_checks_the_folder_it_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a history started in a folder of one's own, from a schema file of one's own
    folder = tmp_path / "db" / "migrations"
    (tmp_path / "db").mkdir()
    schema = write(tmp_path / "db" / "schema.sql", SCHEMA)
    result = run(capsys, "generate", "--name", "init", "--schema", schema, "--migrations", folder)
    assert result.code == 0, result.err
    printed = _printed_command(result.out.splitlines()[-1], "check")
    # WHEN the schema changes and the printed check is run as printed
    write(schema, SCHEMA.replace("a TEXT", "a TEXT,\n    b INTEGER"))
    checked = run(capsys, *printed)
    # THEN it checks that folder against that schema (it used to check the project's own, and pass)
    assert checked.code == 1, checked.err
    # AND the generate it then suggests writes into that folder too
    suggested = _printed_command(checked.err.splitlines()[-2], "generate")
    assert suggested[suggested.index("--migrations") + 1] == str(folder)
    assert suggested[suggested.index("--schema") + 1] == str(schema)


def test_check_on_no_history_prints_a_start_that_uses_the_schema_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a schema of one's own and no history yet
    schema = write(tmp_path / "mine.sql", "CREATE TABLE mine (id INTEGER PRIMARY KEY NOT NULL);\n")
    folder = tmp_path / "migrations"
    result = run(capsys, "check", "--schema", schema, "--migrations", folder)
    assert result.code == 2
    # WHEN the command it prints is run as printed
    started = run(capsys, *_printed_command(result.err.splitlines()[-1], "generate"))
    # THEN the history starts from that schema (it used to name no --schema: the project's own)
    assert started.code == 0, started.err
    assert "creates table `mine`" in started.out
