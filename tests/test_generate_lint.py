"""`lint`: what the migrations not yet deployed do to every counter file, and `generate`'s warnings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.generate_support import Result, run, started_history, write
from tests.migration_folders import DRIZZLE_FOLDER, FIXTURES
from tools.migrations.folder import DEFAULT_FOLDER
from tools.migrations.generate import DEFAULT_SCHEMA
from tools.migrations.manifest import write_manifest

BASE = """CREATE TABLE users (
    id INTEGER PRIMARY KEY NOT NULL,
    email TEXT,
    age INTEGER
);
CREATE INDEX users_email_idx ON users (email);
"""


def preflight_next(folder: Path) -> str:
    """lint's last line for a risky migration of `folder`: its preflight command runs on that folder."""
    return (
        f"Next: run `python -m tools.migrations preflight ROOT --migrations {folder}` against the counter files"
        " (it tries these migrations on each file and names the ones where a step would fail), fix those files,"
        " then deploy."
    )


@pytest.fixture
def history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """(folder, schema file): a history of one migration creating `users`."""
    return started_history(tmp_path, capsys, BASE)


def _generate(
    capsys: pytest.CaptureFixture[str], folder: Path, schema: Path, sql: str, *flags: str
) -> Result:
    write(schema, sql)
    result = run(capsys, "generate", "--name", "next", "--schema", schema, "--migrations", folder, *flags)
    assert result.code == 0, result.err
    return result


def test_an_additive_migration_is_not_risky(
    capsys: pytest.CaptureFixture[str], history: tuple[Path, Path]
) -> None:
    folder, schema = history
    _generate(capsys, folder, schema, BASE + "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);\n")
    result = run(capsys, "lint", "--migrations", folder)
    assert (result.code, result.err) == (0, "")
    assert result.out.splitlines() == [
        "0001_next: additive",
        "  - creates table `notes`",
        "  rollout: old instances keep serving the files it migrates",
        "1 migration(s) linted (the last migration): 0 not additive, 0 risky.",
        "Next: nothing risky - deploy as usual.",
    ]


def test_a_tightening_rebuild_is_risky_and_says_to_run_preflight(
    capsys: pytest.CaptureFixture[str], history: tuple[Path, Path]
) -> None:
    # GIVEN a migration that rebuilds `users` with a new NOT NULL, CHECK and a unique index
    folder, schema = history
    tightened = (
        BASE.replace("email TEXT,", "email TEXT NOT NULL DEFAULT '',")
        .replace("age INTEGER\n", "age INTEGER CHECK (age >= 0)\n")
        .replace("CREATE INDEX users_email_idx", "CREATE UNIQUE INDEX users_email_idx")
    )
    _generate(capsys, folder, schema, tightened)
    # WHEN it is linted
    result = run(capsys, "lint", "--migrations", folder)
    # THEN it says what the migration does and what can fail, and exits 1
    assert result.code == 1, result.err
    assert result.out.splitlines() == [
        "0001_next: NOT additive, foreign keys switched off while it runs (checked with foreign_key_check before"
        " COMMIT)",
        "  - rebuilds table `users`: copies every row into a new table, so time and journal size grow with its rows",
        "  - recreates 1 index(es) of `users` after its rebuild",
        "  rollout: old instances answer 503 schema_too_new for each file a new instance has migrated, until every"
        " instance runs the new code",
        "  can fail on existing data:",
        "  ! column `users`.`email` becomes NOT NULL: fails on files where it holds NULL",
        "  ! table `users` gains unique index `users_email_idx` (email): fails on files where two rows share a value",
        "  ! table `users` gains CHECK (age >= 0): fails on files whose rows violate it",
        "1 migration(s) linted (the last migration): 1 not additive, 1 risky.",
        preflight_next(folder),
    ]


def test_generate_prints_the_same_summary(
    capsys: pytest.CaptureFixture[str], history: tuple[Path, Path]
) -> None:
    folder, schema = history
    result = _generate(capsys, folder, schema, BASE.replace("age INTEGER\n", "age INTEGER,\n    nick TEXT\n"))
    assert result.out.splitlines()[1:] == [
        "0001_next: additive",
        "  - adds column `users`.`nick`",
        "  rollout: old instances keep serving the files it migrates",
        f"Next: review the SQL, run `python -m tools.migrations check --migrations {folder} --schema {schema}`,"
        " and commit it with the schema file.",
    ]
    assert result.out.splitlines()[1:-1] == run(capsys, "lint", "--migrations", folder).out.splitlines()[:-2]


def test_generate_of_a_risky_migration_ends_with_preflight(
    capsys: pytest.CaptureFixture[str], history: tuple[Path, Path]
) -> None:
    folder, schema = history
    result = _generate(capsys, folder, schema, BASE.replace("CREATE INDEX", "CREATE UNIQUE INDEX"))
    assert result.out.splitlines()[-1] == (
        f"Next: review the SQL, run `python -m tools.migrations preflight ROOT --migrations {folder}` against the"
        " counter files to find the"
        " ones where a step would fail, then"
        f" `python -m tools.migrations check --migrations {folder} --schema {schema}`, and commit it with the"
        " schema file."
    )


def test_drops_and_hand_written_statements_are_risky(
    capsys: pytest.CaptureFixture[str], history: tuple[Path, Path]
) -> None:
    folder, schema = history
    _generate(
        capsys,
        folder,
        schema,
        BASE.replace("    age INTEGER\n", "").replace("email TEXT,", "email TEXT"),
        "--allow-data-loss",
    )
    assert run(capsys, "generate", "--custom", "--name", "backfill", "--migrations", folder).code == 0
    write(folder / "0002_backfill.sql", "UPDATE users SET email = lower(email);")
    write_manifest(folder)
    result = run(capsys, "lint", "--since", "0000", "--json", "--migrations", folder)
    assert result.code == 1
    report = json.loads(result.out)
    assert report["selection"] == "the migrations after 0000_init"
    drop, custom = report["migrations"]
    assert (drop["tag"], drop["additive"], drop["data_loss"]) == (
        "0001_next",
        False,
        ["column `users`.`age` is dropped with its values"],
    )
    assert custom["steps"] == ["runs statement 1: UPDATE users SET email = lower(email);"]
    assert custom["hand_written"] == [
        "statement 1 (UPDATE) was written by hand: it can fail or change data on some files"
    ]
    assert (report["additive"], report["risky"], report["next"]) == (False, True, preflight_next(folder))


def test_renames_gain_nothing(capsys: pytest.CaptureFixture[str], history: tuple[Path, Path]) -> None:
    # GIVEN a pure table and column rename, whose index follows the table's new name
    folder, schema = history
    renamed = BASE.replace("users", "people").replace("age", "years")
    # WHEN it is generated and linted THEN neither warns that anything can fail
    result = _generate(
        capsys, folder, schema, renamed, "--rename-table", "users=people", "--rename", "people.age=years"
    )
    assert result.err == ""
    linted = run(capsys, "lint", "--migrations", folder)
    assert linted.code == 0, linted.out
    assert "  - renames table `users` to `people`" in linted.out
    assert "  - renames column `people`.`age` to `years`" in linted.out


def test_a_pure_table_rename_with_a_unique_index_does_not_warn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "migrations"
    schema = write(tmp_path / "schema.sql", BASE.replace("CREATE INDEX", "CREATE UNIQUE INDEX"))
    assert run(capsys, "generate", "--name", "init", "--schema", schema, "--migrations", folder).code == 0
    renamed = BASE.replace("CREATE INDEX", "CREATE UNIQUE INDEX").replace("users", "people")
    result = _generate(capsys, folder, schema, renamed, "--rename-table", "users=people")
    assert result.err == ""
    assert run(capsys, "lint", "--migrations", folder).code == 0


def test_lint_of_drizzles_rebuild(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # drizzle-kit's 0001 rebuilds `parents` for a new default: not additive, nothing can fail
    folder = tmp_path / "drizzle"
    shutil.copytree(DRIZZLE_FOLDER, folder)
    write_manifest(folder)
    result = run(capsys, "lint", "--since", "0000_init", "--migrations", folder)
    assert result.code == 0, result.out
    assert result.out.splitlines()[:3] == [
        "0001_rebuild_parents: NOT additive, foreign keys switched off while it runs (checked with"
        " foreign_key_check before COMMIT)",
        "  - rebuilds table `parents`: copies every row into a new table, so time and journal size grow with"
        " its rows",
        "  rollout: old instances answer 503 schema_too_new for each file a new instance has migrated, until"
        " every instance runs the new code",
    ]
    assert result.out.splitlines()[-1] == (
        "Next: deploy this change on its own, with no other change; old instances answer 503 schema_too_new for migrated files until"
        " every instance runs the new code."
    )


def test_lint_of_the_full_drizzle_fixture_finds_its_new_table_and_rebuild(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "drizzle"
    shutil.copytree(FIXTURES / "drizzle_full" / "migrations", folder)
    write_manifest(folder)
    result = run(capsys, "lint", "--json", "--migrations", folder)
    [step] = json.loads(result.out)["migrations"]
    assert step["rebuilds"] == ["products"] and step["can_fail"] == [] and result.code == 0
    assert "creates table `tags`" in step["steps"] and "adds column `kinds`.`added`" in step["steps"]


def test_an_unknown_tag_is_bad_input(capsys: pytest.CaptureFixture[str], history: tuple[Path, Path]) -> None:
    folder, _ = history
    result = run(capsys, "lint", "--since", "0009", "--migrations", folder)
    assert result.code == 2
    assert result.err.splitlines() == [
        "error: --since '0009': no migration has this tag or number - tags: 0000_init",
        f"1 problem(s) in {folder} - fix them and run the command again.",
    ]


def test_lint_every_migration_on_an_empty_history_is_not_risky(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "migrations"
    (folder / "meta").mkdir(parents=True)
    write(folder / "meta" / "_journal.json", '{"version": "7", "dialect": "sqlite", "entries": []}')
    write_manifest(folder)
    result = run(capsys, "lint", "--all", "--migrations", folder)
    assert result.code == 0
    assert result.out.splitlines()[0] == f"{folder}: no migrations to lint (every migration)."


def test_archive_and_recreate_compares_the_new_table_with_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = Path(__file__).parent / "generate_cases" / "archive_and_recreate"
    folder = tmp_path / "migrations"
    assert (
        run(capsys, "generate", "--name", "a", "--schema", case / "before.sql", "--migrations", folder).code
        == 0
    )
    flags = ["--rename-table", "users=legacy_users"]
    assert (
        run(
            capsys, "generate", "--name", "b", "--schema", case / "after.sql", *flags, "--migrations", folder
        ).code
        == 0
    )
    result = run(capsys, "lint", "--json", "--migrations", folder)
    [step] = json.loads(result.out)["migrations"]
    assert step["steps"][:3] == [
        "renames table `users` to `legacy_users`",
        "drops index `users_email`",
        "creates table `users`",
    ]
    assert (result.code, step["can_fail"]) == (0, [])


def test_the_readme_example_is_real_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the project's own history, and its schema with a column and a unique index added
    folder = tmp_path / "generated"
    shutil.copytree(DEFAULT_FOLDER, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    schema = DEFAULT_SCHEMA.read_text().replace(
        "    request_id TEXT\n", "    request_id TEXT,\n    actor TEXT\n"
    )
    schema += "\nCREATE UNIQUE INDEX counter_history_request_id ON counter_history (request_id);\n"
    generated = run(
        capsys,
        "generate",
        "--name",
        "add_actor",
        "--schema",
        write(tmp_path / "s.sql", schema),
        "--migrations",
        folder,
    )
    assert generated.code == 0, generated.err
    # WHEN lint runs THEN the README shows exactly its output and exit code
    result = run(capsys, "lint", "--migrations", folder)
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    shown = readme.split("<!-- lint-example:", 1)[1].split("```\n", 1)[1].split("```", 1)[0]
    # (the README lints the project's own folder, whose printed commands need no --migrations)
    out = result.out.replace(f" --migrations {folder}", "")
    assert shown == f"$ python -m tools.migrations lint\n{out}$ echo $?\n{result.code}\n"


def test_constraints_on_new_nullable_columns_cannot_fail(
    capsys: pytest.CaptureFixture[str], history: tuple[Path, Path]
) -> None:
    # GIVEN new columns without a default: every existing row holds NULL there, which no
    # UNIQUE, CHECK or FOREIGN KEY rejects
    folder, schema = history
    added = BASE.replace(
        "age INTEGER\n",
        "age INTEGER,\n    badge TEXT CHECK (length(Badge) < 9),\n    buddy INTEGER REFERENCES users(id)\n",
    )
    added += "CREATE UNIQUE INDEX users_badge ON users (badge);\n"
    result = _generate(capsys, folder, schema, added)
    # THEN neither generate nor lint warns that they can fail
    assert result.err == ""
    assert run(capsys, "lint", "--migrations", folder).code == 0
    # BUT a check that also reads an existing column still can
    write(schema, added.replace("length(Badge) < 9", "badge IS NULL OR age >= 0"))
    assert run(capsys, "generate", "--name", "again", "--schema", schema, "--migrations", folder).code == 0
    assert run(capsys, "lint", "--migrations", folder).code == 1


@pytest.mark.parametrize(
    ("column", "risky"),
    [
        # every existing row gets the default, which satisfies the check: nothing can fail
        ("level INTEGER NOT NULL DEFAULT 0 CHECK (level >= 0)", False),
        (
            "level INTEGER NOT NULL DEFAULT 0 CHECK (level BETWEEN 0 AND 9 AND typeof(level) = 'integer')",
            False,
        ),
        # (a default that violates the check is refused by `generate` itself: its verification
        # applies the migration to a database with rows)
        # the check reads an existing column too: existing values decide
        ("level INTEGER NOT NULL DEFAULT 0 CHECK (level <= age)", True),
    ],
)
def test_a_check_on_a_new_column_is_risky_only_if_its_default_can_violate_it(
    capsys: pytest.CaptureFixture[str], history: tuple[Path, Path], column: str, risky: bool
) -> None:
    folder, schema = history
    _generate(capsys, folder, schema, BASE.replace("age INTEGER\n", f"age INTEGER,\n    {column}\n"))
    result = run(capsys, "lint", "--migrations", folder)
    assert ("  can fail on existing data:" in result.out.splitlines()) is risky, result.out
    assert result.code == (1 if risky else 0)


def test_a_check_sqlite_cannot_evaluate_on_the_new_columns_alone_stays_a_risk() -> None:
    from tools.migrations.schema import Column, _holds_on_defaults

    level = Column("level", "integer", not_null=True, default="0")
    assert _holds_on_defaults("level >= 0", [level])
    assert not _holds_on_defaults("level > 0", [level])
    assert not _holds_on_defaults("level >= 0 AND no_such_function(level)", [level])
    assert _holds_on_defaults("level > 0", [Column("level", "integer")])  # NULL is not false


def test_a_default_that_breaks_its_own_check_is_refused_in_the_users_terms(
    capsys: pytest.CaptureFixture[str], history: tuple[Path, Path]
) -> None:
    folder, schema = history
    write(
        schema,
        BASE.replace(
            "age INTEGER\n", "age INTEGER,\n    level INTEGER NOT NULL DEFAULT -1 CHECK (level >= 0)\n"
        ),
    )
    result = run(capsys, "generate", "--name", "next", "--schema", schema, "--migrations", folder)
    assert result.code == 1
    assert "CHECK constraint failed: users_level_check" in result.err
    assert result.err.splitlines()[-1] == (
        "verification failed - nothing was written. A constraint of the new schema fails on rows that existing"
        " counter files can hold (SQLite's message above): give a new NOT NULL or CHECK column a default that"
        " satisfies it, keep the rows a foreign key points at, or change the constraint; then run generate again."
    )
