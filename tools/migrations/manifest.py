"""Build `manifest.json` (the runtime's view of the history) from a Drizzle Kit migrations folder.

The Python counterpart of Drizzle's `migrations.js`: ordered entries with their sha256, statements
already split, and two facts the runtime needs without parsing SQL: whether a migration is additive
(older code can live with it during a rolling deploy) and whether it needs foreign keys off.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

from counter_core.manifest import FORMAT, MANIFEST_FILE, Manifest, Migration, runtime_refusal
from tools.migrations.folder import FolderError, JournalEntry, read_journal, sql_files
from tools.migrations.sqltext import Statement, split_statements, tokens

# Statements that would end, nest or escape the engine's single migration transaction.
_TRANSACTION_WORDS = {
    "BEGIN",
    "COMMIT",
    "END",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "VACUUM",
    "ATTACH",
    "DETACH",
}
# Pragmas the engine owns: changing them inside a migration would break its bookkeeping or durability.
_ENGINE_PRAGMAS = {"JOURNAL_MODE", "LOCKING_MODE", "USER_VERSION", "APPLICATION_ID", "SYNCHRONOUS"}


def build_manifest(folder: Path) -> Manifest:
    """Read and check a migrations folder; every problem is reported at once as a FolderError."""
    entries = read_journal(folder)
    files = sql_files(folder)
    journal = "meta/_journal.json"
    problems: list[str] = []
    previous_when: int | None = None
    for position, entry in enumerate(entries):
        where = f"{journal}:{entry.line}"
        if entry.idx != position:
            problems.append(
                f"{where}: entry '{entry.tag}' has idx {entry.idx}, expected {position} - idx counts up from 0"
                " without gaps; renumber the journal"
            )
        if previous_when is not None and entry.when <= previous_when:
            problems.append(
                f"{where}: entry '{entry.tag}' has when {entry.when}, not after the previous entry's"
                f" {previous_when} - `when` must strictly increase; regenerate the migration"
            )
        previous_when = entry.when
        if entry.tag not in files:
            problems.append(f"{where}: entry '{entry.tag}' has no file {entry.tag}.sql - restore the file")
    tags = {entry.tag for entry in entries}
    for tag in files:
        if tag not in tags:
            problems.append(
                f"{tag}.sql:1: not in {journal} - add it with `python -m tools.migrations generate`"
                " or delete the file"
            )
    migrations: list[Migration] = []
    for entry in entries:
        if entry.tag not in files:
            continue
        raw = files[entry.tag].read_bytes()
        migration, found = _migration(entry.idx, entry.tag, entry.when, raw)
        problems.extend(found)
        migrations.append(migration)
    if problems:
        raise FolderError(problems)
    manifest = Manifest(format=FORMAT, migrations=tuple(migrations))
    refused = runtime_refusal(manifest)
    if refused is not None:
        # What the journal checks above let through (a `when` below 0, a tag over 200 characters):
        # written, it would pass `manifest --check` and fail every cold start of the deployment.
        raise FolderError([_refusal_problem(journal, entries, *refused)])
    return manifest


def _refusal_problem(journal: str, entries: list[JournalEntry], field: str, problem: str) -> str:
    parts = field.split(".")
    if len(parts) == 3 and parts[2] in ("tag", "when"):
        # Every entry has its file by now, so migrations[N] is entries[N].
        entry = entries[int(parts[1])]
        if parts[2] == "tag":
            return (
                f"{journal}:{entry.line}: entry '{entry.tag}' has a tag the runtime refuses ({problem})"
                " - rename the entry and file"
            )
        return (
            f"{journal}:{entry.line}: entry '{entry.tag}' has when {entry.when}, which the runtime refuses"
            f" ({problem}) - regenerate the migration"
        )
    return (
        f"{journal}:1: the manifest's field '{field}' {problem}, which the runtime refuses - fix the folder"
    )


def render_manifest(manifest: Manifest) -> bytes:
    """Byte-stable JSON: the same folder always gives the same bytes."""
    return (json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n").encode()


def manifest_problem(folder: Path) -> str | None:
    """Why `manifest.json` is not what `manifest` would write (missing or stale), else None. Read-only."""
    path = folder / MANIFEST_FILE
    remedy = f"run `python -m tools.migrations manifest --migrations {folder}` and commit it"
    expected = render_manifest(build_manifest(folder))
    if not path.exists():
        # A folder exactly as drizzle-kit leaves it has none: nothing is wrong, it is just not built yet.
        return f"{path} does not exist yet - {remedy}"
    if path.read_bytes() != expected:
        return f"{path} is stale - {remedy}"
    return None


def write_manifest(folder: Path) -> Manifest:
    manifest = build_manifest(folder)
    (folder / MANIFEST_FILE).write_bytes(render_manifest(manifest))
    return manifest


def _migration(idx: int, tag: str, when: int, raw: bytes) -> tuple[Migration, list[str]]:
    problems: list[str] = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = ""
        problems.append(f"{tag}.sql:1: not UTF-8 ({exc.reason}) - save it as UTF-8")
    kept: list[str] = []
    foreign_keys_off = False
    additive = True
    for statement in split_statements(text):
        head = tokens(statement.text)
        fk = _foreign_keys_pragma(head)
        if fk is not None:
            foreign_keys_off = foreign_keys_off or fk == "off"
            continue
        problem = _forbidden(head)
        if problem:
            problems.append(f"{tag}.sql:{statement.line}: {problem}")
            continue
        additive = additive and _is_additive(statement)
        kept.append(statement.text)
    migration = Migration(
        idx=idx,
        tag=tag,
        when=when,
        sha256=hashlib.sha256(raw).hexdigest(),
        additive=additive,
        foreign_keys_off=foreign_keys_off,
        statements=tuple(kept),
    )
    return migration, problems


def _pragma_name(head: list[str]) -> str | None:
    if not head or head[0] != "PRAGMA" or len(head) < 2:
        return None
    # PRAGMA schema.name = value
    if len(head) >= 4 and head[2] == ".":
        return head[3].upper()
    return head[1].upper()


def _foreign_keys_pragma(head: list[str]) -> str | None:
    """'off' or 'on' for `PRAGMA foreign_keys=OFF/ON` (Drizzle's rebuild bracket), else None."""
    if _pragma_name(head) != "FOREIGN_KEYS":
        return None
    value = [t.upper() for t in head if t not in ("=", "(", ")", ";")][-1]
    if value in ("OFF", "FALSE", "NO", "0"):
        return "off"
    return "on"


def _forbidden(head: list[str]) -> str | None:
    if head and head[0] in _TRANSACTION_WORDS:
        return (
            f"{head[0]} is not allowed in a migration: the engine runs every pending migration in one"
            " transaction - remove the statement"
        )
    pragma = _pragma_name(head)
    if pragma in _ENGINE_PRAGMAS:
        return f"PRAGMA {pragma.lower()} is not allowed in a migration: the engine manages it - remove the statement"
    return None


def _is_additive(statement: Statement) -> bool:
    """Only what older code can live with: new tables, non-unique indexes, columns it can ignore."""
    head = tokens(statement.text)
    words = [t for t in head if t not in ("IF", "NOT", "EXISTS")][:3]
    if words[:2] == ["CREATE", "TABLE"] or words[:3] in (
        ["CREATE", "TEMP", "TABLE"],
        ["CREATE", "TEMPORARY", "TABLE"],
    ):
        return "AS" not in head[:8]
    if words[:2] == ["CREATE", "INDEX"]:
        return True
    if head[:2] == ["ALTER", "TABLE"] and "ADD" in head:
        column_def = head[head.index("ADD") + 1 :]
        not_null = any(pair == ("NOT", "NULL") for pair in itertools.pairwise(column_def))
        return not not_null or "DEFAULT" in column_def
    return False
