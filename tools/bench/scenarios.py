"""The request classes of the round-trip figure, run once each under strace, by the project or raw APSW.

`python -m tools.bench.scenarios SIDE ROOT BASE_DIR NEWER_DIR` runs, in one process, each request
class in turn, marking its start (see tools.bench.roundtrips); SIDE is `project` (the Lambda handler,
with the events API Gateway sends) or `raw` (the minimal hand-written APSW program below). Both
sides use the same file layout (ROOT/ab/cd/<sha256>.sqlite3) and the same durability settings.

The raw program is what a careful programmer would write with APSW alone: connections kept open
between requests; a `stat` before opening an existing counter (it must answer a missing counter
with one lookup and never open a FIFO or a directory as a database); a new counter created in
place, its schema and first increment in one transaction; a file one migration behind migrated
and incremented in one transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from tools.bench.baseline import LambdaContext, counter_event, increment_statements, raw_increment
from tools.bench.roundtrips import MARK_DIR

WARM_REPEATS = 5
CLASSES = (
    "first touch of a new counter",
    "the request right after a first touch",
    "warm increment",
    "first GET of an existing counter in a process",
    "first increment of an existing counter in a process",
    "GET of a counter that does not exist",
    "increment of a file one migration behind",
)


def mark(label: str) -> None:
    """Start a request class in the strace log: a failed stat of a path that cannot exist."""
    with contextlib.suppress(FileNotFoundError):
        Path(f"{MARK_DIR}/{label}").stat()


def _path(root: Path, counter_id: str) -> Path:
    digest = hashlib.sha256(counter_id.encode("utf-8")).hexdigest()
    return root / digest[0:2] / digest[2:4] / f"{digest}.sqlite3"


def _now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000


def _project(root: Path, base_dir: Path, newer_dir: Path) -> None:
    os.environ["COUNTERS_ROOT"] = str(root)
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    from counter_core import load_manifest
    from handlers import api

    def call(method: str, counter_id: str, action: str = "", expect: int = 200) -> None:
        response = api.handler(counter_event(method, counter_id, action), LambdaContext())
        if response["statusCode"] != expect:
            raise SystemExit(f"{method} {counter_id}{action}: {response['statusCode']} {response['body']}")

    def new_process(manifest_dir: Path | None = None) -> None:
        # What a new Lambda instance has: no cached connection, no state.
        if api._state is not None:
            api._state.cache.close()
        api._state = None
        if manifest_dir is not None:
            api.MANIFEST = load_manifest(manifest_dir)

    # Set-up, not counted: an existing counter and a file one migration behind, made by the project.
    call("POST", "existing", "/increment")
    call("POST", "behind", "/increment")
    new_process(base_dir)
    run_classes(
        first_touch=lambda: call("POST", "new", "/increment"),
        after=lambda: call("POST", "new", "/increment"),
        warm=lambda: call("POST", "new", "/increment"),
        fresh=new_process,
        first_get=lambda: call("GET", "existing"),
        first_increment=lambda: call("POST", "existing", "/increment"),
        missing=lambda: call("GET", "missing", expect=404),
        to_newer=lambda: new_process(newer_dir),
        migrate=lambda: call("POST", "behind", "/increment"),
    )


def _raw(root: Path, base_dir: Path, newer_dir: Path) -> None:
    import apsw

    from counter_core import load_manifest

    base, newer = load_manifest(base_dir), load_manifest(newer_dir)
    manifest = base
    cache: dict[str, apsw.Connection] = {}

    def connect(path: Path, *, create: bool) -> apsw.Connection:
        flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
        conn = apsw.Connection(str(path), flags=flags)
        conn.set_busy_timeout(5000)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def existing(counter_id: str) -> apsw.Connection | None:
        if counter_id in cache:
            return cache[counter_id]
        path = _path(root, counter_id)
        try:
            path.stat()
        except FileNotFoundError:
            return None
        cache[counter_id] = conn = connect(path, create=False)
        return conn

    def increment(counter_id: str) -> None:
        conn = existing(counter_id)
        if conn is None:
            path = _path(root, counter_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            cache[counter_id] = conn = connect(path, create=True)
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute("PRAGMA user_version").fetchone()
        version = int(row[0]) if row else 0
        if version < manifest.version:
            for migration in manifest.migrations[version:]:
                for statement in migration.statements:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={manifest.version}")
            conn.execute("PRAGMA application_id=1131312242")
        increment_statements(conn, counter_id, 1, _now_ms())
        conn.execute("COMMIT")

    def get(counter_id: str) -> None:
        conn = existing(counter_id)
        if conn is None:
            return
        conn.execute(
            "SELECT value, metadata, created_at, updated_at FROM counter_metadata WHERE id = 1"
        ).fetchone()

    def fresh(manifest_dir: Path | None = None) -> None:
        nonlocal manifest
        for conn in cache.values():
            conn.close()
        cache.clear()
        if manifest_dir is not None:
            manifest = newer if manifest_dir == newer_dir else base

    # Set-up, not counted: the same two files as the project's.
    increment("existing")
    increment("behind")
    fresh()
    warm_conn: list[apsw.Connection] = []

    def warm() -> None:
        if not warm_conn:
            warm_conn.append(cache["new"])
        raw_increment(warm_conn[0], "new", now_ms=_now_ms())

    run_classes(
        first_touch=lambda: increment("new"),
        after=lambda: increment("new"),
        warm=warm,
        fresh=fresh,
        first_get=lambda: get("existing"),
        first_increment=lambda: increment("existing"),
        missing=lambda: get("missing"),
        to_newer=lambda: fresh(newer_dir),
        migrate=lambda: increment("behind"),
    )


def run_classes(
    *,
    first_touch: Callable[[], None],
    after: Callable[[], None],
    warm: Callable[[], None],
    fresh: Callable[..., None],
    first_get: Callable[[], None],
    first_increment: Callable[[], None],
    missing: Callable[[], None],
    to_newer: Callable[[], None],
    migrate: Callable[[], None],
) -> None:
    """Each class once, marked; the warm class WARM_REPEATS times (its count is per request)."""
    mark(CLASSES[0])
    first_touch()
    mark(CLASSES[1])
    after()
    mark(CLASSES[2])
    for _ in range(WARM_REPEATS):
        warm()
    mark("untraced")
    fresh()
    mark(CLASSES[3])
    first_get()
    mark("untraced")
    fresh()
    mark(CLASSES[4])
    first_increment()
    mark(CLASSES[5])
    missing()
    mark("untraced")
    to_newer()
    mark(CLASSES[6])
    migrate()
    mark("untraced")


def main(argv: list[str]) -> int:
    side, root, base_dir, newer_dir = argv
    runner: dict[str, Callable[[Path, Path, Path], None]] = {"project": _project, "raw": _raw}
    runner[side](Path(root), Path(base_dir), Path(newer_dir))
    print(json.dumps({"side": side, "classes": list(CLASSES), "warm_repeats": WARM_REPEATS}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
