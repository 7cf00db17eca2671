"""`python -m tools.migrations`: build and operate the migration history.

Exit codes: 0 done (or nothing to do), 1 the check or the fleet operation found failures,
2 bad input (an inconsistent migrations folder, a bad argument), 3 refused as unsafe.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from counter_core.errors import Misconfigured
from counter_core.manifest import MANIFEST_FILE
from tools.migrations.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from tools.migrations.folder import DEFAULT_FOLDER, FolderError, require_folder


def _add_schema_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--schema",
        type=Path,
        default=None,
        metavar="FILE",
        help="the declarative schema (default: counter_core/schema.sql)",
    )


def _add_migrations_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--migrations",
        type=Path,
        default=DEFAULT_FOLDER,
        metavar="DIR",
        help="Drizzle Kit style migrations folder (default: the bundled `generated` package)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.migrations", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser(
        "generate",
        help="write the next migration from the declarative schema file, verified before it is written",
        description="Diff the schema file against the last snapshot and write NNNN_<name>.sql, its snapshot, the"
        " journal entry and manifest.json - after replaying the result onto an empty database and onto one"
        " with rows. Exit codes: 0 written or nothing to do, 1 verification failed, 2 bad input, 3 refused.",
    )
    generate.add_argument("--name", required=True, help="what the migration does, e.g. add_history_index")
    _add_schema_option(generate)
    generate.add_argument(
        "--custom", action="store_true", help="write an empty migration for hand-written data changes"
    )
    generate.add_argument(
        "--rename",
        action="append",
        default=[],
        metavar="TABLE.OLD=NEW",
        help="declare a renamed column (repeatable)",
    )
    generate.add_argument(
        "--rename-table",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="declare a renamed table (repeatable)",
    )
    generate.add_argument("--allow-data-loss", action="store_true", help="allow dropping tables and columns")
    _add_migrations_option(generate)
    generate.set_defaults(run=_generate)

    check = commands.add_parser(
        "check",
        help="CI's guard: journal, files, snapshots, manifest and schema file agree; replay matches",
        description="Fail (exit 1) unless the migrations folder is consistent, manifest.json is current, the schema"
        " file has no changes left to generate, and replaying every migration gives it. Read-only.",
    )
    _add_schema_option(check)
    _add_migrations_option(check)
    check.set_defaults(run=_check)

    manifest = commands.add_parser(
        "manifest",
        help="rebuild manifest.json from the journal and SQL files",
        description="Rebuild manifest.json (what the runtime reads) from meta/_journal.json and the SQL files.",
    )
    _add_migrations_option(manifest)
    manifest.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if manifest.json is stale"
    )
    manifest.set_defaults(run=_manifest)

    lint = commands.add_parser(
        "lint",
        help="say what the migrations not yet deployed will do to every counter file; exit 1 if risky",
        description="For each migration not yet deployed, say in plain words what it does to every counter file:"
        " whether it is additive (if not, old instances answer 503 schema_too_new during the rollout), which"
        " tables it rebuilds, which steps can fail on existing data (a new NOT NULL, UNIQUE, CHECK, FOREIGN KEY"
        " or PRIMARY KEY), what it drops, which statements were written by hand, and whether foreign keys are"
        " switched off. Not yet deployed means: the migrations after --since TAG (the last one in production),"
        " or every migration with --all; without either, the last migration (what `generate` just wrote)."
        " Read-only. Exit codes: 0 nothing risky, 1 risky steps (a step that can fail on data, drop data, or a"
        " hand-written statement), 2 bad input.",
    )
    selection = lint.add_mutually_exclusive_group()
    selection.add_argument(
        "--since",
        metavar="TAG",
        help="lint the migrations after this one (its tag, e.g. 0003_add_owner, or its number, 0003)",
    )
    selection.add_argument("--all", action="store_true", help="lint every migration of the history")
    lint.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_migrations_option(lint)
    lint.set_defaults(run=_lint)

    status = commands.add_parser(
        "status",
        help="count counter files by schema version; list drifted, newer, foreign and unreadable ones",
        description="Survey every counter file under ROOT without changing any (read-only).",
    )
    status.add_argument("root", type=Path, metavar="ROOT", help="directory holding the counter files")
    status.add_argument("--json", action="store_true", help="print the report as JSON")
    status.add_argument(
        "--workers", type=int, default=1, metavar="N", help="processes (default: 1; 0 for the CPU count)"
    )
    status.add_argument(
        "--sweep",
        action="store_true",
        help="also delete stray *.tmp build files of interrupted creations older than an hour, listing each",
    )
    _add_migrations_option(status)
    status.set_defaults(run=_status)
    _add_preflight(commands)

    migrate = commands.add_parser(
        "migrate",
        help="bring every counter file under ROOT up to date now",
        description="Eagerly migrate every counter file under ROOT; files that are not counter files are untouched.",
    )
    migrate.add_argument("root", type=Path, metavar="ROOT", help="directory holding the counter files")
    migrate.add_argument(
        "--workers", type=int, default=None, metavar="N", help="processes (default: CPU count)"
    )
    migrate.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")
    _add_migrations_option(migrate)
    migrate.set_defaults(run=_migrate)
    return parser


def _generate(args: argparse.Namespace) -> int:
    from tools.migrations.diff import parse_renames
    from tools.migrations.generate import DEFAULT_SCHEMA, Request, generate
    from tools.migrations.schema import SchemaError

    try:
        renames = parse_renames(args.rename_table, args.rename)
    except SchemaError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print("fix the flags and run the command again.", file=sys.stderr)
        return EXIT_BAD_INPUT
    request = Request(
        folder=args.migrations,
        schema=args.schema or DEFAULT_SCHEMA,
        name=args.name,
        custom=args.custom,
        renames=renames,
        allow_data_loss=args.allow_data_loss,
    )
    return generate(request)


def _check(args: argparse.Namespace) -> int:
    from tools.migrations.generate import DEFAULT_SCHEMA, check

    return check(args.migrations, args.schema or DEFAULT_SCHEMA)


def _manifest(args: argparse.Namespace) -> int:
    from tools.migrations.manifest import manifest_problem, write_manifest

    folder: Path = args.migrations
    if args.check:
        problem = manifest_problem(folder)
        if problem is None:
            print(f"{folder}/manifest.json is current.")
            return EXIT_OK
        print(f"{problem}.", file=sys.stderr)
        return EXIT_FAILED
    written = folder / MANIFEST_FILE
    before = written.read_bytes() if written.is_file() else None
    manifest = write_manifest(folder)
    if written.read_bytes() == before:
        # Every `sam build` runs this once per function: say nothing to commit when nothing changed.
        print(f"{folder}/manifest.json is current: {manifest.version} migration(s).")
        return EXIT_OK
    print(f"Wrote {folder}/manifest.json: {manifest.version} migration(s). Commit it with the SQL files.")
    return EXIT_OK


def _lint(args: argparse.Namespace) -> int:
    from tools.migrations.lint import lint

    return lint(args.migrations, since=args.since, every=args.all, as_json=args.json)


def _status(args: argparse.Namespace) -> int:
    from tools.migrations.fleet import status

    return status(args.root, args.migrations, as_json=args.json, workers=args.workers, sweep=args.sweep)


def _add_preflight(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    preflight = commands.add_parser(
        "preflight",
        help="which counter files a migration would fail on, before deploying it (changes nothing)",
        description="Try the pending migrations of DIR on an in-memory copy of every counter file under ROOT"
        " (opened read-only; no byte changes, no file is left behind, even if killed) and report which"
        " would apply, which would fail (tag, statement, SQLite's message) and which cannot be checked."
        " Exit codes: 0 every file would migrate, 1 some would fail or cannot be checked, 2 bad input.",
    )
    preflight.add_argument("root", type=Path, metavar="ROOT", help="directory holding the counter files")
    preflight.add_argument(
        "--workers", type=int, default=None, metavar="N", help="processes (default: CPU count)"
    )
    preflight.add_argument("--json", action="store_true", help="print the report as JSON")
    preflight.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")
    _add_migrations_option(preflight)
    preflight.set_defaults(run=_preflight)


def _preflight(args: argparse.Namespace) -> int:
    from tools.migrations.fleet import preflight

    return preflight(
        args.root, args.migrations, as_json=args.json, workers=args.workers, progress=not args.no_progress
    )


def _migrate(args: argparse.Namespace) -> int:
    from tools.migrations.fleet import migrate

    return migrate(args.root, args.migrations, workers=args.workers, progress=not args.no_progress)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        require_folder(args.migrations)
        code: int = args.run(args)
    except FolderError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(
            exc.next_step
            or f"{len(exc.problems)} problem(s) in {args.migrations} - fix them and run the command again.",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except Misconfigured as exc:
        # A setting read from the environment (COUNTERS_BUSY_TIMEOUT_MS, ...): the operator's to fix.
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return code
