"""`tools.migrations manifest`: byte-stable output, exact refusals naming file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from counter_core import ManifestInvalid, parse_manifest
from counter_core.manifest import bundled_manifest
from tests.migration_folders import DRIZZLE_FOLDER, copy_drizzle_folder, make_folder
from tools.migrations.cli import main
from tools.migrations.folder import DEFAULT_FOLDER, FolderError
from tools.migrations.manifest import build_manifest, render_manifest


def test_a_drizzle_kit_folder_becomes_a_byte_stable_manifest(tmp_path: Path) -> None:
    manifest = copy_drizzle_folder(tmp_path / "m")
    first = (tmp_path / "m" / "manifest.json").read_bytes()
    assert render_manifest(build_manifest(tmp_path / "m")) == first
    rebuild = manifest.migrations[1]
    # Drizzle's PRAGMA foreign_keys=OFF/ON bracket became a flag, and the statements lost it
    assert rebuild.foreign_keys_off and not rebuild.additive
    assert not any("PRAGMA" in s for s in rebuild.statements) and len(rebuild.statements) == 4
    assert [m.additive for m in manifest.migrations] == [True, False, True, True]
    assert manifest.migrations[3].statements == ()  # `generate --custom`: a comment only


def test_manifest_sha256_is_what_drizzles_migrator_records(tmp_path: Path) -> None:
    manifest = copy_drizzle_folder(tmp_path / "m")
    # tests/fixtures/drizzle/README.md: the `hash` column of __drizzle_migrations
    assert manifest.migrations[0].sha256 == "02cfde5949707045d38b5f7c0aa0d40bb3e8e091bfa8eae11deaf75f43b37de4"


def test_the_bundled_manifest_is_current_and_loads_through_importlib_resources() -> None:
    assert main(["manifest", "--check"]) == 0
    assert bundled_manifest().version == len(
        json.loads((DEFAULT_FOLDER / "meta/_journal.json").read_text())["entries"]
    )


def test_check_reports_a_stale_manifest_and_the_rebuild_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "m"
    make_folder(folder, [("init", "CREATE TABLE a (x integer);")])
    (folder / "0000_init.sql").write_text("CREATE TABLE a (x integer, y text);")
    assert main(["manifest", "--check", "--migrations", str(folder)]) == 1
    assert "manifest.json is stale - run `python -m tools.migrations manifest" in capsys.readouterr().err
    assert main(["manifest", "--migrations", str(folder)]) == 0
    assert main(["manifest", "--check", "--migrations", str(folder)]) == 0


def _problems(folder: Path) -> list[str]:
    with pytest.raises(FolderError) as caught:
        build_manifest(folder)
    return caught.value.problems


def _edit_journal(folder: Path, edit: object) -> None:
    path = folder / "meta" / "_journal.json"
    journal = json.loads(path.read_text())
    edit(journal["entries"])  # type: ignore[operator]
    path.write_text(json.dumps(journal, indent=2))


def test_an_entry_without_its_file_and_a_file_without_its_entry_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    make_folder(folder, [("init", "CREATE TABLE a (x);"), ("more", "CREATE TABLE b (x);")])
    (folder / "0001_more.sql").rename(folder / "0001_renamed.sql")
    assert _problems(folder) == [
        "meta/_journal.json:16: entry '0001_more' has no file 0001_more.sql - restore the file",
        "0001_renamed.sql:1: not in meta/_journal.json - add it with `python -m tools.migrations generate` or delete the file",
    ]


def test_idx_gaps_and_when_out_of_order_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    make_folder(
        folder, [("a", "CREATE TABLE a (x);"), ("b", "CREATE TABLE b (x);"), ("c", "CREATE TABLE c (x);")]
    )

    def edit(entries: list[dict[str, object]]) -> None:
        entries[1]["idx"] = 5
        entries[2]["when"] = entries[0]["when"]

    _edit_journal(folder, edit)
    assert _problems(folder) == [
        "meta/_journal.json:16: entry '0001_b' has idx 5, expected 1 - idx counts up from 0 without gaps; renumber the journal",
        "meta/_journal.json:23: entry '0002_c' has when 1795000000000, not after the previous entry's 1795000001000"
        " - `when` must strictly increase; regenerate the migration",
    ]


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("CREATE TABLE a (x);\nBEGIN;", "0000_bad.sql:2: BEGIN is not allowed in a migration"),
        (
            "CREATE TABLE a (x);--> statement-breakpoint\nCOMMIT;",
            "0000_bad.sql:2: COMMIT is not allowed in a migration",
        ),
        ("\n\nROLLBACK;", "0000_bad.sql:3: ROLLBACK is not allowed in a migration"),
        ("SAVEPOINT s;", "0000_bad.sql:1: SAVEPOINT is not allowed in a migration"),
        ("RELEASE s;", "0000_bad.sql:1: RELEASE is not allowed in a migration"),
        ("-- tidy up\nVACUUM;", "0000_bad.sql:2: VACUUM is not allowed in a migration"),
        ("PRAGMA journal_mode=WAL;", "0000_bad.sql:1: PRAGMA journal_mode is not allowed in a migration"),
        (
            "PRAGMA main.user_version = 9;",
            "0000_bad.sql:1: PRAGMA user_version is not allowed in a migration",
        ),
    ],
)
def test_statements_that_would_break_the_engines_transaction_are_refused(
    tmp_path: Path, sql: str, problem: str
) -> None:
    folder = tmp_path / "m"
    with pytest.raises(FolderError) as caught:
        make_folder(folder, [("bad", sql)])
    [reported] = caught.value.problems
    assert reported.startswith(problem)
    assert reported.endswith(" - remove the statement")


@pytest.mark.parametrize(
    ("sql", "additive"),
    [
        ("CREATE TABLE a (x integer NOT NULL);", True),
        ("CREATE TABLE IF NOT EXISTS a (x);", True),
        ("CREATE INDEX i ON t (x);", True),
        ("CREATE UNIQUE INDEX i ON t (x);", False),
        ("ALTER TABLE t ADD `y` text;", True),
        ("ALTER TABLE t ADD COLUMN y integer NOT NULL DEFAULT 0;", True),
        ("ALTER TABLE t ADD COLUMN y integer NOT NULL;", False),
        ("ALTER TABLE t DROP COLUMN y;", False),
        ("ALTER TABLE t RENAME TO u;", False),
        ("DROP TABLE t;", False),
        ("UPDATE t SET x = 1;", False),
        ("CREATE TABLE a AS SELECT 1;", False),
        ("-- Custom SQL migration file, put your code below! --", True),
    ],
)
def test_additive_means_older_code_can_live_with_it(tmp_path: Path, sql: str, additive: bool) -> None:
    setup = "CREATE TABLE t (x integer);"
    manifest = make_folder(tmp_path / "m", [("base", setup), ("change", sql)])
    assert manifest.migrations[1].additive is additive


def test_the_cli_prints_every_problem_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "m"
    make_folder(folder, [("init", "CREATE TABLE a (x);")])
    (folder / "0000_init.sql").write_text("BEGIN;\nCREATE TABLE a (x);\nCOMMIT;")
    assert main(["manifest", "--migrations", str(folder)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: 0000_init.sql:1: BEGIN is not allowed")
    assert err[1].startswith("error: 0000_init.sql:3: COMMIT is not allowed")
    assert err[-1] == f"2 problem(s) in {folder} - fix them and run the command again."


def test_a_malformed_manifest_names_the_file_and_the_field() -> None:
    data = json.loads((DRIZZLE_FOLDER.parent / "migrations" / "meta" / "_journal.json").read_text())
    assert data["dialect"] == "sqlite"
    bad = (
        b'{"format": 1, "migrations": [{"idx": 0, "tag": "0000_a", "when": 1, "sha256": "xyz",'
        b' "additive": true, "foreign_keys_off": false, "statements": []}]}'
    )
    with pytest.raises(ManifestInvalid) as caught:
        parse_manifest(bad, source="generated/manifest.json")
    assert str(caught.value).startswith("generated/manifest.json is malformed: field 'migrations.0.sha256':")
    assert str(caught.value).endswith("- rebuild it with `python -m tools.migrations manifest`")


@pytest.mark.parametrize(
    ("edit_entry", "problem"),
    [
        (
            lambda entry: entry.update(when=-5),
            "meta/_journal.json:9: entry '0000_init' has when -5, which the runtime refuses"
            " (must be an integer of at least 0) - regenerate the migration",
        ),
        (
            lambda entry: entry.update(tag="0000_" + "x" * 200),
            f"meta/_journal.json:9: entry '0000_{'x' * 200}' has a tag the runtime refuses"
            " (must be at most 200 characters long) - rename the entry and file",
        ),
    ],
)
def test_a_manifest_the_runtime_would_refuse_is_never_written(
    tmp_path: Path, edit_entry: Any, problem: str
) -> None:
    # GIVEN a journal entry that the folder checks let through but the runtime's manifest parser refuses
    folder = tmp_path / "m"
    make_folder(folder, [("init", "CREATE TABLE a (x);")])
    _edit_journal(folder, lambda entries: edit_entry(entries[0]))
    journal = json.loads((folder / "meta" / "_journal.json").read_text())
    tag = journal["entries"][0]["tag"]
    if tag != "0000_init":
        (folder / "0000_init.sql").rename(folder / f"{tag}.sql")
    # WHEN the manifest is built THEN it is refused, naming the entry (every cold start would fail)
    assert _problems(folder) == [problem]
    # and neither `manifest` nor `manifest --check` (make lint) lets it ship
    assert main(["manifest", "--migrations", str(folder)]) != 0
    assert main(["manifest", "--check", "--migrations", str(folder)]) != 0
