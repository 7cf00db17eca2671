"""Fleet figures: `status`, `preflight` and `migrate` per file against raw APSW over the same files.

    python -m tools.migrations.fleet_measure [--files 10000] [--workers 2] [--dir var/fleet-measure]

Builds FILES counter files at schema version 1 (the bundled 0000_init plus rows), and a migrations
folder with one more, additive, migration. Each command runs in this process (its output discarded)
and is timed from start to end; the raw side does the same reads and writes with bare APSW:
- status: open read-only, header, `__migrations`, the counter's name (plus, for a behind file, what
  status adds: a copy to memory with the backup API and the pending migration applied there);
- preflight: the same as status (it is the same per-file survey), over every file;
- migrate: open read-write with the project's pragmas, `BEGIN EXCLUSIVE`, the statement, the record,
  user_version, COMMIT - in WORKERS spawned processes, like the command. Each side migrates its own
  copy of the files.
Prints one line per figure: project ms/file, raw ms/file, ratio. Raw runs first in each figure, after
an fsync of the built files and a read of every file. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import apsw

from counter_core.manifest import load_manifest
from counter_core.migrate import APPLICATION_ID
from counter_core.paths import counter_path, iter_counter_files
from tools.migrations.folder import JournalEntry, write_journal
from tools.migrations.manifest import write_manifest

ADDITIVE = "ALTER TABLE `counter_metadata` ADD `note` text;"
_REPO = Path(__file__).resolve().parents[2]
_RECORD = (
    'INSERT INTO __migrations (idx, tag, sha256, "when", applied_at, additive) VALUES (1, ?, ?, 0, ?, 1)'
)
_RECORD_VALUES = ("0001_add_note", "0" * 64, "2026-01-01T00:00:00.000Z")


def _folders(base: Path) -> tuple[Path, Path]:
    """v1 (the bundled init) and v2 (init plus an additive column), as migrations folders."""
    init = (_REPO / "generated" / "0000_init.sql").read_text()
    made = []
    for name, steps in (("v1", [("init", init)]), ("v2", [("init", init), ("add_note", ADDITIVE)])):
        folder = base / name
        folder.mkdir(parents=True, exist_ok=True)
        entries = []
        for idx, (step, sql) in enumerate(steps):
            tag = f"{idx:04d}_{step}"
            (folder / f"{tag}.sql").write_text(sql)
            entries.append(JournalEntry(idx=idx, when=1_795_000_000_000 + idx, tag=tag, breakpoints=True))
        write_journal(folder, entries)
        write_manifest(folder)
        made.append(folder)
    return made[0], made[1]


def _build(root: Path, v1: Path, files: int) -> None:
    from counter_core.connection import open_database
    from counter_core.migrate import ensure_current

    manifest = load_manifest(v1)
    for n in range(files):
        path = counter_path(root, f"measure-{n}")
        conn = open_database(path, create=True, busy_timeout_ms=5000)
        ensure_current(conn, manifest, label=path.name)
        conn.execute(
            "INSERT INTO counter_metadata (id, name, value, created_at, updated_at) VALUES (1, ?, ?, 0, 0)",
            (f"measure-{n}", n),
        )
        conn.close()


def _raw_survey(path: Path, statements: tuple[str, ...]) -> None:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_NOFOLLOW)
    conn.execute(
        "SELECT application_id, user_version FROM pragma_application_id(), pragma_user_version()"
    ).fetchall()
    conn.execute("SELECT idx, tag, sha256, additive FROM __migrations ORDER BY idx").fetchall()
    conn.execute("SELECT name FROM counter_metadata WHERE id = 1").fetchall()
    if statements:  # a behind file: the trial on an in-memory copy
        copy = apsw.Connection(":memory:")
        with copy.backup("main", conn, "main") as backup:
            backup.step()
        copy.execute("BEGIN EXCLUSIVE")
        for statement in statements:
            copy.execute(statement)
        copy.execute(_RECORD, _RECORD_VALUES)
        copy.execute("PRAGMA user_version=2")
        copy.execute("COMMIT")
        copy.close()
    conn.close()


def _raw_status(root: Path, statements: tuple[str, ...]) -> None:
    for path in sorted(iter_counter_files(root)):
        _raw_survey(path, statements)


_raw_statements: tuple[str, ...] = ()


def _raw_init(statements: tuple[str, ...]) -> None:
    global _raw_statements
    _raw_statements = statements


def _raw_migrate(path: Path) -> None:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_NOFOLLOW)
    conn.set_busy_timeout(5000)
    conn.execute("PRAGMA journal_mode=DELETE").fetchall()
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(
        "SELECT application_id, user_version FROM pragma_application_id(), pragma_user_version()"
    ).fetchall()
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute(
        "SELECT application_id, user_version FROM pragma_application_id(), pragma_user_version()"
    ).fetchall()
    conn.execute("SELECT idx, tag, sha256, additive FROM __migrations ORDER BY idx").fetchall()
    for statement in _raw_statements:
        conn.execute(statement)
    conn.execute(_RECORD, _RECORD_VALUES)
    conn.execute(f"PRAGMA user_version=2; PRAGMA application_id={APPLICATION_ID}").fetchall()
    conn.execute("COMMIT")
    conn.close()


def _timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        run()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.migrations.fleet_measure", description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("var/fleet-measure"))
    args = parser.parse_args(argv)
    from tools.migrations import fleet

    base: Path = args.dir
    shutil.rmtree(base, ignore_errors=True)
    v1, v2 = _folders(base)
    project_root, raw_root = base / "project", base / "raw"
    started = time.perf_counter()
    _build(project_root, v1, args.files)
    shutil.copytree(project_root, raw_root)
    print(
        f"built {args.files} files at version 1 twice in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    statements = load_manifest(v2).migrations[1].statements
    paths = sorted(iter_counter_files(raw_root))
    figures: list[tuple[str, float, float]] = []
    # Building wrote every file: flush it, and read every file once, so that neither side pays for
    # the other's writeback or for a cold page cache (the raw side runs first in every figure).
    os.sync()
    _raw_status(raw_root, ())
    _raw_status(project_root, ())

    raw = _timed(lambda: _raw_status(raw_root, statements))
    project = _timed(lambda: fleet.status(project_root, v2, as_json=True, workers=1))
    figures.append(("status (1 process), all files behind", project, raw))
    raw = _timed(lambda: _raw_status(raw_root, statements))
    project = _timed(lambda: fleet.preflight(project_root, v2, as_json=True, workers=1, progress=False))
    figures.append(("preflight (1 process)", project, raw))

    def raw_migrate() -> None:
        with multiprocessing.get_context("spawn").Pool(
            args.workers, initializer=_raw_init, initargs=(statements,)
        ) as pool:
            for _ in pool.imap_unordered(_raw_migrate, paths, chunksize=16):
                pass

    os.sync()
    raw = _timed(raw_migrate)
    os.sync()
    project = _timed(lambda: fleet.migrate(project_root, v2, workers=args.workers, progress=False))
    figures.append((f"migrate ({args.workers} worker processes)", project, raw))
    raw = _timed(lambda: _raw_status(raw_root, ()))
    project = _timed(lambda: fleet.status(project_root, v2, as_json=True, workers=1))
    figures.append(("status (1 process), all files current", project, raw))

    print(f"{'figure':<42} {'project ms/file':>15} {'raw ms/file':>12} {'ratio':>6}   ({args.files} files)")
    for name, project_s, raw_s in figures:
        per_project, per_raw = project_s * 1000 / args.files, raw_s * 1000 / args.files
        print(f"{name:<42} {per_project:>15.3f} {per_raw:>12.3f} {per_project / per_raw:>5.2f}x")
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
