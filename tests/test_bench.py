"""The benchmark runs end to end and reports what it promises.

Timings are never asserted (not a timed test). Round-trip counts are exact, so the tiny run holds
the project to its goal there: no request class makes more file-system round trips than the raw
APSW program doing the same work.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.bench.figure import Figure, Goal, Summary, render_table
from tools.bench.roundtrips import MARK_DIR, count_round_trips
from tools.bench.scenarios import CLASSES

REPO = Path(__file__).resolve().parent.parent
FIGURE_KEYS = {
    "1a",
    "1b",
    "1c",
    "1d",
    "1e",
    "1f",
    "1g",
    "2h",
    "2g",
    "3n",
    "3e",
    "3r",
    "4p",
    "4t",
    "5a",
    "5b",
    "5c",
    "5d",
    "5e",
    "5f",
}


def _bench(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "tools.bench", "--tiny", "--json", str(out)),
            *("--dir", str(tmp_path / "disk"), "--ram-dir", str(tmp_path / "ram"), *extra),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done, json.loads(out.read_text())


@pytest.mark.slow
def test_a_tiny_run_reports_every_figure_with_its_goal(tmp_path: Path) -> None:
    # GIVEN a tiny run of the whole bench
    done, report = _bench(tmp_path)
    figures = {fig["figure"]: fig for fig in report["figures"]}
    # THEN every figure is there, measured or honestly not, each with a goal and a verdict
    assert set(figures) == FIGURE_KEYS
    for fig in figures.values():
        assert fig["goal"] is not None, fig
        if fig["status"] == "not_measured":
            assert fig["reason"] and fig["project"] is None and fig["met"] is None, fig
            continue
        assert fig["repetitions"], fig
        for side in ("project", "baseline"):
            summary = fig[side]
            assert summary["n"] == len(summary["samples"]) >= 1
            assert summary["min"] <= summary["median"] <= summary["max"]
        assert isinstance(fig["met"], bool)
    # AND, where strace is installed, no request class makes more round trips than raw APSW
    if shutil.which("strace"):
        for key, name in zip("abcdefg", CLASSES, strict=True):
            fig = figures[f"1{key}"]
            assert fig["title"] == name and fig["met"] is True, fig
            assert (
                report["round_trips"][name]["project"]["round_trips"]
                <= report["round_trips"][name]["raw"]["round_trips"]
            )
    # AND `status` makes no more round trips per file than raw APSW walking and reading the same files
    # (one directory listing per directory, no lstat per file, no second walk for build files)
    if shutil.which("strace"):
        status = report["fleet_round_trips"]["status, all files behind"]
        assert status["project"]["per_file"] <= status["raw"]["per_file"], status
        assert figures["5e"]["met"] is True, figures["5e"]
    # AND the table and the verdict line are printed
    assert "project median [min-max]" in done.stdout
    assert "Goals met:" in done.stdout
    assert "modelled EFS" in done.stdout


def test_without_strace_the_round_trip_figures_say_what_is_needed(tmp_path: Path) -> None:
    from tools.bench.run import NO_STRACE, round_trip_figures

    figures = round_trip_figures(tmp_path, str(tmp_path / "no-strace-here"), {})
    assert [fig.not_measured for fig in figures] == [NO_STRACE] * len(CLASSES)
    assert "apt-get install strace" in NO_STRACE


STRACE_LOG = """\
100 newfstatat(AT_FDCWD, "{mark}/first", 0x7ffd, 0) = -1 ENOENT (No such file or directory)
100 openat(AT_FDCWD, "/usr/lib/python3.11/json/__init__.py", O_RDONLY|O_CLOEXEC) = 3
100 close(3)                                = 0
100 newfstatat(AT_FDCWD, "{root}/ab/cd/x.sqlite3", 0x7ffd, AT_SYMLINK_NOFOLLOW) = -1 ENOENT (No such file or directory)
100 mkdir("{root}/ab/cd", 0777)             = -1 EEXIST (File exists)
100 lstat("{root}/ab", {{st_mode=S_IFDIR|0755, st_size=4096, ...}}) = 0
100 openat(AT_FDCWD, "{root}/ab/cd/x.sqlite3", O_RDWR|O_CREAT|O_NOFOLLOW|O_CLOEXEC, 0644) = 4
100 fcntl(4, F_SETLK, {{l_type=F_RDLCK, l_whence=SEEK_SET, l_start=1073741824, l_len=1}}) = 0
100 fcntl(4, F_GETFD)                       = 0x1 (flags FD_CLOEXEC)
100 pread64(4, "SQLite format 3", 100, 0)   = 100
100 pwrite64(4, "...", 4096, 0)             = 4096
100 fdatasync(4)                            = 0
100 linkat(AT_FDCWD, "{root}/ab/cd/x.tmp", AT_FDCWD, "{root}/ab/cd/x.sqlite3", 0) = 0
100 unlink("{root}/ab/cd/x.tmp")            = 0
100 newfstatat(AT_FDCWD, "{mark}/second", 0x7ffd, 0) = -1 ENOENT (No such file or directory)
100 close(4)                                = 0
100 access("{root}/ab/cd/x.sqlite3-journal", F_OK) = -1 ENOENT (No such file or directory)
"""


def test_round_trips_are_counted_by_kind_on_paths_under_the_root_only() -> None:
    log = STRACE_LOG.format(mark=MARK_DIR, root="/mnt/counters")
    classes = count_round_trips(log, "/mnt/counters")
    first, second = classes["first"], classes["second"]
    # The interpreter's own files, fcntl calls that are not locks and data calls are not round trips.
    assert first.calls == {
        "lookup miss": 1,
        "mkdir": 1,
        "lookup hit": 1,
        "open": 1,
        "lock": 1,
        "fsync": 1,
        "link": 1,
        "unlink": 1,
    }
    assert (first.reads, first.writes) == (1, 1)
    assert first.total == 8
    assert first.modelled_ms == pytest.approx(0.5 + 1 + 0.25 + 1 + 0.5 + 2 + 1 + 1)
    assert second.calls == {"close": 1, "lookup miss": 1}


def test_table_shows_ratio_goal_and_not_measured_reason() -> None:
    measured = Figure("1", "warm", "ms", "p", "b", goal=Goal(1.15, "at_most"))
    measured.project, measured.baseline = Summary((1.0, 1.2, 1.4)), Summary((1.0, 1.1))
    absolute = Figure("4p", "p99", "s", "p", "b", goal=Goal(0.35, "at_most", "s"))
    absolute.project, absolute.baseline = Summary((0.5,)), Summary((0.25,))
    skipped = Figure("3n", "cold start", "ms", "p", "b").skip("no CPython 3.13 found")
    table = render_table([measured, absolute, skipped])
    assert "1.20 [1.00-1.40]" in table and "1.14x" in table and "<= 1.15x" in table and "yes" in table
    assert "<= 0.35 s" in table and "NO" in table  # 0.5 s misses the absolute bound, whatever the ratio
    assert "not measured: no CPython 3.13 found" in table
