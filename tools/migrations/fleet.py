"""`status` and `migrate` over every counter file under a root (operations time, never bundled)."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from counter_core import config
from counter_core.fleet import FileMigration, FileState, MigrateOutcome, migrate_file, survey_file
from counter_core.manifest import Manifest, load_manifest
from counter_core.paths import iter_counter_files, iter_stray_temporaries

_PROBLEMS = (FileState.DRIFTED, FileState.NEWER_BREAKING, FileState.FOREIGN, FileState.UNREADABLE)


def status(root: Path, folder: Path, *, as_json: bool) -> int:
    """Print how many files are at each version and which need attention; exit 1 if any does."""
    manifest = load_manifest(folder)
    versions: Counter[int] = Counter()
    states: Counter[str] = Counter()
    attention: list[dict[str, object]] = []
    for path in iter_counter_files(root):
        survey = survey_file(path, manifest)
        states[survey.state] += 1
        if survey.version is not None:
            versions[survey.version] += 1
        if survey.state in _PROBLEMS or survey.state == FileState.NEWER:
            attention.append(
                {"file": str(path.relative_to(root)), "state": survey.state.value, "detail": survey.detail}
            )
    problems = sum(states[state] for state in _PROBLEMS)
    # A process that died while creating a counter leaves its private build file; the counter itself
    # was never created (creation is a link of the finished file), so these are safe to delete.
    temporaries = [str(path.relative_to(root)) for path in iter_stray_temporaries(root)]
    if as_json:
        report = {
            "root": str(root),
            "bundle_version": manifest.version,
            "files": sum(states.values()),
            "by_version": {str(v): n for v, n in sorted(versions.items())},
            "by_state": {state.value: states[state] for state in FileState},
            "attention": attention,
            "stray_temporaries": temporaries,
        }
        print(json.dumps(report, indent=2))
        return 1 if problems else 0
    total = sum(states.values())
    print(f"{total} counter file(s) under {root}; this bundle's schema version is {manifest.version}.")
    for version, count in sorted(versions.items()):
        print(f"  version {version:>4}: {count}")
    for state in FileState:
        if states[state]:
            print(f"  {state.value:>15}: {states[state]}")
    for item in attention:
        print(f"  {item['state']}: {item['file']} {item['detail']}")
    if temporaries:
        print(
            f"  {len(temporaries)} stray *.tmp file(s) from interrupted counter creations: safe to delete"
            " (e.g. find ROOT -name '*.tmp' -mmin +60 -delete)"
        )
    if problems:
        print(f"{problems} file(s) need an operator: see the list above; nothing was changed.")
        return 1
    if states[FileState.BEHIND]:
        print(
            f"{states[FileState.BEHIND]} file(s) are behind: they migrate on next open, or run `migrate` now."
        )
    else:
        print("Nothing to do.")
    return 0


_worker_manifest: Manifest | None = None


def _init_worker(folder: Path) -> None:
    global _worker_manifest
    _worker_manifest = load_manifest(folder)


def _migrate_one(path: Path) -> FileMigration:
    assert _worker_manifest is not None
    return migrate_file(path, _worker_manifest, busy_timeout_ms=config.busy_timeout_ms())


def _results(paths: list[Path], folder: Path, workers: int) -> Iterator[FileMigration]:
    if workers == 1:
        _init_worker(folder)
        yield from map(_migrate_one, paths)
        return
    # spawn, not fork: a forked child would inherit whatever SQLite handles the parent holds.
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(folder,)) as pool:
        yield from pool.imap_unordered(_migrate_one, paths, chunksize=64)


def migrate(root: Path, folder: Path, *, workers: int | None, progress: bool) -> int:
    """Migrate every counter file under ROOT; exit 1 if any failed (each failure is listed)."""
    load_manifest(folder)  # fail fast, in this process, on a bad manifest
    workers = max(1, workers or os.cpu_count() or 1)
    paths = list(iter_counter_files(root))
    outcomes: Counter[MigrateOutcome] = Counter()
    failures: list[FileMigration] = []
    results = tqdm(
        _results(paths, folder, workers), total=len(paths), unit="file", disable=not progress, file=sys.stderr
    )
    for result in results:
        outcomes[result.outcome] += 1
        if result.outcome is MigrateOutcome.FAILED:
            failures.append(result)
    for failure in failures:
        print(f"failed: {failure.path.relative_to(root)}: {failure.error}", file=sys.stderr)
    print(
        f"{len(paths)} counter file(s): {outcomes[MigrateOutcome.MIGRATED]} migrated,"
        f" {outcomes[MigrateOutcome.ALREADY_CURRENT]} already current, {len(failures)} failed."
    )
    if failures:
        print("Fix the failures listed above, then run `migrate` again: it only touches what is behind.")
        return 1
    return 0
