"""APSW connections to counter files, set up for a network file system, cached per process.

On Lambda the root is EFS (NFS): every file create, unlink, lock and fsync is a network round trip,
and shared memory across hosts does not exist. Hence the set-up steps below, one function each.
"""

from __future__ import annotations

import os
import stat
import time
from collections import OrderedDict
from collections.abc import Callable

import apsw

from counter_core.create import Created, LinkUnsupported, auto_vacuum_full, create_database, make_directories
from counter_core.errors import (
    CounterError,
    CounterNotFound,
    MigrationFailed,
    NotACounterDatabase,
    StorageBusy,
)
from counter_core.manifest import Manifest
from counter_core.migrate import (
    APPLICATION_ID,
    HEADER_IN_TRANSACTION,
    MALFORMED,
    STORAGE_ERRORS,
    MigrationReport,
    check_newer,
    damaged,
    ensure_current,
    is_link_refusal,
    migrate_in_transaction,
    not_a_database,
    pending_need_foreign_keys_off,
    refused_open,
    storage_unavailable,
)
from counter_core.paths import counter_file, resolve_root
from counter_core.quarantine import Quarantine

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at cold start (figure 3)
if TYPE_CHECKING:
    from counter_core.paths import StrPath

_HEADER_BYTES = 100
# What stops a new file from being made: the file system, never the request (see open_or_create).
_CANNOT_CREATE: tuple[type[Exception], ...] = (OSError, apsw.CantOpenError, *STORAGE_ERRORS)
_CANNOT_REOPEN: tuple[type[Exception], ...] = (CounterError, *_CANNOT_CREATE)
_MAGIC = b"SQLite format 3\x00"
_FILE_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def probe(path: StrPath, *, label: str) -> bool:
    """Whether a counter file exists at `path`, in one lookup (an lstat); never opens it.

    Raises NotACounterDatabase for anything but a regular file (a FIFO would block an open, a link
    could lead anywhere) and CounterFileDamaged for an empty file: new files only ever appear
    complete (counter_core.create), so an empty one was truncated, and writing a schema into it
    would silently turn a lost counter into a new one.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "not a regular file")
        raise not_a_database(label, f"it is {kind}")
    if info.st_size == 0:
        raise damaged(label, "it is empty (0 bytes)")
    return True


def header_bytes(conn: apsw.Connection) -> tuple[bool, bytes]:
    """The file's first 100 bytes through the descriptor SQLite opened (a data read, no extra open),
    and whether they were all there; before any statement, so nothing looks for -wal or -shm files."""
    complete, header = conn.read("main", 0, 0, _HEADER_BYTES)
    return complete, header


def not_rollback_journal(header: bytes) -> bool:
    """Whether an SQLite header is not in rollback-journal mode: bytes 18 and 19 are 2 in WAL mode.

    Counter files never are: WAL's index lives in shared memory, which hosts sharing an NFS mount do
    not share (https://sqlite.org/wal.html).
    """
    return header.startswith(_MAGIC) and (header[18] != 1 or header[19] != 1)


def _check_header(conn: apsw.Connection, label: str) -> None:
    # The file's first 100 bytes, through the descriptor SQLite just opened (a data read, no extra
    # open), before any statement: a file that is not ours is never written to. `PRAGMA
    # journal_mode=DELETE` is not run at all: it is SQLite's default for a rollback-journal file, and on
    # a WAL file it would rewrite another application's database (https://sqlite.org/fileformat.html).
    complete, header = header_bytes(conn)
    if not complete and not any(header):
        # Empty since `probe` looked (SQLite pads a short read with zeros): a file being created in
        # place by a process without hard links, or one truncated - damage, as `probe` would say.
        raise damaged(label, "it is empty (0 bytes)")
    if not header.startswith(_MAGIC):
        raise not_a_database(label, "it is not an SQLite database")
    if not complete:
        raise damaged(label, "it is shorter than an SQLite header")
    if not_rollback_journal(header):
        raise not_a_database(label, "it is in WAL mode, which counter files never use")
    application_id = int.from_bytes(header[68:72], "big")
    if application_id not in (APPLICATION_ID, 0):
        raise not_a_database(label, f"its application_id is {application_id:#010x}")


def _link_in_path(exc: NotACounterDatabase) -> bool:
    return is_link_refusal(exc.__cause__)


# The lock queue. SQLite's own busy handler (sqlite3_busy_timeout) sleeps 1, 2, 5, 10, 15, 20, 25, 25,
# 25, 50, 50, 100 ms... between attempts (sqliteDefaultBusyCallback in main.c): a writer that has
# waited a while sleeps 100 ms at a time while the writer that just committed takes the lock again at
# once, so on a hot counter the tail grows to seconds (tools.bench, the lock-queue figure). Here every
# sleep is random ("full jitter": https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/)
# and capped, and the cap shrinks with age: a newcomer waits up to BUSY_NEW_CAP_S between attempts,
# a writer that has already waited BUSY_AGED_AFTER_S up to BUSY_AGED_CAP_S, so the longest waiters
# tend to win the lock when it is released. All within the same total busy timeout, after which
# SQLite returns SQLITE_BUSY and the request answers 503 busy. Measured (tools.bench, figure 4: 8
# processes, 8 ms lock hold): p99 0.16-0.21 s against 1.2-2.6 s with SQLite's handler, at 1.1-1.9x
# its throughput.
BUSY_NEW_CAP_S = 0.010
BUSY_AGED_AFTER_S = 0.100
BUSY_AGED_CAP_S = 0.001


def busy_handler(timeout_ms: int) -> Callable[[int], bool]:
    """A busy handler for `Connection.set_busy_handler`: jittered sleeps that shorten with age, within `timeout_ms`."""
    timeout_s = timeout_ms / 1000
    started = [0.0]

    def wait(attempts: int) -> bool:
        now = time.monotonic()
        if attempts == 0:  # SQLite counts from 0 for each lock it waits for
            started[0] = now
        waited = now - started[0]
        if waited >= timeout_s:
            return False
        cap = BUSY_NEW_CAP_S if waited < BUSY_AGED_AFTER_S else BUSY_AGED_CAP_S
        # A uniform jitter in [0, cap) from four random bytes: random.uniform's, without importing
        # random (1 ms of a cold start that may never wait for a lock).
        time.sleep(min(timeout_s - waited, cap * int.from_bytes(os.urandom(4)) / 2**32))
        return True

    return wait


def _synchronous(conn: apsw.Connection) -> None:
    # FULL: an acknowledged increment survives a crash or power loss (https://sqlite.org/pragma.html#pragma_synchronous).
    conn.execute("PRAGMA synchronous=FULL")


def _foreign_keys(conn: apsw.Connection) -> None:
    conn.execute("PRAGMA foreign_keys=ON")


# The store and the engine run about a dozen distinct statements; APSW's default cache of 100 per
# connection only costs memory in a cache of many connections.
_STATEMENT_CACHE_SIZE = 16

# No journal_mode step: a rollback journal in DELETE mode is SQLite's default (https://sqlite.org/pragma.html#pragma_journal_mode),
# and WAL files are refused by _check_header. DELETE over TRUNCATE/PERSIST, by measurement (strace,
# per BEGIN IMMEDIATE increment, synchronous=FULL): DELETE 2 open + 2 close + 1 unlink + 4 fdatasync + 9
# fcntl; TRUNCATE trades the unlink for an ftruncate plus a 5th fdatasync; PERSIST adds a third
# open/close (the hot-journal probe of a journal file that always exists) and a 5th fdatasync. On
# NFS each is a round trip, so DELETE does the fewest - and leaves no stray -journal files on EFS.
SETUP_STEPS: tuple[Callable[[apsw.Connection], None], ...] = (_synchronous, _foreign_keys)


def open_database(
    path: StrPath, *, create: bool, busy_timeout_ms: int, label: str | None = None
) -> apsw.Connection:
    """Open one counter file with the set-up steps applied; no schema check (see ConnectionCache).

    With `create=False` a missing file raises CounterNotFound and nothing is created, and a file that
    is not a regular, non-empty SQLite file in rollback-journal mode with this project's (or no)
    application_id is refused before any statement runs. With `create=True` the fan-out directories
    are made first and the file may be new or empty.
    """
    name = label if label is not None else str(path)
    if create:
        make_directories(os.path.dirname(path))
    elif not probe(path, label=name):
        raise CounterNotFound(f"no database file for this counter at {path}")
    return _open_probed(path, create=create, busy_timeout_ms=busy_timeout_ms, label=name)


def _open_probed(path: StrPath, *, create: bool, busy_timeout_ms: int, label: str) -> apsw.Connection:
    flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_NOFOLLOW
    if create:
        flags |= apsw.SQLITE_OPEN_CREATE
    try:
        conn = apsw.Connection(os.fspath(path), flags=flags, statementcachesize=_STATEMENT_CACHE_SIZE)
    except apsw.CantOpenError as exc:
        raise refused_open(label, exc) from exc
    try:
        if not create:
            _check_header(conn, label)
        conn.set_busy_handler(busy_handler(busy_timeout_ms))
        try:
            for step in SETUP_STEPS:
                step(conn)
        except apsw.CorruptError as exc:  # the first statement reads the schema: a file cut short
            raise damaged(label, MALFORMED) from exc
        if create:
            # The in-place path (no hard links): a no-op when another process made the tables first.
            auto_vacuum_full(conn)
    except BaseException:
        conn.close()
        raise
    return conn


MigrationListener = Callable[[str, MigrationReport], None]


def _nothing(conn: apsw.Connection) -> None:
    """The seed of a file created only to be opened: migrations, no first write."""


def _page_count(conn: apsw.Connection) -> int:
    row = conn.execute("PRAGMA page_count").fetchone()
    return int(row[0]) if row is not None else 0


# No transaction has read this connection's header yet: the first reads all of it.
_UNCHECKED = -1


# How often a cached connection checks that its file is still the one at its path, with one stat
# (SQLITE_FCNTL_HAS_MOVED). An operator may rename a restored backup over a live file: a write notices
# at once (SQLite refuses to write to a moved file, and the write is retried on the new one), a read
# would go on reading the old file for as long as the connection stays cached. A hot counter pays one
# lookup (0.25 ms on EFS) per interval; a read sees a restore within it.
REVALIDATE_S = 30.0


class _Entry:
    """A cached connection, the schema version its requests accept (checked in every transaction), and
    when it last checked that its file is still the one at its path."""

    __slots__ = ("checked", "conn", "version")

    def __init__(self, conn: apsw.Connection, version: int, checked: float) -> None:
        self.conn = conn
        self.version = version
        self.checked = checked


def _has_moved(conn: apsw.Connection) -> bool:
    """Whether the file `conn` has open is no longer the one at its path (renamed over, or away):
    SQLite compares the inode it opened with a stat of the path (one lookup)."""
    import ctypes  # a warm instance's first check, never a cold start: importing it costs 2-3 ms

    moved = ctypes.c_int(0)
    conn.file_control("main", apsw.SQLITE_FCNTL_HAS_MOVED, ctypes.addressof(moved))
    return moved.value != 0


class ConnectionCache:
    """Open connections by counter ID, least recently used evicted past `capacity`.

    A warm Lambda reuses the connection of a hot counter (no reopen); memory stays bounded however
    many counters one process touches. Opening checks what can be checked without a transaction (a
    regular, non-empty SQLite file, not WAL, not another application's); the schema is checked by
    `admit`, inside each operation's own transaction, where the header costs no file-system call -
    so a file migrated by a newer deployment while its connection sat in this cache is noticed on the
    next request. Not thread-safe: one Lambda invocation runs at a time, and the local server
    serialises requests.

    Counter files are never unlinked while the system is live (a deleted counter's rows are deleted,
    its file stays), so a cached connection can never write into an unlinked file.
    """

    def __init__(
        self,
        root: StrPath,
        manifest: Manifest,
        *,
        capacity: int,
        busy_timeout_ms: int,
        on_migrated: MigrationListener | None = None,
        quarantine: Quarantine | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        # Absolute, but not resolved: SQLite refuses a symbolic link anywhere in the path
        # (SQLITE_OPEN_NOFOLLOW), so a root reached through one is resolved on the first refusal
        # (open_or_create) - a lookup per path component that a root without links never pays.
        self.root = os.path.abspath(root)
        self._root_resolved = False
        self.manifest = manifest
        self.capacity = capacity
        self.busy_timeout_ms = busy_timeout_ms
        self._on_migrated = on_migrated
        self.quarantine = quarantine if quarantine is not None else Quarantine()
        self._clock = clock
        self._open: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def connection(self, counter_id: str, *, create: bool) -> apsw.Connection:
        """The counter's connection; CounterNotFound if it has no file and not `create`.

        The schema is not checked here: run every statement inside a transaction that `admit` let in.
        """
        found = self.open_or_create(counter_id, seed=_nothing if create else None)
        if isinstance(found, Created):
            found = self.open_or_create(counter_id, seed=None)
        assert not isinstance(found, Created)
        return found

    def open_or_create(
        self, counter_id: str, *, seed: Callable[[apsw.Connection], object] | None
    ) -> apsw.Connection | Created:
        """The counter's connection; or, if it has no file and `seed` is given, create it.

        Creating runs `seed` in the new file before it appears (see counter_core.create) and returns
        `Created` instead of a connection: the caller's first write is done, and the connection to the
        new file is cached for the next request. Without `seed`, an absent file raises
        CounterNotFound and creates nothing - after one lookup.
        """
        # A counter whose migration failed recently is not retried yet (counter_core.quarantine): a
        # dict lookup, no file-system call, and before the caller's BEGIN could wait on the file's lock.
        self.quarantine.check(counter_id)
        entry = self._open.get(counter_id)
        if entry is not None:
            self._open.move_to_end(counter_id)
            now = self._clock()
            if now - entry.checked < REVALIDATE_S:
                return entry.conn
            if not _has_moved(entry.conn):
                entry.checked = now
                return entry.conn
            self.forget(counter_id)  # a file was renamed over it, or it was moved away: open the path again
        try:
            try:
                return self._open_or_create(counter_id, seed)
            except NotACounterDatabase as exc:
                if self._root_resolved or not _link_in_path(exc):
                    raise
                # The root itself may be reached through links (macOS's /tmp, a mount behind a link);
                # nothing below it may be one. Resolve it once and try again.
                self._root_resolved = True
                resolved = resolve_root(self.root)
                if resolved == self.root:
                    raise
                self.root = resolved
                return self._open_or_create(counter_id, seed)
        except _CANNOT_CREATE as exc:
            # A fan-out directory or the new file cannot be made (a full or read-only file system, an
            # EFS access point owned by another user): no file was linked, nothing changed.
            raise storage_unavailable(f"counter {counter_id!r}", exc) from exc

    def _open_or_create(
        self, counter_id: str, seed: Callable[[apsw.Connection], object] | None
    ) -> apsw.Connection | Created:
        path = counter_file(self.root, counter_id)
        label = f"counter {counter_id!r}"
        if not probe(path, label=label):
            if seed is None:
                raise CounterNotFound(f"{label} does not exist")
            try:
                created = create_database(path, self.manifest, label=label, seed=seed)
            except LinkUnsupported:
                return self._create_in_place(counter_id, path, label)
            if created is not None:
                if self._on_migrated is not None:
                    self._on_migrated(counter_id, created.report)
                # Keep a connection to the file this request created: the next request is a warm one.
                # Only if it opens: the request's write is committed, and an error answer would say
                # nothing changed (a client's retry would apply it twice). The next request opens it.
                try:
                    conn = self._connect(path, label)
                except _CANNOT_REOPEN:
                    return created
                self._keep(counter_id, conn, version=created.report.to_version)
                return created
            # Another process linked its file first: this request's write goes to that file.
        return self._keep(counter_id, self._connect(path, label))

    def admit(self, counter_id: str, conn: apsw.Connection, begin: str) -> MigrationReport | None:
        """Check the file's header inside the transaction `begin` just opened; bring it up to date if needed.

        The fast path is `PRAGMA user_version`, read from page 1, which SQLite read when it took the
        lock: no file-system call, under a microsecond of CPU. The first transaction on a connection,
        and any whose user_version is not the one accepted, read the whole header (application_id,
        user_version, page count). A file that is behind is migrated inside a write transaction (the
        caller's write then commits with the migrations; the report is returned, for `committed` to
        announce after COMMIT), or else in a transaction of its own, after which `begin` is run again.
        Raises what `ensure_current` raises; CounterFileDamaged for a file that became empty.
        """
        entry = self._open.get(counter_id)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()
            if version is not None and entry is not None and version[0] == entry.version:
                return None
            row = conn.execute(HEADER_IN_TRANSACTION).fetchone()
        except apsw.NotADBError as exc:
            raise not_a_database(f"counter {counter_id!r}", "it is not a readable SQLite database") from exc
        except apsw.CorruptError as exc:
            raise damaged(f"counter {counter_id!r}", MALFORMED) from exc
        assert row is not None  # the pragma functions always return one row
        if self._accepts(entry, row):
            return None
        try:
            report = self._admit_slowly(counter_id, conn, begin, row, retried=False)
        except MigrationFailed as exc:
            self.quarantine.record(counter_id, exc)
            raise
        self.quarantine.release(counter_id)
        return report

    def _accepts(self, entry: _Entry | None, row: tuple[object, ...]) -> bool:
        """Whether a header is this bundle's, or a newer one already found additive; remembered if so."""
        version = row[1]
        if row[0] != APPLICATION_ID or not isinstance(version, int) or row[3] == "wal":
            return False
        if version == self.manifest.version or (entry is not None and version == entry.version):
            if entry is not None:
                entry.version = version
            return True
        return False

    def committed(self, counter_id: str, report: MigrationReport) -> None:
        """The transaction that `admit` migrated in committed: accept the new version and announce it."""
        entry = self._open.get(counter_id)
        if entry is not None:
            entry.version = report.to_version
        if self._on_migrated is not None:
            self._on_migrated(counter_id, report)

    def _admit_slowly(
        self, counter_id: str, conn: apsw.Connection, begin: str, row: tuple[object, ...], *, retried: bool
    ) -> MigrationReport | None:
        label = f"counter {counter_id!r}"
        if row[3] == "wal":
            # Switched to WAL by another tool while this connection was open (a cold open refuses it
            # in _check_header): never read or written through WAL's unshared index on NFS.
            raise not_a_database(label, "it is in WAL mode, which counter files never use")
        application_id, version, pages = (int(str(value)) for value in row[:3])
        if pages == 0:
            raise damaged(label, "it became empty (0 bytes)")
        if application_id not in (APPLICATION_ID, 0):
            raise not_a_database(label, f"its application_id is {application_id:#010x}")
        entry = self._open.get(counter_id)
        if application_id == APPLICATION_ID and version > self.manifest.version:
            # A rolling deploy: a newer bundle migrated the file. Served only if every unknown step is
            # additive; SchemaTooNew (503) otherwise, even through a connection cached before it happened.
            report = check_newer(conn, self.manifest, label=label, version=version)
            if entry is not None:
                entry.version = version
            if self._on_migrated is not None:
                self._on_migrated(counter_id, report)
            return None
        write = begin != "BEGIN DEFERRED"
        if (
            write
            and application_id == APPLICATION_ID
            and not pending_need_foreign_keys_off(self.manifest, version)
        ):
            return migrate_in_transaction(conn, self.manifest, label=label)
        if retried:
            raise StorageBusy(f"{label}: the file changed again while it was being brought up to date")
        # A read, a table rebuild (foreign keys must go off before BEGIN), or an unmarked file
        # (adoption, refusal): the engine's own transaction, then this one again.
        conn.execute("ROLLBACK")
        if application_id == 0 and _page_count(conn) == 0:
            # Inside a write transaction SQLite presents an empty file as a new one-page database, so
            # an emptied file is told apart here, in a read of its own, before the engine would
            # write a schema into it.
            raise damaged(label, "it became empty (0 bytes)")
        done = ensure_current(conn, self.manifest, label=label)
        if done is not None:
            if entry is not None:
                entry.version = done.to_version
            if self._on_migrated is not None:
                self._on_migrated(counter_id, done)
        conn.execute(begin)
        again = conn.execute(HEADER_IN_TRANSACTION).fetchone()
        assert again is not None
        if self._accepts(entry, again):
            return None
        return self._admit_slowly(counter_id, conn, begin, again, retried=True)

    def _connect(self, path: str, label: str) -> apsw.Connection:
        # `probe` already found a regular, non-empty file: files are never unlinked while live.
        return _open_probed(path, create=False, busy_timeout_ms=self.busy_timeout_ms, label=label)

    def _create_in_place(self, counter_id: str, path: str, label: str) -> apsw.Connection:
        # No hard links on this file system: the file is created in place and migrated under BEGIN
        # EXCLUSIVE like any file that is behind. Here, unlike with links, a new file is empty for a
        # moment; other processes that meet it then answer 503 (counter_file_damaged) - see README.
        conn = open_database(path, create=True, busy_timeout_ms=self.busy_timeout_ms, label=label)
        try:
            report = ensure_current(conn, self.manifest, label=label)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, MigrationFailed):
                self.quarantine.record(counter_id, exc)
            raise
        self.quarantine.release(counter_id)
        if report is not None and self._on_migrated is not None:
            self._on_migrated(counter_id, report)
        return self._keep(counter_id, conn)

    def _keep(self, counter_id: str, conn: apsw.Connection, *, version: int = _UNCHECKED) -> apsw.Connection:
        entry = _Entry(conn, version, self._clock())

        def committed_in_wal(_conn: apsw.Connection, _name: str, _pages: int) -> int:
            # Called only for a COMMIT in WAL mode: the file was switched to WAL after the header was
            # last checked. The next transaction checks the whole header again, and refuses it. A
            # hook, not a check per request: rollback-journal commits never call it.
            entry.version = _UNCHECKED
            return apsw.SQLITE_OK

        conn.set_wal_hook(committed_in_wal)
        self._open[counter_id] = entry
        if len(self._open) > self.capacity:
            _, evicted = self._open.popitem(last=False)
            evicted.conn.close()
        return conn

    def forget(self, counter_id: str) -> None:
        """Close and drop one cached connection (after an error left its state unknown)."""
        entry = self._open.pop(counter_id, None)
        if entry is not None:
            entry.conn.close()

    def close(self) -> None:
        while self._open:
            _, entry = self._open.popitem()
            entry.conn.close()
