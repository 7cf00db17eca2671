"""`python -m tools.bench [--quick] [--json FILE]`: every cost of the system as a ratio to raw SQLite.

A benchmark, not a test: `make test` does not depend on its numbers. Each figure of issue 6 is
measured for the project and for a raw-APSW baseline doing the same SQL with the same durability
settings on the same directory, and printed as medians with min and max and the ratio
project/baseline. `--json FILE` keeps every raw sample. Figures that need the Lambda handler say
"not measured" with the reason when it cannot be driven; nothing is ever estimated.

Exit codes: 0 every figure was measured or honestly skipped, 1 a measurement failed (see its row).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.bench.baseline import REPO, prepare_folders
from tools.bench.figure import SCALES, Figure, render_table
from tools.bench.figures import (
    BenchError,
    Run,
    cold_start_figures,
    contention_figure,
    fast_path_figure,
    first_touch_figures,
    fleet_figure,
    memory_figure,
    run_worker,
    syscall_figure,
    warm_figures,
)

DEFAULT_RAM_DIR = Path("/dev/shm")  # noqa: S108 - a scratch folder is made inside with mkdtemp
DEFAULT_DISK_DIR = REPO / "var"  # on the repository's disk; /tmp may be RAM-backed elsewhere

FIGURES: dict[str, tuple[str, Callable[[Run], list[Figure]]]] = {
    "1": ("warm increment, disk", lambda run: warm_figures(run, ram=False)),
    "2": ("warm increment, RAM dir", lambda run: warm_figures(run, ram=True)),
    "3": ("first touch", first_touch_figures),
    "4": ("fast path, fresh process", lambda run: [fast_path_figure(run)]),
    "5": ("contention", lambda run: [contention_figure(run)]),
    "6": ("fleet migration", lambda run: [fleet_figure(run)]),
    "7": ("cold start", cold_start_figures),
    "8": ("memory", lambda run: [memory_figure(run)]),
    "9": ("file-system syscalls", lambda run: [syscall_figure(run)]),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer repetitions (about 2 minutes)")
    size.add_argument(
        "--tiny",
        action="store_true",
        help="smoke-test sizes: proves every figure runs; the numbers mean nothing",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every figure and raw sample as JSON")
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DISK_DIR,
        metavar="DIR",
        help="directory on the disk under test (default: ./var of the repository); a scratch folder is made inside",
    )
    parser.add_argument(
        "--ram-dir",
        type=Path,
        default=DEFAULT_RAM_DIR,
        metavar="DIR",
        help="RAM-backed directory (figures 2 and 8)",
    )
    parser.add_argument(
        "--only", metavar="N,N", help=f"run only these figures ({','.join(FIGURES)}); the others are left out"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders (to inspect the files)")
    return parser


def file_system(path: Path) -> str:
    """The file-system type holding `path`, from /proc/self/mounts (Linux); 'unknown' elsewhere."""
    try:
        mounts = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return "unknown"
    resolved, best, kind = str(path.resolve()), "", "unknown"
    for line in mounts:
        fields = line.split()
        if len(fields) < 3 or len(fields[1]) < len(best):
            continue
        if resolved == fields[1] or resolved.startswith(fields[1].rstrip("/") + "/"):
            best, kind = fields[1], fields[2]
    return kind


def _probe_handler(run_dir: Path, folders_ok: bool, busy_timeout_ms: int) -> tuple[str | None, list[str]]:
    """Whether the handler can serve an increment here; its third-party modules if so."""
    if importlib.util.find_spec("handlers.api") is None:
        return "handlers.api missing", []
    if not folders_ok:
        return "generated/ holds no migrations yet; the handler serves the bundled manifest", []
    probe = run_dir / "handler-probe"
    probe.mkdir()
    try:
        result, _ = run_worker(
            run_dir,
            "cold_start",
            {
                "kind": "discover",
                "root": str(probe),
                "counter_id": "probe",
                "busy_timeout_ms": busy_timeout_ms,
            },
        )
    except BenchError as exc:
        return f"handlers.api cannot serve an increment ({exc})", []
    return None, list(result["modules"])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    wanted = list(FIGURES) if not args.only else [part.strip() for part in args.only.split(",")]
    unknown = [key for key in wanted if key not in FIGURES]
    if unknown:
        print(f"error: unknown figure(s) {unknown} - choose from {','.join(FIGURES)}", file=sys.stderr)
        return 2
    for directory in (args.dir, args.ram_dir):
        directory.mkdir(parents=True, exist_ok=True)
    disk = Path(tempfile.mkdtemp(prefix="bench-", dir=args.dir))
    ram = Path(tempfile.mkdtemp(prefix="counters-bench-", dir=args.ram_dir))
    started = time.perf_counter()
    try:
        command = " ".join(["python -m tools.bench", *(shlex.quote(a) for a in argv)])
        return _run(args, command, wanted, disk, ram, started)
    finally:
        if not args.keep:
            shutil.rmtree(disk, ignore_errors=True)
            shutil.rmtree(ram, ignore_errors=True)


def _run(
    args: argparse.Namespace, command: str, wanted: list[str], disk: Path, ram: Path, started: float
) -> int:
    from counter_core import config

    scale = SCALES["tiny" if args.tiny else "quick" if args.quick else "full"]
    folders = prepare_folders(disk / "migrations")
    busy = config.busy_timeout_ms()
    handler_reason, modules = _probe_handler(disk, folders.bundled_has_migrations, busy)
    strace = shutil.which("strace") or ("/usr/bin/strace" if Path("/usr/bin/strace").exists() else None)
    run = Run(
        scale=scale,
        disk=disk,
        ram=ram,
        folders=folders,
        handler_reason=handler_reason,
        third_party_modules=modules,
        busy_timeout_ms=busy,
        strace=strace,
        workers=os.cpu_count() or 1,
    )
    load_before = os.getloadavg()
    disk_fs, ram_fs = file_system(disk), file_system(ram)
    _say(
        f"bench ({scale.name}): disk {disk} ({disk_fs}), RAM dir {ram} ({ram_fs}); migrations: {folders.base_source}"
    )
    if disk_fs in ("tmpfs", "ramfs"):
        _say(f"warning: {disk} is {disk_fs}, not a disk - pass --dir on the disk under test")
    if handler_reason:
        _say(f"handler figures not measured: {handler_reason}")
    figures: list[Figure] = []
    failed = False
    for key in wanted:
        title, measure = FIGURES[key]
        _say(f"figure {key}: {title} ...")
        began = time.perf_counter()
        try:
            figures.extend(measure(run))
        except (BenchError, OSError) as exc:
            failed = True
            figures.append(Figure(key, title, "-", "", "").skip(f"failed: {exc}"))
        _say(f"figure {key}: done in {time.perf_counter() - began:.1f} s")
    load = (load_before[0], os.getloadavg()[0])
    table = render_table(figures)
    print(f"$ {command}")
    print(
        f"{scale.name} run, {time.perf_counter() - started:.0f} s, {run.workers} CPUs, 1-min load average {load[0]:.1f}"
        f" at start ({load[1]:.1f} at end, the bench's own processes included); disk: {disk_fs} at {args.dir};"
        f" RAM dir: {ram_fs}; migrations: {folders.base_source}"
    )
    print(table)
    for fig in figures:
        for note in fig.notes:
            print(f"  {fig.key}: {note}")
    met = [f.key for f in figures if f.met is True]
    missed = [f.key for f in figures if f.met is False]
    skipped = [f.key for f in figures if f.not_measured]
    print(
        f"Goals met: {', '.join(met) or 'none'}. Not met: {', '.join(missed) or 'none'}. Not measured: {', '.join(skipped) or 'none'}."
    )
    if args.json:
        report = _report(args, run, figures, command, disk_fs, ram_fs, started)
        report["machine"]["load_average_1min"] = {"before": load[0], "after": load[1]}
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"Raw samples in {args.json}.")
    return 1 if failed else 0


def _report(
    args: argparse.Namespace,
    run: Run,
    figures: list[Figure],
    command: str,
    disk_fs: str,
    ram_fs: str,
    started: float,
) -> dict[str, Any]:
    import apsw

    from counter_core import load_manifest

    manifest = load_manifest(run.folders.base)
    return {
        "bench": "tools.bench",
        "command": command,
        "scale": run.scale.name,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": time.perf_counter() - started,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "apsw": apsw.apswversion(),
            "sqlite": apsw.sqlite_lib_version(),
        },
        "dirs": {"disk": str(args.dir), "disk_fs": disk_fs, "ram": str(args.ram_dir), "ram_fs": ram_fs},
        "durability": {
            "journal_mode": "DELETE",
            "synchronous": "FULL",
            "busy_timeout_ms": run.busy_timeout_ms,
        },
        "manifest": {
            "source": run.folders.base_source,
            "version": manifest.version,
            "tags": [m.tag for m in manifest.migrations],
        },
        "handler": {"available": run.handler_reason is None, "reason": run.handler_reason},
        "figures": [fig.as_json() for fig in figures],
    }


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
