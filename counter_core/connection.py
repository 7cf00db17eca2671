"""APSW connections to counter files, set up for a network file system, cached per process.

On Lambda the root is EFS (NFS): every file create, unlink, lock and fsync is a network round trip,
and shared memory across hosts does not exist. Hence the set-up steps below, one function each.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import apsw

from counter_core.create import Created, LinkUnsupported, create_database
from counter_core.errors import CounterNotFound, MigrationFailed, StorageBusy
from counter_core.manifest import Manifest
from counter_core.migrate import MigrationReport, ensure_current, not_a_database
from counter_core.paths import counter_path
from counter_core.quarantine import Quarantine


def _journal_mode(conn: apsw.Connection) -> None:
    # Rollback journal, never WAL: WAL's index lives in shared memory, which hosts sharing an NFS
    # mount do not share (https://sqlite.org/wal.html, "WAL does not work over a network filesystem").
    # DELETE over TRUNCATE/PERSIST, by measurement (strace -c, 1,000 BEGIN IMMEDIATE increments,
    # synchronous=FULL, per transaction): DELETE 2 open + 2 close + 1 unlink + 4 fdatasync + 9 fcntl;
    # TRUNCATE trades the unlink for an ftruncate plus a 5th fdatasync; PERSIST adds a third open/close
    # (the hot-journal probe of a journal file that always exists) and a 5th fdatasync. On NFS each of
    # those is a round trip, so DELETE does the fewest - and leaves no stray -journal files on EFS.
    conn.execute("PRAGMA journal_mode=DELETE").fetchall()


def _synchronous(conn: apsw.Connection) -> None:
    # FULL: an acknowledged increment survives a crash or power loss (https://sqlite.org/pragma.html#pragma_synchronous).
    conn.execute("PRAGMA synchronous=FULL")


def _foreign_keys(conn: apsw.Connection) -> None:
    conn.execute("PRAGMA foreign_keys=ON")


# The store and the engine run about a dozen distinct statements; APSW's default cache of 100 per
# connection only costs memory in a cache of many connections.
_STATEMENT_CACHE_SIZE = 16

SETUP_STEPS: tuple[Callable[[apsw.Connection], None], ...] = (_journal_mode, _synchronous, _foreign_keys)


def open_database(path: Path, *, create: bool, busy_timeout_ms: int) -> apsw.Connection:
    """Open one counter file with the set-up steps applied; no schema check (see ConnectionCache).

    With `create=False` a missing file raises CounterNotFound and nothing is created. With
    `create=True` the fan-out directories are made first; concurrent creators race harmlessly.
    """
    flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_NOFOLLOW
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
        flags |= apsw.SQLITE_OPEN_CREATE
    try:
        conn = apsw.Connection(str(path), flags=flags, statementcachesize=_STATEMENT_CACHE_SIZE)
    except apsw.CantOpenError as exc:
        if create:
            raise
        if not path.exists():
            raise CounterNotFound(f"no database file for this counter at {path}") from exc
        # Another process linked the file into place between the failed open and the check
        # (counter_core.create): it is complete, so open it now.
        conn = apsw.Connection(str(path), flags=flags, statementcachesize=_STATEMENT_CACHE_SIZE)
    try:
        conn.set_busy_timeout(busy_timeout_ms)
        for step in SETUP_STEPS:
            step(conn)
    except apsw.BusyError as exc:
        conn.close()
        raise StorageBusy(f"{path}: locked by another writer past the busy timeout") from exc
    except apsw.NotADBError as exc:
        conn.close()
        raise not_a_database(str(path), "it is not an SQLite database") from exc
    except BaseException:
        conn.close()
        raise
    return conn


MigrationListener = Callable[[str, MigrationReport], None]
T = TypeVar("T")


def _nothing(conn: apsw.Connection) -> None:
    """The seed of a file created only to be opened: migrations, no first write."""


class ConnectionCache:
    """Open, migrated connections by counter ID, least recently used evicted past `capacity`.

    A warm Lambda reuses the connection of a hot counter (no reopen, no schema check); memory stays
    bounded however many counters one process touches. Not thread-safe: one Lambda invocation runs
    at a time, and the local server serialises requests.

    Counter files are never unlinked while the system is live (a deleted counter's rows are deleted,
    its file stays), so a cached connection can never write into an unlinked file.
    """

    def __init__(
        self,
        root: Path,
        manifest: Manifest,
        *,
        capacity: int,
        busy_timeout_ms: int,
        on_migrated: MigrationListener | None = None,
        quarantine: Quarantine | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.root = root
        self.manifest = manifest
        self.capacity = capacity
        self.busy_timeout_ms = busy_timeout_ms
        self._on_migrated = on_migrated
        self.quarantine = quarantine if quarantine is not None else Quarantine()
        self._open: OrderedDict[str, apsw.Connection] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def connection(self, counter_id: str, *, create: bool) -> apsw.Connection:
        """A current connection to the counter's file; CounterNotFound if absent and not `create`."""
        found = self.open_or_create(counter_id, seed=_nothing if create else None)
        if isinstance(found, Created):
            found = self.open_or_create(counter_id, seed=None)
        assert not isinstance(found, Created)
        return found

    def open_or_create(
        self, counter_id: str, *, seed: Callable[[apsw.Connection], T] | None
    ) -> apsw.Connection | Created[T]:
        """The counter's current connection; or, if it has no file and `seed` is given, create it.

        Creating runs `seed` in the new file before it appears (see counter_core.create) and returns
        `Created` instead of a connection: the caller's first write is done, and the next request
        opens the file. Without `seed`, an absent file raises CounterNotFound and creates nothing.
        """
        conn = self._open.get(counter_id)
        if conn is not None:
            self._open.move_to_end(counter_id)
            return conn
        self.quarantine.check(counter_id)  # a recently failed migration is not retried yet (quarantine.py)
        path = counter_path(self.root, counter_id)
        label = f"counter {counter_id!r}"
        try:
            conn = open_database(path, create=False, busy_timeout_ms=self.busy_timeout_ms)
        except CounterNotFound:
            if seed is None:
                raise CounterNotFound(f"{label} does not exist") from None
            try:
                created = create_database(path, self.manifest, label=label, seed=seed)
            except LinkUnsupported:
                created, in_place = None, True
            else:
                in_place = False
            if created is not None:
                if self._on_migrated is not None:
                    self._on_migrated(counter_id, created.report)
                return created
            conn = open_database(path, create=in_place, busy_timeout_ms=self.busy_timeout_ms)
        try:
            report = ensure_current(conn, self.manifest, label=label)
        except BaseException as exc:
            # Not cached: the next request retries the migration from scratch (after a back-off if it failed).
            conn.close()
            if isinstance(exc, MigrationFailed):
                self.quarantine.record(counter_id, exc)
            raise
        self.quarantine.release(counter_id)
        if report is not None and self._on_migrated is not None:
            self._on_migrated(counter_id, report)
        self._open[counter_id] = conn
        if len(self._open) > self.capacity:
            _, evicted = self._open.popitem(last=False)
            evicted.close()
        return conn

    def forget(self, counter_id: str) -> None:
        """Close and drop one cached connection (after an error left its state unknown)."""
        conn = self._open.pop(counter_id, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        while self._open:
            _, conn = self._open.popitem()
            conn.close()
