"""`status`, `preflight` and `migrate` over every counter file under a root (operations time).

Exit codes (tools.migrations.exit_codes): 0 nothing needs an operator, 1 some file does (each is
listed), 2 bad input (ROOT missing, a bad migrations folder). The last line says what to do next.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from counter_core import config
from counter_core.errors import ManifestInvalid
from counter_core.fleet import (
    PROBLEMS,
    FileMigration,
    FileState,
    FileSurvey,
    MigrateOutcome,
    migrate_file,
    root_problem,
    survey_file,
    sweep_temporaries,
)
from counter_core.fleet_report import ADVICE, LISTED, StatusReport
from counter_core.manifest import MANIFEST_FILE, Manifest, load_manifest
from counter_core.paths import FleetEntry, walk_fleet
from tools.migrations import fleet_pool
from tools.migrations.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from tools.migrations.folder import JOURNAL, folder_option, journal_path

# Lines listed per category in text output; --json lists every file.
LINES_PER_CATEGORY = 5
# States preflight cannot try a migration on (the same categories `status` reports).
_CANNOT_CHECK: tuple[FileState, ...] = (
    *(s for s in PROBLEMS if s is not FileState.FAILING),
    FileState.HOT_JOURNAL,
)


def _inputs(root: Path, folder: Path) -> tuple[Path, Manifest] | int:
    """The resolved root and the manifest, or EXIT_BAD_INPUT after saying what is wrong."""
    problem = root_problem(root)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        print("Nothing was read. Give the directory that holds the counter files as ROOT.", file=sys.stderr)
        return EXIT_BAD_INPUT
    # A mistyped or manifest-less folder: say so, and print a command that acts on that folder (the
    # engine's own message would send the operator to the project's folder).
    if not folder.is_dir():
        print(
            f"error: migrations folder {folder} does not exist - pass the folder that holds {JOURNAL}"
            " (the project's is generated)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if not (folder / MANIFEST_FILE).exists() and journal_path(folder).exists():
        print(
            f"error: {folder / MANIFEST_FILE} does not exist yet"
            f" - run `python -m tools.migrations manifest{folder_option(folder)}`",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    try:
        manifest = load_manifest(folder)
    except ManifestInvalid as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    # Symlinks are allowed above the root (a mount reached through a link), never below it.
    return root.resolve(), manifest


def _workers(workers: int | None) -> int:
    return max(1, workers or os.cpu_count() or 1)


# ---------------------------------------------------------------- per-file jobs (run in workers)


def _load(folder: Path) -> Manifest:
    return load_manifest(folder)


def _survey_job(entry: FleetEntry, manifest: Manifest) -> FileSurvey:
    return survey_file(entry.path, manifest, regular=entry.regular)


def _survey_died(entry: FleetEntry, why: str) -> FileSurvey:
    return FileSurvey(
        entry.path, FileState.UNREADABLE, None, f"{why} - survey it again; if it recurs, inspect it"
    )


def _migrate_job(entry: FleetEntry, manifest: Manifest) -> FileMigration:
    return migrate_file(entry.path, manifest, busy_timeout_ms=config.busy_timeout_ms(), regular=entry.regular)


def _migrate_died(entry: FleetEntry, why: str) -> FileMigration:
    return FileMigration(
        entry.path,
        MigrateOutcome.FAILED,
        error=f"{why} - run `migrate` again; if it recurs, inspect the file",
    )


def _walk(root: Path) -> tuple[list[FleetEntry], list[Path]]:
    """Counter files and stray build files, from one walk of the tree (paths.walk_fleet)."""
    counters: list[FleetEntry] = []
    temporaries: list[Path] = []
    for entry in walk_fleet(root):
        if entry.temporary:
            temporaries.append(entry.path)
        else:
            counters.append(entry)
    return counters, temporaries


def _surveys(counters: list[FleetEntry], folder: Path, *, workers: int, progress: bool) -> list[FileSurvey]:
    results = fleet_pool.run(
        counters, workers=workers, setup=_load, argument=folder, job=_survey_job, died=_survey_died
    )
    return sorted(
        tqdm(results, total=len(counters), unit="file", disable=_no_bar(progress), file=sys.stderr),
        key=lambda s: s.path.name,
    )


# ---------------------------------------------------------------- status


def _label(item: dict[str, Any]) -> str:
    counter = f" (counter {item['counter_id']!r})" if item.get("counter_id") is not None else ""
    return f"{item['file']}{counter}: {item['detail']}"


def _print_listed(report: StatusReport) -> None:
    """Each listed category: its count, what to do, its first few files."""
    for state in LISTED:
        items = [item for item in report.attention if item["state"] == state.value]
        if not items:
            continue
        print(f"{state.value} ({len(items)}): {ADVICE[state]}")
        for item in items[:LINES_PER_CATEGORY]:
            print(f"  {_label(item)}")
        if len(items) > LINES_PER_CATEGORY:
            print(f"  ... and {len(items) - LINES_PER_CATEGORY} more (use --json)")


def status(root: Path, folder: Path, *, as_json: bool, workers: int | None = 1, sweep: bool = False) -> int:
    """Survey every file read-only (behind ones get a trial migration in memory); exit 1 if any needs an operator."""
    inputs = _inputs(root, folder)
    if isinstance(inputs, int):
        return inputs
    root, manifest = inputs
    report = StatusReport(root, manifest.version)
    counters, found = _walk(root)
    for survey in _surveys(counters, folder, workers=_workers(workers), progress=False):
        report.add(survey)
    swept = sweep_temporaries(root, candidates=found) if sweep else []
    removed = [str(p.relative_to(root)) for p in swept]
    # A process that died while creating a counter leaves its private build file; the counter itself
    # was never created (creation is a link of the finished file), so these are safe to delete.
    temporaries = [str(path.relative_to(root)) for path in found if path not in swept]
    if as_json:
        document = report.to_json(stray_temporaries=temporaries, next_after=None)
        if sweep:
            document["swept"] = removed
        print(json.dumps(document, indent=2))
        return EXIT_FAILED if report.problems else EXIT_OK
    print(f"{report.files} counter file(s) under {root}; this bundle's schema version is {manifest.version}.")
    for version, count in sorted(report.by_version.items()):
        print(f"  version {version:>4}: {count}")
    for state in FileState:
        if report.by_state[state]:
            print(f"  {state.value:>15}: {report.by_state[state]}")
    _print_listed(report)
    for path in removed:
        print(f"swept: {path}")
    if temporaries:
        print(
            f"{len(temporaries)} stray *.tmp file(s) from interrupted counter creations: safe to delete"
            " once an hour old (`status --sweep` deletes those)"
        )
    if report.problems:
        print(f"{report.problems} file(s) need an operator: see what to do above; nothing was changed.")
        return EXIT_FAILED
    if report.by_state[FileState.BEHIND]:
        print(
            f"{report.by_state[FileState.BEHIND]} file(s) are behind: they migrate on next open, or run `migrate` now."
        )
    else:
        print("Nothing to do.")
    return EXIT_OK


# ---------------------------------------------------------------- preflight


def _no_bar(progress: bool) -> bool | None:
    """tqdm's `disable`: None draws the bar only when stderr is a terminal, so a log or a pipe gets none."""
    return None if progress else True


def preflight(root: Path, folder: Path, *, as_json: bool, workers: int | None, progress: bool) -> int:
    """Try DIR's pending migrations on an in-memory copy of every file; exit 1 if any would fail.

    Changes no byte of any file and leaves no file behind, even when killed: files are opened
    read-only and each trial runs on an in-memory copy (counter_core.fleet.survey_file).
    """
    inputs = _inputs(root, folder)
    if isinstance(inputs, int):
        return inputs
    root, manifest = inputs
    surveys = _surveys(_walk(root)[0], folder, workers=_workers(workers), progress=progress)
    would_apply: Counter[tuple[str, ...]] = Counter(s.pending for s in surveys if s.state is FileState.BEHIND)
    failing = [s for s in surveys if s.state is FileState.FAILING]
    unchecked = [s for s in surveys if s.state in _CANNOT_CHECK]
    nothing = len(surveys) - sum(would_apply.values()) - len(failing) - len(unchecked)

    def item(s: FileSurvey) -> dict[str, Any]:
        found: dict[str, Any] = {
            "file": str(s.path.relative_to(root)),
            "state": s.state.value,
            "counter_id": s.counter_id,
            "detail": s.detail,
        }
        if s.state is FileState.FAILING:
            found |= {"tag": s.failed_tag, "statement": s.failed_statement}
        return found

    code = EXIT_FAILED if failing or unchecked else EXIT_OK
    if as_json:
        document = {
            "root": str(root),
            "migrations": str(folder),
            "bundle_version": manifest.version,
            "files": len(surveys),
            "would_apply": [{"tags": list(tags), "files": n} for tags, n in sorted(would_apply.items())],
            "nothing_to_apply": nothing,
            "would_fail": [item(s) for s in failing],
            "cannot_check": [item(s) for s in unchecked],
        }
        print(json.dumps(document, indent=2))
        return code
    print(
        f"Preflight of {len(surveys)} counter file(s) under {root} against {folder}"
        f" (schema version {manifest.version}); no file was changed."
    )
    for tags, count in sorted(would_apply.items()):
        print(f"  would apply {', '.join(tags)}: {count} file(s)")
    print(f"  nothing to apply: {nothing} file(s)")
    for title, group in (("would fail", failing), ("cannot be checked", unchecked)):
        if group:
            print(f"{title} ({len(group)}):")
            for s in group[:LINES_PER_CATEGORY]:
                print(f"  {s.state.value}: {_label(item(s))}")
            if len(group) > LINES_PER_CATEGORY:
                print(f"  ... and {len(group) - LINES_PER_CATEGORY} more (use --json)")
    if failing:
        print(
            f"{len(failing)} file(s) would fail: fix their rows or the migration before deploying"
            " (README: 'Repairing a counter whose migration fails'), then run preflight again."
        )
    elif unchecked:
        print(
            f"{len(unchecked)} file(s) cannot be checked: see `status` for what to do, then run preflight again."
        )
    else:
        print("Every file would migrate: deploy.")
    return code


# ---------------------------------------------------------------- migrate


def migrate(root: Path, folder: Path, *, workers: int | None, progress: bool) -> int:
    """Migrate every counter file under ROOT; exit 1 if any failed (each failure is listed)."""
    config.busy_timeout_ms()  # a malformed setting stops here (Misconfigured), not in every worker
    inputs = _inputs(root, folder)
    if isinstance(inputs, int):
        return inputs
    root, _ = inputs
    paths = _walk(root)[0]
    outcomes: Counter[MigrateOutcome] = Counter()
    failures: list[FileMigration] = []
    results = fleet_pool.run(
        paths, workers=_workers(workers), setup=_load, argument=folder, job=_migrate_job, died=_migrate_died
    )
    for result in tqdm(results, total=len(paths), unit="file", disable=_no_bar(progress), file=sys.stderr):
        outcomes[result.outcome] += 1
        if result.outcome is MigrateOutcome.FAILED:
            failures.append(result)
    for failure in sorted(failures, key=lambda f: f.path.name):
        print(f"failed: {failure.path.relative_to(root)}: {failure.error}", file=sys.stderr)
    print(
        f"{len(paths)} counter file(s): {outcomes[MigrateOutcome.MIGRATED]} migrated,"
        f" {outcomes[MigrateOutcome.ALREADY_CURRENT]} already current, {len(failures)} failed."
    )
    if failures:
        print("Fix the failures listed above (`status` says what to do), then run `migrate` again.")
        return EXIT_FAILED
    return EXIT_OK
