"""The counter store: every operation in one transaction on the counter's own database.

Mutations run in `BEGIN IMMEDIATE` (the write lock up front, so two writers never deadlock upgrading
a read lock) and write their `counter_history` row, and the idempotency record when there is one,
in that same transaction. Reads run in a plain read transaction and never create a file.
"""

from __future__ import annotations

import binascii
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import apsw

from counter_core.connection import ConnectionCache
from counter_core.create import Created
from counter_core.errors import (
    CounterFileDamaged,
    CounterNotFound,
    IdempotencyKeyReused,
    InvalidCursor,
    NotACounterDatabase,
    OutOfRange,
    StorageBusy,
    StorageUnavailable,
)
from counter_core.migrate import MALFORMED, STORAGE_ERRORS, damaged, storage_unavailable
from counter_core.records import INT64_MAX, INT64_MIN, Counter, metadata_json, rfc3339

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at cold start (figure 3)
if TYPE_CHECKING:
    from typing import Any

    from counter_core.models import HistoryPage

LOCK_WAIT_REPORT_S = 0.005
# History is pruned in batches: once every PRUNE_EVERY rows, everything older than the newest
# `history_retention_rows` goes, so a counter holds between N and N + PRUNE_EVERY - 1 rows. Pruning
# on every write would dirty the oldest leaf page each time, far from the newest (strace -c per warm
# increment at 1,000 kept rows: 22.4 pwrite64 against 18.0 without pruning); in batches it costs
# 18.35 pwrite64 and one ftruncate per 64 increments, and the round trips (2 open, 2 close, 1 unlink,
# 4 fdatasync, 9 fcntl) do not change.
PRUNE_EVERY = 64
# At most this many rows go in one pruning write: a file whose history grew without retention (an
# older bundle, or 0) catches up over later pruning writes instead of one request deleting its whole
# backlog (a million rows took 0.9 s on a local disk; on EFS each freed page is a network write).
PRUNE_MAX_ROWS = 10_000


# The operations and results below are plain classes with __slots__ (why: counter_core.values), told
# apart by type, never compared.
class Increment:
    __slots__ = ("by",)

    def __init__(self, by: int) -> None:
        self.by = by


class Decrement:
    __slots__ = ("by",)

    def __init__(self, by: int) -> None:
        self.by = by


class Set:
    __slots__ = ("metadata", "value")

    def __init__(self, value: int, metadata: dict[str, Any] | None) -> None:
        self.value = value
        self.metadata = metadata


class Reset:
    __slots__ = ()


class Delete:
    __slots__ = ()


Operation = Increment | Decrement | Set | Reset | Delete


class Outcome:
    """What a mutation did: the counter after it (None once deleted), and whether it created it."""

    __slots__ = ("counter", "created")

    def __init__(self, counter: Counter | None, created: bool = False) -> None:
        self.counter = counter
        self.created = created


class StoredResponse:
    """A response kept with its idempotency key; the store does not interpret `status`."""

    __slots__ = ("body", "status")

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body


class Idempotency:
    """An idempotent request: its key and a fingerprint of the request."""

    __slots__ = ("fingerprint", "key")

    def __init__(self, key: str, fingerprint: str) -> None:
        self.key = key
        self.fingerprint = fingerprint


class Applied:
    """What `apply` did: the outcome and its rendered response, or the stored response it replayed."""

    __slots__ = ("outcome", "replayed", "response")

    def __init__(
        self, outcome: Outcome | None, response: StoredResponse | None = None, replayed: bool = False
    ) -> None:
        self.outcome = outcome
        self.response = response
        self.replayed = replayed


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class CounterStore:
    """The counter operations of DESIGN.md over a ConnectionCache."""

    def __init__(
        self,
        cache: ConnectionCache,
        *,
        idempotency_ttl_s: int,
        history_retention_rows: int = 0,
        clock: Callable[[], int] | None = None,
        on_lock_wait: Callable[[float], None] | None = None,
    ) -> None:
        self._cache = cache
        self._ttl_ms = idempotency_ttl_s * 1000
        self._keep = history_retention_rows
        self._clock = clock if clock is not None else _now_ms
        self._on_lock_wait = on_lock_wait

    def get(self, counter_id: str) -> Counter:
        """The counter; CounterNotFound if it does not exist. Read-only; never creates a file."""
        conn = self._cache.connection(counter_id, create=False)
        with self._transaction(counter_id, conn, "BEGIN DEFERRED"):
            row = _read(conn)
        if row is None:
            raise CounterNotFound(f"counter {counter_id!r} does not exist")
        return _view(counter_id, row)

    def history(self, counter_id: str, *, limit: int, cursor: str | None) -> HistoryPage:
        """A page of the audit log, newest first. Read-only."""
        # pydantic models, imported by the first history read: other requests need none (importing
        # pydantic and building the models is about 110 ms of a cold start's CPU; README, figure 3).
        from counter_core.models import HistoryEntry, HistoryPage

        before = _decode_cursor(cursor) if cursor is not None else None
        conn = self._cache.connection(counter_id, create=False)
        with self._transaction(counter_id, conn, "BEGIN DEFERRED"):
            if _read(conn) is None:
                raise CounterNotFound(f"counter {counter_id!r} does not exist")
            rows = conn.execute(
                "SELECT seq, op, amount, value_after, at, request_id FROM counter_history"
                " WHERE seq < ? ORDER BY seq DESC LIMIT ?",
                (before if before is not None else INT64_MAX, limit + 1),
            ).fetchall()
        items = [
            HistoryEntry(
                seq=_int(s),
                op=str(op),
                amount=None if amount is None else _int(amount),
                value=_int(value),
                at=rfc3339(_int(at)),
                request_id=None if rid is None else str(rid),
            )
            for s, op, amount, value, at, rid in rows[:limit]
        ]
        next_cursor = _encode_cursor(items[-1].seq) if len(rows) > limit else None
        return HistoryPage(items=items, next_cursor=next_cursor)

    def apply(
        self,
        counter_id: str,
        operation: Operation,
        *,
        request_id: str | None,
        render: Callable[[Outcome], StoredResponse] | None = None,
        idempotency: Idempotency | None = None,
    ) -> Applied:
        """Run one mutation atomically; with `idempotency`, at most once per key.

        `render` runs inside the transaction, before COMMIT: if it fails, the change is rolled back,
        so nothing that can fail stands between COMMIT and the response (required with
        `idempotency`, whose record holds the rendered response). Raises CounterNotFound (delete of a
        missing counter), OutOfRange, IdempotencyKeyReused, StorageBusy, StorageUnavailable; in every
        case nothing changed.
        """
        now = self._clock()

        def write(conn: apsw.Connection) -> Applied:
            if idempotency is not None:
                stored = self._replay(conn, idempotency, now)
                if stored is not None:
                    return Applied(outcome=None, response=stored, replayed=True)
            outcome = _mutate(conn, counter_id, operation, now=now, request_id=request_id)
            if self._keep and not isinstance(operation, Delete):
                _prune_history(conn, self._keep)
            response = render(outcome) if render is not None else None
            if idempotency is not None:
                if response is None:
                    raise TypeError("an idempotent apply needs `render`: the key stores the response")
                self._remember(conn, idempotency, response, now)
            return Applied(outcome=outcome, response=response)

        # A counter without a file gets one with this write already in it (one durable step instead
        # of two: counter_core.create); delete and reset never create one, so a mistyped ID leaves
        # no file behind.
        seed = None if isinstance(operation, (Delete, Reset)) else write
        for attempt in range(2):
            found = self._writable(counter_id, seed)
            if isinstance(found, Created):  # with this write in it
                assert isinstance(found.seeded, Applied)  # what `write` returns
                return found.seeded
            try:
                with self._transaction(counter_id, found, "BEGIN IMMEDIATE"):
                    return write(found)
            except StorageUnavailable as exc:
                # The file was replaced under the cached connection (a backup restored by a rename, or
                # moved away); SQLite refused the write, nothing changed, and `_transaction` dropped
                # the connection: once more, on whatever is at the path now.
                if attempt or not _file_replaced(exc):
                    raise
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _writable(
        self, counter_id: str, seed: Callable[[apsw.Connection], Applied] | None
    ) -> apsw.Connection | Created:
        found = self._cache.open_or_create(counter_id, seed=seed)
        if isinstance(found, Created) or not found.readonly("main"):
            return found
        # Opened (for a read) when the file could not be opened for writing - mode 444 since fixed, a
        # transient EACCES or EMFILE - so SQLite fell back to read-only: open it afresh rather than
        # refuse every write until the connection is evicted. An in-memory flag, no file-system call.
        self._cache.forget(counter_id)
        return self._cache.open_or_create(counter_id, seed=seed)

    def _replay(self, conn: apsw.Connection, idempotency: Idempotency, now: int) -> StoredResponse | None:
        row = conn.execute(
            "SELECT request_hash, status, response FROM idempotency_keys WHERE key = ? AND created_at > ?",
            (idempotency.key, now - self._ttl_ms),
        ).fetchone()
        if row is None:
            return None
        if row[0] != idempotency.fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used for a different request - use a new key for a new request"
            )
        return StoredResponse(status=int(row[1]), body=str(row[2]))

    def _remember(
        self, conn: apsw.Connection, idempotency: Idempotency, response: StoredResponse, now: int
    ) -> None:
        # Swept lazily, here: only requests that add keys make the table grow, and the index on
        # created_at makes the sweep a range delete.
        conn.execute("DELETE FROM idempotency_keys WHERE created_at <= ?", (now - self._ttl_ms,))
        conn.execute(
            "INSERT INTO idempotency_keys (key, request_hash, status, response, created_at) VALUES (?, ?, ?, ?, ?)",
            (idempotency.key, idempotency.fingerprint, response.status, response.body, now),
        )

    @contextmanager
    def _transaction(self, counter_id: str, conn: apsw.Connection, begin: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            conn.execute(begin)
        except apsw.BusyError as exc:
            self._waited(time.perf_counter() - started)
            raise StorageBusy(f"counter {counter_id!r}: lock not granted within the busy timeout") from exc
        except STORAGE_ERRORS as exc:
            raise storage_unavailable(f"counter {counter_id!r}", exc) from exc
        except apsw.CorruptError as exc:  # BEGIN IMMEDIATE reads the header of a file cut short
            self._cache.forget(counter_id)
            raise damaged(f"counter {counter_id!r}", MALFORMED) from exc
        self._waited(time.perf_counter() - started)
        try:
            # The file's header is checked here, inside the operation's own transaction, at no
            # file-system cost; a file that is behind is migrated first (counter_core.connection).
            migrated = self._cache.admit(counter_id, conn, begin)
            yield
            conn.execute("COMMIT")
        except apsw.BusyError as exc:
            self._rollback(counter_id, conn)
            raise StorageBusy(f"counter {counter_id!r}: lock not granted within the busy timeout") from exc
        except STORAGE_ERRORS as exc:
            self._rollback(counter_id, conn)
            if _file_replaced(exc):
                self._cache.forget(counter_id)
            raise storage_unavailable(f"counter {counter_id!r}", exc) from exc
        except apsw.CorruptError as exc:
            self._rollback(counter_id, conn)
            self._cache.forget(counter_id)
            raise damaged(f"counter {counter_id!r}", MALFORMED) from exc
        except (CounterFileDamaged, NotACounterDatabase, StorageUnavailable) as exc:
            # The file at the path may change back (an operator restores it, or moves it away): the
            # next request opens whatever is there then, instead of this connection's file for good.
            self._rollback(counter_id, conn)
            if not isinstance(exc, StorageUnavailable) or _file_replaced(exc):
                self._cache.forget(counter_id)
            raise
        except BaseException:
            self._rollback(counter_id, conn)
            raise
        if migrated is not None:
            self._cache.committed(counter_id, migrated)

    def _waited(self, seconds: float) -> None:
        # An uncontended BEGIN takes microseconds (a lock round trip on EFS, about a millisecond);
        # past LOCK_WAIT_REPORT_S, SQLite's busy handler must have slept for another writer.
        if seconds >= LOCK_WAIT_REPORT_S and self._on_lock_wait is not None:
            self._on_lock_wait(seconds)

    def _rollback(self, counter_id: str, conn: apsw.Connection) -> None:
        if conn.get_autocommit():
            return
        try:
            conn.execute("ROLLBACK")
        except apsw.Error:
            # The connection's state is unknown: drop it so the next request opens afresh.
            self._cache.forget(counter_id)


def _file_replaced(exc: BaseException) -> bool:
    """Whether SQLite refused a write because the connection's file was renamed or unlinked."""
    cause = exc if isinstance(exc, apsw.Error) else exc.__cause__
    return (
        isinstance(cause, apsw.ReadOnlyError)
        and getattr(cause, "extendedresult", None) == apsw.SQLITE_READONLY_DBMOVED
    )


_Row = tuple[int, str, int, int]  # value, metadata JSON, created_at, updated_at


def _read(conn: apsw.Connection) -> _Row | None:
    row = conn.execute(
        "SELECT value, metadata, created_at, updated_at FROM counter_metadata WHERE id = 1"
    ).fetchone()
    return None if row is None else (_int(row[0]), str(row[1]), _int(row[2]), _int(row[3]))


def _int(value: object) -> int:
    # Columns declared INTEGER in schema.sql; anything else means the file was edited by hand.
    if not isinstance(value, int):
        raise TypeError(f"expected an INTEGER column value, found {type(value).__name__}")
    return value


def _view(counter_id: str, row: _Row) -> Counter:
    value, metadata, created_at, updated_at = row
    return Counter(
        id=counter_id,
        value=value,
        metadata_json=metadata,
        created_at=rfc3339(created_at),
        updated_at=rfc3339(updated_at),
    )


def _mutate(
    conn: apsw.Connection, counter_id: str, operation: Operation, *, now: int, request_id: str | None
) -> Outcome:
    row = _read(conn)
    if row is None and isinstance(operation, (Delete, Reset)):
        raise CounterNotFound(f"counter {counter_id!r} does not exist")
    if isinstance(operation, Delete):
        # Rows go, the file stays: another process may hold a cached connection to it, and writes
        # through that connection must land in the file every process sees, never in an unlinked one.
        conn.execute("DELETE FROM counter_metadata; DELETE FROM counter_history")
        return Outcome(counter=None)
    value, metadata, created_at = (row[0], row[1], row[2]) if row is not None else (0, "{}", now)
    amount: int | None
    if isinstance(operation, Increment):
        op, amount, new_value = "increment", operation.by, value + operation.by
    elif isinstance(operation, Decrement):
        op, amount, new_value = "decrement", operation.by, value - operation.by
    elif isinstance(operation, Set):
        op, amount, new_value = "set", operation.value, operation.value
        if operation.metadata is not None:
            metadata = metadata_json(operation.metadata)
    else:
        op, amount, new_value = "reset", None, 0
    # Python integers do not overflow; SQLite would silently turn an overflowing sum into a REAL.
    if not INT64_MIN <= new_value <= INT64_MAX:
        raise OutOfRange(
            f"{op} by {amount} would take the value {value} outside the signed 64-bit range"
            f" [{INT64_MIN}, {INT64_MAX}] - the counter is unchanged"
        )
    conn.execute(
        "INSERT INTO counter_metadata (id, name, value, metadata, created_at, updated_at) VALUES (1, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET value = excluded.value, metadata = excluded.metadata,"
        " updated_at = excluded.updated_at",
        (counter_id, new_value, metadata, created_at, now),
    )
    conn.execute(
        "INSERT INTO counter_history (op, amount, value_after, at, request_id) VALUES (?, ?, ?, ?, ?)",
        (op, amount, new_value, now, request_id),
    )
    return Outcome(counter=_view(counter_id, (new_value, metadata, created_at, now)), created=row is None)


def _prune_history(conn: apsw.Connection, keep: int) -> None:
    """In the write's own transaction: drop history older than the newest `keep` rows, in batches.

    `seq` is AUTOINCREMENT, so it never goes back and the cut is a range delete on the rowid. New files
    are created with auto_vacuum=FULL (counter_core.create), so the pages this frees leave the file at
    COMMIT; older files reuse them for later rows.
    """
    seq = conn.last_insert_rowid()
    if seq % PRUNE_EVERY == 0 and seq > keep:
        # min(seq) is the first entry of the rowid b-tree: one page already in the cache.
        conn.execute(
            "DELETE FROM counter_history WHERE seq <= min(?, (SELECT min(seq) FROM counter_history) + ?)",
            (seq - keep, PRUNE_MAX_ROWS - 1),
        )


# base64 is imported by the history reads that use it, which load pydantic anyway: not at cold start.
def _encode_cursor(seq: int) -> str:
    import base64

    return base64.urlsafe_b64encode(f"h1:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    import base64

    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, seq = raw.partition(":")
        # isascii: str.isdigit accepts other scripts' digits; the bound: SQLite binds 64-bit integers.
        if prefix != "h1" or not (seq.isascii() and seq.isdigit()) or int(seq) > INT64_MAX:
            raise ValueError(raw)
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor(
            "cursor is not one this API issued - pass `next_cursor` from the previous page unchanged"
        ) from None
