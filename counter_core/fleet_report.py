"""The fleet status report: one JSON shape for `tools.migrations status --json` and the fleet function.

Both build it from `fleet.survey_file` results with the same `StatusReport`, so the deployed stack's
answer (handlers.fleet, `{"action": "status"}`) and the CLI's are the same document; the function's
is bounded (a cap on listed files, a continuation), the CLI's lists everything.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from counter_core.fleet import PROBLEMS, FileState, FileSurvey

# What an operator does about each state, shown once per category (README: "Fleet operations").
ADVICE: dict[FileState, str] = {
    FileState.CURRENT: "nothing to do",
    FileState.BEHIND: "they migrate on next open; run `migrate` to do it now",
    FileState.FAILING: "their pending migration fails on their rows (requests answer 503 migration_failed)"
    " - fix the rows or the migration; see README, 'Repairing a counter whose migration fails'",
    FileState.NEWER: "newer than this bundle but additive, still served - deploy the newer bundle",
    FileState.NEWER_BREAKING: "newer than this bundle and not additive (503 schema_too_new)"
    " - deploy the newer bundle",
    FileState.DRIFTED: "an applied migration was edited after release - restore the original migration"
    " file from git history and add a new migration instead",
    FileState.FOREIGN: "not a counter database - move it away if it does not belong here",
    FileState.EMPTY: "empty: damage - restore the file from backup (EFS backups)",
    FileState.NOT_A_FILE: "not a regular file (never opened) - move it away",
    FileState.HOT_JOURNAL: "a writer died mid-transaction; the next open rolls it back - nothing to do,"
    " or run `migrate` to roll it back now",
    FileState.UNREADABLE: "could not be read - inspect it with sqlite3 and restore it from backup if damaged",
}

# Listed file by file (the rest are counted only).
LISTED: tuple[FileState, ...] = (*PROBLEMS, FileState.NEWER, FileState.HOT_JOURNAL)


@dataclass
class StatusReport:
    """Counts by version and state over the files surveyed, and the files that need listing."""

    root: Path
    bundle_version: int
    # At most this many files listed in `attention` (None: all); the rest are only counted.
    attention_limit: int | None = None
    by_version: Counter[int] = field(default_factory=Counter)
    by_state: Counter[FileState] = field(default_factory=Counter)
    attention: list[dict[str, Any]] = field(default_factory=list)
    attention_left_off: int = 0

    def add(self, survey: FileSurvey) -> None:
        self.by_state[survey.state] += 1
        if survey.version is not None:
            self.by_version[survey.version] += 1
        if survey.state not in LISTED:
            return
        if self.attention_limit is not None and len(self.attention) >= self.attention_limit:
            self.attention_left_off += 1
            return
        item: dict[str, Any] = {
            "file": str(survey.path.relative_to(self.root)),
            "state": survey.state.value,
            "counter_id": survey.counter_id,
            "detail": survey.detail,
        }
        if survey.state is FileState.FAILING:
            item["tag"] = survey.failed_tag
            item["statement"] = survey.failed_statement
        self.attention.append(item)

    @property
    def files(self) -> int:
        return sum(self.by_state.values())

    @property
    def problems(self) -> int:
        return sum(self.by_state[state] for state in PROBLEMS)

    def to_json(self, *, stray_temporaries: list[str], next_after: str | None) -> dict[str, Any]:
        """The report as `status --json` prints it; `next_after` resumes a bounded walk (None: done)."""
        return {
            "root": str(self.root),
            "bundle_version": self.bundle_version,
            "files": self.files,
            "problems": self.problems,
            "by_version": {str(v): n for v, n in sorted(self.by_version.items())},
            "by_state": {state.value: self.by_state[state] for state in FileState},
            "attention": self.attention,
            "attention_left_off": self.attention_left_off,
            "advice": {state.value: ADVICE[state] for state in FileState if self.by_state[state]},
            "stray_temporaries": stray_temporaries,
            "next_after": next_after,
        }
