"""The migration engine: bring one counter database up to this bundle's manifest, exactly once.

Guarantees:
- Fast path: `ensure_current` on an up-to-date file costs one read of its header (application_id and
  user_version) in one read transaction, without a write lock; the request path reads the header
  inside the request's own transaction instead (counter_core.connection.ConnectionCache.admit).
- Exactly once: the slow path holds the write lock (`BEGIN EXCLUSIVE`, or the caller's `BEGIN
  IMMEDIATE` through `migrate_in_transaction`) and re-reads everything under it, so of many
  processes racing on one new file, one applies and the rest find nothing to do. SQLite's own file
  lock serialises them and dies with its process: there is no lock table and no stale lock.
- All or nothing: every pending migration and its `__migrations` record commit in one transaction;
  any failure rolls all of it back and leaves the file as it was. The next open retries.
- Verified by content: every applied migration's sha256 is checked against the bundle's copy.
"""

from __future__ import annotations

import time

import apsw

from counter_core.errors import (
    AdoptionRefused,
    CounterFileDamaged,
    MigrationDrift,
    MigrationFailed,
    NotACounterDatabase,
    SchemaTooNew,
    StorageBusy,
    StorageUnavailable,
)
from counter_core.manifest import Manifest, Migration
from counter_core.records import rfc3339
from counter_core.values import Value

# PRAGMA application_id marks a counter database: "Cntr" as a big-endian 32-bit integer.
APPLICATION_ID = 0x436E7472
MIGRATIONS_TABLE = "__migrations"
DRIZZLE_TABLE = "__drizzle_migrations"

_HEADER = "SELECT application_id, user_version FROM pragma_application_id(), pragma_user_version()"
_CREATE_MIGRATIONS = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    idx INTEGER PRIMARY KEY NOT NULL,
    tag TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    "when" INTEGER NOT NULL,
    applied_at TEXT NOT NULL,
    additive INTEGER NOT NULL
)"""


class AppliedMigration(Value):
    """A row of a file's own migration history."""

    __slots__ = ("additive", "idx", "sha256", "tag")

    def __init__(self, idx: int, tag: str, sha256: str, additive: bool) -> None:
        self.idx = idx
        self.tag = tag
        self.sha256 = sha256
        self.additive = additive


class MigrationReport(Value):
    """What the slow path did to one file (the fast path returns no report)."""

    __slots__ = ("adopted", "applied", "from_version", "seconds", "to_version", "unknown_additive")

    def __init__(
        self,
        from_version: int,
        to_version: int,
        applied: tuple[str, ...] = (),
        adopted: tuple[str, ...] = (),
        unknown_additive: tuple[str, ...] = (),
        seconds: float = 0.0,
    ) -> None:
        self.from_version = from_version
        self.to_version = to_version
        self.applied = applied
        self.adopted = adopted
        # Migrations a newer deployment applied that this bundle does not know, tolerated as additive.
        self.unknown_additive = unknown_additive
        self.seconds = seconds

    def _fields(self) -> tuple[object, ...]:
        # Equality and hash leave out `seconds`: how long a run took is not what it did.
        return (self.from_version, self.to_version, self.applied, self.adopted, self.unknown_additive)


def read_header(conn: apsw.Connection) -> tuple[int, int]:
    """(application_id, user_version) in one read transaction. Read-only."""
    row = conn.execute(_HEADER).fetchone()
    assert row is not None  # both pragmas always return one row
    return int(row[0]), int(row[1])


# Read inside the operation's own transaction (counter_core.connection): page 1 was read when the lock
# was taken, so this costs no file-system call. page_count 0 means the file is empty.
# What the file system, not the SQL, made fail: a full disk, a read-only file or mount, an I/O error.
# Never a broken migration (no quarantine): the same migration runs once the operator fixes the storage.
STORAGE_ERRORS: tuple[type[apsw.Error], ...] = (apsw.FullError, apsw.ReadOnlyError, apsw.IOError)


def damaged(label: str, why: str) -> CounterFileDamaged:
    return CounterFileDamaged(
        f"{label}: the counter file is damaged ({why}) - it was left untouched; restore it from a backup"
        " or move it away (the counter then starts afresh)",
        public="the counter's file is damaged - an operator must restore it",
    )


MALFORMED = "SQLite finds it malformed - cut short or overwritten"


def storage_unavailable(label: str, exc: Exception) -> StorageUnavailable:
    why = (exc.strerror or type(exc).__name__) if isinstance(exc, OSError) else str(exc)
    return StorageUnavailable(
        f"{label}: the file system refused an operation ({why}) - nothing changed; free space, or make the"
        " counters root, its directories and files writable by this function's user"
    )


HEADER_IN_TRANSACTION = (
    "SELECT application_id, user_version, page_count, journal_mode"
    " FROM pragma_application_id(), pragma_user_version(), pragma_page_count(), pragma_journal_mode()"
)


def pending_need_foreign_keys_off(manifest: Manifest, version: int) -> bool:
    """Whether a migration past `version` rebuilds a table (foreign keys must be off before BEGIN)."""
    return any(m.foreign_keys_off for m in manifest.migrations[min(version, manifest.version) :])


def migrate_in_transaction(
    conn: apsw.Connection, manifest: Manifest, *, label: str, check_foreign_keys: bool = False
) -> MigrationReport:
    """Apply the pending migrations inside the caller's write transaction (the caller commits).

    For a write request that finds its file one or more migrations behind: the migrations and the
    request's own write then commit together, one transaction instead of two. The caller must hold
    the write lock (`BEGIN IMMEDIATE` or `EXCLUSIVE`): every other writer is excluded just as under
    `BEGIN EXCLUSIVE`, and readers see the old file until COMMIT. The caller switches foreign keys
    off before BEGIN when `pending_need_foreign_keys_off` says so.
    """
    started = time.perf_counter()
    report = _migrate_locked(conn, manifest, label=label, check_foreign_keys=check_foreign_keys)
    return MigrationReport(
        from_version=report.from_version,
        to_version=report.to_version,
        applied=report.applied,
        adopted=report.adopted,
        unknown_additive=report.unknown_additive,
        seconds=time.perf_counter() - started,
    )


def check_newer(conn: apsw.Connection, manifest: Manifest, *, label: str, version: int) -> MigrationReport:
    """A file ahead of this bundle (a rolling deploy): a report if every unknown migration is additive.

    Raises SchemaTooNew otherwise. Read-only; runs in the caller's transaction if it has one.
    """
    return _check_newer(conn, manifest, label=label, version=version)


def ensure_current(conn: apsw.Connection, manifest: Manifest, *, label: str) -> MigrationReport | None:
    """Make the database at `conn` current with `manifest`; None when it already was (fast path).

    `label` names the database in errors (a counter ID or a file name). Raises a MigrationError
    subclass when the database is foreign, drifted, too new or a migration fails; in every such case
    the file is unchanged. Raises StorageBusy when the lock cannot be had within the busy timeout.
    """
    try:
        application_id, version = read_header(conn)
    except apsw.BusyError as exc:
        raise StorageBusy(f"{label}: locked by another writer past the busy timeout") from exc
    except apsw.NotADBError as exc:
        raise not_a_database(label, "it is not an SQLite database") from exc
    if application_id == APPLICATION_ID and version == manifest.version:
        return None
    if application_id == APPLICATION_ID and version > manifest.version:
        return _check_newer(conn, manifest, label=label, version=version)
    return _migrate(conn, manifest, label=label, version_seen=version)


def begin_exclusive(conn: apsw.Connection, *, label: str) -> None:
    """`BEGIN EXCLUSIVE` to migrate; StorageBusy when the lock cannot be had within the busy timeout."""
    try:
        conn.execute("BEGIN EXCLUSIVE")
    except apsw.BusyError as exc:
        raise StorageBusy(
            f"{label}: could not lock the database to migrate it within the busy timeout"
        ) from exc


def _migrate(conn: apsw.Connection, manifest: Manifest, *, label: str, version_seen: int) -> MigrationReport:
    # `PRAGMA foreign_keys` is a no-op inside a transaction (https://sqlite.org/pragma.html#pragma_foreign_keys),
    # so a rebuild's OFF must be set before BEGIN. The pending set can only shrink once the lock is
    # held, so deciding here from the unlocked read is safe.
    foreign_keys_off = pending_need_foreign_keys_off(manifest, version_seen)
    if foreign_keys_off:
        conn.execute("PRAGMA foreign_keys=OFF")
    try:
        begin_exclusive(conn, label=label)
        try:
            report = migrate_in_transaction(conn, manifest, label=label, check_foreign_keys=foreign_keys_off)
            conn.execute("COMMIT")
        except BaseException:
            if not conn.get_autocommit():
                conn.execute("ROLLBACK")
            raise
    finally:
        if foreign_keys_off:
            conn.execute("PRAGMA foreign_keys=ON")
    return report


def _migrate_locked(
    conn: apsw.Connection, manifest: Manifest, *, label: str, check_foreign_keys: bool
) -> MigrationReport:
    application_id, version = read_header(conn)
    from_version = version
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    adopted: tuple[str, ...] = ()
    if application_id != APPLICATION_ID:
        if application_id != 0:
            raise not_a_database(label, f"its application_id is {application_id:#010x}")
        if DRIZZLE_TABLE in tables:
            adopted = _adopt_drizzle(conn, manifest, label=label)
            version = len(adopted)
        elif tables - {MIGRATIONS_TABLE}:
            raise not_a_database(label, "it has tables but is not marked as a counter database")
    elif MIGRATIONS_TABLE not in tables and version > 0:
        raise not_a_database(label, f"it claims schema version {version} but has no {MIGRATIONS_TABLE} table")
    conn.execute(_CREATE_MIGRATIONS)
    applied = applied_migrations(conn)
    _verify(applied, manifest, label=label, version=version)
    if version > manifest.version:
        # A newer deployment got here first, between our unlocked read and the lock.
        unknown = _tolerate_newer(applied, manifest, label=label)
        return MigrationReport(from_version=version, to_version=version, unknown_additive=unknown)
    pending = manifest.migrations[version:]
    now = _rfc3339_now()
    for migration in pending:
        _apply(conn, migration, label=label)
        _record(conn, migration, applied_at=now)
    if check_foreign_keys:
        check_foreign_keys_after(conn, pending, label=label)
    # PRAGMA takes no bound parameters; both values are integers this module computed.
    conn.execute(f"PRAGMA user_version={manifest.version}")
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    return MigrationReport(
        from_version=from_version,
        to_version=manifest.version,
        applied=tuple(m.tag for m in pending),
        adopted=adopted,
    )


def _check_newer(conn: apsw.Connection, manifest: Manifest, *, label: str, version: int) -> MigrationReport:
    """A rolling deploy: the file is ahead of this bundle. Serve it only if every unknown step is additive."""
    try:
        applied = applied_migrations(conn)
    except apsw.SQLError as exc:
        raise not_a_database(label, f"it has no readable {MIGRATIONS_TABLE} table") from exc
    _verify(applied, manifest, label=label, version=version)
    unknown = _tolerate_newer(applied, manifest, label=label)
    return MigrationReport(from_version=version, to_version=version, unknown_additive=unknown)


def applied_migrations(conn: apsw.Connection) -> list[AppliedMigration]:
    """The `__migrations` records in idx order. Read-only."""
    rows = conn.execute(f"SELECT idx, tag, sha256, additive FROM {MIGRATIONS_TABLE} ORDER BY idx")
    return [AppliedMigration(int(i), str(t), str(s), bool(a)) for i, t, s, a in rows]


def _verify(applied: list[AppliedMigration], manifest: Manifest, *, label: str, version: int) -> None:
    """Applied history must be 0..version-1 and, where the bundle knows it, identical by content."""
    if [m.idx for m in applied] != list(range(version)):
        raise MigrationDrift(
            f"{label}: user_version is {version} but {MIGRATIONS_TABLE} records idx"
            f" {[m.idx for m in applied]} - the file was changed outside the migration engine; inspect it"
            " with `python -m tools.migrations status`",
            public="the counter's database records an inconsistent migration history - an operator must inspect it",
        )
    for record in applied[: manifest.version]:
        expected = manifest.migrations[record.idx]
        if record.sha256 != expected.sha256 or record.tag != expected.tag:
            raise MigrationDrift(
                f"{label}: migration '{record.tag}' was applied with sha256 {record.sha256} but this bundle has"
                f" '{expected.tag}' with sha256 {expected.sha256} - applied migrations must never be edited;"
                " restore the original file (git history) and add a new migration instead",
                public=f"migration '{expected.tag}' differs from the one this counter's database applied"
                " - the deployment's migrations were edited after release",
            )


def _tolerate_newer(applied: list[AppliedMigration], manifest: Manifest, *, label: str) -> tuple[str, ...]:
    unknown = applied[manifest.version :]
    breaking = [m.tag for m in unknown if not m.additive]
    if breaking:
        raise SchemaTooNew(
            f"{label}: the database is newer than this deployment: it applied {[m.tag for m in unknown]},"
            f" of which {breaking} are not additive - deploy the newer bundle (or finish the rolling deploy)",
            public="the counter's database is newer than this deployment - retry once the deployment completes",
        )
    return tuple(m.tag for m in unknown)


def _apply(conn: apsw.Connection, migration: Migration, *, label: str) -> None:
    for number, statement in enumerate(migration.statements, start=1):
        try:
            for _row in conn.execute(statement):
                pass
        except apsw.BusyError as exc:
            raise StorageBusy(f"{label}: lock lost while applying '{migration.tag}'") from exc
        except STORAGE_ERRORS as exc:
            raise storage_unavailable(label, exc) from exc
        except apsw.CorruptError as exc:  # the file, not the migration: no quarantine
            raise damaged(label, MALFORMED) from exc
        except apsw.Error as exc:
            raise MigrationFailed(
                f"{label}: migration '{migration.tag}' failed at statement {number}: {exc}"
                " - the database is unchanged; fix the migration and redeploy",
                public=f"migration '{migration.tag}' failed - the database is unchanged; an operator must fix"
                " the migration",
                tag=migration.tag,
                statement=number,
            ) from exc


def _record(conn: apsw.Connection, migration: Migration, *, applied_at: str) -> None:
    conn.execute(
        f'INSERT INTO {MIGRATIONS_TABLE} (idx, tag, sha256, "when", applied_at, additive) VALUES (?, ?, ?, ?, ?, ?)',
        (migration.idx, migration.tag, migration.sha256, migration.when, applied_at, int(migration.additive)),
    )


def check_foreign_keys_after(conn: apsw.Connection, pending: tuple[Migration, ...], *, label: str) -> None:
    violations = conn.execute("PRAGMA foreign_key_check").fetchall()
    if violations:
        tables = sorted({str(row[0]) for row in violations})
        tags = [m.tag for m in pending if m.foreign_keys_off]
        raise MigrationFailed(
            f"{label}: after {tags} {len(violations)} row(s) violate foreign keys in table(s) {tables}"
            " - the database is unchanged; fix the migration so child rows keep a parent",
            public=f"migration {tags[-1] if tags else ''} would break foreign keys - the database is unchanged",
            tag=tags[-1] if tags else "",
        )


def _adopt_drizzle(conn: apsw.Connection, manifest: Manifest, *, label: str) -> tuple[str, ...]:
    """Record the migrations an earlier Drizzle migrator applied, verifying what can be verified.

    Drizzle stores each migration's journal `when` as `created_at`, and its sha256 as `hash` (an empty
    hash in the durable-sqlite variant). Drizzle decides by timestamp alone, so its history can have
    gaps (a migration merged with an older `when` is skipped forever): a gap is refused, not guessed at.
    """
    by_when = {m.when: m for m in manifest.migrations}
    adopted: list[Migration] = []
    for drizzle_hash, created_at in conn.execute(f"SELECT hash, created_at FROM {DRIZZLE_TABLE}"):
        try:
            migration = by_when.get(int(created_at))
        except (TypeError, ValueError):
            migration = None
        if migration is None:
            raise AdoptionRefused(
                f"{label}: {DRIZZLE_TABLE} records a migration created at {created_at!r} that this bundle"
                " does not have - deploy the bundle that holds Drizzle's full history",
                public="the counter's database was migrated by Drizzle with a history this deployment does not know",
            )
        if drizzle_hash and drizzle_hash != migration.sha256:
            raise MigrationDrift(
                f"{label}: Drizzle applied '{migration.tag}' with sha256 {drizzle_hash} but this bundle has"
                f" sha256 {migration.sha256} - restore the original migration file",
                public=f"migration '{migration.tag}' differs from the one Drizzle applied to this counter's database",
            )
        adopted.append(migration)
    adopted.sort(key=lambda m: m.idx)
    missing = [m.tag for m in manifest.migrations[: len(adopted)] if m not in adopted]
    if missing:
        raise AdoptionRefused(
            f"{label}: Drizzle applied {[m.tag for m in adopted]} but skipped {missing} (its migrator skips a"
            " migration whose `when` is older than the last applied one) - apply the skipped migration by"
            " hand, then retry",
            public="the counter's database was migrated by Drizzle with gaps in its history - an operator must repair it",
        )
    now = _rfc3339_now()
    conn.execute(_CREATE_MIGRATIONS)
    for migration in adopted:
        _record(conn, migration, applied_at=now)
    return tuple(m.tag for m in adopted)


def not_a_database(label: str, why: str) -> NotACounterDatabase:
    return NotACounterDatabase(
        f"{label}: not a counter database ({why}) - it was left untouched; move it away if it does not belong here",
        public="the counter's file is not a counter database - an operator must inspect it",
    )


def is_link_refusal(exc: BaseException | None) -> bool:
    """Whether SQLite refused an open because the path holds a symbolic link (SQLITE_OPEN_NOFOLLOW)."""
    # APSW's stubs do not declare `extendedresult`, which every apsw.Error carries.
    return (
        isinstance(exc, apsw.CantOpenError)
        and getattr(exc, "extendedresult", None) == apsw.SQLITE_CANTOPEN_SYMLINK
    )


def refused_open(label: str, exc: apsw.CantOpenError) -> NotACounterDatabase:
    """The error for a counter file SQLite cannot open: a link in its path (NOFOLLOW), or permissions."""
    if is_link_refusal(exc):
        return not_a_database(label, "a directory in its path is a symbolic link")
    return not_a_database(label, f"it cannot be opened for reading and writing ({exc})")


def _rfc3339_now() -> str:
    return rfc3339(time.time_ns() // 1_000_000)  # what datetime writes, without importing it
