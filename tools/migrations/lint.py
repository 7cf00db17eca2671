"""`lint`: what migrations not yet deployed will do to every counter file, in plain words.

Read-only. Per migration it says whether it is additive (so whether old instances answer 503
during the rollout), which tables it rebuilds, which steps can fail on data that already exists
(a new NOT NULL, UNIQUE, CHECK, FOREIGN KEY or PRIMARY KEY), what it drops, which statements were
written by hand, and whether foreign keys are switched off. What a migration does comes from its
statements (as the engine will run them, from the manifest); what can fail comes from comparing
the snapshots before and after it, so a rebuild that only changes a default is not flagged.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from counter_core.manifest import Migration
from tools.migrations.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from tools.migrations.folder import FolderError, JournalEntry, folder_option, read_journal
from tools.migrations.introspect import REBUILD_PREFIX
from tools.migrations.manifest import build_manifest
from tools.migrations.schema import Schema, SchemaError, tightenings
from tools.migrations.snapshot import read_snapshot_chain, snapshot_path, snapshot_schema
from tools.migrations.sqltext import tokens


def preflight_command(folder: Path) -> str:
    """The `preflight` command a message prints for `folder`'s migrations.

    It names the folder unless it is the project's own: run as printed, a bare `preflight ROOT` tries
    the bundled migrations, finds nothing to apply and says "deploy" about a migration it never tried.
    """
    return f"python -m tools.migrations preflight ROOT{folder_option(folder)}"


@dataclass
class MigrationLint:
    """What one migration does to every counter file; `risky` when it can fail or lose data."""

    tag: str
    additive: bool
    foreign_keys_off: bool
    steps: list[str] = field(default_factory=list)  # what it does, in statement order
    rebuilds: list[str] = field(default_factory=list)  # tables copied row by row
    can_fail: list[str] = field(default_factory=list)  # steps that fail on some existing data
    data_loss: list[str] = field(default_factory=list)  # tables and columns dropped
    hand_written: list[str] = field(default_factory=list)  # statements the generator did not write

    @property
    def risky(self) -> bool:
        return bool(self.can_fail or self.data_loss or self.hand_written)


@dataclass
class LintReport:
    migrations: list[MigrationLint]
    selection: str  # which migrations, in words
    folder: Path  # the migrations folder, so the next step's command runs on it

    @property
    def risky(self) -> bool:
        return any(m.risky for m in self.migrations)

    @property
    def additive(self) -> bool:
        return all(m.additive for m in self.migrations)

    def next_step(self) -> str:
        if any(m.can_fail or m.hand_written for m in self.migrations):
            return (
                f"Next: run `{preflight_command(self.folder)}` against the counter files (it tries these migrations on each file"
                " and names the ones where a step would fail), fix those files, then deploy."
            )
        if any(m.data_loss for m in self.migrations):
            return "Next: make sure the dropped data is no longer needed (back it up if unsure), then deploy."
        if not self.additive:
            return (
                "Next: deploy this change on its own, with no other change; old instances answer 503 schema_too_new for migrated"
                " files until every instance runs the new code."
            )
        return "Next: nothing risky - deploy as usual."

    def as_json(self) -> dict[str, Any]:
        return {
            "selection": self.selection,
            "migrations": [{**asdict(m), "risky": m.risky} for m in self.migrations],
            "additive": self.additive,
            "risky": self.risky,
            "next": self.next_step(),
        }


def lint_folder(folder: Path, *, since: str | None = None, every: bool = False) -> LintReport:
    """Lint the chosen migrations of `folder`: after `since`, all of them, or else the last one.

    FolderError for an inconsistent folder or an unknown tag; SchemaError for a snapshot the
    generator cannot read.
    """
    entries = read_journal(folder)
    manifest = build_manifest(folder)
    snapshots = read_snapshot_chain(folder, entries)
    if every:
        start, selection = 0, "every migration"
    elif since is not None:
        position = _find(entries, since)
        start, selection = position + 1, f"the migrations after {entries[position].tag}"
    else:
        start, selection = max(len(entries) - 1, 0), "the last migration"
    linted = []
    for idx in range(start, len(entries)):
        before = _schema(folder, entries, snapshots, idx - 1)
        after = _schema(folder, entries, snapshots, idx)
        linted.append(lint_migration(manifest.migrations[idx], before, after, snapshots[idx].get("_meta")))
    return LintReport(linted, selection, folder)


def lint_migration(migration: Migration, before: Schema, after: Schema, meta: Any) -> MigrationLint:
    """What `migration` (from `before` to `after`; `meta` is its snapshot's `_meta`) does. Pure."""
    result = MigrationLint(migration.tag, migration.additive, migration.foreign_keys_off)
    _describe_statements(migration.statements, result)
    tables, columns = _renames(meta)
    for name, table in after.tables.items():
        old_name = next((old for old, new in tables.items() if new == name), name)
        # a table renamed away whose name a new table takes (archive and recreate) is not its past
        previous = None if old_name == name and name in tables else before.tables.get(old_name)
        if previous is not None:
            back = {new: old for (table_name, old), new in columns.items() if table_name == name}
            result.can_fail.extend(
                f"{t.subject}: fails on files {t.breaks_where}"
                for t in tightenings(previous, table, renamed_columns=back)
            )
    return result


def render_text(report: LintReport, folder: Path, *, with_next: bool = True) -> list[str]:
    """The report in plain words; the last line says what to do next (unless `with_next` is off)."""
    lines: list[str] = []
    if not report.migrations:
        lines.append(f"{folder}: no migrations to lint ({report.selection}).")
    for m in report.migrations:
        facts = ["additive" if m.additive else "NOT additive"]
        if m.foreign_keys_off:
            facts.append(
                "foreign keys switched off while it runs (checked with foreign_key_check before COMMIT)"
            )
        lines.append(f"{m.tag}: {', '.join(facts)}")
        lines.extend(f"  - {step}" for step in m.steps or ["runs no statement (an empty custom migration)"])
        if m.additive:
            lines.append("  rollout: old instances keep serving the files it migrates")
        else:
            lines.append(
                "  rollout: old instances answer 503 schema_too_new for each file a new instance has migrated,"
                " until every instance runs the new code"
            )
        for title, items in (
            ("can fail on existing data", m.can_fail),
            ("loses data", m.data_loss),
            ("hand-written, review it", m.hand_written),
        ):
            if items:
                lines.append(f"  {title}:")
                lines.extend(f"  ! {item}" for item in items)
    risky = sum(1 for m in report.migrations if m.risky)
    lines.append(
        f"{len(report.migrations)} migration(s) linted ({report.selection}):"
        f" {sum(1 for m in report.migrations if not m.additive)} not additive, {risky} risky."
    )
    if with_next:
        lines.append(report.next_step())
    return lines


def lint(folder: Path, *, since: str | None, every: bool, as_json: bool) -> int:
    """The `lint` command; returns its exit code (0 nothing risky, 1 risky steps, 2 bad input)."""
    try:
        report = lint_folder(folder, since=since, every=every)
    except SchemaError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print("fix the snapshot named above and run lint again.", file=sys.stderr)
        return EXIT_BAD_INPUT
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print("\n".join(render_text(report, folder)))
    return EXIT_FAILED if report.risky else EXIT_OK


def _find(entries: list[JournalEntry], since: str) -> int:
    for position, entry in enumerate(entries):
        if since in (entry.tag, entry.tag.split("_", 1)[0]):
            return position
    known = ", ".join(e.tag for e in entries) or "(none)"
    raise FolderError([f"--since {since!r}: no migration has this tag or number - tags: {known}"])


def _schema(folder: Path, entries: list[JournalEntry], snapshots: list[dict[str, Any]], idx: int) -> Schema:
    if idx < 0:
        return Schema()
    return snapshot_schema(snapshots[idx], source=f"meta/{snapshot_path(folder, entries[idx].tag).name}")


def _renames(meta: Any) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """Drizzle Kit's `_meta` renames: tables old -> new, columns (new table, old column) -> new column."""
    meta = meta if isinstance(meta, dict) else {}
    tables = {_unquote(k): _unquote(v) for k, v in (meta.get("tables") or {}).items()}
    columns: dict[tuple[str, str], str] = {}
    for old, new in (meta.get("columns") or {}).items():
        table, _, old_column = _unquote_pair(old)
        _, _, new_column = _unquote_pair(new)
        columns[(table, old_column)] = new_column
    return tables, columns


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') and name.endswith('"') else name


def _unquote_pair(text: str) -> tuple[str, str, str]:
    """'"t"."c"' -> ("t", ".", "c")."""
    table, dot, column = text.partition('"."')
    return _unquote(table + '"'), dot, _unquote('"' + column)


def _describe_statements(statements: tuple[str, ...], result: MigrationLint) -> None:
    rebuilt: dict[str, int] = {}  # rebuilt table -> indexes recreated after it
    for number, statement in enumerate(statements, start=1):
        head = tokens(statement)
        words = [t for t in head if t not in ("IF", "NOT", "EXISTS", "TEMP", "TEMPORARY")]
        if words[:2] == ["CREATE", "TABLE"]:
            name = words[2]
            if name.startswith(REBUILD_PREFIX):
                target = name[len(REBUILD_PREFIX) :]
                rebuilt[target] = 0
                result.rebuilds.append(target)
                result.steps.append(
                    f"rebuilds table `{target}`: copies every row into a new table, so time and journal size grow"
                    " with its rows"
                )
            else:
                result.steps.append(f"creates table `{name}`")
        elif words[:2] == ["CREATE", "INDEX"] or words[:3] == ["CREATE", "UNIQUE", "INDEX"]:
            unique = words[1] == "UNIQUE"
            name = words[3] if unique else words[2]
            table = head[head.index("ON") + 1] if "ON" in head else "?"
            if table in rebuilt:
                rebuilt[table] += 1
                continue
            kind = "unique index" if unique else "index"
            result.steps.append(f"creates {kind} `{name}` on `{table}`")
        elif words[:2] == ["DROP", "INDEX"]:
            result.steps.append(f"drops index `{words[2]}`")
        elif words[:2] == ["DROP", "TABLE"]:
            if words[2] not in rebuilt:
                result.steps.append(f"drops table `{words[2]}`")
                result.data_loss.append(f"table `{words[2]}` is dropped with all its rows")
        elif head[:2] == ["ALTER", "TABLE"]:
            _describe_alter(head, rebuilt, result)
        elif _is_rebuild_bookkeeping(head, rebuilt):
            continue
        else:
            text = " ".join(statement.split())
            result.steps.append(f"runs statement {number}: {text[:70]}{'...' if len(text) > 70 else ''}")
            result.hand_written.append(
                f"statement {number} ({head[0] if head else '?'}) was written by hand: it can fail or change data"
                " on some files"
            )
    for table, count in rebuilt.items():
        if count:
            result.steps.append(f"recreates {count} index(es) of `{table}` after its rebuild")


def _describe_alter(head: list[str], rebuilt: dict[str, int], result: MigrationLint) -> None:
    table = head[2]
    rest = head[3:]
    if rest[:2] == ["RENAME", "TO"]:
        if table.startswith(REBUILD_PREFIX):
            return  # the last step of a rebuild
        result.steps.append(f"renames table `{table}` to `{rest[2]}`")
    elif rest[:1] == ["RENAME"]:
        names = [t for t in rest[1:] if t not in ("COLUMN", "TO")]
        result.steps.append(f"renames column `{table}`.`{names[0]}` to `{names[1]}`")
    elif rest[:1] == ["ADD"]:
        column = rest[2] if rest[1:2] == ["COLUMN"] else rest[1]
        result.steps.append(f"adds column `{table}`.`{column}`")
    elif rest[:1] == ["DROP"]:
        column = rest[2] if rest[1:2] == ["COLUMN"] else rest[1]
        result.steps.append(f"drops column `{table}`.`{column}`")
        result.data_loss.append(f"column `{table}`.`{column}` is dropped with its values")


def _is_rebuild_bookkeeping(head: list[str], rebuilt: dict[str, int]) -> bool:
    """The copy into `__new_x` and the AUTOINCREMENT sequence carried over: parts of a rebuild."""
    if head[:2] == ["INSERT", "INTO"] and head[2].startswith(REBUILD_PREFIX):
        return head[2][len(REBUILD_PREFIX) :] in rebuilt
    return "SQLITE_SEQUENCE" in (t.upper() for t in head[:4]) and head[:1] in (["INSERT"], ["DELETE"])
