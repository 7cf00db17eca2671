"""One counter file at a time, as fleet tools see it: survey it read-only, or migrate it eagerly.

Used by `tools.migrations status|migrate` and by the SQS fleet worker; both walk files with
`paths.iter_counter_files`, so nothing that is not shaped like a counter file is ever opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import apsw

from counter_core.connection import open_database
from counter_core.errors import MigrationError, StorageBusy
from counter_core.manifest import Manifest
from counter_core.migrate import APPLICATION_ID, applied_migrations, ensure_current, read_header


class FileState(StrEnum):
    CURRENT = "current"
    BEHIND = "behind"  # lazily migrated on next open, or by `migrate`
    NEWER = "newer"  # applied migrations this bundle does not know (all additive: still served)
    NEWER_BREAKING = "newer_breaking"
    DRIFTED = "drifted"
    FOREIGN = "foreign"
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class FileSurvey:
    path: Path
    state: FileState
    version: int | None
    detail: str = ""


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


def survey_file(path: Path, manifest: Manifest) -> FileSurvey:
    """Classify one counter file without writing to it (opened read-only; never migrated)."""
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_NOFOLLOW)
    except apsw.Error as exc:
        return FileSurvey(path, FileState.UNREADABLE, None, str(exc))
    try:
        conn.set_busy_timeout(1000)
        return _survey(conn, path, manifest)
    except apsw.Error as exc:
        return FileSurvey(path, FileState.UNREADABLE, None, str(exc))
    finally:
        conn.close()


def _survey(conn: apsw.Connection, path: Path, manifest: Manifest) -> FileSurvey:
    application_id, version = read_header(conn)
    if application_id != APPLICATION_ID:
        tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        if application_id == 0 and tables is not None and tables[0] == 0:
            return FileSurvey(path, FileState.BEHIND, 0, "empty file, never migrated")
        return FileSurvey(path, FileState.FOREIGN, None, f"application_id {application_id:#010x}")
    applied = applied_migrations(conn)
    for record in applied[: manifest.version]:
        if record.idx >= manifest.version or record.sha256 != manifest.migrations[record.idx].sha256:
            return FileSurvey(path, FileState.DRIFTED, version, f"'{record.tag}' has sha256 {record.sha256}")
    if version > manifest.version:
        breaking = [record.tag for record in applied[manifest.version :] if not record.additive]
        if breaking:
            return FileSurvey(path, FileState.NEWER_BREAKING, version, f"not additive: {breaking}")
        return FileSurvey(path, FileState.NEWER, version)
    if version < manifest.version:
        return FileSurvey(path, FileState.BEHIND, version)
    return FileSurvey(path, FileState.CURRENT, version)


def migrate_file(path: Path, manifest: Manifest, *, busy_timeout_ms: int) -> FileMigration:
    """Bring one existing counter file up to date; never creates a file. Failures are returned, not raised."""
    try:
        conn = open_database(path, create=False, busy_timeout_ms=busy_timeout_ms)
    except (apsw.Error, StorageBusy, MigrationError) as exc:  # the open refuses odd files itself
        return FileMigration(path, MigrateOutcome.FAILED, error=str(exc))
    try:
        report = ensure_current(conn, manifest, label=path.name)
    except (MigrationError, StorageBusy, apsw.Error) as exc:
        return FileMigration(path, MigrateOutcome.FAILED, error=str(exc))
    finally:
        conn.close()
    if report is None or not report.applied:
        return FileMigration(path, MigrateOutcome.ALREADY_CURRENT)
    return FileMigration(path, MigrateOutcome.MIGRATED, applied=report.applied)
