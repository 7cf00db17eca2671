"""One counter file at a time, as fleet tools see it: survey it read-only, try its migrations, migrate it.

Used by `tools.migrations status|preflight|migrate` and by the fleet Lambda functions; all walk files
with `paths.walk_fleet`, so nothing that is not named like a counter file is ever opened, and only
regular files are: the walk's listing gives each file's type (`regular`), and `_refusal` below names
what anything else is (a FIFO would block an open forever).

Guarantees:
- `survey_file` never writes: the file is opened read-only, and a trial of its pending migrations
  runs on an in-memory copy made with SQLite's backup API. No journal, no temporary file, no byte
  of the counter file changes, whatever happens - a process killed mid-survey leaves nothing behind.
- `migrate_file` never raises for a file: every per-file failure comes back as a FAILED result
  naming what went wrong, so one bad file never stops a fleet run.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import apsw

from counter_core import connection
from counter_core.connection import _open_probed, open_database
from counter_core.errors import CounterError, MigrationFailed
from counter_core.manifest import Manifest
from counter_core.migrate import (
    APPLICATION_ID,
    MigrationReport,
    applied_migrations,
    begin_exclusive,
    ensure_current,
    migrate_in_transaction,
    pending_need_foreign_keys_off,
    read_header,
)
from counter_core.paths import walk_fleet

# How long a survey waits for a writer's lock; surveys only need a shared lock, held by writers
# for milliseconds.
SURVEY_BUSY_TIMEOUT_MS = 1000


class FileState(StrEnum):
    CURRENT = "current"
    BEHIND = "behind"  # lazily migrated on next open, or by `migrate`
    FAILING = "failing"  # behind, and its pending migrations fail on its rows (preflight's "would fail")
    NEWER = "newer"  # applied migrations this bundle does not know (all additive: still served)
    NEWER_BREAKING = "newer_breaking"
    DRIFTED = "drifted"
    FOREIGN = "foreign"
    EMPTY = "empty"  # 0 bytes: new files only appear complete, so this is damage
    NOT_A_FILE = "not_a_file"  # a FIFO, directory, symlink or device at a counter's path
    HOT_JOURNAL = "hot_journal"  # a crashed writer's journal: the next read-write open rolls it back
    UNREADABLE = "unreadable"


# The states that need a person; every other state resolves itself or by `migrate`.
PROBLEMS: tuple[FileState, ...] = (
    FileState.FAILING,
    FileState.NEWER_BREAKING,
    FileState.DRIFTED,
    FileState.FOREIGN,
    FileState.EMPTY,
    FileState.NOT_A_FILE,
    FileState.UNREADABLE,
)


@dataclass(frozen=True)
class FileSurvey:
    path: Path
    state: FileState
    version: int | None
    detail: str = ""
    counter_id: str | None = None  # the ID stored in the file, where it holds one
    pending: tuple[str, ...] = ()  # tags a migration would apply (BEHIND, FAILING)
    failed_tag: str = ""  # FAILING: the migration that fails
    failed_statement: int | None = None  # FAILING: its statement number (None: the foreign key check)


class MigrateOutcome(StrEnum):
    MIGRATED = "migrated"
    ALREADY_CURRENT = "already_current"
    FAILED = "failed"


@dataclass(frozen=True)
class FileMigration:
    path: Path
    outcome: MigrateOutcome
    applied: tuple[str, ...] = ()
    error: str = ""


def _refusal(path: Path) -> tuple[FileState, str] | None:
    """Why a path must not be opened at all (not a regular file, or empty), else None. One lstat."""
    try:
        info = path.lstat()
    except OSError as exc:
        return FileState.UNREADABLE, f"cannot stat it ({exc.strerror})"
    mode = info.st_mode
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a directory"
            if stat.S_ISDIR(mode)
            else "a symlink"
            if stat.S_ISLNK(mode)
            else "a socket or device"
        )
        return FileState.NOT_A_FILE, f"{kind}, not a regular file - never opened; move it away"
    if info.st_size == 0:
        return FileState.EMPTY, _EMPTY
    return None


_EMPTY = "0 bytes: new counter files only appear complete, so this one lost its data - restore it from backup"


def _checked(path: Path, regular: bool | None) -> tuple[FileState, str] | None:
    """`_refusal`, unless the walk's listing already said the file is regular (then no call at all).

    Skipping the lstat is safe for the two things it guarded: a file that became a FIFO since the
    listing is the same race the lstat had before the open, and an empty file is recognised after
    the open by its page count (0), at no extra call.
    """
    return None if regular else _refusal(path)


def survey_file(
    path: Path, manifest: Manifest, *, trial: bool = True, regular: bool | None = None
) -> FileSurvey:
    """Classify one counter file without writing to it; with `trial`, try a behind file's migrations.

    Read-only: the file is opened with SQLITE_OPEN_READONLY, and the trial runs the real migration
    engine on an in-memory copy (backup API), so it reports exactly what a real migration would do.
    `regular` is the directory listing's file type (paths.FleetEntry); None looks it up (one lstat).
    """
    refused = _checked(path, regular)
    if refused is not None:
        return FileSurvey(path, refused[0], None, refused[1])
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_NOFOLLOW)
    except apsw.Error as exc:
        return FileSurvey(path, FileState.UNREADABLE, None, str(exc))
    try:
        # The API refuses a file in WAL mode, so status must not call it current.
        complete, header = connection.header_bytes(conn)
        if complete and connection.not_rollback_journal(header):
            return FileSurvey(path, FileState.FOREIGN, None, _WAL)
        conn.set_busy_timeout(SURVEY_BUSY_TIMEOUT_MS)
        if trial and complete and _looks_behind(header, manifest):
            surveyed = _survey_copy(conn, path, manifest)
            if surveyed is not None:
                return surveyed
        # Any other file (current, newer, never migrated, odd, or one whose copy failed) is read here,
        # in one read transaction for every read and the copy: each statement on its own takes and drops
        # the shared lock and looks for a hot journal again (strace, tools.bench figure 5e: 20 locks
        # and 10 failed lookups per behind file, 8 and 4 in one transaction; on NFS each is a round
        # trip). The file is opened read-only, so ending the transaction never writes.
        conn.execute("BEGIN")
        try:
            survey = _survey(conn, path, manifest)
            if trial and survey.state is FileState.BEHIND:
                copy = _copy(conn)
                try:
                    survey = _trial(copy, survey, manifest)
                finally:
                    copy.close()
        finally:
            if not conn.get_autocommit():
                conn.execute("COMMIT")
        return survey
    except apsw.ReadOnlyError as exc:
        # (the extended code is set on every apsw.Error; the type stubs do not declare it)
        if getattr(exc, "extendedresult", None) == apsw.SQLITE_READONLY_ROLLBACK:
            return FileSurvey(
                path,
                FileState.HOT_JOURNAL,
                None,
                "a writer died mid-transaction; its journal rolls back on the next read-write open"
                " (a request, or `migrate`) - nothing to do; survey again after that",
            )
        return FileSurvey(path, FileState.UNREADABLE, None, str(exc))
    except apsw.Error as exc:
        return FileSurvey(path, FileState.UNREADABLE, None, str(exc))
    finally:
        conn.close()


_WAL = (
    "in WAL mode, which counter files never use (the API answers 503 for it) - if it is a counter,"
    " run `PRAGMA journal_mode=DELETE` on it with no other connection open; otherwise move it away"
)


def _counter_id(conn: apsw.Connection) -> str | None:
    """The counter ID the file stores (schema.sql: counter_metadata.name), if it has one. Read-only."""
    try:
        row = conn.execute("SELECT name FROM counter_metadata WHERE id = 1").fetchone()
    except apsw.SQLError:  # a schema without the table (an older history, a test's schema)
        return None
    return None if row is None else str(row[0])


def history_drift(conn: apsw.Connection, manifest: Manifest) -> str | None:
    """How the file's applied history differs from the manifest's (naming the tag), or None. Read-only."""
    for record in applied_migrations(conn)[: manifest.version]:
        expected = manifest.migrations[record.idx] if record.idx < manifest.version else None
        if expected is None or record.sha256 != expected.sha256 or record.tag != expected.tag:
            return (
                f"migration '{record.tag}' was applied with sha256 {record.sha256}, which this bundle's"
                " migrations do not match - restore the original migration file (git history)"
            )
    return None


def _survey(conn: apsw.Connection, path: Path, manifest: Manifest) -> FileSurvey:
    application_id, version = read_header(conn)
    if application_id != APPLICATION_ID:
        tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        if application_id == 0 and tables is not None and tables[0] == 0:
            pages = conn.execute("PRAGMA page_count").fetchone()
            if pages is not None and pages[0] == 0:
                return FileSurvey(path, FileState.EMPTY, None, _EMPTY)
            pending = tuple(m.tag for m in manifest.migrations)
            return FileSurvey(path, FileState.BEHIND, 0, "never migrated", pending=pending)
        return FileSurvey(path, FileState.FOREIGN, None, f"application_id {application_id:#010x}")
    counter_id = _counter_id(conn)
    drift = history_drift(conn, manifest)
    if drift is not None:
        return FileSurvey(path, FileState.DRIFTED, version, drift, counter_id)
    if version > manifest.version:
        applied = applied_migrations(conn)
        breaking = [record.tag for record in applied[manifest.version :] if not record.additive]
        if breaking:
            return FileSurvey(
                path, FileState.NEWER_BREAKING, version, f"not additive: {breaking}", counter_id
            )
        return FileSurvey(path, FileState.NEWER, version, "", counter_id)
    if version < manifest.version:
        pending = tuple(m.tag for m in manifest.migrations[version:])
        return FileSurvey(path, FileState.BEHIND, version, "", counter_id, pending)
    return FileSurvey(path, FileState.CURRENT, version, "", counter_id)


def _looks_behind(header: bytes, manifest: Manifest) -> bool:
    """Whether a file's header, read without a lock, marks a counter file behind this bundle: a hint.

    It only chooses where the survey reads (`_survey_copy`); everything reported is read under the
    lock, and a file that is not SQLite at all fails the copy and is surveyed as before. Offsets:
    https://sqlite.org/fileformat.html#the_database_header (user_version at 60, application_id at
    68, both big-endian).
    """
    return (
        int.from_bytes(header[68:72], "big") == APPLICATION_ID
        and int.from_bytes(header[60:64], "big") < manifest.version
    )


def _copy(conn: apsw.Connection) -> apsw.Connection:
    """An in-memory copy of the file at `conn` (backup API): all pages, under one shared lock."""
    copy = apsw.Connection(":memory:")
    try:
        with copy.backup("main", conn, "main") as backup:
            backup.step()  # all pages, under one shared lock on the source
    except BaseException:
        copy.close()
        raise
    return copy


def _survey_copy(conn: apsw.Connection, path: Path, manifest: Manifest) -> FileSurvey | None:
    """Survey a file its header says is behind, reading only its in-memory copy; then try the trial.

    A behind file is copied for its trial anyway, and the copy is the file as one shared lock saw it,
    so every read the survey makes gives the same answer on the copy: the file's schema is parsed once
    (on the copy) instead of twice, and the file takes one lock and no statement (the backup's).
    Measured: preflight (tools.bench figure 5b) went from 1.3-1.7x raw APSW's time per file to
    1.0-1.3x (10,000 files, a shared two-core host); status of behind files (strace, figure 5e) from
    27.6 round trips per file to 21.6 (4 locks instead of 8, 2 failed lookups instead of 4).

    None when the copy fails (the file is locked, damaged, has a hot journal): APSW reports a failed
    backup as "not an error", so the caller surveys the file itself, whose statements name what is wrong.
    """
    try:
        copy = _copy(conn)
    except apsw.Error:
        return None
    try:
        survey = _survey(copy, path, manifest)
        if survey.state is FileState.BEHIND:
            survey = _trial(copy, survey, manifest)
    finally:
        copy.close()
    return survey


def _trial(copy: apsw.Connection, survey: FileSurvey, manifest: Manifest) -> FileSurvey:
    """Run the pending migrations on `copy`, an in-memory copy of the file (`_copy`), with the real engine."""
    try:
        copy.execute("PRAGMA foreign_keys=ON")  # as counter_core.connection sets it
        ensure_current(copy, manifest, label=survey.path.name)
    except MigrationFailed as exc:
        reason = str(exc.__cause__) if exc.__cause__ is not None else str(exc).split(": ", 1)[-1]
        where = f"statement {exc.statement}" if exc.statement is not None else "the foreign key check"
        return FileSurvey(
            survey.path,
            FileState.FAILING,
            survey.version,
            f"migration '{exc.tag}' fails at {where}: {reason}",
            survey.counter_id,
            survey.pending,
            failed_tag=exc.tag,
            failed_statement=exc.statement,
        )
    except CounterError as exc:
        return FileSurvey(survey.path, FileState.UNREADABLE, survey.version, str(exc), survey.counter_id)
    return survey


def migrate_file(
    path: Path, manifest: Manifest, *, busy_timeout_ms: int, regular: bool | None = None
) -> FileMigration:
    """Bring one existing counter file up to date, verifying its applied history; never creates a file.

    Every failure is returned, not raised, naming the cause: a file that is not a regular file or is
    empty is never opened; a drifted file (an applied migration edited since) fails naming the tag,
    current or not. `regular` is the directory listing's file type (paths.FleetEntry); None looks it
    up (one lstat).
    """
    refused = _checked(path, regular)
    if refused is None:
        try:
            if regular:
                # The listing said it is a regular file: skip the open path's own lookup (its probe),
                # as the survey skips its lstat; _check_header still refuses anything not ours.
                conn = _open_probed(path, create=False, busy_timeout_ms=busy_timeout_ms, label=str(path))
            else:
                conn = open_database(path, create=False, busy_timeout_ms=busy_timeout_ms)
        except (CounterError, apsw.Error, OSError) as exc:  # the open refuses odd files itself
            # Named as `status` names it where the file is odd (empty, not a file): a rare path.
            refused = _refusal(path)
            if refused is None:
                return FileMigration(path, MigrateOutcome.FAILED, error=str(exc))
    if refused is not None:
        return FileMigration(path, MigrateOutcome.FAILED, error=f"{refused[0].value}: {refused[1]}")
    try:
        done = _migrate_exclusive(conn, manifest, label=path.name)
        if done is None:
            report = ensure_current(conn, manifest, label=path.name)
            # The engine verifies the history of a file it migrates; the fast path does not read it.
            drift = history_drift(conn, manifest) if report is None else None
        else:
            report, drift = done
    except (CounterError, apsw.Error, OSError) as exc:
        return FileMigration(path, MigrateOutcome.FAILED, error=str(exc))
    finally:
        conn.close()
    if drift is not None:
        return FileMigration(path, MigrateOutcome.FAILED, error=f"drifted: {drift}")
    if report is None or not report.applied:
        return FileMigration(path, MigrateOutcome.ALREADY_CURRENT)
    return FileMigration(path, MigrateOutcome.MIGRATED, applied=report.applied)


def _migrate_exclusive(
    conn: apsw.Connection, manifest: Manifest, *, label: str
) -> tuple[MigrationReport | None, str | None] | None:
    """Check and migrate a file in one exclusive transaction, as raw APSW would; None: use the engine's path.

    `ensure_current` reads the header in a read transaction first, so that a request finding its
    file current never takes a write lock; a fleet run expects files behind, and that read costs a
    behind file a second transaction (strace, tools.bench figure 5f: 4 locks and 2 failed lookups
    per file, about 3 ms on EFS). Here the header, the history check of a current file and the
    migration share one `BEGIN EXCLUSIVE`. The engine's own path keeps every case this one does not
    cover: a file not yet marked as a counter's, one newer than the bundle, and pending migrations
    that rebuild a table (foreign keys must be switched off before BEGIN).
    """
    begin_exclusive(conn, label=label)
    try:
        application_id, version = read_header(conn)
        if (
            application_id != APPLICATION_ID
            or version > manifest.version
            or pending_need_foreign_keys_off(manifest, version)
        ):
            conn.execute("ROLLBACK")
            return None
        if version == manifest.version:
            drift = history_drift(conn, manifest)
            conn.execute("COMMIT")  # nothing was written
            return None, drift
        report = migrate_in_transaction(conn, manifest, label=label)
        conn.execute("COMMIT")
    except BaseException:
        if not conn.get_autocommit():
            conn.execute("ROLLBACK")
        raise
    return report, None


def root_problem(root: Path) -> str | None:
    """Why ROOT cannot be the counters root (missing, not a directory), else None: an operator error."""
    if not root.exists():
        return f"{root} does not exist - check the path (is the file system mounted?)"
    if not root.is_dir():
        return f"{root} is not a directory - give the directory holding the counter files"
    if not os.access(root, os.R_OK | os.X_OK):
        return f"{root} cannot be read - run as a user that can read the counter files"
    return None


# A build file younger than this may belong to a creation in progress (it takes milliseconds).
STRAY_AGE_S = 3600


def sweep_temporaries(
    root: Path,
    *,
    prefixes: tuple[str, ...] | None = None,
    older_than_s: float = STRAY_AGE_S,
    now: float | None = None,
    candidates: list[Path] | None = None,
) -> list[Path]:
    """Delete build files of interrupted counter creations older than `older_than_s`; return them.

    A `*.tmp` build file is private to the process that creates a counter (counter_core.create) and
    is linked into place complete or not at all, so an old one belongs to a process that died: the
    counter was never created from it, and deleting it loses nothing. Only names shaped exactly like
    such files are touched (paths.walk_fleet), and only regular files. `candidates` are build files a
    walk already found (status lists them); None walks the tree for them.
    """
    cutoff = (time.time() if now is None else now) - older_than_s
    removed: list[Path] = []
    if candidates is None:
        candidates = [e.path for e in walk_fleet(root, prefixes=prefixes) if e.temporary]
    for path in candidates:
        try:
            info = path.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:
            continue  # its creator finished (it unlinks its own build file) or another sweeper won
    return removed
