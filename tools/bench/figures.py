"""The nine figures of the benchmark (issue 6), each as project vs raw-APSW baseline.

Every figure that compares two sides measures them in the same way, in the same kind of process,
on the same directory, interleaved; the subprocess code lives in `tools.bench.workers`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.bench.baseline import REPO, Folders, raw_first_touch, raw_increment
from tools.bench.figure import MEMORY_FEW, Figure, Goal, Scale, Summary

CONTENTION_PROCESSES = 8
ROUND_TRIP_SYSCALLS = {
    "open": "open",
    "openat": "open",
    "openat2": "open",
    "creat": "open",
    "close": "close",
    "unlink": "unlink",
    "unlinkat": "unlink",
    "fsync": "fsync/fdatasync",
    "fdatasync": "fsync/fdatasync",
    "fcntl": "fcntl",
    "fcntl64": "fcntl",
}


class BenchError(Exception):
    """A measurement could not be made (a worker failed, a check on its result failed)."""


@dataclass
class Run:
    """What every figure needs: sizes, directories, migrations, and whether the handler can be driven."""

    scale: Scale
    disk: Path  # a fresh directory on the disk under test
    ram: Path  # a fresh directory on a RAM-backed file system
    folders: Folders
    handler_reason: str | None  # None when handlers.api imports and serves an increment
    third_party_modules: list[str]
    busy_timeout_ms: int
    strace: str | None
    workers: int

    def fresh(self, where: Path, name: str) -> Path:
        path = where / name
        path.mkdir(parents=True)
        return path


def run_worker(
    run_dir: Path, name: str, args: dict[str, Any], *, prefix: list[str] | None = None, timeout: float = 900
) -> tuple[dict[str, Any], float]:
    """Run one `tools.bench.workers` subprocess; its JSON result and its wall time in seconds."""
    out = run_dir / f"{name}-{time.perf_counter_ns()}.json"
    command = [*(prefix or []), sys.executable, "-m", "tools.bench.workers", name, json.dumps(args), str(out)]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"worker {name!r} did not finish within {timeout:.0f} s") from exc
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or not out.exists():
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise BenchError(f"worker {name!r} exited {done.returncode}: {tail[0]}")
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    out.unlink()
    return result, elapsed


def _summary(samples: list[float], scale: float = 1.0) -> Summary:
    return Summary(tuple(sample * scale for sample in samples))


# --- figures 1 and 2: warm increments -------------------------------------------------------------


def warm_figures(run: Run, *, ram: bool) -> list[Figure]:
    """Figure 1 (disk) or 2 (RAM): handler and store vs the same transaction in raw APSW."""
    key, where, unit, scale = ("2", run.ram, "us", 1.0) if ram else ("1", run.disk, "ms", 1e-3)
    ops = run.scale.ram_ops if ram else run.scale.warm_ops
    place = "RAM dir" if ram else "disk"
    handler = Figure(
        key,
        f"warm increment via handler, {place}",
        unit,
        "handlers.api.handler, payload 2.0 event",
        "raw APSW, same transaction",
        goal=None if ram else Goal(1.15, "at_most"),
    )
    store = Figure(
        f"{key}s",
        f"warm increment via store (no HTTP), {place}",
        unit,
        "ConnectionCache + CounterStore.apply(Increment)",
        "raw APSW, same transaction",
    )
    result, _ = run_worker(
        where,
        "warm",
        {
            "root": str(run.fresh(where, f"warm-{key}")),
            "ops": ops,
            "handler": run.handler_reason is None,
            "manifest_dir": str(run.folders.base),
        },
    )
    samples = result["samples_us"]
    if run.handler_reason is not None:
        handler.skip(run.handler_reason)
    for fig, side in ((handler, "handler"), (store, "store")):
        if side not in samples:
            continue
        fig.project = _summary(samples[side], scale)
        fig.baseline = _summary(samples["raw"], scale)
        fig.repetitions = f"{ops} interleaved ops per side, 1 process"
        added = _summary(samples[side]).median - _summary(samples["raw"]).median
        fig.extra["added_us_per_request"] = added
        fig.notes.append(f"adds {added:.0f} us per request (median minus median)")
    return [handler, store]


# --- figure 3: first touch ------------------------------------------------------------------------


def first_touch_figures(run: Run) -> list[Figure]:
    store = Figure(
        "3",
        "first touch: create + migrate + 1st increment (store)",
        "ms",
        "ConnectionCache(create) + CounterStore.apply",
        "raw APSW: create, DDL + increment in 1 txn",
        goal=Goal(1.5, "at_most"),
    )
    handler = Figure(
        "3h",
        "first touch via handler",
        "ms",
        "handlers.api.handler on a new counter",
        "raw APSW: create, DDL + increment in 1 txn",
        goal=Goal(1.5, "at_most"),
    )
    count = run.scale.first_touch
    result, _ = run_worker(
        run.disk,
        "first_touch",
        {
            "root": str(run.fresh(run.disk, "first-touch")),
            "count": count,
            "handler": run.handler_reason is None,
            "manifest_dir": str(run.folders.base),
        },
    )
    samples = result["samples_us"]
    for fig, side in ((store, "store"), (handler, "handler")):
        if side not in samples:
            fig.skip(run.handler_reason or "no samples")
            continue
        fig.project = _summary(samples[side], 1e-3)
        fig.baseline = _summary(samples["raw"], 1e-3)
        fig.repetitions = f"{count} new counters per side, interleaved, 1 process"
    note = (
        f"{result['manifest_version']} migration(s); the project creates fan-out directories, builds the file"
        " (migrations + first increment) under a private name, fsyncs it and links it into place"
        " (counter_core/create.py); the baseline runs the DDL and the increment in one journaled transaction"
    )
    store.notes.append(note)
    return [store, handler]


# --- figure 4: fast path in a fresh process -------------------------------------------------------


def fast_path_figure(run: Run) -> Figure:
    fig = Figure(
        "4",
        "fast path: first open of a current file, fresh process",
        "us",
        "ConnectionCache.connection(create=False)",
        "raw open + PRAGMA user_version",
        goal=Goal(1.5, "at_most"),
    )
    from counter_core import ConnectionCache, load_manifest

    root = run.fresh(run.disk, "fast-path")
    cache = ConnectionCache(
        root, load_manifest(run.folders.base), capacity=1, busy_timeout_ms=run.busy_timeout_ms
    )
    cache.connection("fast", create=True)
    cache.close()
    samples: dict[str, list[float]] = {"project": [], "raw": []}
    for i in range(run.scale.fresh_processes):
        for side in ("project", "raw") if i % 2 == 0 else ("raw", "project"):
            result, _ = run_worker(
                run.disk,
                "fast_path",
                {
                    "side": side,
                    "root": str(root),
                    "counter_id": "fast",
                    "manifest_dir": str(run.folders.base),
                },
            )
            samples[side].append(result["us"])
    fig.project = _summary(samples["project"])
    fig.baseline = _summary(samples["raw"])
    fig.repetitions = f"{run.scale.fresh_processes} fresh interpreters per side, alternating"
    fig.notes.append("timed inside the process after imports; both sides set the same pragmas")
    return fig


# --- figure 5: contention -------------------------------------------------------------------------


def contention_figure(run: Run) -> Figure:
    n = run.scale.contention_n
    fig = Figure(
        "5",
        f"contention: {CONTENTION_PROCESSES} processes x {n} increments, 1 counter",
        "incr/s",
        "handler in 8 processes",
        "raw APSW in 8 processes",
        goal=Goal(0.8, "at_least"),
    )
    if run.handler_reason is not None:
        return fig.skip(run.handler_reason)
    from counter_core import ConnectionCache, bundled_manifest, counter_path, load_manifest
    from tools.bench.baseline import counter_value, ddl_statements

    ddl = ddl_statements(load_manifest(run.folders.base))
    throughput: dict[str, list[float]] = {"handler": [], "raw": []}
    retries: dict[str, list[int]] = {"handler": [], "raw": []}
    for attempt in range(run.scale.contention_runs):
        for side in ("handler", "raw") if attempt % 2 == 0 else ("raw", "handler"):
            root = run.fresh(run.disk, f"contention-{attempt}-{side}")
            counter_id = f"shared-{attempt}"
            raw_path = root / "raw" / "shared.sqlite3"
            if side == "handler":
                cache = ConnectionCache(
                    root / "handler", bundled_manifest(), capacity=1, busy_timeout_ms=1000
                )
                cache.connection(
                    counter_id, create=True
                )  # created and migrated: every process takes the fast path
                cache.close()
                expected, path = CONTENTION_PROCESSES * n, counter_path(root / "handler", counter_id)
            else:
                (root / "raw").mkdir()
                raw_first_touch(raw_path, ddl, counter_id, now_ms=0, busy_timeout_ms=1000).close()
                expected, path = CONTENTION_PROCESSES * n + 1, raw_path
            args = {
                "root": str(root),
                "n": n,
                "counter_id": counter_id,
                "raw_path": str(raw_path),
                "manifest_dir": str(run.folders.base),
            }
            reports = _contend(side, args)
            found = counter_value(path)
            if found != expected:
                raise BenchError(f"contention ({side}): final value {found}, expected exactly {expected}")
            wall = max(r["end"] for r in reports) - min(r["start"] for r in reports)
            throughput[side].append(CONTENTION_PROCESSES * n / wall)
            retries[side].append(sum(r["retries"] for r in reports))
    fig.project = _summary(throughput["handler"])
    fig.baseline = _summary(throughput["raw"])
    fig.repetitions = f"{run.scale.contention_runs} runs per side, alternating"
    fig.extra["retries_after_busy"] = retries
    fig.notes.append(
        f"final value exactly {CONTENTION_PROCESSES}N on every run; busy retries (503 / BusyError):"
        f" handler {retries['handler']}, raw {retries['raw']}"
    )
    return fig


def _contend(side: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    from tools.bench.workers import contention_child

    # spawn: a fresh interpreter per process, as a Lambda instance would have.
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(CONTENTION_PROCESSES)
    results = context.Queue()
    processes = [
        context.Process(target=contention_child, args=(side, args, barrier, results))
        for _ in range(CONTENTION_PROCESSES)
    ]
    for process in processes:
        process.start()
    reports = []
    try:
        for _ in processes:
            reports.append(results.get(timeout=600))
    except queue.Empty as exc:
        raise BenchError(f"contention ({side}): a process did not report within 600 s") from exc
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise BenchError(f"contention ({side}): processes exited with {failed}")
    return reports


# --- figure 6: fleet migration --------------------------------------------------------------------


def fleet_figure(run: Run) -> Figure:
    n = run.scale.fleet_files
    fig = Figure(
        "6",
        f"fleet migration, {n} files, {run.workers} workers, per file",
        "ms",
        "python -m tools.migrations migrate",
        "raw APSW: same ALTER on each file",
        goal=Goal(1.5, "at_most"),
    )
    from counter_core import ConnectionCache, counter_path, load_manifest
    from tools.bench.baseline import FLEET_STATEMENT

    base = run.fresh(run.disk, "fleet")
    cache = ConnectionCache(
        base / "template", load_manifest(run.folders.base), capacity=1, busy_timeout_ms=1000
    )
    raw_increment(cache.connection("template", create=True), "template", now_ms=0)
    cache.close()
    template = counter_path(base / "template", "template")
    per_file: dict[str, list[float]] = {"project": [], "raw": []}
    for attempt in range(run.scale.fleet_runs):
        trees = {side: base / f"{side}-{attempt}" for side in ("project", "raw")}
        for tree in trees.values():
            for i in range(n):
                path = counter_path(tree, f"fleet-{i}")
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(template, path)
        os.sync()  # the copies' writeback must not land inside either side's timing
        for side in ("project", "raw") if attempt % 2 == 0 else ("raw", "project"):
            if side == "project":
                wall = _fleet_project(run, trees[side], n)
            else:
                result, wall = run_worker(
                    base,
                    "fleet_baseline",
                    {
                        "root": str(trees[side]),
                        "statement": FLEET_STATEMENT,
                        "workers": run.workers,
                        "busy_timeout_ms": run.busy_timeout_ms,
                    },
                )
                if result["files"] != n:
                    raise BenchError(f"fleet baseline touched {result['files']} files, expected {n}")
            per_file[side].append(wall / n * 1000)
        for tree in trees.values():
            shutil.rmtree(tree)
    fig.project = _summary(per_file["project"])
    fig.baseline = _summary(per_file["raw"])
    fig.repetitions = f"{run.scale.fleet_runs} run(s) of {n} files per side, alternating"
    fig.notes.append(
        "wall time of the whole command / files, interpreter start-up included on both sides;"
        f" both use {run.workers} spawned worker processes"
    )
    return fig


def _fleet_project(run: Run, tree: Path, n: int) -> float:
    command = [
        sys.executable,
        "-m",
        "tools.migrations",
        "migrate",
        str(tree),
        "--workers",
        str(run.workers),
        "--no-progress",
        "--migrations",
        str(run.folders.fleet),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0 or f"{n} migrated" not in done.stdout:
        raise BenchError(
            f"tools.migrations migrate exited {done.returncode}: {done.stdout.strip()} {done.stderr[-300:]}"
        )
    return wall


# --- figure 7: cold start -------------------------------------------------------------------------


def cold_start_figures(run: Run) -> list[Figure]:
    imports = Figure(
        "7a", "cold start: import handlers.api", "ms", "import handlers.api", "import its 3rd-party modules"
    )
    first = Figure(
        "7b",
        "cold start: import + first request",
        "ms",
        "import + handler increment (current file)",
        "3rd-party import + raw open + increment",
    )
    if run.handler_reason is not None:
        return [imports.skip(run.handler_reason), first.skip(run.handler_reason)]
    root = run.fresh(run.disk, "cold-start")
    (root / "raw").mkdir()
    from counter_core import load_manifest
    from tools.bench.baseline import ddl_statements

    raw_path = root / "raw" / "cold.sqlite3"
    raw_first_touch(
        raw_path, ddl_statements(load_manifest(run.folders.base)), "cold", now_ms=0, busy_timeout_ms=1000
    ).close()
    args = {
        "root": str(root / "handler"),
        "counter_id": "cold",
        "modules": run.third_party_modules,
        "raw_path": str(raw_path),
        "busy_timeout_ms": run.busy_timeout_ms,
    }
    run_worker(run.disk, "cold_start", {**args, "kind": "project"})  # creates and migrates the counter once
    samples: dict[str, dict[str, list[float]]] = {
        kind: {"import_us": [], "first_request_us": []} for kind in ("project", "third_party")
    }
    failed: list[str] = []
    for i in range(run.scale.cold_processes):
        for kind in ("project", "third_party") if i % 2 == 0 else ("third_party", "project"):
            result, _ = run_worker(run.disk, "cold_start", {**args, "kind": kind})
            for measure in ("import_us", "first_request_us"):
                samples[kind][measure].append(result[measure])
            failed = result.get("failed_imports", failed)
    startup = [
        run_worker(run.disk, "cold_start", {**args, "kind": "third_party", "modules": []})[1]
        for _ in range(5)
    ]
    reps = f"{run.scale.cold_processes} fresh interpreters per side, alternating"
    for fig, measure in ((imports, "import_us"), (first, "first_request_us")):
        fig.project = _summary(samples["project"][measure], 1e-3)
        fig.baseline = _summary(samples["third_party"][measure], 1e-3)
        fig.repetitions = reps
    imports.extra["third_party_modules"] = run.third_party_modules
    imports.extra["third_party_import_failures"] = failed
    top = sorted({name.partition(".")[0] for name in run.third_party_modules})
    imports.notes.append(f"third-party packages imported: {', '.join(top)}")
    imports.extra["bare_worker_process_wall_ms"] = [s * 1000 for s in startup]
    first.notes.append(
        f"timed inside the interpreter; a bare worker process takes {Summary(tuple(startup)).median * 1000:.0f} ms"
        " wall (interpreter start-up) on top"
    )
    return [imports, first]


# --- figure 8: memory -----------------------------------------------------------------------------


def memory_figure(run: Run) -> Figure:
    many = run.scale.memory_many
    mode = "handler" if run.handler_reason is None else "store"
    fig = Figure(
        "8",
        f"memory: peak RSS after {many} counters vs {MEMORY_FEW}",
        "MiB",
        f"{many} distinct counters via {mode}",
        f"same process after {MEMORY_FEW}",
        goal=Goal(1.2, "at_most"),
    )
    checkpoints = sorted({MEMORY_FEW, 100, 1000, many} & set(range(MEMORY_FEW, many + 1)))
    rss_many: list[float] = []
    rss_few: list[float] = []
    curves = []
    for attempt in range(run.scale.memory_runs):
        root = run.fresh(run.ram, f"memory-{attempt}")
        result, _ = run_worker(
            run.ram,
            "memory",
            {
                "mode": mode,
                "root": str(root),
                "checkpoints": checkpoints,
                "manifest_dir": str(run.folders.base),
            },
        )
        peaks = result["peak_rss_kib"]
        curves.append(peaks)
        rss_many.append(peaks[str(many)] / 1024)
        rss_few.append(peaks[str(MEMORY_FEW)] / 1024)
        shutil.rmtree(root)  # thousands of files in RAM: free them before the next process
    root = run.fresh(run.ram, "memory-raw")
    raw, _ = run_worker(
        run.ram,
        "memory",
        {"mode": "raw", "root": str(root), "checkpoints": checkpoints, "manifest_dir": str(run.folders.base)},
    )
    shutil.rmtree(root)
    fig.project = _summary(rss_many)
    fig.baseline = _summary(rss_few)
    fig.repetitions = f"{run.scale.memory_runs} process(es)"
    fig.extra["peak_rss_kib_by_counters_touched"] = curves
    fig.extra["raw_apsw_open_close_peak_rss_kib"] = raw["peak_rss_kib"]
    curve = ", ".join(f"{k}: {v / 1024:.0f}" for k, v in curves[0].items())
    fig.notes.append(
        f"each counter created (migrated, first increment) and incremented again through the connection cache, on the RAM dir (memory, not disk, is measured);"
        f" peak MiB by counters touched: {curve}; raw APSW open/close per counter, for scale:"
        f" {raw['peak_rss_kib'][str(many)] / 1024:.0f} MiB"
    )
    if mode == "store":
        fig.notes.append(f"via the store, not the handler: {run.handler_reason}")
    return fig


# --- figure 9: file-system syscalls ---------------------------------------------------------------


def syscall_figure(run: Run) -> Figure:
    fig = Figure(
        "9",
        "fs syscalls per warm increment (strace -c -f)",
        "calls",
        "handler increment",
        "raw APSW increment",
    )
    if run.handler_reason is not None:
        return fig.skip(run.handler_reason)
    if run.strace is None:
        return fig.skip("strace not found")
    short, long = run.scale.syscall_ops
    per_op: dict[str, dict[str, float]] = {}
    for side in ("handler", "raw"):
        counts = [_strace_counts(run, side, ops) for ops in (short, long)]
        names = set(counts[0]) | set(counts[1])
        per_op[side] = {
            name: (counts[1].get(name, 0) - counts[0].get(name, 0)) / (long - short)
            for name in sorted(names)
            if counts[1].get(name, 0) != counts[0].get(name, 0)
        }
    totals = {
        side: sum(v for name, v in calls.items() if name in ROUND_TRIP_SYSCALLS)
        for side, calls in per_op.items()
    }
    fig.project = Summary((totals["handler"],))
    fig.baseline = Summary((totals["raw"],))
    fig.repetitions = f"exact counts: ({long} - {short}) increments, difference of two traced runs per side"
    fig.extra["per_increment_by_syscall"] = per_op
    for side in ("handler", "raw"):
        grouped: dict[str, float] = {}
        for name, value in per_op[side].items():
            if name in ROUND_TRIP_SYSCALLS and value:
                group = ROUND_TRIP_SYSCALLS[name]
                grouped[group] = grouped.get(group, 0) + value
        others = {name: v for name, v in per_op[side].items() if name not in ROUND_TRIP_SYSCALLS and v >= 0.5}
        fig.notes.append(
            f"{side}: "
            + ", ".join(f"{v:g} {k}" for k, v in grouped.items())
            + (f"; also {', '.join(f'{v:g} {k}' for k, v in others.items())}" if others else "")
        )
    return fig


def _strace_counts(run: Run, side: str, ops: int) -> dict[str, int]:
    assert run.strace is not None
    root = run.fresh(run.disk, f"syscalls-{side}-{ops}")
    trace = root / "strace.txt"
    try:
        run_worker(
            root,
            "syscalls",
            {"side": side, "root": str(root / "files"), "ops": ops, "manifest_dir": str(run.folders.base)},
            prefix=[run.strace, "-f", "-c", "-o", str(trace), "-e", "trace=%file,%desc"],
        )
    except BenchError as exc:
        raise BenchError(f"strace run failed ({exc}) - is ptrace allowed here?") from exc
    return parse_strace_summary(trace.read_text(encoding="utf-8"))


def parse_strace_summary(text: str) -> dict[str, int]:
    """Calls per syscall from `strace -c` output (columns: % time, seconds, usecs/call, calls, [errors], name)."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5 or not parts[0][0].isdigit() or parts[-1] == "total":
            continue
        try:
            counts[parts[-1]] = int(parts[3])
        except ValueError:
            continue
    return counts
