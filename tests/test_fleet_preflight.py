"""`preflight`, the trial migrations `status` runs, its bounded output, `--sweep`, and the fleet
function's `{"action": "status"}` answering the same JSON as the CLI (issue 12: 1, 3, 4, 5, 6)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import apsw
import pytest

from counter_core import Manifest, counter_path
from counter_core.paths import temporary_name
from handlers import fleet
from tests.conftest import PARENT_CHILD
from tests.migration_folders import make_folder
from tests.test_fleet import make_counter
from tests.test_fleet_faults import _hot_journal
from tools.migrations.cli import main

REPO = Path(__file__).parent.parent
UNIQUE_NAMES = "CREATE UNIQUE INDEX `parents_name` ON `parents` (`name`);"


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ROOT with its bytes: any change, any journal or temporary left, shows here."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _parents(path: Path, names: list[str]) -> None:
    conn = apsw.Connection(str(path))
    for name in names:
        conn.execute("INSERT INTO parents (name) VALUES (?)", (name,))
    conn.close()


@pytest.fixture
def unique_folder(tmp_path: Path) -> Path:
    """v1 plus a unique index on parents.name: fails on a file whose parents share a name."""
    make_folder(tmp_path / "unique", [("init", PARENT_CHILD), ("unique_names", UNIQUE_NAMES)])
    return tmp_path / "unique"


@pytest.fixture
def preflight_root(tmp_path: Path, v1_manifest: Manifest) -> Path:
    """Three v1 counters with distinct parent names, one with a duplicate, a foreign file, an empty one."""
    root = tmp_path / "counters"
    for n in range(3):
        _parents(make_counter(root, f"ok-{n}", v1_manifest), ["a", "b"])
    _parents(make_counter(root, "dup", v1_manifest), ["a", "a"])
    foreign = counter_path(root, "foreign")
    foreign.parent.mkdir(parents=True, exist_ok=True)
    apsw.Connection(str(foreign)).execute("CREATE TABLE accounts (id integer)").close()
    empty = make_counter(root, "empty", v1_manifest)
    empty.write_bytes(b"")
    return root


def test_preflight_reports_what_would_apply_fail_and_cannot_be_checked_and_changes_nothing(
    preflight_root: Path, unique_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _tree(preflight_root)
    # WHEN preflight tries the unique index against the fleet
    code = main(
        ["preflight", str(preflight_root), "--json", "--workers", "2", "--migrations", str(unique_folder)]
    )
    report = json.loads(capsys.readouterr().out)
    # THEN three would apply it, the file with duplicate names would fail at statement 1 with SQLite's
    # message, the foreign and the empty file cannot be checked, and the exit code is 1
    assert code == 1
    assert report["files"] == 6
    assert report["would_apply"] == [{"tags": ["0001_unique_names"], "files": 3}]
    [failing] = report["would_fail"]
    dup = counter_path(preflight_root, "dup")
    assert failing["file"] == str(dup.relative_to(preflight_root))
    assert (failing["tag"], failing["statement"]) == ("0001_unique_names", 1)
    assert failing["detail"] == (
        "migration '0001_unique_names' fails at statement 1: UNIQUE constraint failed: parents.name"
    )
    assert sorted(item["state"] for item in report["cannot_check"]) == ["empty", "foreign"]
    # AND no byte of any file changed, and no file (journal, temporary) was left behind
    assert _tree(preflight_root) == before


def test_preflight_text_names_the_failure_and_says_what_to_do(
    preflight_root: Path, unique_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(
        [
            "preflight",
            str(preflight_root),
            "--workers",
            "1",
            "--no-progress",
            "--migrations",
            str(unique_folder),
        ]
    )
    out = capsys.readouterr().out.splitlines()
    assert "  would apply 0001_unique_names: 3 file(s)" in out
    assert "would fail (1):" in out
    assert any("migration '0001_unique_names' fails at statement 1" in line for line in out)
    assert out[-1] == (
        "1 file(s) would fail: fix their rows or the migration before deploying"
        " (README: 'Repairing a counter whose migration fails'), then run preflight again."
    )


def test_preflight_of_a_clean_fleet_exits_0(
    tmp_path: Path, v1_manifest: Manifest, unique_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "counters"
    for n in range(3):
        _parents(make_counter(root, f"ok-{n}", v1_manifest), ["a", "b"])
    assert (
        main(["preflight", str(root), "--workers", "1", "--no-progress", "--migrations", str(unique_folder)])
        == 0
    )
    assert capsys.readouterr().out.splitlines()[-1] == "Every file would migrate: deploy."


def test_preflight_of_behind_files_it_cannot_copy_names_each_as_status_does(
    tmp_path: Path, v1_manifest: Manifest, unique_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN behind files (a v1 header) that a survey reads from an in-memory copy: one with a crashed
    # writer's journal, one locked by a writer, one with an edited history, one cut short
    root = tmp_path / "counters"
    crashed = make_counter(root, "crashed", v1_manifest)
    _hot_journal(crashed)
    locked = make_counter(root, "locked", v1_manifest)
    drifted = make_counter(root, "drifted", v1_manifest)
    conn = apsw.Connection(str(drifted))
    conn.execute("UPDATE __migrations SET sha256 = 'edited'")
    conn.close()
    short = make_counter(root, "short", v1_manifest)
    _parents(short, [f"name-{n}" * 40 for n in range(200)])
    short.write_bytes(short.read_bytes()[: short.stat().st_size // 2])
    before = _tree(root)
    writer = apsw.Connection(str(locked))
    writer.execute("BEGIN EXCLUSIVE")
    # WHEN preflight runs
    try:
        code = main(["preflight", str(root), "--json", "--workers", "1", "--migrations", str(unique_folder)])
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    # THEN each is named with SQLite's own words, as the survey of the file itself names it
    found = {
        item["file"]: (item["state"], item["detail"])
        for item in json.loads(capsys.readouterr().out)["cannot_check"]
    }
    assert code == 1
    assert found[str(crashed.relative_to(root))][0] == "hot_journal"
    assert found[str(locked.relative_to(root))] == ("unreadable", "database is locked")
    assert found[str(drifted.relative_to(root))][0] == "drifted"
    assert found[str(short.relative_to(root))] == ("unreadable", "database disk image is malformed")
    # AND nothing changed
    assert _tree(root) == before


def test_preflight_with_a_bad_migrations_folder_exits_2(
    preflight_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty-dir").mkdir()
    assert main(["preflight", str(preflight_root), "--migrations", str(tmp_path / "empty-dir")]) == 2
    assert "manifest.json cannot be read" in capsys.readouterr().err


def test_preflight_killed_mid_run_leaves_every_file_as_it_was(
    tmp_path: Path, v1_manifest: Manifest, unique_folder: Path
) -> None:
    # GIVEN a few hundred counters, each with rows
    root = tmp_path / "counters"
    for n in range(300):
        _parents(make_counter(root, f"c-{n}", v1_manifest), [f"p{n}", "q", "q" if n % 7 == 0 else "r"])
    before = _tree(root)
    # WHEN preflight (two workers) is killed with SIGKILL, workers and all, while it works (its
    # progress bar, drawn on a terminal, says when: a pseudo-terminal stands in for the operator's)
    bar, terminal = pty.openpty()
    # a window size, as a real terminal has: tqdm draws nothing in a terminal 0 columns wide
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.migrations",
            "preflight",
            str(root),
            "--workers",
            "2",
            "--migrations",
            str(unique_folder),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    progress = b""
    deadline = time.monotonic() + 60
    while b"file" not in progress or b" 0/" in progress.rsplit(b"\r", 1)[-1]:
        assert time.monotonic() < deadline, f"preflight made no progress: {progress[-300:]!r}"
        progress += os.read(bar, 4096)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    os.close(bar)
    # THEN every file is byte for byte as it was, and nothing was left beside them
    assert _tree(root) == before


def test_status_lists_the_files_a_migration_fails_on(
    preflight_root: Path, unique_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _tree(preflight_root)
    assert main(["status", str(preflight_root), "--json", "--migrations", str(unique_folder)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["by_state"]["failing"] == 1 and report["by_state"]["behind"] == 3
    [failing] = [item for item in report["attention"] if item["state"] == "failing"]
    assert (failing["tag"], failing["statement"]) == ("0001_unique_names", 1)
    assert "Repairing a counter whose migration fails" in report["advice"]["failing"]
    assert _tree(preflight_root) == before


def test_status_caps_each_category_and_says_what_to_do(
    tmp_path: Path, v1_manifest: Manifest, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "counters"
    make_counter(root, "healthy", v1_manifest)
    for n in range(8):
        path = counter_path(root, f"foreign-{n}")
        path.parent.mkdir(parents=True, exist_ok=True)
        apsw.Connection(str(path)).execute("CREATE TABLE accounts (id integer)").close()
    assert main(["status", str(root), "--migrations", str(tmp_path / "v1")]) == 1
    out = capsys.readouterr().out.splitlines()
    header = out.index("foreign (8): not a counter database - move it away if it does not belong here")
    assert all(line.startswith("  ") and "application_id" in line for line in out[header + 1 : header + 6])
    assert out[header + 6] == "  ... and 3 more (use --json)"
    assert out[-1] == "8 file(s) need an operator: see what to do above; nothing was changed."


def test_status_sweep_deletes_only_old_stray_build_files_and_lists_them(
    tmp_path: Path, v1_manifest: Manifest, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "counters"
    path = make_counter(root, "a", v1_manifest)
    old = Path(temporary_name(path, pid=4242, token="0badc0de"))
    young = Path(temporary_name(path, pid=4243, token="0badc0df"))
    for stray in (old, young):
        stray.write_bytes(b"half-built")
    hour_ago = time.time() - 3700
    os.utime(old, (hour_ago, hour_ago))
    assert main(["status", str(root), "--sweep", "--migrations", str(tmp_path / "v1")]) == 0
    out = capsys.readouterr().out
    assert f"swept: {old.relative_to(root)}" in out
    assert not old.exists() and young.exists()
    assert "1 stray *.tmp file(s) from interrupted counter creations" in out


# ---------------------------------------------------------------- the fleet function's status


class _Context:
    aws_request_id = "req-status"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def _cli_status(root: Path, folder: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    main(["status", str(root), "--json", "--migrations", str(folder)])
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_fleet_status_action_answers_the_same_json_as_the_cli(
    preflight_root: Path,
    unique_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from counter_core import load_manifest

    stray = Path(temporary_name(counter_path(preflight_root, "ok-0"), pid=1, token="00000000"))
    stray.write_bytes(b"half-built")
    monkeypatch.setenv("COUNTERS_ROOT", str(preflight_root))
    monkeypatch.setattr(fleet, "MANIFEST", load_manifest(unique_folder))
    cli = _cli_status(preflight_root, unique_folder, capsys)
    deployed = fleet.migrate_shard({"action": "status"}, _Context())
    assert deployed == cli
    assert deployed["next_after"] is None and deployed["files"] == 6


def test_fleet_status_action_pages_with_a_continuation(
    preflight_root: Path,
    unique_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from counter_core import load_manifest

    monkeypatch.setenv("COUNTERS_ROOT", str(preflight_root))
    monkeypatch.setattr(fleet, "MANIFEST", load_manifest(unique_folder))
    cli = _cli_status(preflight_root, unique_folder, capsys)
    pages = [fleet.migrate_shard({"action": "status", "limit": 4}, _Context())]
    while pages[-1]["next_after"] is not None:
        pages.append(
            fleet.migrate_shard(
                {"action": "status", "after": pages[-1]["next_after"], "limit": 4}, _Context()
            )
        )
    assert [page["files"] for page in pages] == [4, 2]
    for state, count in cli["by_state"].items():
        assert sum(page["by_state"][state] for page in pages) == count
    assert [item for page in pages for item in page["attention"]] == cli["attention"]


def test_fleet_status_action_refuses_a_missing_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COUNTERS_ROOT", str(tmp_path / "not-mounted"))
    with pytest.raises(fleet.FleetRootUnusable) as raised:
        fleet.migrate_shard({"action": "status"}, _Context())
    assert str(raised.value) == (
        f"{tmp_path / 'not-mounted'} does not exist - check the path (is the file system mounted?)"
        " (COUNTERS_ROOT of this function)"
    )


def test_preflight_draws_no_progress_bar_into_a_log_or_a_pipe(
    tmp_path: Path, v1_manifest: Manifest, unique_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN stderr that is not a terminal (a CI log, `2> file`, a pipe): pytest's capture is not one
    root = tmp_path / "counters"
    _parents(make_counter(root, "ok-0", v1_manifest), ["a", "b"])
    # WHEN preflight runs without --no-progress
    assert main(["preflight", str(root), "--workers", "1", "--migrations", str(unique_folder)]) == 0
    # THEN no bar is drawn there
    assert "file/s" not in capsys.readouterr().err
