"""Creating a counter file: built complete under a private name, then linked into place.

A new counter's file appears at its path fully migrated, with its first write in it, or not at all.
The migrations and that first write run in one transaction on a private temporary file that no
other process can see, so they need no locks, no journal file and no fsync per step: one fdatasync of
the finished file at COMMIT, a hard link to the real name (atomic, and it fails if another process
got there first), one fsync of the directory. In place, under a rollback journal, the same work
takes locks and creates, syncs and unlinks a journal - on EFS each a network round trip
(tools.bench, figure 1a: 35 round trips against 37 for raw SQLite creating the file in place). A
crash at any point leaves at most a stray `*.tmp` file, which fleet tools never mistake for a
counter file. When another process
wins the link, this one's file - first write included - is discarded whole, and the caller applies
its write to the winner's file as usual: nothing is applied twice.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable

import apsw

from counter_core.manifest import Manifest
from counter_core.migrate import (
    MigrationReport,
    check_foreign_keys_after,
    is_link_refusal,
    migrate_in_transaction,
    pending_need_foreign_keys_off,
    refused_open,
)
from counter_core.paths import temporary_name
from counter_core.values import Value

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at cold start (figure 3)
if TYPE_CHECKING:
    from counter_core.paths import StrPath

# Errors of a file system without hard links. EFS has them (as do ext4, xfs and tmpfs); the fallback
# keeps the service correct elsewhere: the caller creates the file in place, migrated under BEGIN
# EXCLUSIVE like any file that is behind.
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}
_links_work = True


def auto_vacuum_full(conn: apsw.Connection) -> None:
    """Set-up step of a new, empty file: pages freed by a COMMIT leave the file at that COMMIT.

    It must run before the first table exists: on a file with tables, switching auto_vacuum off NONE
    is a no-op until a VACUUM rebuilds the whole file (https://sqlite.org/pragma.html#pragma_auto_vacuum).
    FULL over INCREMENTAL, by measurement (1,000 kept history rows, 500 increments under strace -c):
    in steady state both cost exactly what NONE does - 2 open, 2 close, 1 unlink, 4 fdatasync,
    9 fcntl per increment, plus one ftruncate per about 100 increments - while INCREMENTAL would also
    need an `incremental_vacuum` step in the write path and never returns the pages of a counter
    that is deleted and not written again. Deleting 100,000 history rows took 5.4 ms under FULL
    (file back to 32 KiB) against 3.0 ms under NONE (file stays 6.4 MB). The price is one pointer-map
    page: a new counter file is 36 KiB instead of 32 KiB.
    """
    conn.execute("PRAGMA auto_vacuum=FULL")


class LinkUnsupported(Exception):
    """This file system cannot hard-link: create the file in place instead."""


class Created(Value):
    """This process created the file: the migrations it applied and what `seed` returned."""

    __slots__ = ("report", "seeded")

    def __init__(self, report: MigrationReport, seeded: object) -> None:
        self.report = report
        self.seeded = seeded


def create_database(
    path: StrPath, manifest: Manifest, *, label: str, seed: Callable[[apsw.Connection], object]
) -> Created | None:
    """Create the file at `path`, migrated, with `seed` run in one transaction on it before it appears.

    Returns None if another process created the file first (then `seed`'s work was discarded). Raises
    what the migrations or `seed` raise; then nothing is left at `path`. Raises LinkUnsupported,
    before any work once it is known, where the file system has no hard links.
    """
    global _links_work
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if not _links_work:
        raise LinkUnsupported(directory)
    make_directories(directory)
    # os.urandom(4).hex() is secrets.token_hex(4), without the 3 ms that importing secrets cost.
    temporary = temporary_name(path, pid=os.getpid(), token=os.urandom(4).hex())
    try:
        # The build file is private until linked, so it needs no locks: the unix-none VFS takes none
        # (https://sqlite.org/vfs.html, "unix-none"); on EFS each lock would be a round trip.
        try:
            conn = apsw.Connection(
                temporary,
                flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_NOFOLLOW,
                vfs="unix-none",
            )
        except apsw.CantOpenError as exc:
            if is_link_refusal(exc):
                raise refused_open(label, exc) from exc
            raise
        try:
            seeded, report = _build(conn, manifest, label=label, seed=seed)
        finally:
            conn.close()
        try:
            os.link(temporary, path)
        except FileExistsError:
            return None  # a racing process linked its own complete file first
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            _links_work = False
            raise LinkUnsupported(directory) from exc
        _fsync_directory(directory)
        return Created(report, seeded)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _build(
    conn: apsw.Connection, manifest: Manifest, *, label: str, seed: Callable[[apsw.Connection], object]
) -> tuple[object, MigrationReport]:
    """The migrations and the first write in one transaction, synced once at COMMIT."""
    # A journal in memory still lets a failed migration or seed roll back; synchronous=FULL makes
    # COMMIT sync the finished file (one fdatasync, no journal file to create, sync or unlink).
    conn.execute("PRAGMA journal_mode=MEMORY").fetchall()
    conn.execute("PRAGMA synchronous=FULL")
    auto_vacuum_full(conn)
    # `PRAGMA foreign_keys` is a no-op inside a transaction (https://sqlite.org/pragma.html#pragma_foreign_keys):
    # off before BEGIN if a migration rebuilds a table, checked before COMMIT; else on, as for requests.
    foreign_keys_off = pending_need_foreign_keys_off(manifest, 0)
    conn.execute(f"PRAGMA foreign_keys={'OFF' if foreign_keys_off else 'ON'}")
    conn.execute("BEGIN EXCLUSIVE")
    try:
        report = migrate_in_transaction(conn, manifest, label=label)
        seeded = seed(conn)
        if foreign_keys_off:
            check_foreign_keys_after(conn, manifest.migrations, label=label)
        conn.execute("COMMIT")
    except BaseException:
        if not conn.get_autocommit():
            conn.execute("ROLLBACK")
        raise
    return seeded, report


def make_directories(directory: str) -> None:
    """`directory` and any parent it lacks. One mkdir where it exists (the usual case: a fan-out
    directory), two or three for a new one, and no lookup first: os.makedirs stats each parent
    before making it, one more round trip on EFS per first touch (tools.bench, figure 1a)."""
    try:
        os.mkdir(directory)
    except FileExistsError:
        return
    except FileNotFoundError:
        make_directories(os.path.dirname(directory))
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory)


def _fsync_directory(directory: str) -> None:
    # The new link must survive a crash, as SQLite syncs the directory of a journal it creates.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
