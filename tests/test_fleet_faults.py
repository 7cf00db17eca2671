"""Fleet tools at the edges: odd files, dying workers, a missing root (issue 10, items 8-12; issue 12.2).

Commands that hung before their fix run in a subprocess with a timeout, so a regression fails the
test instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import apsw
import pytest

from counter_core import Manifest, counter_path, errors
from tests.conftest import PARENT_CHILD
from tests.migration_folders import make_folder
from tests.test_fleet import file_version as _version
from tests.test_fleet import make_counter
from tools.migrations.cli import main

REPO = Path(__file__).parent.parent
HANG_LIMIT_S = 60


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m tools.migrations ARGS` in its own process; a hang fails the test after HANG_LIMIT_S."""
    return subprocess.run(
        [sys.executable, "-m", "tools.migrations", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=HANG_LIMIT_S,
        env={**os.environ, **(env or {})},
    )


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _hot_journal(path: Path) -> None:
    """Leave a hot journal beside `path`: a writer killed mid-transaction after spilling pages."""
    script = f"""
import apsw, os
c = apsw.Connection({str(path)!r})
c.execute("PRAGMA cache_size=1")
c.execute("BEGIN IMMEDIATE")
c.execute("WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 3000)"
          " INSERT INTO parents (name) SELECT hex(randomblob(60)) FROM s")
os._exit(0)
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=HANG_LIMIT_S)
    assert Path(f"{path}-journal").stat().st_size > 0


# ---------------------------------------------------------------- 9: a FIFO at a counter's path


def test_status_and_migrate_never_open_a_fifo(tmp_path: Path, v1_manifest: Manifest) -> None:
    root = tmp_path / "counters"
    make_counter(root, "healthy", v1_manifest)
    fifo = counter_path(root, "fifo")
    fifo.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(fifo)
    # WHEN status and migrate run over the root
    status = _cli("status", str(root), "--migrations", str(tmp_path / "v1"))
    migrate = _cli(
        "migrate", str(root), "--workers", "1", "--no-progress", "--migrations", str(tmp_path / "v1")
    )
    # THEN both finish, naming the FIFO as something that is not a regular file, and exit 1
    assert status.returncode == 1, status.stderr
    assert "not_a_file (1): not a regular file (never opened) - move it away" in status.stdout
    assert "a FIFO, not a regular file" in status.stdout
    assert migrate.returncode == 1
    assert "2 counter file(s): 0 migrated, 1 already current, 1 failed." in migrate.stdout
    assert "not_a_file: a FIFO" in migrate.stderr


# ---------------------------------------------------------------- 10: a leftover hot journal


def test_status_calls_a_hot_journal_what_it_is_and_changes_nothing(
    tmp_path: Path, v1_manifest: Manifest, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "counters"
    path = make_counter(root, "crashed", v1_manifest)
    _hot_journal(path)
    before = _snapshot(root)
    # WHEN status surveys it
    code = main(["status", str(root), "--json", "--migrations", str(tmp_path / "v1")])
    # THEN it is a file that rolls back on its next open, not "unreadable", and nothing changed
    report = json.loads(capsys.readouterr().out)
    assert report["by_state"]["hot_journal"] == 1 and report["by_state"]["unreadable"] == 0
    [item] = report["attention"]
    assert item["state"] == "hot_journal" and "rolls back on the next read-write open" in item["detail"]
    assert code == 0  # it heals itself: nothing for an operator to do
    assert _snapshot(root) == before
    # AND `migrate` rolls it back and finds the file current
    assert (
        main(["migrate", str(root), "--workers", "1", "--no-progress", "--migrations", str(tmp_path / "v1")])
        == 0
    )
    assert not Path(f"{path}-journal").exists()


# ---------------------------------------------------------------- 8: an empty counter file


def test_an_empty_counter_file_is_damage_to_status_and_left_alone_by_migrate(
    tmp_path: Path, v1_manifest: Manifest, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "counters"
    path = make_counter(root, "truncated", v1_manifest)
    path.write_bytes(b"")
    assert main(["status", str(root), "--migrations", str(tmp_path / "v1")]) == 1
    out = capsys.readouterr().out
    assert "empty (1): empty: damage - restore the file from backup (EFS backups)" in out
    assert (
        main(["migrate", str(root), "--workers", "1", "--no-progress", "--migrations", str(tmp_path / "v1")])
        == 1
    )
    assert "empty: 0 bytes" in capsys.readouterr().err
    assert path.stat().st_size == 0  # never given a schema: its old value must be restored, not reset


def test_a_counter_file_switched_to_wal_is_foreign_to_status_and_preflight(
    tmp_path: Path, v1_manifest: Manifest, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a counter file that another tool switched to WAL mode (the API refuses it: 503)
    root = tmp_path / "counters"
    path = make_counter(root, "walled", v1_manifest)
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode=WAL").fetchall()
    conn.close()  # the last connection checkpoints and removes -wal and -shm
    before = _snapshot(root)
    # WHEN status and preflight survey it
    # THEN both report it as a file the API will not serve, say how to repair it, and change nothing
    for command in ("status", "preflight"):
        assert main([command, str(root), "--migrations", str(tmp_path / "v1")]) == 1
        out = capsys.readouterr().out
        assert "in WAL mode, which counter files never use" in out
        assert "PRAGMA journal_mode=DELETE" in out
    assert _snapshot(root) == before


# ---------------------------------------------------------------- 11: one bad file, many workers


@pytest.mark.parametrize("workers", ["1", "2"])
def test_migrate_reports_a_corrupt_file_and_migrates_the_rest(
    tmp_path: Path, v1_manifest: Manifest, v2_manifest: Manifest, workers: str
) -> None:
    root = tmp_path / "counters"
    for n in range(4):
        make_counter(root, f"c-{n}", v1_manifest)
    corrupt = counter_path(root, "corrupt")
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    corrupt.write_text("this is not a database, but it is long enough to look like one" * 20)
    # WHEN the fleet is migrated
    result = _cli(
        "migrate", str(root), "--workers", workers, "--no-progress", "--migrations", str(tmp_path / "v2")
    )
    # THEN the corrupt file is reported and counted, every other file migrated, exit 1, no traceback
    assert result.returncode == 1, result.stderr
    assert "5 counter file(s): 4 migrated, 0 already current, 1 failed." in result.stdout
    assert (
        f"failed: {corrupt.relative_to(root)}: " in result.stderr
        and "not a counter database" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert corrupt.read_text().startswith("this is not a database")


def _error_instances() -> list[errors.CounterError]:
    """One instance of every CounterError subclass, with every constructor argument it takes."""
    instances: list[errors.CounterError] = []
    pending: list[type[errors.CounterError]] = [errors.CounterError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if issubclass(cls, errors.MigrationQuarantined):
            instances.append(cls("full story", public="client story", tag="0001_x", retry_after_s=30))
        elif issubclass(cls, errors.MigrationFailed):
            instances.append(cls("full story", public="client story", tag="0001_x", statement=3))
        elif issubclass(cls, errors.MigrationError):
            instances.append(cls("full story", public="client story"))
        else:
            instances.append(cls("full story"))
    return instances


@pytest.mark.parametrize("error", _error_instances(), ids=lambda e: type(e).__name__)
def test_every_counter_error_survives_a_pickle_round_trip(error: errors.CounterError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert (str(copy), copy.code, copy.public_message, copy.args) == (
        str(error),
        error.code,
        error.public_message,
        error.args,
    )
    assert vars(copy) == vars(error)


def test_every_counter_error_class_is_covered_by_the_pickle_test() -> None:
    names = {type(e).__name__ for e in _error_instances()}
    assert {
        "MigrationError",
        "MigrationFailed",
        "NotACounterDatabase",
        "StorageBusy",
        "InvalidCursor",
    } <= names


def _worker_holding(path: Path, parent_pid: int) -> int | None:
    """The child of `parent_pid` that has `path` open (found through /proc), if any."""
    children = Path(f"/proc/{parent_pid}/task/{parent_pid}/children").read_text().split()
    for child in children:
        try:
            if any(fd.readlink() == path for fd in Path(f"/proc/{child}/fd").iterdir()):
                return int(child)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return None


def test_migrate_reports_a_worker_that_dies_and_carries_on(
    tmp_path: Path, v1_manifest: Manifest, v2_manifest: Manifest
) -> None:
    root = tmp_path / "counters"
    paths = [make_counter(root, f"c-{n}", v1_manifest) for n in range(6)]
    stuck = paths[3]
    # GIVEN one file locked by another writer, so the worker that takes it waits on its lock
    holder = apsw.Connection(str(stuck))
    holder.execute("BEGIN EXCLUSIVE")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.migrations",
            "migrate",
            str(root),
            "--workers",
            "2",
            "--no-progress",
            "--migrations",
            str(tmp_path / "v2"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COUNTERS_BUSY_TIMEOUT_MS": str(HANG_LIMIT_S * 1000)},
    )
    try:
        # WHEN the worker on that file is killed (as the OOM killer would)
        deadline = time.monotonic() + HANG_LIMIT_S
        while (victim := _worker_holding(stuck, process.pid)) is None:
            assert time.monotonic() < deadline, "no worker opened the locked file"
            time.sleep(0.05)
        os.kill(victim, signal.SIGKILL)
        out, err = process.communicate(timeout=HANG_LIMIT_S)
    finally:
        process.kill()
        holder.execute("ROLLBACK")
        holder.close()
    # THEN migrate finishes, reports that file with the cause, and migrated every other file
    assert process.returncode == 1, err
    assert (
        f"failed: {stuck.relative_to(root)}: the worker process was killed by SIGKILL while on this file"
        in err
    )
    # (files its batch finished before the kill lost their answers with the worker: they are done
    # again by a fresh worker, and found already current)
    summary = re.search(r"6 counter file\(s\): (\d+) migrated, (\d+) already current, 1 failed\.", out)
    assert summary is not None and int(summary[1]) + int(summary[2]) == 5, out
    assert [_version(p) for p in paths if p != stuck] == [2] * 5


# ---------------------------------------------------------------- 12: ROOT that does not exist


@pytest.mark.parametrize("command", ["status", "migrate", "preflight"])
def test_a_missing_root_is_an_operator_error(tmp_path: Path, v1_manifest: Manifest, command: str) -> None:
    missing = tmp_path / "not-mounted"
    result = _cli(command, str(missing), "--migrations", str(tmp_path / "v1"))
    assert result.returncode == 2
    assert f"error: {missing} does not exist - check the path (is the file system mounted?)" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "Nothing was read. Give the directory that holds the counter files as ROOT."
    )
    assert not missing.exists()


# ---------------------------------------------------------------- 12.2: migrate verifies history


def test_migrate_fails_a_current_file_whose_applied_migration_was_edited(
    tmp_path: Path, v1_manifest: Manifest, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "counters"
    path = make_counter(root, "a", v1_manifest)
    before = path.read_bytes()
    make_folder(tmp_path / "edited", [("init", PARENT_CHILD + "\n-- edited")])
    code = main(
        ["migrate", str(root), "--workers", "1", "--no-progress", "--migrations", str(tmp_path / "edited")]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "1 counter file(s): 0 migrated, 0 already current, 1 failed." in captured.out
    assert "drifted: migration '0000_init' was applied with sha256" in captured.err
    assert path.read_bytes() == before
