"""The benchmark's vocabulary: sample summaries, figures with goals, run sizes, and the printed table.

Nothing here measures anything; `tools.bench.run` runs the figures, each from its own module.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Literal

Direction = Literal["at_most", "at_least"]


@dataclass(frozen=True)
class Scale:
    """How many repetitions each figure takes; `full` is what the README's table comes from."""

    name: str
    cpu_requests: int  # figure 2: warm requests per side, per idle-gap setting
    cold_processes: int  # figure 3: fresh interpreters per side and kind
    queue_processes: int  # figure 4: processes on one counter
    queue_requests: int  # figure 4: increments per process
    queue_runs: int  # figure 4: runs per side, alternating
    queue_hold_ms: float  # figure 4: lock hold inside each transaction
    queue_think_ms: float  # figure 4: time between two requests of one process
    fleet_files: int = 10_000  # figure 5: counter files per tree (issue 12 asks for 10,000)
    fleet_runs: int = 2  # figure 5: timed rounds, sides alternating which goes first
    fleet_workers: int = 2  # figure 5: migrate's worker processes, on each side
    fleet_trip_files: int = 200  # figure 5: files under strace (the count is per file and exact)


SCALES = {
    "full": Scale("full", 2000, 20, 8, 60, 3, 8.0, 2.0),
    "quick": Scale("quick", 500, 8, 8, 40, 2, 8.0, 2.0, fleet_files=2000, fleet_trip_files=100),
    # Proves every figure runs end to end; the numbers mean nothing.
    "tiny": Scale("tiny", 20, 1, 2, 5, 1, 1.0, 0.5, fleet_files=24, fleet_runs=1, fleet_trip_files=12),
}


@dataclass(frozen=True)
class Summary:
    """Median, min and max of raw samples (all samples are kept for the JSON)."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def as_json(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "n": len(self.samples),
            "samples": list(self.samples),
        }


@dataclass(frozen=True)
class Goal:
    """A ratio to the baseline's median, or (with `unit`) an absolute bound on the project's median."""

    limit: float
    direction: Direction
    unit: str = ""

    def met(self, ratio: float, project: float) -> bool:
        value = project if self.unit else ratio
        return value <= self.limit if self.direction == "at_most" else value >= self.limit

    @property
    def text(self) -> str:
        sign = "<=" if self.direction == "at_most" else ">="
        return f"{sign} {self.limit:g} {self.unit}" if self.unit else f"{sign} {self.limit:g}x"


@dataclass
class Figure:
    """One line of the table: project vs baseline, or the honest reason it was not measured."""

    key: str  # "1", "3h", ...: the figure number, a suffix for variants
    title: str
    unit: str
    project_label: str
    baseline_label: str
    goal: Goal | None = None
    project: Summary | None = None
    baseline: Summary | None = None
    repetitions: str = ""
    not_measured: str | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.project is None or self.baseline is None or self.baseline.median == 0:
            return None
        return self.project.median / self.baseline.median

    @property
    def met(self) -> bool | None:
        ratio = self.ratio
        if self.goal is None or ratio is None or self.project is None:
            return None
        return self.goal.met(ratio, self.project.median)

    def skip(self, reason: str) -> Figure:
        self.not_measured = reason
        return self

    def as_json(self) -> dict[str, Any]:
        return {
            "figure": self.key,
            "title": self.title,
            "status": "not_measured" if self.not_measured else "measured",
            "reason": self.not_measured,
            "unit": self.unit,
            "project_label": self.project_label,
            "baseline_label": self.baseline_label,
            "project": self.project.as_json() if self.project else None,
            "baseline": self.baseline.as_json() if self.baseline else None,
            "ratio": self.ratio,
            "goal": None
            if self.goal is None
            else {"limit": self.goal.limit, "direction": self.goal.direction, "unit": self.goal.unit},
            "met": self.met,
            "repetitions": self.repetitions,
            "notes": self.notes,
            "extra": self.extra,
        }


def fmt(value: float) -> str:
    """Three significant figures, without scientific notation for the magnitudes this bench sees."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _cell(summary: Summary | None) -> str:
    if summary is None:
        return "-"
    return f"{fmt(summary.median)} [{fmt(summary.min)}-{fmt(summary.max)}]"


def render_table(figures: list[Figure]) -> str:
    """The fixed-width table printed at the end of a run (and pasted into the README)."""
    header = (
        "#",
        "figure",
        "unit",
        "project median [min-max]",
        "baseline median [min-max]",
        "ratio",
        "goal",
        "met",
        "reps",
    )
    rows: list[tuple[str, ...]] = []
    for fig in figures:
        if fig.not_measured:
            rows.append(
                (fig.key, fig.title, fig.unit, f"not measured: {fig.not_measured}", "", "", "", "", "")
            )
            continue
        ratio = fig.ratio
        met = fig.met
        rows.append(
            (
                fig.key,
                fig.title,
                fig.unit,
                _cell(fig.project),
                _cell(fig.baseline),
                "-" if ratio is None else f"{ratio:.2f}x",
                fig.goal.text if fig.goal else "-",
                "-" if met is None else ("yes" if met else "NO"),
                fig.repetitions,
            )
        )
    # A not-measured row's reason spans the remaining columns; it does not widen them.
    measured = [row for row in rows if not row[3].startswith("not measured")]
    widths = [
        max([len(h), *(len(row[i]) for row in (measured if i >= 3 else rows))]) for i, h in enumerate(header)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        if row[3].startswith("not measured"):
            lines.append(
                "  ".join(c.ljust(w) for c, w in zip(row[:3], widths[:3], strict=True)) + "  " + row[3]
            )
        else:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)
