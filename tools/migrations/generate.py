"""`generate` and `check`: the declarative schema in, a verified Drizzle Kit style migration out.

`generate` writes nothing until its own output has been replayed by the real engine, onto an empty
database (it must give the schema file) and onto one with rows (they must survive). `check` is CI's
guard that journal, files, snapshots, manifest and schema file all agree.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from counter_core.manifest import MANIFEST_FILE, Manifest
from tools.migrations.diff import Plan, Renames, plan_migration
from tools.migrations.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, EXIT_UNSAFE
from tools.migrations.folder import (
    DEFAULT_FOLDER,
    JournalEntry,
    is_new_history,
    journal_path,
    no_history,
    read_journal,
    write_journal,
)
from tools.migrations.introspect import load_schema_file
from tools.migrations.lint import lint_folder, preflight_command, render_text
from tools.migrations.manifest import build_manifest, manifest_problem, write_manifest
from tools.migrations.render import CUSTOM_MIGRATION, render_migration
from tools.migrations.schema import Schema, SchemaError
from tools.migrations.snapshot import (
    ZERO_ID,
    carry_over,
    read_snapshot_chain,
    render_snapshot,
    snapshot_data,
    snapshot_path,
    snapshot_schema,
)
from tools.migrations.verify import ReplayFailed, check_data, replay, schema_difference

DEFAULT_SCHEMA = Path(__file__).resolve().parents[2] / "counter_core" / "schema.sql"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")


@dataclass(frozen=True)
class Request:
    """One `generate` invocation."""

    folder: Path
    schema: Path
    name: str
    custom: bool = False
    renames: Renames = field(default_factory=Renames)
    allow_data_loss: bool = False


def generate(
    request: Request, *, now_ms: Callable[[], int] | None = None, new_id: Callable[[], str] | None = None
) -> int:
    """Write the next migration, or explain why not; returns the exit code. FolderError propagates."""
    if not _NAME.fullmatch(request.name):
        return _bad_input(
            [f"--name {request.name!r}: use letters, digits, '_' and '-' (it becomes part of the file name)"]
        )
    folder = request.folder
    if is_new_history(folder):
        entries: list[JournalEntry] = []  # the first migration creates the folder and its journal
    else:
        entries = read_journal(folder)
        build_manifest(folder)  # the folder must be consistent before it grows
    snapshots = read_snapshot_chain(folder, entries)
    previous = snapshots[-1] if snapshots else None
    tag = f"{len(entries):04d}_{request.name}"
    snapshot_id = (new_id or _uuid)()
    new: Schema | None = None
    if request.custom:
        sql, snapshot = CUSTOM_MIGRATION, carry_over(previous, snapshot_id=snapshot_id)
    else:
        try:
            new = load_schema_file(request.schema)
            old = _snapshot_schema(folder, entries, previous)
            plan = plan_migration(old, new, request.renames, schema_name=str(request.schema))
        except SchemaError as exc:
            return _bad_input(exc.problems)
        refused = _report_plan(plan, request)
        if refused is not None:
            return refused
        if not plan.statements:
            print(
                f"Nothing to do: {request.schema} has no changes since the last migration - nothing written."
            )
            return EXIT_OK
        sql = render_migration(plan.statements)
        snapshot = snapshot_data(
            new,
            snapshot_id=snapshot_id,
            prev_id=previous["id"] if previous else ZERO_ID,
            renamed_tables=plan.renamed_tables,
            renamed_columns=plan.renamed_columns,
        )
    when = max((now_ms or _now_ms)(), entries[-1].when + 1 if entries else 0)
    entry = JournalEntry(idx=len(entries), when=when, tag=tag, breakpoints=True)
    with tempfile.TemporaryDirectory(prefix="generate-") as tmp:
        stage = Path(tmp)
        manifest = _stage(folder, stage, [*entries, entry], sql, snapshot)
        if new is not None:
            failures = _verify(manifest, new, request)
            if failures:
                for line in failures:
                    print(line, file=sys.stderr)
                print(_verification_advice(failures), file=sys.stderr)
                return EXIT_FAILED
        _publish(stage, folder, tag)
    count = len(manifest.migrations[-1].statements)
    options = command_options(folder, request.schema)
    print(
        f"Wrote {folder / (tag + '.sql')} ({count} statement(s)), {snapshot_path(folder, tag)}, the journal entry"
        f" and {folder / MANIFEST_FILE}."
    )
    if request.custom:
        print(
            f"Next: write the data change into {folder / (tag + '.sql')}, then run"
            f" `python -m tools.migrations check{options}`."
        )
        return EXIT_OK
    report = lint_folder(folder)
    print("\n".join(render_text(report, folder, with_next=False)[:-1]))
    if report.risky:
        print(
            f"Next: review the SQL, run `{preflight_command(folder)}` against the counter files to find the ones where a step"
            f" would fail, then `python -m tools.migrations check{options}`, and commit it with the schema file."
        )
    else:
        print(
            f"Next: review the SQL, run `python -m tools.migrations check{options}`, and commit it with the"
            " schema file."
        )
    return EXIT_OK


def command_options(folder: Path, schema: Path) -> str:
    """The options a printed command needs to act on `folder` and `schema` (none for the project's own),
    so that a command a message prints runs as printed on the folder the user gave."""
    options = []
    if folder.resolve() != DEFAULT_FOLDER.resolve():
        options += ["--migrations", shlex.quote(str(folder))]
    if schema.resolve() != DEFAULT_SCHEMA.resolve():
        options += ["--schema", shlex.quote(str(schema))]
    return "".join(f" {option}" for option in options)


def check(folder: Path, schema: Path) -> int:
    """CI's guard; returns the exit code. FolderError (journal, files, snapshot chain) propagates."""
    if is_new_history(folder):  # the command to start one generates from this schema, into this folder
        options = command_options(folder, schema)
        raise no_history(folder, f"`python -m tools.migrations generate --name init{options}`")
    entries = read_journal(folder)
    manifest = build_manifest(folder)
    snapshots = read_snapshot_chain(folder, entries)
    failures: list[str] = []
    stale = manifest_problem(folder)
    if stale is not None:
        failures.append(f"error: {stale}")
    try:
        expected = load_schema_file(schema)
        last = _snapshot_schema(folder, entries, snapshots[-1] if snapshots else None)
    except SchemaError as exc:
        return _bad_input(exc.problems)
    last_name = f"meta/{snapshot_path(folder, entries[-1].tag).name}" if entries else "the empty history"
    pending = schema_difference(last, expected, actual_name=last_name, expected_name=str(schema))
    if pending:
        failures += pending
        failures.append(
            f"error: {schema} has changes that no migration makes yet (difference above)"
            f" - run `python -m tools.migrations generate --name <what_changed>{command_options(folder, schema)}`"
        )
    try:
        replayed = replay(manifest)
    except (ReplayFailed, SchemaError) as exc:
        failures.append(f"error: replaying the migrations onto an empty database failed: {exc}")
    else:
        drift = schema_difference(replayed, last, actual_name="replayed migrations", expected_name=last_name)
        if drift:
            failures += drift
            failures.append(
                f"error: replaying the migrations does not give {last_name} (difference above) - a migration was"
                " edited by hand or a custom migration changes the schema; restore it, and put schema changes"
                " in the schema file"
            )
    if failures:
        for line in failures:
            print(line, file=sys.stderr)
        print(
            "check failed - fix the errors above and run"
            f" `python -m tools.migrations check{command_options(folder, schema)}` again.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(
        f"check passed: {len(entries)} migration(s) in {folder}: journal, files, snapshot chain and manifest agree,"
        f" {schema} has no changes left to generate, and replaying the migrations gives it."
    )
    return EXIT_OK


def _snapshot_schema(folder: Path, entries: list[JournalEntry], snapshot: dict[str, Any] | None) -> Schema:
    """The last snapshot's schema as SQLite reads it back (so it compares like the schema file)."""
    if snapshot is None:
        return Schema()
    return snapshot_schema(snapshot, source=f"meta/{snapshot_path(folder, entries[-1].tag).name}")


def _report_plan(plan: Plan, request: Request) -> int | None:
    """Print warnings and refusals; the exit code when the plan is refused, else None."""
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    blocked = plan.refusals + ([] if request.allow_data_loss else plan.data_loss)
    if not blocked:
        return None
    for problem in blocked:
        print(f"error: {problem}", file=sys.stderr)
    remedies = []
    if plan.refusals:
        remedies.append(f"fix {request.schema}")
    if plan.data_loss and not request.allow_data_loss:
        remedies.append(
            "if a table or column was renamed, declare it with --rename-table OLD=NEW or --rename TABLE.OLD=NEW;"
            " if the data may go, run again with --allow-data-loss"
        )
    print(f"refused: nothing written - {'; '.join(remedies)}.", file=sys.stderr)
    return EXIT_UNSAFE


def _verify(manifest: Manifest, expected: Schema, request: Request) -> list[str]:
    try:
        replayed = replay(manifest)
    except (ReplayFailed, SchemaError) as exc:
        return [f"error: replaying the migrations onto an empty database failed: {exc}"]
    difference = schema_difference(
        replayed, expected, actual_name="replayed migrations", expected_name=str(request.schema)
    )
    if difference:
        return [
            *difference,
            f"error: replaying the migrations does not give {request.schema} (difference above)",
        ]
    try:
        report = check_data(manifest, request.renames)
    except (ReplayFailed, SchemaError) as exc:
        return [f"error: applying the new migration to a database with rows failed: {exc}"]
    for note in report.notes:
        print(f"warning: {note}", file=sys.stderr)
    return [f"error: {problem}" for problem in report.problems]


def _verification_advice(failures: list[str]) -> str:
    """The last line of a failed verification: what the user can do about it."""
    if any("constraint failed" in line for line in failures):
        # SQLite refused a row: the schema asks of existing rows what they may not have, which is the
        # schema's to change, not a fault of the generator.
        return (
            "verification failed - nothing was written. A constraint of the new schema fails on rows that"
            " existing counter files can hold (SQLite's message above): give a new NOT NULL or CHECK column a"
            " default that satisfies it, keep the rows a foreign key points at, or change the constraint;"
            " then run generate again."
        )
    return (
        "verification failed - nothing was written. If a custom migration changes the schema, move that"
        " change into the schema file; otherwise report a generator bug with the schema file and the"
        " last snapshot."
    )


def _stage(
    folder: Path, stage: Path, entries: list[JournalEntry], sql: str, snapshot: dict[str, Any]
) -> Manifest:
    """The folder as it will be, in `stage`: existing files, the new migration, journal, manifest."""
    (stage / "meta").mkdir()
    for path in folder.glob("*.sql"):
        shutil.copyfile(path, stage / path.name)
    for path in (folder / "meta").glob("*_snapshot.json"):
        shutil.copyfile(path, stage / "meta" / path.name)
    tag = entries[-1].tag
    (stage / f"{tag}.sql").write_text(sql, encoding="utf-8")
    snapshot_path(stage, tag).write_text(render_snapshot(snapshot), encoding="utf-8")
    write_journal(stage, entries)
    return write_manifest(stage)


def _publish(stage: Path, folder: Path, tag: str) -> None:
    # The journal goes last: until it names the migration, the new files are inert.
    (folder / "meta").mkdir(parents=True, exist_ok=True)
    for relative in (
        Path(f"{tag}.sql"),
        snapshot_path(Path(), tag),
        Path(MANIFEST_FILE),
        journal_path(Path()),
    ):
        shutil.copyfile(stage / relative, folder / relative)


def _bad_input(problems: list[str]) -> int:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"{len(problems)} problem(s) - fix them and run the command again.", file=sys.stderr)
    return EXIT_BAD_INPUT


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _uuid() -> str:
    return str(uuid.uuid4())
