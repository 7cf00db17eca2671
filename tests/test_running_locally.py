"""Running locally as a user would: `make serve PORT=...`, a busy port, `tools.invoke`, schema warnings.

Real processes from the repository root (or from a copy of it, where a test must edit the schema).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from counter_core import bundled_manifest, config
from tests.local_server import REPO, running_server
from tools.invoke import function_spec


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_line(path: Path, prefix: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in path.read_text().splitlines():
            if line.startswith(prefix):
                return line
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"no line starting {prefix!r}: {path.read_text()!r}")


def test_make_serve_listens_on_the_port_given(tmp_path: Path) -> None:
    # GIVEN a free port
    port = _free_port()
    out = tmp_path / "out.txt"
    # WHEN `make serve PORT=<port>` runs from the repository root
    with out.open("wb") as sink:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "serve", f"PORT={port}"],
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        line = _wait_for_line(out, "Serving the counter API at ", process)
        # THEN it says so and answers there
        assert line.startswith(f"Serving the counter API at http://127.0.0.1:{port} ")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=10) as response:
            assert response.status == 200
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=20)


def test_a_busy_port_gives_one_clear_line(tmp_path: Path) -> None:
    # GIVEN a port something else listens on
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        # WHEN the server is asked for it
        result = subprocess.run(
            [sys.executable, "-m", "tools.serve", "--port", str(port), "--root", str(tmp_path / "c")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    # THEN it exits 1 with one line saying what is wrong and what to do, and no traceback
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: port {port} on 127.0.0.1 is already in use - stop what holds it, or choose another port:"
        f" `make serve PORT={port + 1}` (or `--port {port + 1}`)"
    ]


def test_invoke_runs_the_handler_on_an_event_file_and_prints_the_response(tmp_path: Path) -> None:
    # WHEN the sample increment event is invoked as the README prints it (with a scratch root)
    root = tmp_path / "counters"
    command = [sys.executable, "-m", "tools.invoke", "events/increment.json", "--root", str(root)]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    # THEN stdout is the handler's response, and the logs went to stderr
    assert first.returncode == 0, first.stderr
    response = json.loads(first.stdout)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["value"] == 1
    assert len(first.stdout.splitlines()) == 1
    assert '"CountersCreated":1' in first.stderr and '"Requests":1' in first.stderr
    # AND the event's Idempotency-Key replays on a second run, against the same file
    second = json.loads(subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60).stdout)
    assert second["headers"]["idempotent-replayed"] == "true"


def test_invoke_uses_the_environment_the_template_gives_the_function() -> None:
    handler, environment = function_spec("ApiFunction")
    assert handler == "handlers.api.handler"
    assert environment[config.ENV_ROOT] == "/mnt/counters"  # replaced by --root when invoking
    assert environment[config.ENV_HISTORY_RETENTION_ROWS] == str(config.DEFAULT_HISTORY_RETENTION_ROWS)


def test_invoke_refuses_a_missing_event_file_with_what_to_do() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.invoke", "events/nope.json"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: cannot read events/nope.json (No such file or directory)"
        " - pass an event file, such as events/increment.json\n"
    )


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """The code of the repository in a scratch folder, so a test may edit its schema and manifest."""
    copy = tmp_path / "repo"
    for name in ("counter_core", "generated", "handlers", "tools"):
        shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "template.yaml", copy / "template.yaml")
    return copy


def _serve_stderr(copy: Path) -> str:
    """What `python -m tools.serve` run from `copy` prints on stderr before it listens."""
    out, err = copy / "out.txt", copy / "err.txt"
    with out.open("wb") as o, err.open("wb") as e:
        process = subprocess.Popen(
            [sys.executable, "-m", "tools.serve", "--port", "0", "--root", str(copy / "c")],
            cwd=copy,
            stdout=o,
            stderr=e,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        _wait_for_line(out, "Serving the counter API at ", process)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    return err.read_text()


def test_serve_is_quiet_when_schema_and_manifest_are_current(tmp_path: Path) -> None:
    with running_server(tmp_path / "c") as server:
        pass
    assert "warning" not in server.stderr.read_text()


def test_serve_warns_when_the_schema_has_changes_no_migration_makes(repo_copy: Path) -> None:
    # GIVEN a schema file edited without generating a migration
    schema = repo_copy / "counter_core" / "schema.sql"
    schema.write_text(schema.read_text() + "\nCREATE TABLE owners (id INTEGER PRIMARY KEY NOT NULL);\n")
    # WHEN the server starts, THEN it says so, says it serves the old migrations, and where to look
    stderr = _serve_stderr(repo_copy)
    assert "has changes that no migration makes yet" in stderr
    # (the difference itself is `check`'s to print: no warning points at one that is not there)
    assert "difference above" not in stderr
    assert stderr.splitlines()[-1] == (
        "warning: serving the migrations in generated/ as they are - details:"
        " `.venv/bin/python -m tools.migrations check`"
    )


def test_serve_warns_when_the_manifest_is_stale(repo_copy: Path) -> None:
    # GIVEN a manifest that is valid but not what the migrations folder builds
    manifest = repo_copy / "generated" / "manifest.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()), indent=4))
    stderr = _serve_stderr(repo_copy)
    assert "manifest.json is stale" in stderr


def test_rebuilding_an_unchanged_manifest_asks_for_no_commit(repo_copy: Path) -> None:
    command = [sys.executable, "-m", "tools.migrations", "manifest", "--migrations", "generated"]
    count = len(bundled_manifest().migrations)
    result = subprocess.run(command, cwd=repo_copy, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout == f"generated/manifest.json is current: {count} migration(s).\n"
    (repo_copy / "generated" / "manifest.json").write_text("{}")
    result = subprocess.run(command, cwd=repo_copy, capture_output=True, text=True, timeout=60)
    assert (
        result.stdout
        == f"Wrote generated/manifest.json: {count} migration(s). Commit it with the SQL files.\n"
    )


def _tool(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("abc", "COUNTERS_HISTORY_RETENTION_ROWS='abc' is not an integer - set it to a whole number"),
        ("-1", "COUNTERS_HISTORY_RETENTION_ROWS=-1 is below 0 - set it to at least 0"),
    ],
)
def test_serve_refuses_to_start_with_a_setting_it_cannot_use(tmp_path: Path, raw: str, problem: str) -> None:
    # GIVEN an operator's typo in a setting
    # WHEN the server starts (it used to listen, then answer every request 500 with a traceback logged)
    result = _tool(
        "tools.serve",
        "--port",
        "0",
        "--root",
        str(tmp_path / "c"),
        env={config.ENV_HISTORY_RETENTION_ROWS: raw},
    )
    # THEN it exits 2 before listening, naming the variable, the value and what to do, no traceback
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {problem}",
        "Fix the environment and start again (see the README's Configuration).",
    ]
    assert "Serving" not in result.stdout


def test_invoke_refuses_a_setting_it_cannot_use(tmp_path: Path) -> None:
    result = _tool(
        "tools.invoke",
        "events/increment.json",
        "--root",
        str(tmp_path / "c"),
        env={config.ENV_BUSY_TIMEOUT_MS: "5s"},
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "error: COUNTERS_BUSY_TIMEOUT_MS='5s' is not an integer - set it to a whole number"
    )
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_serve_refuses_a_port_out_of_range_in_one_line(tmp_path: Path, port: str) -> None:
    # WHEN `make serve PORT=99999` hands the server a port no socket can have
    result = _tool("tools.serve", "--port", port, "--root", str(tmp_path / "c"))
    # THEN argparse's usage error says so (exit 2), not an OverflowError traceback
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith(
        f"argument --port: {port} is not a port - use 1 to 65535 (0 picks a free one)"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("tool", ["tools.serve", "tools.invoke"])
def test_a_root_that_is_a_file_is_one_line(tmp_path: Path, tool: str) -> None:
    # GIVEN --root naming a file, not a directory
    root = tmp_path / "counters"
    root.write_text("not a directory")
    argv = ["--port", "0"] if tool == "tools.serve" else ["events/increment.json"]
    result = _tool(tool, *argv, "--root", str(root))
    # THEN one line says what is wrong and what to do
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: cannot use {root} as the counter files directory (File exists)"
        " - pass --root a directory, or a path where one can be created"
    ]


def test_invoke_refuses_an_event_file_that_is_not_utf8(tmp_path: Path) -> None:
    # GIVEN an event file saved as UTF-16 (PowerShell's `>` does that)
    event = tmp_path / "event.json"
    event.write_text((REPO / "events" / "increment.json").read_text(), encoding="utf-16")
    result = _tool("tools.invoke", str(event), "--root", str(tmp_path / "c"))
    assert result.returncode == 2
    assert result.stderr == (
        f"error: {event} is not UTF-8 text - save it as UTF-8 JSON, such as events/increment.json\n"
    )


def test_serve_with_a_broken_manifest_is_one_line_saying_how_to_rebuild_it(repo_copy: Path) -> None:
    # GIVEN a manifest a merge left conflict markers in
    manifest = repo_copy / "generated" / "manifest.json"
    manifest.write_text("<<<<<<< HEAD\n" + manifest.read_text())
    for argv in (["tools.serve", "--port", "0"], ["tools.invoke", str(REPO / "events" / "increment.json")]):
        # WHEN the server (or invoke) starts
        result = subprocess.run(
            [sys.executable, "-m", *argv, "--root", str(repo_copy / "c")],
            cwd=repo_copy,
            capture_output=True,
            text=True,
            timeout=60,
        )
        # THEN one line names the file and the command that rebuilds it; no traceback
        assert result.returncode == 2, argv
        [line] = result.stderr.splitlines()
        assert line.startswith("error: generated/manifest.json is malformed: ")
        assert line.endswith(" - rebuild it with `python -m tools.migrations manifest`")
