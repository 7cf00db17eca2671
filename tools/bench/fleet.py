"""Figure 5, the fleet tools: `status`, `preflight` and `migrate` per file against raw APSW over the same files.

`python -m tools.bench.fleet time WORK FILES WORKERS RUNS BASE_DIR FLEET_DIR OUT` builds FILES counter
files at the base schema (BASE_DIR, the bundle) and, for each of RUNS rounds, copies them to a project
tree and a raw tree, then times on each side, alternating which goes first:
- status, all files behind: the project's `status --json` (one process); raw APSW opens each file
  read-only, reads the header, `__migrations` and the counter's name, and for a behind file does
  what status adds: a copy to memory with the backup API and the pending migration applied there;
- preflight: the same per-file survey as the line above, by the project's `preflight`;
- migrate with WORKERS processes: raw opens read-write with the project's pragmas, `BEGIN
  EXCLUSIVE`, the statements, the record, user_version, COMMIT, in a spawned `multiprocessing.Pool`;
- status, all files current.
Each side walks its tree itself: raw with `os.scandir` at each level, keeping regular files only
(scandir's file type, no lstat), as a careful programmer would. Writes ms per file as JSON to OUT.

`python -m tools.bench.fleet trips SIDE ROOT BASE_DIR FLEET_DIR` runs the same commands once each
over ROOT/empty and ROOT/files (made beforehand by `build ROOT/files FILES BASE_DIR`), marking each
run for the strace counter (tools.bench.roundtrips).

The files are copies of one counter file built by the project's own creation path, so every file
holds the same rows (the counter's ID too); the per-file work of a survey or a migration does not
depend on the ID. Hashed names spread them over the fan-out tree as real IDs do: at 10,000 files
nearly every file is alone in its second-level directory, so the walk costs about one directory
listing per file on both sides.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PHASES = ("status, all files behind", "preflight", "migrate", "status, all files current")
BEHIND, PREFLIGHT, MIGRATE, CURRENT = PHASES


def build(root: Path, files: int, base_dir: Path) -> None:
    """FILES counter files at BASE_DIR's schema under ROOT: one built by the project, copied."""
    from counter_core.connection import open_database
    from counter_core.manifest import load_manifest
    from counter_core.migrate import ensure_current
    from counter_core.paths import counter_path

    template = root.parent / f"{root.name}-template.sqlite3"
    conn = open_database(template, create=True, busy_timeout_ms=5000)
    ensure_current(conn, load_manifest(base_dir), label=template.name)
    conn.execute(
        "INSERT INTO counter_metadata (id, name, value, created_at, updated_at) VALUES (1, 'fleet', 1, 0, 0)"
    )
    conn.close()
    for n in range(files):
        path = counter_path(root, f"fleet-{n}")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, path)
    template.unlink()


# --- raw APSW ---------------------------------------------------------------------------------------


def raw_walk(root: str) -> Iterator[str]:
    """Counter files under ROOT, sorted, regular files only: scandir's file type, no lstat per file."""
    firsts = sorted(e.name for e in os.scandir(root) if len(e.name) == 2 and e.is_dir(follow_symlinks=False))
    for first in firsts:
        top = f"{root}/{first}"
        for second in sorted(e.name for e in os.scandir(top) if e.is_dir(follow_symlinks=False)):
            directory = f"{top}/{second}"
            yield from sorted(
                f"{directory}/{e.name}"
                for e in os.scandir(directory)
                if e.name.endswith(".sqlite3") and e.is_file(follow_symlinks=False)
            )


class Raw:
    """The raw side's per-file programs, with the pending migration of the fleet folder."""

    def __init__(self, base_dir: Path, fleet_dir: Path) -> None:
        from counter_core.manifest import load_manifest

        base, fleet = load_manifest(base_dir), load_manifest(fleet_dir)
        pending = fleet.migrations[base.version]
        self.version = fleet.version
        self.statements = tuple(pending.statements)
        self.record = (pending.idx, pending.tag, pending.sha256, pending.when, "2026-01-01T00:00:00.000Z")

    def survey(self, path: str, *, behind: bool) -> None:
        import apsw

        conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_NOFOLLOW)
        try:
            conn.execute(
                "SELECT application_id, user_version FROM pragma_application_id(), pragma_user_version()"
            ).fetchall()
            conn.execute("SELECT idx, tag, sha256, additive FROM __migrations ORDER BY idx").fetchall()
            conn.execute("SELECT name FROM counter_metadata WHERE id = 1").fetchall()
            if behind:  # the trial on an in-memory copy
                copy = apsw.Connection(":memory:")
                with copy.backup("main", conn, "main") as backup:
                    backup.step()
                self._apply(copy)
                copy.close()
        finally:
            conn.close()

    def migrate(self, path: str) -> None:
        import apsw

        conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_NOFOLLOW)
        try:
            conn.set_busy_timeout(5000)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._apply(conn)
        finally:
            conn.close()

    def _apply(self, conn: Any) -> None:
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute(
            "SELECT application_id, user_version FROM pragma_application_id(), pragma_user_version()"
        )
        conn.execute("SELECT idx, tag, sha256, additive FROM __migrations ORDER BY idx").fetchall()
        for statement in self.statements:
            conn.execute(statement)
        conn.execute(
            'INSERT INTO __migrations (idx, tag, sha256, "when", applied_at, additive) VALUES (?, ?, ?, ?, ?, 1)',
            self.record,
        )
        conn.execute(f"PRAGMA user_version={self.version}")
        conn.execute("COMMIT")


_RAW: Raw | None = None


def _raw_init(base_dir: Path, fleet_dir: Path) -> None:
    global _RAW
    _RAW = Raw(base_dir, fleet_dir)


def _raw_migrate(path: str) -> None:
    assert _RAW is not None
    _RAW.migrate(path)


def raw_phase(phase: str, root: Path, base_dir: Path, fleet_dir: Path, workers: int) -> None:
    """One phase of the raw side over every counter file under ROOT."""
    if phase == MIGRATE and workers > 1:
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_raw_init, initargs=(base_dir, fleet_dir)) as pool:
            for _ in pool.imap_unordered(_raw_migrate, raw_walk(str(root)), chunksize=16):
                pass
        return
    raw = Raw(base_dir, fleet_dir)
    for path in raw_walk(str(root)):
        if phase == MIGRATE:
            raw.migrate(path)
        else:
            raw.survey(path, behind=phase != CURRENT)


# --- the project ------------------------------------------------------------------------------------


def project_phase(phase: str, root: Path, fleet_dir: Path, workers: int) -> None:
    """One phase of the project's own command, its output discarded; a failure raises."""
    from tools.migrations import fleet

    runs: dict[str, Callable[[], int]] = {
        BEHIND: lambda: fleet.status(root, fleet_dir, as_json=True, workers=1),
        PREFLIGHT: lambda: fleet.preflight(root, fleet_dir, as_json=True, workers=1, progress=False),
        MIGRATE: lambda: fleet.migrate(root, fleet_dir, workers=workers, progress=False),
        CURRENT: lambda: fleet.status(root, fleet_dir, as_json=True, workers=1),
    }
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = runs[phase]()
    if code != 0:
        raise RuntimeError(f"the project's {phase} exited {code}: {out.getvalue()[-300:]}")


# --- entry points -----------------------------------------------------------------------------------


def time_phases(
    work: Path, files: int, workers: int, runs: int, base_dir: Path, fleet_dir: Path
) -> dict[str, dict[str, list[float]]]:
    """Ms per file for each phase and side, RUNS samples each, sides alternating which goes first."""
    from tools.migrations import fleet  # noqa: F401 - imported before the clock starts, as on a host

    pristine = work / "pristine"
    build(pristine, files, base_dir)
    samples: dict[str, dict[str, list[float]]] = {p: {"project": [], "raw": []} for p in PHASES}
    for run in range(runs):
        roots = {side: work / f"run-{run}-{side}" for side in ("project", "raw")}
        for root in roots.values():
            shutil.copytree(pristine, root)
        # Copying wrote every file: flush it and read each once, so that neither side pays for the
        # other's writeback or for a cold page cache.
        os.sync()
        for root in roots.values():
            raw_phase(CURRENT, root, base_dir, fleet_dir, 1)
        order = ("raw", "project") if run % 2 == 0 else ("project", "raw")
        for phase in PHASES:
            if phase == MIGRATE:
                os.sync()
            for side in order:
                started = time.perf_counter()
                if side == "raw":
                    raw_phase(phase, roots[side], base_dir, fleet_dir, workers)
                else:
                    project_phase(phase, roots[side], fleet_dir, workers)
                samples[phase][side].append((time.perf_counter() - started) * 1000 / files)
        for root in roots.values():
            shutil.rmtree(root)
    return samples


NO_FILES = " (no files)"


def trips(side: str, root: Path, base_dir: Path, fleet_dir: Path) -> None:
    """Each phase once over ROOT/empty, then over ROOT/files, in one process (workers=1), marked.

    The run over an empty root counts what a command pays once whatever the number of files
    (checking and listing the root); the difference is what each file costs, the figure that grows
    with the fleet.
    """
    from tools.bench.scenarios import mark

    for phase in (BEHIND, MIGRATE, CURRENT):
        for where, label in ((root / "empty", phase + NO_FILES), (root / "files", phase)):
            mark(label)
            if side == "raw":
                raw_phase(phase, where, base_dir, fleet_dir, 1)
            else:
                project_phase(phase, where, fleet_dir, 1)
    mark("untraced")


def main(argv: list[str]) -> int:
    command, *rest = argv
    if command == "build":
        build(Path(rest[0]), int(rest[1]), Path(rest[2]))
    elif command == "trips":
        trips(rest[0], Path(rest[1]), Path(rest[2]), Path(rest[3]))
    elif command == "time":
        work, files, workers, runs, base_dir, fleet_dir, out = rest
        samples = time_phases(
            Path(work), int(files), int(workers), int(runs), Path(base_dir), Path(fleet_dir)
        )
        Path(out).write_text(json.dumps(samples), encoding="utf-8")
    else:
        raise SystemExit(f"unknown command {command!r} - use build, trips or time")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
