"""What runs inside the bench's measured subprocesses: `python -m tools.bench.workers NAME ARGS_JSON OUT`.

Each worker sets its environment (COUNTERS_ROOT, ...) before importing the project, measures, and
writes its raw samples as JSON to OUT (stdout is left to the handler's logs). Module-level imports
are stdlib only: the cold-start worker measures import time, and nothing may be imported before it.

Where a worker measures project and baseline side by side, it interleaves them and rotates which
goes first on every iteration, so drift (page cache, CPU frequency, other load) hits both alike.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.bench.baseline import (
    REQUEST_ID,
    LambdaContext,
    counter_value,
    ddl_statements,
    increment_event,
    raw_first_touch,
    raw_increment,
    raw_open,
)

PROJECT_PACKAGES = {"handlers", "counter_core", "generated", "tools"}
WARMUP = 20


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _us(started_ns: int) -> float:
    return (time.perf_counter_ns() - started_ns) / 1000


def _handler_increment(handler: Callable[..., dict[str, Any]], counter_id: str) -> int:
    return _answered(handler(increment_event(counter_id), LambdaContext()), counter_id)


def _handler(wanted: bool) -> Callable[..., dict[str, Any]] | None:
    """handlers.api.handler, imported only once COUNTERS_ROOT is set; None if the run has no handler."""
    if not wanted:
        return None
    from handlers.api import handler

    return handler


def _answered(response: dict[str, Any], counter_id: str) -> int:
    if response.get("statusCode") != 200:
        raise RuntimeError(
            f"increment of {counter_id!r} answered {response.get('statusCode')}: {response.get('body')}"
        )
    return int(json.loads(response["body"])["value"])


def _invocations(handler: Callable[..., dict[str, Any]], counter_ids: list[str]) -> Callable[[int], int]:
    """Call i increments counter_ids[i]; events and contexts are built ahead, so only the handler is timed."""
    calls = [(counter_id, increment_event(counter_id), LambdaContext()) for counter_id in counter_ids]

    def invoke(i: int) -> int:
        counter_id, event, context = calls[i]
        return _answered(handler(event, context), counter_id)

    return invoke


def _store(root: Path, manifest_dir: Path, *, capacity: int | None = None) -> Any:
    """A CounterStore over its own ConnectionCache, configured as the handler configures its own."""
    from counter_core import ConnectionCache, config, load_manifest
    from counter_core.store import CounterStore

    cache = ConnectionCache(
        root,
        load_manifest(manifest_dir),
        capacity=capacity or config.connection_cache_size(),
        busy_timeout_ms=config.busy_timeout_ms(),
    )
    return CounterStore(cache, idempotency_ttl_s=config.idempotency_ttl_s())


def _store_increment(store: Any, counter_id: str) -> int:
    from counter_core.store import Increment

    applied = store.apply(counter_id, Increment(1), request_id=REQUEST_ID)
    return int(applied.outcome.counter.value)


def _interleave(sides: dict[str, Callable[[int], object]], count: int) -> dict[str, list[float]]:
    """Run each side `count` times, interleaved, rotating the order; samples in microseconds."""
    names = list(sides)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(count):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter_ns()
            sides[name](i)
            samples[name].append(_us(started))
    return samples


def warm(args: dict[str, Any]) -> dict[str, Any]:
    """Figures 1 and 2: warm increments (connection open and current) through handler, store and raw APSW."""
    root = Path(args["root"])
    os.environ["COUNTERS_ROOT"] = str(root / "handler")
    from counter_core import config, counter_path, load_manifest

    manifest = load_manifest(Path(args["manifest_dir"]))
    store = _store(root / "store", Path(args["manifest_dir"]))
    (root / "raw").mkdir(parents=True)
    raw_path = root / "raw" / "warm.sqlite3"
    busy = config.busy_timeout_ms()
    raw = raw_first_touch(raw_path, ddl_statements(manifest), "warm", now_ms=_now_ms(), busy_timeout_ms=busy)
    handler = _handler(args["handler"])

    def sides(count: int) -> dict[str, Callable[[int], object]]:
        chosen: dict[str, Callable[[int], object]] = {
            "store": lambda _i: _store_increment(store, "warm"),
            "raw": lambda _i: raw_increment(raw, "warm", now_ms=_now_ms()),
        }
        if handler is not None:
            chosen["handler"] = _invocations(handler, ["warm"] * count)
        return chosen

    _interleave(sides(WARMUP), WARMUP)
    samples = _interleave(sides(args["ops"]), args["ops"])
    # Every side counted WARMUP + ops increments; the raw file's creation counted one more.
    expected = {"store": WARMUP + args["ops"], "raw": WARMUP + args["ops"] + 1}
    found = {"store": counter_value(counter_path(root / "store", "warm")), "raw": counter_value(raw_path)}
    if args["handler"]:
        expected["handler"] = WARMUP + args["ops"]
        found["handler"] = counter_value(counter_path(root / "handler", "warm"))
    if found != expected:
        raise RuntimeError(f"lost increments: expected {expected}, found {found}")
    return {"samples_us": samples}


def first_touch(args: dict[str, Any]) -> dict[str, Any]:
    """Figure 3: a new counter's file created, migrated and incremented once; vs raw DDL + increment."""
    root = Path(args["root"])
    count = args["count"]
    os.environ["COUNTERS_ROOT"] = str(root / "handler")
    # Big enough that no connection is evicted (closed) inside a measured first touch.
    os.environ["COUNTERS_CONNECTION_CACHE_SIZE"] = str(count + WARMUP + 16)
    from counter_core import config, load_manifest

    manifest = load_manifest(Path(args["manifest_dir"]))
    ddl = ddl_statements(manifest)
    busy = config.busy_timeout_ms()
    store = _store(root / "store", Path(args["manifest_dir"]), capacity=count + WARMUP + 16)
    (root / "raw").mkdir(parents=True)
    raw_conns = []

    def raw(prefix: str, i: int) -> None:
        path = root / "raw" / f"{prefix}-{i}.sqlite3"
        raw_conns.append(raw_first_touch(path, ddl, f"{prefix}-{i}", now_ms=_now_ms(), busy_timeout_ms=busy))

    handler = _handler(args["handler"])

    def sides(prefix: str, count: int) -> dict[str, Callable[[int], object]]:
        chosen: dict[str, Callable[[int], object]] = {
            "store": lambda i: _store_increment(store, f"{prefix}-{i}"),
            "raw": functools.partial(raw, prefix),
        }
        if handler is not None:
            chosen["handler"] = _invocations(handler, [f"{prefix}-{i}" for i in range(count)])
        return chosen

    # Warm-up counters of their own, so first-call costs (lazy imports, pydantic) stay out of the samples.
    _interleave(sides("warmup", 3), 3)
    samples = _interleave(sides("first", count), count)
    for conn in raw_conns:
        conn.close()
    return {"samples_us": samples, "manifest_version": manifest.version}


def fast_path(args: dict[str, Any]) -> dict[str, Any]:
    """Figure 4, one fresh interpreter, one side: the first open of an up-to-date counter file."""
    root = Path(args["root"])
    import apsw

    from counter_core import ConnectionCache, config, counter_path, load_manifest

    manifest = load_manifest(Path(args["manifest_dir"]))
    busy = config.busy_timeout_ms()
    path = counter_path(root, args["counter_id"])
    if args["side"] == "project":
        started = time.perf_counter_ns()
        cache = ConnectionCache(root, manifest, capacity=config.connection_cache_size(), busy_timeout_ms=busy)
        cache.connection(args["counter_id"], create=False)
        elapsed = _us(started)
    else:
        started = time.perf_counter_ns()
        conn = raw_open(path, create=False, busy_timeout_ms=busy)
        row = conn.execute("PRAGMA user_version").fetchone()
        elapsed = _us(started)
        version = None if row is None else row[0]
        if version != manifest.version:
            raise RuntimeError(f"user_version {version}, expected {manifest.version}")
    return {"us": elapsed, "apsw": apsw.apswversion()}


def _third_party_modules(before: set[str]) -> list[str]:
    stdlib = sys.stdlib_module_names | set(sys.builtin_module_names)
    found = []
    for name, module in list(sys.modules.items()):
        top = name.partition(".")[0]
        # _sysconfigdata_* is the stdlib's own (loaded lazily by sysconfig), though not in stdlib_module_names.
        if name in before or module is None or top in stdlib or top in PROJECT_PACKAGES or top == "__main__":
            continue
        if top.startswith("_sysconfigdata"):
            continue
        found.append(name)
    return found


def cold_start(args: dict[str, Any]) -> dict[str, Any]:
    """Figure 7, one fresh interpreter: import time and the first request, project or third-party alone."""
    os.environ["COUNTERS_ROOT"] = args["root"]
    before = set(sys.modules)
    kind = args["kind"]
    started = time.perf_counter_ns()
    if kind == "third_party":
        failed = []
        for name in args["modules"]:
            try:
                importlib.import_module(name)
            except ImportError:  # a private submodule that only imports as part of its package
                failed.append(name)
        import_us = _us(started)
        conn = raw_open(Path(args["raw_path"]), create=False, busy_timeout_ms=args["busy_timeout_ms"])
        raw_increment(conn, "cold", now_ms=_now_ms())
        return {"import_us": import_us, "first_request_us": _us(started), "failed_imports": failed}
    api = importlib.import_module("handlers.api")
    import_us = _us(started)
    modules = _third_party_modules(before) if kind == "discover" else []
    _handler_increment(api.handler, args["counter_id"])
    return {"import_us": import_us, "first_request_us": _us(started), "modules": modules}


def memory(args: dict[str, Any]) -> dict[str, Any]:
    """Figure 8: peak RSS (ru_maxrss) at checkpoints while touching distinct counters one by one."""
    root = Path(args["root"])
    os.environ["COUNTERS_ROOT"] = str(root)
    from counter_core import config, load_manifest

    mode = args["mode"]
    checkpoints = set(args["checkpoints"])
    touch: Callable[[int], object]
    if mode == "handler":
        from handlers.api import handler

        def touch(i: int) -> object:
            # Twice: the first increment creates the file without opening it for the cache
            # (counter_core/create.py); the second opens it and keeps it in the connection cache.
            _handler_increment(handler, f"mem-{i}")
            return _handler_increment(handler, f"mem-{i}")

    elif mode == "store":
        store = _store(root, Path(args["manifest_dir"]))

        def touch(i: int) -> object:
            _store_increment(store, f"mem-{i}")  # creates the file; the second opens and caches it
            return _store_increment(store, f"mem-{i}")

    else:
        ddl = ddl_statements(load_manifest(Path(args["manifest_dir"])))
        busy = config.busy_timeout_ms()

        def touch(i: int) -> object:
            path = root / f"mem-{i}.sqlite3"
            raw_first_touch(path, ddl, f"mem-{i}", now_ms=_now_ms(), busy_timeout_ms=busy).close()
            return None

    peak_kib: dict[str, int] = {}
    for i in range(1, max(checkpoints) + 1):
        touch(i)
        if i in checkpoints:
            # Linux reports ru_maxrss in KiB.
            peak_kib[str(i)] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_rss_kib": peak_kib}


def syscalls(args: dict[str, Any]) -> dict[str, Any]:
    """Figure 9 (run under strace -c): a few warm-up increments, then `ops` warm increments."""
    root = Path(args["root"])
    os.environ["COUNTERS_ROOT"] = str(root)
    from counter_core import config, load_manifest

    if args["side"] == "handler":
        from handlers.api import handler

        for _ in range(3):
            _handler_increment(handler, "sys")
        for _ in range(args["ops"]):
            _handler_increment(handler, "sys")
    else:
        root.mkdir(parents=True)
        ddl = ddl_statements(load_manifest(Path(args["manifest_dir"])))
        conn = raw_first_touch(
            root / "sys.sqlite3", ddl, "sys", now_ms=_now_ms(), busy_timeout_ms=config.busy_timeout_ms()
        )
        for _ in range(2):
            raw_increment(conn, "sys", now_ms=_now_ms())
        for _ in range(args["ops"]):
            raw_increment(conn, "sys", now_ms=_now_ms())
    return {"ops": args["ops"]}


def fleet_baseline(args: dict[str, Any]) -> dict[str, Any]:
    """Figure 6 baseline: walk the tree and apply one statement to every file, in `workers` processes."""
    import multiprocessing

    root = Path(args["root"])
    paths = [
        entry.path
        for first in sorted(os.scandir(root), key=lambda e: e.name)
        for second in sorted(os.scandir(first.path), key=lambda e: e.name)
        for entry in sorted(os.scandir(second.path), key=lambda e: e.name)
        if entry.name.endswith(".sqlite3")
    ]
    statement = args["statement"]
    work = [(path, statement, args["busy_timeout_ms"]) for path in paths]
    if args["workers"] == 1:
        done = sum(map(_apply_statement, work))
    else:
        # spawn, as tools.migrations does: the same per-worker start-up cost on both sides.
        with multiprocessing.get_context("spawn").Pool(args["workers"]) as pool:
            done = sum(pool.imap_unordered(_apply_statement, work, chunksize=64))
    return {"files": done}


def _apply_statement(job: tuple[str, str, int]) -> int:
    path, statement, busy = job
    conn = raw_open(Path(path), create=False, busy_timeout_ms=busy)
    try:
        conn.execute(statement)
    finally:
        conn.close()
    return 1


def contention_child(side: str, args: dict[str, Any], barrier: Any, results: Any) -> None:
    """Figure 5, one of 8 processes: warm up, wait for the others, then `n` increments of one counter."""
    root = Path(args["root"])
    os.environ["COUNTERS_ROOT"] = str(root / "handler")
    # The handler logs every request to stdout; the parent's terminal is for the table.
    sys.stdout = Path(os.devnull).open("w")  # noqa: SIM115 - lives as long as the process
    import apsw

    from counter_core import config, load_manifest

    n = args["n"]
    retries = 0
    if side == "handler":
        from handlers.api import handler

        _handler_increment(handler, f"warm-{os.getpid()}")
        # Built ahead; a 503 is retried with the same event, as API Gateway would resend the request.
        calls = [(increment_event(args["counter_id"]), LambdaContext()) for _ in range(n)]
        barrier.wait(timeout=300)
        started = time.perf_counter()
        done = 0
        while done < n:
            response = handler(*calls[done])
            if response["statusCode"] == 200:
                done += 1
            elif response["statusCode"] == 503:  # busy past the timeout: a client retries
                retries += 1
            else:
                raise RuntimeError(f"increment answered {response['statusCode']}: {response['body']}")
    else:
        busy = config.busy_timeout_ms()
        ddl = ddl_statements(load_manifest(Path(args["manifest_dir"])))
        warm_path = root / "raw" / f"warm-{os.getpid()}.sqlite3"
        raw_first_touch(warm_path, ddl, "warm", now_ms=_now_ms(), busy_timeout_ms=busy).close()
        barrier.wait(timeout=300)
        started = time.perf_counter()
        conn = raw_open(Path(args["raw_path"]), create=False, busy_timeout_ms=busy)
        done = 0
        while done < n:
            try:
                raw_increment(conn, args["counter_id"], now_ms=_now_ms())
                done += 1
            except apsw.BusyError:
                retries += 1
        conn.close()
    # perf_counter is CLOCK_MONOTONIC on Linux: comparable across processes on one host.
    results.put({"start": started, "end": time.perf_counter(), "retries": retries})


WORKERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "warm": warm,
    "first_touch": first_touch,
    "fast_path": fast_path,
    "cold_start": cold_start,
    "memory": memory,
    "syscalls": syscalls,
    "fleet_baseline": fleet_baseline,
}


def main(argv: list[str]) -> int:
    name, raw_args, out = argv
    result = WORKERS[name](json.loads(raw_args))
    Path(out).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
